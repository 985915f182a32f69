"""Token registry: chains (CAIP-2), assets, tokens (CAIP-19) and each upstream's ids for them.

Loaded from the TOML data files beside this module, then extended by the config file's
`[registry]` tables (same shape). Lookups never guess: an id the registry cannot resolve
gets a source-scoped token (`cryptofuse:FOO`) with `decimals = None`.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable

from gateway.domain.evm import is_evm_address, normalize_address
from gateway.domain.records import Asset, Chain, SourceId, Token

DATA_DIR = Path(__file__).parent / "data"

# An entry's own fields; every other list in it is a source's names for it, under that
# source's key (`calico = ["ethereum"]`), so the registry needs no list of the sources.
_CHAIN_FIELDS = frozenset({"id", "name", "testnet"})
_TOKEN_FIELDS = frozenset({"id", "asset", "symbol", "name", "decimals"})


def _aliases(entry: dict[str, Any], own: frozenset[str]) -> Iterable[tuple[str, str]]:
    """(source key, lowercased alias) for each source's names in one chain or token entry."""
    for source_key, names in entry.items():
        if source_key not in own and isinstance(names, list):
            for alias in names:
                yield source_key, alias.lower()


def token_key(token_id: str) -> str:
    """Lookup key for a token id: EVM ids compare case-insensitively, everything else exactly."""
    return token_id.lower() if token_id[:7].lower() == "eip155:" else token_id


def canonical_asset_type(asset_type: str) -> str:
    """CAIP-19 with an EVM contract address checksummed; other namespaces untouched."""
    chain_id, sep, rest = asset_type.partition("/")
    ns, sep2, ref = rest.partition(":")
    if sep and sep2 and chain_id.startswith("eip155:") and is_evm_address(ref):
        return f"{chain_id}/{ns}:{normalize_address(ref)}"
    return asset_type


def split_asset_type(asset_type: str) -> tuple[str, str, str] | None:
    """("eip155:1", "erc20", "0x...") for a CAIP-19 id, or None when it is not one."""
    chain_id, sep, rest = asset_type.partition("/")
    ns, sep2, ref = rest.partition(":")
    if not (sep and sep2 and ":" in chain_id and ns and ref):
        return None
    return chain_id, ns, ref


