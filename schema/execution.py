"""A faster path through graphql-core for the fields most of a response is made of.

Most output values are leaves read straight off a record (`amount`, `symbol`, `state`):
strawberry fields without a resolver, whose value is `getattr(source, python_name)`.
graphql-core still builds a ResolveInfo, checks for arguments, calls strawberry's
wrapper, tests for an awaitable and walks `complete_value` for each of them: about 5 µs
a value, most of a deep query's CPU. Here such a field is read and coerced directly.

Only the happy path is taken here. Anything else — no such attribute, an exception, a
null for a non-null field, a value the scalar refuses — goes through graphql-core
unchanged, so errors, null propagation and their locations are exactly graphql-core's.
"""
from __future__ import annotations

from typing import Any

from graphql import GraphQLNonNull, GraphQLObjectType, is_leaf_type
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# (parent type, field name) -> (python attribute, leaf type, nullable), or None: not a plain leaf.
_Plan = tuple[str, Any, bool] | None
_PLANS: dict[tuple[str, str], _Plan] = {}


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
        leaf = field_def.type if nullable else field_def.type.of_type
        if is_leaf_type(leaf):
            plan = (strawberry_field.python_name, leaf, nullable)
    _PLANS[key] = plan
    return plan


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strawberry always passes a manager; it wraps resolvers only when an extension
        # implements `resolve` (none of ours do). With one, every field takes the full path.
        manager = self.middleware_manager
        self.plain_fields_direct = manager is None or not manager.middlewares

    def execute_field(self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any,
                      path: Any, position_context: Any) -> Any:
        plan = _plan(parent_type, field_details_list[0].node.name.value)
        if plan is not None and self.plain_fields_direct:
            attr, leaf, nullable = plan
            try:
                value = getattr(source, attr)
                if value is None:
                    if nullable:
                        return None
                else:
                    coerced = leaf.coerce_output_value(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
            except Exception:   # graphql-core reports it, with the path
                pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
