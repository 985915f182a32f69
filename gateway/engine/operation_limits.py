"""Operation limits, checked after parsing and validation and before execution, so an
over-limit request never reaches a resolver or an upstream.

Codes: MAX_DEPTH_LIMIT, MAX_ALIASES_LIMIT, MAX_ROOT_FIELDS_LIMIT, MAX_TOKENS_LIMIT,
MAX_REPRESENTATIONS_LIMIT, COST_ESTIMATED_TOO_EXPENSIVE, INTROSPECTION_DISABLED. The cost
is counted the way the gateway spends: upstream calls, estimated as (accounts read) x
(their upstream identities), plus history pages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from graphql import (ExecutionResult, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError,
                     InlineFragmentNode, OperationDefinitionNode, SelectionSetNode, value_from_ast_untyped)
from graphql.language import BREAK, Visitor, visit
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.domain import ids
from gateway.support.by_identity import MISSING, ByIdentity

# Fields whose resolution reads an account's upstream data.
DATA_FIELDS = frozenset({"wallets", "holdings", "positions", "totalValue", "sources", "balanceHistory"})
HISTORY_PAGE = 100


@dataclass
class Shape:
    depth: int = 0
    aliases: int = 0
    root_fields: int = 0
    introspection: bool = False
    # root field -> (name, arguments, whether its subtree reads upstream data, history page counts)
    roots: list[tuple[str, dict[str, Any], bool, list[int]]] = field(default_factory=list)
    operation: OperationDefinitionNode | None = None


_SHAPES = ByIdentity(maxsize=512)


def measure_cached(document: Any, operation_name: str | None, variables: dict[str, Any] | None) -> Shape | None:
    """`measure`, kept per parsed document when there are no variables. A Shape is not
    changed once built."""
    if variables:
        return measure(document, operation_name, variables)
    shape = _SHAPES.get((document,), operation_name)
    if shape is MISSING:
        shape = _SHAPES.put((document,), measure(document, operation_name, variables), operation_name)
    return shape


def measure(document: Any, operation_name: str | None, variables: dict[str, Any] | None) -> Shape | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return None   # graphql-core reports the ambiguity itself
    shape = Shape(operation=operations[0])
    variables = variables or {}

    def fields(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> Iterator[FieldNode]:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment:
                    yield from fields(fragment.selection_set, seen | {selection.name.value})

    def walk(node: FieldNode, level: int, seen: frozenset[str], history: list[int]) -> bool:
        shape.depth = max(shape.depth, level)
        shape.aliases += node.alias is not None
        name = node.name.value
        if name in ("__schema", "__type"):
            # Introspection is gated on its own; its standard query (GraphiQL's) is deep
            # by nature and reads nothing upstream, so its depth does not count.
            shape.introspection = True
            return False
        reads = name in DATA_FIELDS
        if name == "balanceHistory":
            first = _argument(node, "first", variables)
            history.append(math.ceil((first if isinstance(first, int) and first > 0 else 50) / HISTORY_PAGE))
        for child in fields(node.selection_set, seen):
            reads |= walk(child, level + 1, seen, history)
        return reads

    for root in fields(operations[0].selection_set, frozenset()):
        if root.name.value == "__typename":
            continue
        shape.root_fields += 1
        history: list[int] = []
        reads = walk(root, 1, frozenset(), history)
        args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in root.arguments or ()}
        shape.roots.append((root.name.value, args, reads, history))
    return shape


_DEFERS = ByIdentity(maxsize=512)


def _defers(document: Any) -> bool:
    """Whether the document uses @defer or @stream (kept per parsed document: not re-walked per request)."""
    known = _DEFERS.get((document,))
    if known is MISSING:
        known = _DEFERS.put((document,), _walk_for_defer(document))
    return known


def _walk_for_defer(document: Any) -> bool:
    found = []

    class Defers(Visitor):
        def enter_directive(self, node: Any, *_: Any) -> Any:
            if node.name.value in ("defer", "stream"):
                found.append(True)
                return BREAK
            return None
    visit(document, Defers())
    return bool(found)


def _argument(node: FieldNode, name: str, variables: dict[str, Any]) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == name:
            return value_from_ast_untyped(argument.value, variables)
    return None


def estimate_cost(shape: Shape, ctx: Any) -> int:
    """Upstream calls the operation may cost: each account it reads once, times its identities."""
    accounts: dict[str, int] = {}
    caller = ctx.caller.id if ctx.caller is not None else None
    for name, args, reads, history in shape.roots:
        if name == "viewer":
            ids = [caller]
        elif name == "viewerChanged":
            ids, reads = [caller], True   # every event reads the caller's sources (once per poll, shared)
        elif name == "account":
            ids = [args.get("id")]
        elif name == "accounts":
            ids = list(args.get("ids") or [])
        elif name == "_entities":
            ids = [_entity_account(r, caller) for r in args.get("representations") or []]
        elif name in ("node", "token"):
            ids, reads = [caller], True    # may have to read the caller's holdings to find it
        else:
            ids = []
        for account_id in ids:
            if not reads or not isinstance(account_id, str):
                continue
            account = ctx.state.account(account_id)
            if account is None:
                continue
            identities = sum(len(client.identities(account)) for source, client in ctx.state.clients.items()
                             if account.source(source) is not None)
            accounts[account_id] = max(accounts.get(account_id, 0), identities + sum(history))
    return sum(accounts.values())


def _entity_account(representation: Any, caller: str | None) -> str | None:
    """The account an entity representation reads: its own id for an Account, the account
    inside a Wallet's opaque id, the caller's for anything else (a Token may search them)."""
    if not isinstance(representation, dict):
        return caller
    typename, entity_id = representation.get("__typename"), representation.get("id")
    if typename == "Account":
        return entity_id
    if typename == "Wallet" and isinstance(entity_id, str):
        decoded = ids.decode(entity_id)
        return decoded[1][1] if decoded and len(decoded[1]) >= 2 else None
    return caller


def _count(value: Any) -> int:
    """Items of a list argument (GraphQL reads a single value as a list of one)."""
    return len(value) if isinstance(value, list) else int(value is not None)


def _reject(code: str, message: str, **extensions: Any) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code, **extensions})])


class OperationLimits(SchemaExtension):
    """Reads limits from the request context (the gateway's config), so one schema serves any config."""

    def on_operation(self) -> Iterator[None]:
        limits = self._limits()
        if limits is not None:
            self.execution_context.parse_options["max_tokens"] = limits.max_tokens
        yield

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        limits = self._limits()
        if limits is not None and ec.graphql_document is not None and not ec.result:
            verdict = self._check(limits, ec)
            if verdict is not None:
                if ec.operation_type is OperationType.SUBSCRIPTION:
                    # strawberry's subscription path does not look at ec.result; an error raised
                    # here becomes the stream's one (error) result instead.
                    raise verdict.errors[0]
                ec.result = verdict    # strawberry then skips execution entirely
        yield

    def _limits(self) -> Any:
        state = getattr(self.execution_context.context, "state", None)
        return state.config.limits if state is not None else None

    def _check(self, limits: Any, ec: Any) -> ExecutionResult | None:
        ctx = ec.context
        operations = [d for d in ec.graphql_document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) > 1 and not getattr(ec, "_provided_operation_name", None):
            # The spec requires a name to choose; strawberry would silently run the first.
            return _reject("GRAPHQL_VALIDATION_FAILED",
                           "Must provide operation name if query contains multiple operations.")
        shape = measure_cached(ec.graphql_document, ec.operation_name, ec.variables)
        if shape is None:
            return None
        config = ctx.state.config
        if _defers(ec.graphql_document):
            if not config.live.defer:
                return _reject("DEFER_DISABLED", "@defer is off on this gateway ([live] defer = false)")
            ctx.deferred = True   # fields filtered to some sources read only those (resolvers/portfolio.py)
        if shape.introspection and not (config.server.introspection or config.demo):
            return _reject("INTROSPECTION_DISABLED", "introspection is disabled on this gateway")
        if shape.depth > limits.max_depth:
            return _reject("MAX_DEPTH_LIMIT", f"the operation is {shape.depth} levels deep; the limit is {limits.max_depth}")
        if shape.aliases > limits.max_aliases:
            return _reject("MAX_ALIASES_LIMIT", f"the operation uses {shape.aliases} aliases; the limit is {limits.max_aliases}")
        if shape.root_fields > limits.max_root_fields:
            return _reject("MAX_ROOT_FIELDS_LIMIT",
                           f"the operation has {shape.root_fields} root fields; the limit is {limits.max_root_fields}")
        representations = sum(_count(args.get("representations")) for name, args, _, _ in shape.roots
                              if name == "_entities")
        if representations > limits.max_representations:
            return _reject("MAX_REPRESENTATIONS_LIMIT", f"the operation sends {representations} `_entities` "
                           f"representations; the limit is {limits.max_representations}")
        cost = estimate_cost(shape, ctx)
        if cost > limits.max_cost:
            return _reject("COST_ESTIMATED_TOO_EXPENSIVE",
                           f"the operation would cost about {cost} upstream calls; the limit is {limits.max_cost}",
                           cost=cost, maxCost=limits.max_cost)
        return None
