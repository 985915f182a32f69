"""Validation results kept per parsed document.

strawberry's ValidationCache keeps them in an lru_cache keyed by (schema, document,
rules), and a DocumentNode's hash walks its whole AST: every request paid a full walk
of its document (~3% of a deep query) just to find its entry. ParserCache hands every
request with the same text the same DocumentNode object, so here the key is that
object's identity (the entry keeps the document alive, so its id stays its own).
"""
from __future__ import annotations

from typing import Any, Iterator

from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

MAX_DOCUMENTS = 512
_VALIDATED: dict[tuple[int, int, tuple[Any, ...]], tuple[Any, Any, list[Any]]] = {}


class DocumentValidationCache(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        ec.pre_execution_errors = validated(ec.schema._schema, ec.graphql_document, tuple(ec.validation_rules))
        yield


def validated(schema: Any, document: Any, rules: tuple[Any, ...]) -> list[Any]:
    key = (id(schema), id(document), rules)
    known = _VALIDATED.get(key)
    if known is not None and known[0] is schema and known[1] is document:
        return known[2]
    errors = validate_document(schema, document, rules)
    if len(_VALIDATED) >= MAX_DOCUMENTS:
        _VALIDATED.clear()
    _VALIDATED[key] = (schema, document, errors)
    return errors
