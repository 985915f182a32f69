"""schema.graphql is the exported public schema: it must match what the code serves."""
from __future__ import annotations

from pathlib import Path

from schema import schema

ROOT = Path(__file__).resolve().parents[2]


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
    gql = schema._schema
    def field_type(type_name: str, field: str) -> str:
        return str(gql.type_map[type_name].fields[field].type)
    assert field_type("Query", "viewer") == "Account"
    assert field_type("Query", "account") == "Account"
    assert field_type("Query", "accounts") == "[Account]!"
    assert str(gql.query_type.fields["accounts"].args["ids"].type) == "[ID!]!"
    for name in ("node", "token", "asset"):
        assert name in gql.query_type.fields
    expected = {
        "Account": {"id": "ID!", "wallets": "[Wallet!]!", "holdings": "HoldingConnection!",
                    "positions": "PositionConnection!", "totalValue": "ValueTotal!",
                    "balanceHistory": "BalanceChangeConnection!", "sources": "[SourceStatus!]!"},
        "Holding": {"amount": "Decimal!", "amountRaw": "BigInt", "precision": "AmountPrecision!",
                    "value": "Money", "price": "Price", "updatedAt": "DateTime"},
        "ValueTotal": {"value": "Money!", "complete": "Boolean!", "unpricedHoldings": "Int!",
                       "failedSources": "[Source!]!"},
        "SourceStatus": {"source": "Source!", "state": "SourceState!", "fetchedAt": "DateTime",
                         "fromCache": "Boolean!", "error": "SourceError"},
        "Position": {"key": "String!", "amount": "Decimal", "value": "Money", "share": "Decimal",
                     "holdings": "[Holding!]!"},
    }
    for type_name, fields in expected.items():
        for field, type_str in fields.items():
            assert field_type(type_name, field) == type_str, (type_name, field)
    default = gql.type_map["Account"].fields["totalValue"].args["currency"].default_value
    assert default == "USD"
    for enum in ("Source", "WalletKind", "AmountPrecision", "PriceReliability", "SourceState", "PositionGrouping"):
        assert enum in gql.type_map
    for scalar in ("Decimal", "BigInt", "DateTime", "ChainId", "AssetType"):
        assert scalar in gql.type_map
