"""Client-facing errors: a GraphQL error with a stable `extensions.code`."""
from __future__ import annotations

from graphql import GraphQLError

from gateway.domain.errors import ClientCode


def client_error(code: ClientCode, message: str, path: list[str | int] | None = None) -> GraphQLError:
    return GraphQLError(message, path=path, extensions={"code": code.value})
