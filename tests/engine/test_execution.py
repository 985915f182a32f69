"""schema/execution.py and schema/plans.py answer exactly as graphql-core does.

The same small schema is run by strawberry's own execution context and by ours (with
compiled plans, and with plans off so the direct field path is tested alone), over
sources that break every rule the fast paths rely on (a missing attribute, a raising
property, a null in a non-null field, a value its scalar refuses, an awaitable, a
resolver or awaitable that raises); data and errors (messages, paths, locations) must be
identical, and the fast paths must actually be taken for the well-behaved fields. The
real schema is compared the same way over the live gateway.
"""
from __future__ import annotations

import asyncio
import decimal
import enum
import random
from typing import Any, Optional

import pytest
import strawberry
from graphql import (GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLList, GraphQLNonNull,
                     GraphQLObjectType, GraphQLScalarType, GraphQLUnionType)
from graphql.pyutils import Undefined

from gateway.engine import plans
from schema import scalars
from schema.types import record_check
from gateway.engine.execution import GatewayExecutionContext


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
class Tagged:
    name: str

    @classmethod
    def is_type_of(cls, obj: object, _info: object) -> bool:   # refuses the "wrong_type" case's record
        return isinstance(obj, Record) and obj.name != "not a Tagged"


class CheckedRecord:
    def __init__(self, name: str):
        self.name = name


@strawberry.type
class Checked:
    """Its is_type_of is a record check: plans test it inline, graphql-core calls it."""
    name: str
    is_type_of = record_check(CheckedRecord)


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

    @strawberry.field
    async def later_label(self) -> str:   # async: a plan awaits it, then completes it
        await asyncio.sleep(0)
        return self.label + "!"

    @strawberry.field
    def pick(self, index: int = 0) -> Optional[Leafy]:   # arguments; an IndexError is a field error
        return self.many[index]

    @strawberry.field
    def awaited_leafy(self) -> Leafy:   # a sync resolver returning an awaitable (like `with_view`)
        async def read() -> Leafy:
            if self.label == "fails later":
                raise RuntimeError("read failed")
            return self.leafy
        return read()

    @strawberry.field
    def grid(self) -> list[list[int]]:
        return [[1, 2], (3,)]

    @strawberry.field
    def tagged(self) -> Optional[Tagged]:
        return self.__dict__.get("tagged", Record(name="tag"))

    @strawberry.field
    def checked(self) -> Optional[Checked]:
        return self.__dict__.get("checked", CheckedRecord("c"))

    @strawberry.field
    def checked_many(self) -> list[Optional[Checked]]:
        return self.__dict__.get("checked_many", [CheckedRecord("c1"), None])


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
        "fails_later": lambda: Record(label="fails later", leafy=good(), maybe_leafy=None, many=[good()], many_maybe=[]),
        "generator_list": lambda: Record(label="x", leafy=good(), maybe_leafy=None, many=(g for g in [good(7)]),
                                 many_maybe=[]),
        "wrong_type": lambda: Record(label="x", leafy=good(), maybe_leafy=None, many=[], many_maybe=[],
                             tagged=Record(name="not a Tagged")),
        "wrong_record": lambda: Record(label="x", leafy=good(), maybe_leafy=None, many=[], many_maybe=[],
                               checked=Record(name="not a CheckedRecord"),
                               checked_many=[CheckedRecord("fine"), Record(name="not a CheckedRecord")]),
    }


QUERY = """query { holder(case: "%s") {
  label computed
  leafy { name maybe count amount colour tags renamed: name }
  maybeLeafy { name count colour }
  many { name amount }
  manyMaybe { name }
  ... on Holder { leafy { __typename count } }
  laterLabel pick(index: 0) { name } awaitedLeafy { name count } grid
  tagged { name } checked { name } checkedMany { name }
} }"""
# Variables in arguments are coerced per request; directives keep a document off plans.
QUERY_VARIABLES = """query ($i: Int!, $show: Boolean!) { holder(case: "ok") {
  label pick(index: $i) { name } more: pick(index: 1) { name }
  many @include(if: $show) { name }
} }"""


class NoPlans(GatewayExecutionContext):
    """Ours with plans off: the direct field path alone."""
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.plans_on = False


CONTEXTS = {"plans": GatewayExecutionContext, "direct path only": NoPlans}


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