class TokenRegistry:
    def __init__(self) -> None:
        self.chains: dict[str, Chain] = {}
        self.assets: dict[str, Asset] = {}
        self.tokens: dict[str, Token] = {}            # token_key(id) -> Token
        self._chain_alias: dict[tuple[str, str], Chain] = {}
        self._token_alias: dict[tuple[str, str], Token] = {}
        self._exchanges: dict[str, set[str]] = {}
        self._onebalance_ids: dict[str, str] = {}     # ob:* -> asset key

    # -- loading ----------------------------------------------------------
    @classmethod
    def default(cls, extra: dict[str, Any] | None = None) -> "TokenRegistry":
        registry = cls()
        # chains first (tokens refer to them), then every other data file in name order
        files = sorted(DATA_DIR.glob("*.toml"), key=lambda p: (p.name != "chains.toml", p.name))
        for path in files:
            registry.extend(tomllib.loads(path.read_text()))
        if extra:
            registry.extend(extra)
        return registry

    def extend(self, data: dict[str, Any]) -> None:
        """Add (or override) chains, assets and tokens from one parsed TOML document."""
        for c in data.get("chains", []):
            chain = Chain(id=c["id"], name=c.get("name", c["id"]), is_testnet=bool(c.get("testnet", False)))
            self.chains[chain.id] = chain
            for alias_key in _aliases(c, _CHAIN_FIELDS):
                self._chain_alias[alias_key] = chain
        for source_key, names in data.get("exchanges", {}).items():
            self._exchanges.setdefault(source_key, set()).update(n.lower() for n in names)
        for a in data.get("assets", []):
            asset = Asset(key=a["key"], symbol=a["symbol"], name=a.get("name"))
            self.assets[asset.key] = asset
            if a.get("onebalance"):
                self._onebalance_ids[a["onebalance"]] = asset.key
        for t in data.get("tokens", []):
            self._add_token(t)

    def _add_token(self, t: dict[str, Any]) -> None:
        asset = self.assets.get(t["asset"]) if t.get("asset") else None
        token_id = canonical_asset_type(t["id"])
        parts = split_asset_type(token_id)
        chain = address = asset_type = None
        if parts:
            chain_id, ns, ref = parts
            chain = self.chains.get(chain_id) or Chain(id=chain_id, name=chain_id)
            asset_type = token_id
            if ns not in ("slip44",):
                address = ref
        token = Token(
            id=token_id,
            symbol=t.get("symbol") or (asset.symbol if asset else token_id),
            asset_key=asset.key if asset else t.get("asset", token_id),
            name=t.get("name") or (asset.name if asset else None),
            decimals=t.get("decimals"),
            chain=chain,
            address=address,
            asset_type=asset_type,
        )
        self.tokens[token_key(token_id)] = token
        for alias_key in _aliases(t, _TOKEN_FIELDS):
            self._token_alias[alias_key] = token

    # -- lookups ----------------------------------------------------------
    def chain(self, chain_id: str) -> Chain | None:
        return self.chains.get(chain_id)

    def chain_or_unknown(self, chain_id: str) -> Chain:
        return self.chains.get(chain_id) or Chain(id=chain_id, name=chain_id)

    def chain_alias(self, source: SourceId, alias: str) -> Chain | None:
        """Chain an upstream names by its own id: Calico `ethereum`, Cobo `BASE_ETH`."""
        return self._chain_alias.get((source.key, alias.lower()))

    def is_exchange(self, source: SourceId, provider: str) -> bool:
        return provider.lower() in self._exchanges.get(source.key, set())

    def token(self, token_id: str) -> Token | None:
        return self.tokens.get(token_key(token_id))

    def token_alias(self, source: SourceId, alias: str) -> Token | None:
        """Token an upstream names by its own id: Cryptofuse `USDTERC20`, Cobo `SETH_USDC`."""
        return self._token_alias.get((source.key, alias.lower()))

    def ticker(self, symbol: str) -> Token | None:
        """The off-chain ticker token (`ticker:BTC`) for an exchange balance, when known."""
        return self.tokens.get(f"ticker:{symbol.upper()}")

    def asset(self, key: str) -> Asset:
        """The asset for a key; tokens the registry does not know form an asset of their own."""
        known = self.assets.get(key)
        if known:
            return known
        token = self.tokens.get(token_key(key))
        return Asset(key=key, symbol=token.symbol if token else key)

    def tokens_of_asset(self, key: str) -> list[Token]:
        return [t for t in self.tokens.values() if t.asset_key == key]

    def onebalance_asset(self, aggregated_id: str) -> Asset | None:
        key = self._onebalance_ids.get(aggregated_id)
        return self.assets.get(key) if key else None

    def onebalance_members(self, aggregated_id: str) -> list[Token]:
        """Tokens of an aggregated OneBalance asset (ob:usdc), each with its own decimals."""
        key = self._onebalance_ids.get(aggregated_id)
        return [t for t in self.tokens.values() if key and t.asset_key == key and t.asset_type]

    # -- tokens outside the registry ---------------------------------------
    def unknown(self, source: SourceId, upstream_id: str, symbol: str | None = None,
                chain: Chain | None = None) -> Token:
        """A token the registry cannot resolve: source-scoped id, no decimals, own asset."""
        token_id = f"{source.key}:{upstream_id}"
        return Token(id=token_id, symbol=symbol or upstream_id, asset_key=token_id, chain=chain)

    def by_asset_type(self, asset_type: str, *, symbol: str | None = None, name: str | None = None,
                      decimals: int | None = None) -> Token:
        """Token for a CAIP-19 id: the registry's when known, else one built from the id.

        An unknown CAIP-19 keeps its id (chain and contract are known) but takes decimals
        only from the caller (an upstream that reports them), never from a guess.
        """
        known = self.token(asset_type)
        if known:
            return known
        canonical = canonical_asset_type(asset_type)
        parts = split_asset_type(canonical)
        chain = self.chain_or_unknown(parts[0]) if parts else None
        address = parts[2] if parts and parts[1] != "slip44" else None
        return Token(id=canonical, symbol=symbol or (address or canonical), asset_key=canonical,
                     name=name, decimals=decimals, chain=chain, address=address, asset_type=canonical)

    def all_tokens(self) -> Iterable[Token]:
        return self.tokens.values()
