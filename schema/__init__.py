"""The strawberry schema. Types only: no I/O happens in this package."""
from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from gateway.operation_limits import OperationLimits
from schema import scalars
from schema.query import Query
from schema.types import Account, Holding, Token, Wallet


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        types=[Account, Wallet, Token, Holding],
        # Factories, not instances: per-request extension objects, shared module-level LRU caches.
        extensions=[lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512), OperationLimits],
        config=StrawberryConfig(auto_camel_case=True, scalar_map=scalars.SCALAR_MAP),
    )


schema = build_schema()
