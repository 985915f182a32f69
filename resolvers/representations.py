"""Federation `_entities` representations, checked before strawberry resolves them.

Strawberry's resolver expects each representation to be an object whose `__typename`
names a type with `resolve_reference`, and passes every other key on as a keyword
argument: a missing or unknown `__typename`, a non-entity type (`Query`, `Holding`) or
a stray key became a KeyError or TypeError, i.e. INTERNAL_SERVER_ERROR with a traceback.
Here each representation that is not `{__typename: <entity type>, id: ...}` becomes a
BAD_USER_INPUT error at its index (`path: ["_entities", i]`), and only `__typename` and
`id` — the one key every entity has (`@key(fields: "id")`) — reach the resolver.
"""
from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from gateway.domain.errors import ClientCode


def checked(representations: list[Any], entity_types: frozenset[str]) -> list[dict[str, Any] | GraphQLError]:
    """Per representation, what strawberry may resolve, or the error answered at its index."""
    names = ", ".join(sorted(entity_types))
    out: list[dict[str, Any] | GraphQLError] = []
    for index, representation in enumerate(representations):
        if not isinstance(representation, dict):
            out.append(_bad(f"representation {index} must be an object with `__typename` and `id`"))
            continue
        typename = representation.get("__typename")
        if not isinstance(typename, str) or typename not in entity_types:
            # The name is not quoted: what a client sent stays out of messages where it can.
            out.append(_bad(f"representation {index}: `__typename` must name an entity type ({names})"))
            continue
        out.append({"__typename": typename, "id": representation.get("id")})
    return out


def _bad(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": ClientCode.BAD_USER_INPUT.value})
