"""schema/execution.py: the direct path for plain fields answers exactly as graphql-core does.

The same small schema is run by strawberry's own execution context and by ours, over
sources that break every rule the direct path relies on (a missing attribute, a raising
property, a null in a non-null field, a value its scalar refuses, an awaitable); data and
errors (messages, paths, locations) must be identical, and the direct path must actually
be taken for the well-behaved fields.
"""
from __future__ import annotations

import asyncio
import decimal
import enum
from typing import Optional

import pytest
import strawberry

from schema import scalars
from schema.execution import GatewayExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Leafy:
    name: str
    maybe: Optional[str]
    count: int
    amount: scalars.Decimal
    colour: Colour
    tags: list[str]


@strawberry.type
class Holder:
    label: str
    leafy: Leafy
    maybe_leafy: Optional[Leafy]
    many: list[Leafy]
    many_maybe: list[Optional[Leafy]]

    @strawberry.field
    def computed(self) -> str:
        return self.label.upper()


class Record:
    """A field source: attributes as given, a property that raises on `explode`."""
    def __init__(self, **attrs: object):
        self.__dict__.update(attrs)


class Raising:
    @property
    def name(self) -> str:
        raise ValueError("name is broken")


def good(n: int = 1) -> Record:
    return Record(name=f"n{n}", maybe=None, count=n, amount=decimal.Decimal("1.50"), colour=Colour.RED, tags=["a"])


async def later() -> str:
    return "late"


def sources() -> dict[str, object]:
    """Each case's field source, built when asked for (the awaitable one is awaited once)."""
    return {
        "ok": lambda: Record(label="ok", leafy=good(), maybe_leafy=good(2), many=[good(3), good(4)], many_maybe=[good(5), None]),
        # a null in non-null `name` nulls the nullable parent; in a list of non-null, the whole list
        "null_leaf": lambda: Record(label="x", leafy=good(), maybe_leafy=Record(**{**good().__dict__, "name": None}),
                            many=[good(), Record(**{**good().__dict__, "name": None})], many_maybe=[]),
        "missing_attr": lambda: Record(label="x", leafy=Record(name="n"), maybe_leafy=None, many=[], many_maybe=[]),
        "raising": lambda: Record(label="x", leafy=good(), maybe_leafy=Raising(), many=[], many_maybe=[Raising(), good()]),
        "too_big_int": lambda: Record(label="x", leafy=Record(**{**good().__dict__, "count": 2 ** 40}), maybe_leafy=None,
                              many=[], many_maybe=[]),
        "bad_enum": lambda: Record(label="x", leafy=Record(**{**good().__dict__, "colour": "GREEN"}), maybe_leafy=None,
                           many=[], many_maybe=[]),
        "float_money": lambda: Record(label="x", leafy=Record(**{**good().__dict__, "amount": 1.5}), maybe_leafy=None,
                              many=[], many_maybe=[]),
        "awaitable_leaf": lambda: Record(label=later(), leafy=good(), maybe_leafy=None, many=[], many_maybe=[]),
        "null_root_child": lambda: Record(label="x", leafy=None, maybe_leafy=None, many=[], many_maybe=[]),
    }


QUERY = """query { holder(case: "%s") {
  label computed
  leafy { name maybe count amount colour tags renamed: name }
  maybeLeafy { name count colour }
  many { name amount }
  manyMaybe { name }
  ... on Holder { leafy { __typename count } }
} }"""


def build(context_class: type | None) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def holder(self, case: str) -> Optional[Holder]:
            return CASES[case]()

    kwargs = {"execution_context_class": context_class} if context_class else {}
    return strawberry.Schema(query=Query, config=strawberry.schema.config.StrawberryConfig(
        scalar_map=scalars.SCALAR_MAP), **kwargs)


CASES: dict = {}


@pytest.mark.parametrize("case", list(sources()))
def test_direct_path_answers_exactly_like_graphql_core(case: str):
    reference, ours = build(None), build(GatewayExecutionContext)

    def run(schema: strawberry.Schema) -> tuple[object, list]:
        CASES.clear()
        CASES.update(sources())
        result = asyncio.run(schema.execute(QUERY % case))
        return result.data, sorted((e.formatted for e in result.errors or []), key=repr)
    expected, got = run(reference), run(ours)
    assert got == expected
    if case == "ok":
        leafy = got[0]["holder"]["leafy"]
        assert leafy == {"name": "n1", "maybe": None, "count": 1, "amount": "1.5", "colour": "RED", "tags": ["a"],
                         "renamed": "n1", "__typename": "Leafy"}
    else:
        assert got[1], "each broken case reports an error"


def test_the_direct_path_is_taken_for_plain_fields(monkeypatch):
    slow: list[str] = []
    original = GatewayExecutionContext.__mro__[1].execute_field

    def counting(self, parent_type, source, field_details_list, path, position_context):
        slow.append(f"{parent_type.name}.{field_details_list[0].node.name.value}")
        return original(self, parent_type, source, field_details_list, path, position_context)
    monkeypatch.setattr(GatewayExecutionContext.__mro__[1], "execute_field", counting)
    CASES.clear()
    CASES.update(sources())
    result = asyncio.run(build(GatewayExecutionContext).execute(QUERY % "ok"))
    assert not result.errors
    # Only the root field, the resolver field and __typename take graphql-core's full path.
    assert sorted(set(slow)) == ["Holder.computed", "Leafy.__typename", "Query.holder"]
