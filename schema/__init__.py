"""The strawberry schema. Types only: no I/O happens in this package."""
from __future__ import annotations

from functools import cached_property
from typing import Any

import strawberry
from strawberry.extensions import ParserCache
from strawberry.federation.schema import FederationAny
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from gateway.engine.operation_limits import OperationLimits
from resolvers import representations as entity_representations
from schema import scalars
from gateway.engine.execution import GatewayExecutionContext
from schema.mutation import Mutation
from schema.query import Query
from schema.live import Subscription
from gateway.engine.validation import DocumentValidationCache
from schema.types import Account, Holding, Token, Wallet

FEDERATION_VERSION = "2.7"   # the spec linked in the SDL; composes with @apollo/composition 2.x


class GatewaySchema(strawberry.federation.Schema):
    def process_errors(self, errors: list, execution_context: Any = None) -> None:
        # Client mistakes are not server errors; unexpected exceptions are logged once, with
        # the request id, where the response is shaped (gateway/server/app.py). Nothing to log here.
        pass

    @cached_property
    def entity_types(self) -> frozenset[str]:
        return frozenset(t.name for t in self._schema.get_type("_Entity").types)

    def entities_resolver(self, info: Info, representations: list[FederationAny]) -> list[FederationAny]:
        """Bad representations become BAD_USER_INPUT at their index (schema/representations.py);
        strawberry resolves the others, in their places."""
        checked = entity_representations.checked(representations, self.entity_types)
        good = [r for r in checked if isinstance(r, dict)]
        resolved = iter(super().entities_resolver(info, good) if good else [])
        return [next(resolved) if isinstance(r, dict) else r for r in checked]  # type: ignore[misc]


def build_schema() -> strawberry.Schema:
    # An Apollo Federation 2 subgraph: Account, Wallet and Token are entities (@key "id"),
    # `_service { sdl }` and `_entities` are added (resolvers/entities.py, federation/).
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        federation_version=FEDERATION_VERSION,
        types=[Account, Wallet, Token, Holding],
        # Factories, not instances: per-request extension objects, shared module-level caches.
        extensions=[lambda: ParserCache(maxsize=512), DocumentValidationCache, OperationLimits],
        # @defer/@stream: strawberry's incremental delivery over graphql-core 3.3 ([live] defer gates its use)
        config=StrawberryConfig(auto_camel_case=True, scalar_map=scalars.SCALAR_MAP,
                                enable_experimental_incremental_execution=True),
        execution_context_class=GatewayExecutionContext,   # plain fields read directly (schema/execution.py)
    )


schema = build_schema()
