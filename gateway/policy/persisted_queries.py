"""Persisted queries: Automatic Persisted Queries (APQ) and a safelist manifest.

APQ (Apollo's protocol): a client sends `extensions.persistedQuery.sha256Hash`; on a
miss it gets PERSISTED_QUERY_NOT_FOUND and sends the query with its hash once; the
hash is checked and remembered (in Redis when configured, so every process knows it).
Safelist mode: only operations in the manifest (Apollo's persisted-query manifest
format) run, by id/hash or by identical text; free-form queries are refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any


from gateway.config import PersistedQueriesConfig

log = logging.getLogger("gateway.persisted")
MAX_LOCAL = 10_000


def sha256_hex(text: str) -> str:
    # surrogatepass: a query holding a lone surrogate (a `\ud800` escape in the JSON body)
    # still hashes, to a hash no well-formed client text can have.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class PersistedQueryRefusal:
    """Why a persisted-query request cannot run; the view answers it as a GraphQL error."""
    code: str
    message: str


def _error(code: str, message: str) -> PersistedQueryRefusal:
    return PersistedQueryRefusal(code, message)


def load_manifest(path: str) -> dict[str, str]:
    """id or sha256 of the body -> body, from an Apollo persisted-query manifest."""
    data = json.loads(Path(path).read_text())
    operations = data.get("operations", []) if isinstance(data, dict) else []
    known: dict[str, str] = {}
    for op in operations:
        body = op["body"]
        known[sha256_hex(body)] = body
        if op.get("id"):
            known[str(op["id"])] = body
    return known


class PersistedQueries:
    def __init__(self, config: PersistedQueriesConfig, redis_client: Any = None):
        self.config = config
        self.manifest = load_manifest(config.manifest) if config.manifest else {}
        self.redis = redis_client
        self.local: OrderedDict[str, str] = OrderedDict()

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> tuple[str | None, PersistedQueryRefusal | None]:
        """The query text to run, or the error to answer with."""
        pq = (extensions or {}).get("persistedQuery") if isinstance(extensions, dict) else None
        if pq is not None and (not isinstance(pq, dict) or pq.get("version", 1) != 1
                               or not isinstance(pq.get("sha256Hash", pq.get("id")), str)):
            return None, _error("PERSISTED_QUERY_INVALID", "persistedQuery needs version 1 and a sha256Hash")
        key = (pq.get("sha256Hash") or pq.get("id")) if pq else None
        if self.config.safelist_only:
            return self._from_safelist(query, key)
        if key is None:
            return query, None
        if not self.config.apq and key not in self.manifest:
            return None, _error("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")
        if query is not None:
            if sha256_hex(query) != key:
                return None, _error("PERSISTED_QUERY_HASH_MISMATCH", "the query does not match its sha256Hash")
            await self._remember(key, query)
            return query, None
        found = self.manifest.get(key) or await self._recall(key)
        if found is None:
            return None, _error("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
        return found, None

    def _from_safelist(self, query: str | None, key: str | None) -> tuple[str | None, PersistedQueryRefusal | None]:
        body = self.manifest.get(key) if key else None
        if body is None and query is not None:
            body = self.manifest.get(sha256_hex(query))
        if body is None or (query is not None and query != body):
            return None, _error("PERSISTED_QUERY_NOT_IN_LIST", "this gateway only runs its safelisted operations")
        return body, None

    async def _remember(self, key: str, query: str) -> None:
        self.local[key] = query
        self.local.move_to_end(key)
        while len(self.local) > MAX_LOCAL:
            self.local.popitem(last=False)
        if self.redis is not None:
            try:
                await self.redis.set(f"bg:apq:{key}", query, ex=7 * 24 * 3600)
            except Exception as exc:
                log.warning("APQ: Redis unavailable (%s); remembering per process", type(exc).__name__)

    async def _recall(self, key: str) -> str | None:
        if key in self.local:
            return self.local[key]
        if self.redis is not None:
            try:
                found = await self.redis.get(f"bg:apq:{key}")
            except Exception:
                return None
            if found is not None:
                text = found.decode() if isinstance(found, bytes) else found
                self.local[key] = text
                return text
        return None
