"""Client-facing errors: a GraphQL error with a stable `extensions.code`."""
from __future__ import annotations

from graphql import GraphQLError

from gateway.domain.errors import ClientCode


def client_error(code: ClientCode, message: str, path: list[str | int] | None = None,
                 field: str | None = None) -> GraphQLError:
    """`field` names the argument at fault (extensions.field), when there is one."""
    extensions = {"code": code.value} if field is None else {"code": code.value, "field": field}
    return GraphQLError(message, path=path, extensions=extensions)
