"""Faster paths through graphql-core for the fields most of a response is made of.

Objects below the root are completed by selection plans compiled per document
(engine/plans.py), which fall back to graphql-core on anything unusual. What graphql-core
still completes itself (root fields, and whatever plans leave to it) takes the direct
path for plain fields described here.

Most output values are read straight off a record (`amount`, `symbol`, `token`):
strawberry fields without a resolver, whose value is `getattr(source, python_name)`.
graphql-core still builds a ResolveInfo, checks for arguments, calls strawberry's
wrapper and tests for an awaitable for each of them, and walks `complete_value` for
leaves: most of a deep query's CPU. Here a leaf is read and coerced
directly, and an object or list is read directly and completed by graphql-core.

Only the happy path is taken here. A leaf that is missing, raises, is null where it may
not be, or is refused by its scalar goes through graphql-core unchanged, so errors, null
propagation and their locations are exactly graphql-core's; an object or list is
completed by graphql-core's own `complete_value` with its own error handling.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from graphql import ExecutionResult, GraphQLNonNull, GraphQLObjectType, is_leaf_type
from graphql.execution.executor import to_nodes
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

from gateway.engine import plans

# (parent type, field name) -> (python attribute, field type, leaf type or None, nullable),
# or None: not a plain field (it has a resolver, arguments or extensions).
_Plan = tuple[str, Any, Any, bool] | None
_PLANS: dict[tuple[str, str], _Plan] = {}
_SLOW = object()   # take graphql-core's own path

# Every time plans hand an operation back to graphql-core, by why: `bail` (a value off the
# happy path: an error, a null, a refused scalar) or `error` (an exception while completing: a resolver's, a scalar's).
# Process-wide; the app's /metrics exposes it (observability/metrics.py).
PLAN_FALLBACKS: Counter[str] = Counter()


def _fell_back(error: Exception) -> None:
    PLAN_FALLBACKS["bail" if isinstance(error, plans.Bail) else "error"] += 1


def _plan(parent_type: GraphQLObjectType, field_name: str) -> _Plan:
    key = (parent_type.name, field_name)
    try:
        return _PLANS[key]
    except KeyError:
        pass
    plan: _Plan = None
    field_def = parent_type.fields.get(field_name)
    strawberry_field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF) if field_def else None
    if field_def is not None and strawberry_field is not None and not field_def.args \
            and getattr(field_def.resolve, "_is_default", False) and not strawberry_field.extensions:
        nullable = not isinstance(field_def.type, GraphQLNonNull)
        inner = field_def.type if nullable else field_def.type.of_type
        plan = (strawberry_field.python_name, field_def, inner if is_leaf_type(inner) else None, nullable)
    _PLANS[key] = plan
    return plan


def _plans_allowed(context: Any) -> bool:
    """`[server] compiled_plans` of the gateway serving the request (on without a gateway)."""
    state = getattr(context, "state", None)
    config = getattr(state, "config", None)
    return config is None or config.server.compiled_plans


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strawberry always passes a manager; it wraps resolvers only when an extension
        # implements `resolve` (none of ours do). With one, every field takes the full path.
        manager = self.middleware_manager
        self.plain_fields_direct = manager is None or not manager.middlewares
        # Objects below the root are completed by compiled plans (schema/plans.py) until one
        # bails out; after that, graphql-core completes the rest of this operation.
        self.plans_on = self.plain_fields_direct and _plans_allowed(self.context_value) and plans.plannable(self)

    def build_response(self, data: Any) -> Any:
        result = super().build_response(data)
        if isinstance(result, ExecutionResult):   # the whole result: nothing of this execution runs after it
            # graphql-core's helpers hold bound methods of this context, a reference cycle: through it a
            # finished request's whole graph (context, loaders, reads, records) waited for a gen-1
            # collection instead of being freed by reference counting (what that cost is in
            # docs/PERFORMANCE.md).
            self.async_helpers = None
        return result

    def complete_object_value(self, return_type: GraphQLObjectType, field_details_list: Any, info: Any,
                              path: Any, result: Any, position_context: Any) -> Any:
        if self.plans_on:
            try:
                plan = plans.plan_for(self, return_type, field_details_list)
                completed = None if plan is None else plans.Run(self).complete_root(plan, result, info, path)
            except Exception as error:   # plans.Bail, or anything the happy path did not expect
                _fell_back(error)
                self.plans_on = False
            else:
                if plan is not None:
                    if not self.is_awaitable(completed):
                        return completed
                    return self._await_plan(completed, return_type, field_details_list, info, path, result,
                                            position_context)
        return super().complete_object_value(return_type, field_details_list, info, path, result, position_context)

    async def _await_plan(self, completed: Any, return_type: GraphQLObjectType, field_details_list: Any, info: Any,
                          path: Any, result: Any, position_context: Any) -> Any:
        try:
            return await completed
        except Exception as error:
            _fell_back(error)
            self.plans_on = False
        fallback = super().complete_object_value(return_type, field_details_list, info, path, result,
                                                 position_context)
        return await fallback if self.is_awaitable(fallback) else fallback

    def execute_field(self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any,
                      path: Any, position_context: Any) -> Any:
        plan = _plan(parent_type, field_details_list[0].node.name.value)
        if plan is not None and self.plain_fields_direct:
            attr, field_def, leaf, nullable = plan
            value: Any = _SLOW
            try:
                value = getattr(source, attr)
                if value is None:
                    if nullable:
                        return None
                    value = _SLOW
                elif leaf is not None:
                    coerced = leaf.coerce_output_value(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
                    value = _SLOW
            except Exception:   # graphql-core reports it, with the path
                value = _SLOW
            if value is not _SLOW and not self.is_awaitable(value):   # an object or a list: graphql-core completes it
                return self._complete_plain(field_def, parent_type, field_details_list, path, position_context, value)
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

    def _complete_plain(self, field_def: Any, parent_type: GraphQLObjectType, field_details_list: Any,
                        path: Any, position_context: Any, value: Any) -> Any:
        """graphql-core's execute_field after the resolver has returned `value` (not awaitable)."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(field_details_list), parent_type, path)
        try:
            completed = self.complete_value(return_type, field_details_list, info, path, value, position_context)
            if self.is_awaitable(completed):
                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, return_type, field_details_list, path)
                        return None
                return await_completed()
            return completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