def run(schema: strawberry.Schema, query: str, variables: dict | None = None) -> tuple[object, list]:
    CASES.clear()
    CASES.update(sources())
    result = asyncio.run(schema.execute(query, variable_values=variables))
    return result.data, sorted((e.formatted for e in result.errors or []), key=repr)


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("case", list(sources()))
def test_fast_paths_answer_exactly_like_graphql_core(case: str, context: str):
    expected = run(build(None), QUERY % case)
    got = run(build(CONTEXTS[context]), QUERY % case)
    assert got == expected
    if case == "ok":
        holder = got[0]["holder"]
        assert holder["leafy"] == {"name": "n1", "maybe": None, "count": 1, "amount": "1.5", "colour": "RED",
                                   "tags": ["a"], "renamed": "n1", "__typename": "Leafy"}
        assert (holder["laterLabel"], holder["pick"], holder["awaitedLeafy"], holder["grid"], holder["tagged"]) == \
            ("ok!", {"name": "n3"}, {"name": "n1", "count": 1}, [[1, 2], [3]], {"name": "tag"})
        assert (holder["checked"], holder["checkedMany"]) == ({"name": "c"}, [{"name": "c1"}, None])
        assert not got[1]
    else:
        assert got[1], "each broken case reports an error"


@pytest.mark.parametrize("variables", [{"i": 1, "show": True}, {"i": 0, "show": False}, {"i": 5, "show": True}])
def test_variables_and_directives_answer_like_graphql_core(variables: dict):
    expected = run(build(None), QUERY_VARIABLES, variables)
    assert run(build(GatewayExecutionContext), QUERY_VARIABLES, variables) == expected
    assert ("many" in expected[0]["holder"]) is variables["show"]


def _record_graphql_core(monkeypatch, method: str, describe) -> list[str]:
    """What graphql-core's own `method` is called for from now on, as `describe` names it."""
    seen: list[str] = []
    base = GatewayExecutionContext.__mro__[1]
    original = getattr(base, method)

    def recording(self, *args):
        seen.append(describe(*args))
        return original(self, *args)
    monkeypatch.setattr(base, method, recording)
    return seen


def _count_graphql_core_fields(monkeypatch) -> list[str]:
    """The fields graphql-core resolves itself, as "Type.field"."""
    return _record_graphql_core(monkeypatch, "execute_field",
                                lambda parent_type, _source, fields, *_: f"{parent_type.name}.{fields[0].node.name.value}")


def test_a_plan_completes_the_whole_object(monkeypatch):
    slow = _count_graphql_core_fields(monkeypatch)
    data, errors = run(build(GatewayExecutionContext), QUERY % "ok")
    assert not errors and data["holder"]["laterLabel"] == "ok!"
    assert slow == ["Query.holder"]   # everything below the root: the plan


def test_after_a_bail_graphql_core_completes_the_rest(monkeypatch):
    slow = _count_graphql_core_fields(monkeypatch)
    data, errors = run(build(GatewayExecutionContext), QUERY % "bad_enum")
    assert errors and "Holder.computed" in slow   # a resolver field: graphql-core called it


def test_every_fallback_to_graphql_core_is_counted():
    from gateway.engine.execution import PLAN_FALLBACKS
    before = dict(PLAN_FALLBACKS)
    run(build(GatewayExecutionContext), QUERY % "ok")
    assert dict(PLAN_FALLBACKS) == before              # the happy path: no fallback
    run(build(GatewayExecutionContext), QUERY % "bad_enum")
    assert PLAN_FALLBACKS["error"] == before.get("error", 0) + 1    # the enum refused a value
    assert PLAN_FALLBACKS["bail"] == before.get("bail", 0)


def test_a_document_with_directives_is_not_planned(monkeypatch):
    slow = _count_graphql_core_fields(monkeypatch)
    run(build(GatewayExecutionContext), QUERY_VARIABLES, {"i": 0, "show": True})
    assert "Holder.pick" in slow


def test_the_direct_path_is_taken_for_plain_fields_without_plans(monkeypatch):
    slow = _count_graphql_core_fields(monkeypatch)
    data, errors = run(build(NoPlans), QUERY % "ok")
    assert not errors
    # Only the root field, resolver fields and __typename take graphql-core's full path.
    assert sorted(set(slow)) == ["Holder.awaitedLeafy", "Holder.checked", "Holder.checkedMany", "Holder.computed",
                                 "Holder.grid", "Holder.laterLabel", "Holder.pick", "Holder.tagged",
                                 "Leafy.__typename", "Query.holder"]


