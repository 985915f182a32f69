"""schema.graphql is the exported public schema: it must match what the code serves."""
from __future__ import annotations

from pathlib import Path

from schema import schema

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_matches_the_code():
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == schema.as_str() + "\n", \
        "schema.graphql is stale: run `.venv/bin/balance-gateway export-schema -o schema.graphql`"


def test_no_float_or_int_money_fields():
    sdl = schema.as_str()
    assert "Float" not in sdl
    for money_field in ("amount:", "unit:", "available:", "locked:", "pending:", "staked:"):
        for line in sdl.splitlines():
            if line.strip().startswith(money_field):
                assert "Decimal" in line, line


def test_design_contract_names_are_present():
    sdl = schema.as_str()
    for name in ("type Account implements Node", "type Wallet implements Node", "type Token implements Node",
                 "type Holding implements Node", "viewer: Account", "accounts(ids: [ID!]!): [Account]!",
                 "totalValue(currency: String! = \"USD\"", "sources: [SourceStatus!]!",
                 "enum Source", "enum WalletKind", "enum AmountPrecision", "enum PriceReliability",
                 "enum SourceState", "scalar Decimal", "scalar BigInt", "scalar ChainId", "scalar AssetType"):
        assert name in sdl, name
