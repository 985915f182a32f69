"""Validation results kept per parsed document.

strawberry's ValidationCache keeps them in an lru_cache keyed by (schema, document,
rules), and a DocumentNode's hash walks its whole AST: every request paid a full walk
of its document (~3% of a deep query) just to find its entry. ParserCache hands every
request with the same text the same DocumentNode object, so here the key is that
object's identity (gateway/support/by_identity.py).
"""
from __future__ import annotations

from typing import Any, Iterator

from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.support.by_identity import MISSING, ByIdentity

_VALIDATED = ByIdentity(maxsize=512)


class DocumentValidationCache(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        ec.pre_execution_errors = validated(ec.schema._schema, ec.graphql_document, tuple(ec.validation_rules))
        yield


def validated(schema: Any, document: Any, rules: tuple[Any, ...]) -> list[Any]:
    errors = _VALIDATED.get((schema, document), rules)
    if errors is MISSING:
        errors = _VALIDATED.put((schema, document), validate_document(schema, document, rules), rules)
    return errors