# The real schema over the live gateway: the same answers with plans as without.
GATEWAY_QUERY = """
query Everything($n: Int) {
  viewer {
    id __typename
    totalValue { value { amount currency } complete unpricedHoldings failedSources }
    sources { source state fromCache upstreamCalls breaker error { code } warnings { code message } }
    wallets { id source kind provider label address addressHint chain { id name isTestnet }
              account { id } totalValue(currency: "USD") { value { amount } complete }
              holdings(first: $n) { totalCount pageInfo { hasNextPage endCursor }
                                    nodes { id amount precision token { id symbol decimals asset { key symbol } } } } }
    holdings(first: 200, orderBy: {field: AMOUNT, direction: ASC}) {
      totalCount
      edges { cursor node { id source amount amountRaw available locked value { amount currency }
                            price { unit currency reliability source } token { id assetType address chain { id } }
                            wallet { id } asset { key } } }
    }
    positions(groupBy: ASSET, first: 50) { totalCount nodes { key amount share unpricedHoldings
                                                             value { amount } asset { key tokens { id } } holdings { id } } }
    bySource: positions(groupBy: SOURCE) { nodes { key source value { amount } } }
  }
}
"""


def _count_graphql_core_objects(monkeypatch) -> list[str]:
    """The object types graphql-core completes itself from now on (none while plans hold)."""
    return _record_graphql_core(monkeypatch, "complete_object_value", lambda return_type, *_: return_type.name)


def test_the_gateway_answers_the_same_with_and_without_plans(client, monkeypatch):
    graphql_core_objects = _count_graphql_core_objects(monkeypatch)
    with_plans = client.post(GATEWAY_QUERY, {"n": 3})
    assert graphql_core_objects == []   # every object completed by its plan, none fell back
    monkeypatch.setattr(plans, "plannable", lambda ex: False)
    without = client.post(GATEWAY_QUERY, {"n": 3})
    assert with_plans.status_code == without.status_code == 200
    body = with_plans.json()
    assert "errors" not in body and body["data"]["viewer"]["holdings"]["totalCount"] > 10
    assert with_plans.content == without.content   # byte for byte: same values, same key order
    assert "Account" in graphql_core_objects


# Random queries over the real schema: whatever a client selects, the same bytes.
def _argument_text(rng: random.Random, arg_name: str, arg_type: Any) -> str | None:
    """A literal for an argument the generator knows how to fill, else None (left out)."""
    inner = arg_type.of_type if isinstance(arg_type, GraphQLNonNull) else arg_type
    if isinstance(inner, GraphQLEnumType):
        return rng.choice(list(inner.values))
    if isinstance(inner, GraphQLList) and isinstance(inner.of_type.of_type if isinstance(inner.of_type, GraphQLNonNull)
                                                     else inner.of_type, GraphQLEnumType):
        enum_type = inner.of_type.of_type if isinstance(inner.of_type, GraphQLNonNull) else inner.of_type
        return "[" + ", ".join(rng.sample(list(enum_type.values), rng.randint(1, 2))) + "]"
    if arg_name == "first":
        return str(rng.choice([0, 1, 2, 5, 200]))
    if arg_name == "currency":
        return rng.choice(['"USD"', '"usd"', '"EUR"'])
    if isinstance(inner, GraphQLInputObjectType):
        parts = []
        for name, field_ in inner.fields.items():
            field_type = field_.type.of_type if isinstance(field_.type, GraphQLNonNull) else field_.type
            if isinstance(field_type, GraphQLScalarType) and field_type.name == "Boolean" and rng.random() < 0.5:
                parts.append(f"{name}: {rng.choice(['true', 'false'])}")
            elif isinstance(field_type, (GraphQLEnumType, GraphQLList)) and rng.random() < 0.5:
                value = _argument_text(rng, name, field_type)
                if value is not None:
                    parts.append(f"{name}: {value}")
            elif isinstance(field_.type, GraphQLNonNull):
                return None   # a required field it cannot fill
        return "{" + ", ".join(parts) + "}"
    return None


# When the data was read: with the cache off, each request reads again, so these differ.
_READ_TIMES = {"fetchedAt", "updatedAt"}


