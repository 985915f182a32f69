"""The strawberry schema. Types only: no I/O happens in this package."""
from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import ParserCache
from strawberry.schema.config import StrawberryConfig

from gateway.engine.operation_limits import OperationLimits
from schema import scalars
from gateway.engine.execution import GatewayExecutionContext
from schema.query import Query
from gateway.engine.validation import DocumentValidationCache
from schema.types import Account, Holding, Token, Wallet

FEDERATION_VERSION = "2.7"   # the spec linked in the SDL; composes with @apollo/composition 2.x


class GatewaySchema(strawberry.federation.Schema):
    def process_errors(self, errors: list, execution_context: Any = None) -> None:
        # Client mistakes are not server errors; unexpected exceptions are logged once, with
        # the request id, where the response is shaped (gateway.app). Nothing to log here.
        pass


def build_schema() -> strawberry.Schema:
    # An Apollo Federation 2 subgraph: Account, Wallet and Token are entities (@key "id"),
    # `_service { sdl }` and `_entities` are added (resolvers/entities.py, federation/).
    return GatewaySchema(
        query=Query,
        federation_version=FEDERATION_VERSION,
        types=[Account, Wallet, Token, Holding],
        # Factories, not instances: per-request extension objects, shared module-level caches.
        extensions=[lambda: ParserCache(maxsize=512), DocumentValidationCache, OperationLimits],
        config=StrawberryConfig(auto_camel_case=True, scalar_map=scalars.SCALAR_MAP),
        execution_context_class=GatewayExecutionContext,   # plain fields read directly (schema/execution.py)
    )


schema = build_schema()