def _selection(rng: random.Random, type_: Any, depth: int, counter: list[int]) -> str:
    if isinstance(type_, (GraphQLInterfaceType, GraphQLUnionType)):
        return "{ __typename }"
    fields = [(name, f) for name, f in type_.fields.items() if name not in _READ_TIMES]
    chosen = rng.sample(fields, min(len(fields), rng.randint(1, 5)))
    parts = ["__typename"] if rng.random() < 0.2 else []
    for name, field_ in chosen:
        inner = field_.type
        while isinstance(inner, (GraphQLNonNull, GraphQLList)):
            inner = inner.of_type
        args = []
        for arg_name, arg in field_.args.items():
            value = _argument_text(rng, arg_name, arg.type) if rng.random() < 0.6 else None
            if value is None and isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined:
                break   # a required argument it cannot fill: leave the field out
            if value is not None:
                args.append(f"{arg_name}: {value}")
        else:
            counter[0] += 1
            alias = f"f{counter[0]}: " if args or rng.random() < 0.2 else ""
            head = f"{alias}{name}" + (f"({', '.join(args)})" if args else "")
            if isinstance(inner, (GraphQLObjectType, GraphQLInterfaceType, GraphQLUnionType)):
                if depth >= 5:
                    continue
                head += " " + _selection(rng, inner, depth + 1, counter)
            parts.append(head)
    if not parts:
        parts.append("__typename")
    body = " ".join(parts)
    if isinstance(type_, GraphQLObjectType) and rng.random() < 0.2:
        body = f"... on {type_.name} {{ {body} }}"
    return "{ " + body + " }"


def random_queries(count: int, seed: int) -> list[str]:
    from schema import schema as gateway_schema
    account = gateway_schema._schema.type_map["Account"]
    rng = random.Random(seed)
    return [f"query R{i} {{ viewer {_selection(rng, account, 1, [0])} }}" for i in range(count)]


def test_random_queries_answer_the_same_with_and_without_plans(client, monkeypatch):
    queries = random_queries(60, seed=7)
    graphql_core_objects = _count_graphql_core_objects(monkeypatch)
    with_plans = [client.post(q) for q in queries]
    # Nested async fields (wallets { account { sources } }) take more rounds, not graphql-core.
    assert graphql_core_objects == []
    monkeypatch.setattr(plans, "plannable", lambda ex: False)
    without = [client.post(q) for q in queries]
    answered = 0
    for query, a, b in zip(queries, with_plans, without):
        assert a.status_code == b.status_code == 200, query
        assert a.content == b.content, query
        answered += "errors" not in a.json()
    assert answered >= 50   # the generator mostly builds valid, answerable queries


def test_plans_can_be_switched_off_in_the_config(monkeypatch):
    from tests.stack import stack
    query = GATEWAY_QUERY
    with stack(server={"compiled_plans": False}) as (_, client, _app):
        completed = _count_graphql_core_objects(monkeypatch)
        off = client.post(query, {"n": 3})
        assert off.status_code == 200 and "errors" not in off.json()
        assert {"Account", "Wallet", "Holding", "Token"} <= set(completed)   # graphql-core did it all
    with stack() as (_, client, _app):
        completed.clear()
        on = client.post(query, {"n": 3})
        assert completed == []
    assert on.content == off.content   # two stacks over the same generated world


class _RequestState:
    """Stands in for a request's context (loaders, reads, records): only its lifetime is checked."""


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_a_finished_execution_is_freed_without_the_cyclic_collector(context: str):
    """graphql-core's execution context holds its own bound methods (a cycle); ours breaks it once
    the result is built, so the request's context value goes when the response does, not at some
    later gen-1 collection (a 10,000-holding account grew RSS ~10 MiB per request until then)."""
    import gc
    import weakref
    schema = build(CONTEXTS[context])
    CASES.clear()
    CASES.update(sources())
    state = _RequestState()
    gone = weakref.ref(state)

    async def once() -> object:
        return await schema.execute(QUERY % "ok", context_value=state)
    gc.collect()
    gc.disable()
    try:
        result = asyncio.run(once())
        assert not result.errors and result.data["holder"]["label"] == "ok"
        del state, result
        assert gone() is None, "the execution's context value outlived it: a reference cycle is back"
    finally:
        gc.enable()
