"""Selection plans: an object's whole sub-selection, compiled once per document into
Python code.

graphql-core completes a response one field at a time: for every output value it looks
the field up, builds a path and a ResolveInfo, calls the resolver, tests for an awaitable
and walks `complete_value`. For a deep balance query that is thousands of values and most
of the request's CPU. A plan does that work once per (object type, field nodes) of a
document: for each response key it knows how to get the value (an attribute of the
record, a resolver, or `__typename`) and how to complete it (coerce a leaf, run a nested
plan, or each item of a list), and runs as a function generated from those steps.

A plan runs only the happy path. Anything else — a missing attribute, an exception, a
null where the schema forbids one, a value a scalar refuses, a failed `is_type_of` — stops
it (`Bail`) and graphql-core completes the whole object again, so errors, null
propagation and their paths are graphql-core's own. Resolvers are reads of the request's
already-loaded data, so calling one again there is harmless.

Resolvers that return an awaitable (the account's data not loaded yet, or an async
resolver) are gathered: the run completes everything else, then awaits them together
and completes each awaited value in its place; what that completion leaves pending is
awaited in the next round. Nothing is completed twice.

Not planned (graphql-core's path): documents with any directive (@skip/@include depend
on variables, @defer/@stream change delivery), anything but queries, abstract types and
introspection fields below the root, and lists that are not list or tuple.
"""
from __future__ import annotations

import asyncio
import decimal
import enum
import keyword
from typing import Any

from graphql import (GraphQLBoolean, GraphQLID, GraphQLObjectType, GraphQLString, OperationType,
                     is_leaf_type, is_list_type, is_non_null_type, is_object_type)
from graphql.execution.values import get_argument_values
from graphql.language import FieldNode, Visitor, visit
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema_converter import CustomGraphQLEnumType, GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments

from gateway.support.by_identity import MISSING, ByIdentity

MAX_PLANS = 4096        # plans kept across requests (per process)
MAX_ROUNDS = 4          # rounds of awaiting before graphql-core takes over

# How a step gets its value, and how a value is completed.
ATTR, RESOLVE, TYPENAME = 0, 1, 2
LEAF, OBJECT, LIST = 0, 1, 2


class Bail(Exception):
    """The happy path does not hold here: graphql-core completes the object instead."""


class Completion:
    """How to complete a value of one output type. For a leaf, `same` is the Python type
    its scalar returns unchanged (str for String and ID, bool for Boolean), and `names`
    maps each member of a strawberry enum to the name its scalar returns; anything else
    goes through the scalar's own `coerce_output_value`."""
    __slots__ = ("nullable", "kind", "coerce", "same", "enum", "names", "plan", "item", "needs_path")

    def __init__(self, nullable: bool, kind: int, *, leaf: Any = None, plan: ObjectPlan | None = None,
                 item: Completion | None = None) -> None:
        self.nullable, self.kind, self.plan, self.item = nullable, kind, plan, item
        # Paths are only read by resolvers and is_type_of (through their info): values
        # without either below them are completed without building one.
        self.needs_path = (plan.needs_path if plan is not None else item.needs_path if item is not None else False)
        self.coerce = leaf.coerce_output_value if leaf is not None else None
        self.same = _SAME.get(leaf.name) if leaf is not None and leaf is _BUILT_IN.get(leaf.name) else None
        self.enum, self.names = _enum_names(leaf)


_BUILT_IN = {t.name: t for t in (GraphQLString, GraphQLID, GraphQLBoolean)}
_SAME = {"String": str, "ID": str, "Boolean": bool}


def _enum_names(leaf: Any) -> tuple[type | None, dict[Any, str] | None]:
    """strawberry's enum scalar returns, for a member of its Python enum, the first name
    whose value equals the member's value (CustomGraphQLEnumType.coerce_output_value)."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, CustomGraphQLEnumType) or wrapped is None:
        return None, None
    names: dict[Any, str] = {}
    for member in wrapped:
        name = next((n for n, v in leaf.values.items() if member.value == v.value), None)
        if name is None:
            return None, None
        names[member] = name
    return wrapped, names


class Step:
    """One response key of an object's selection."""
    __slots__ = ("key", "how", "attr", "field_def", "nodes", "args", "dynamic_args", "completion", "typename", "lean")

    def __init__(self, key: str, how: int, *, attr: str | None = None, field_def: Any = None,
                 nodes: list[FieldNode] | None = None, args: dict[str, Any] | None = None,
                 dynamic_args: bool = False, completion: Completion | None = None, typename: str | None = None,
                 lean: LeanCall | None = None) -> None:
        self.key, self.how, self.attr, self.field_def, self.nodes = key, how, attr, field_def, nodes
        self.args, self.dynamic_args, self.completion, self.typename = args, dynamic_args, completion, typename
        self.lean = lean


class LeanCall:
    """A strawberry resolver called as strawberry's own wrapper would call it, with the
    arguments converted once. Only for a sync resolver without field extensions or
    exception handlers whose arguments are literals converting to immutable values
    (numbers, strings, enums): then every call would convert them to equal values."""
    __slots__ = ("func", "field", "info_class", "kwargs", "pass_self", "source_names", "info_name")

    def __init__(self, field: Any, info_class: type, kwargs: dict[str, Any]) -> None:
        resolver = field.base_resolver
        self.func, self.field, self.info_class, self.kwargs = resolver.wrapped_func, field, info_class, kwargs
        self.pass_self = resolver.self_parameter is not None
        self.source_names = tuple(p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None)
        self.info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None

    def __call__(self, source: Any, info: Any) -> Any:
        kwargs = dict(self.kwargs)
        for name in self.source_names:
            kwargs[name] = source
        if self.info_name is not None:
            kwargs[self.info_name] = self.info_class(_raw_info=info, _field=self.field)
        return self.func(source, **kwargs) if self.pass_self else self.func(**kwargs)


_IMMUTABLE = (type(None), bool, int, float, str, decimal.Decimal)


def _lean_call(ex: Any, field: Any, args: dict[str, Any]) -> LeanCall | None:
    strawberry_schema = getattr(ex.schema, "_strawberry_schema", None)
    converter = getattr(strawberry_schema, "schema_converter", None)
    if (converter is None or field.base_resolver is None or field.is_async or field.extensions
            or getattr(converter, "_exception_handler_specs", True)):
        return None
    kwargs = convert_arguments(args, field.arguments, scalar_registry=converter.scalar_registry,
                               config=strawberry_schema.config)
    if not all(isinstance(v, _IMMUTABLE) or isinstance(v, enum.Enum) for v in kwargs.values()):
        return None   # an input object or list: each call gets its own
    return LeanCall(field, strawberry_schema.config.info_class, kwargs)


class ObjectPlan:
    """An object type's selection: its steps, and `run(run, source, path) -> dict`, the
    Python function generated from them (see `_generate`)."""
    __slots__ = ("type", "is_type_of", "record_type", "steps", "needs_path", "run", "source")

    def __init__(self, type_: GraphQLObjectType, steps: tuple[Step, ...]) -> None:
        self.type, self.steps = type_, steps
        # An `is_type_of` made by schema.types.record_check is `isinstance(value, record_type)`
        # and never reads its info: test that inline, without building an info or a path for it.
        self.record_type = getattr(type_.is_type_of, "record_type", None)
        self.is_type_of = None if self.record_type is not None else type_.is_type_of
        self.needs_path = self.is_type_of is not None or any(
            step.how is RESOLVE or (step.completion is not None and step.completion.needs_path) for step in steps)
        self.source, self.run = _generate(self)   # `source`: the generated code, to read when debugging


# -- which documents ----------------------------------------------------------
_DOCUMENTS = ByIdentity(maxsize=MAX_PLANS)   # operation node -> plannable?


class _Finds(Visitor):
    """Stops at the first node of one kind ("directive", "variable")."""
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.found = kind, False

    def enter(self, node: Any, *_: Any) -> Any:
        if node.kind == self.kind:
            self.found = True
            return self.BREAK
        return None


def _contains(nodes: Any, kind: str) -> bool:
    finder = _Finds(kind)
    for node in nodes:
        visit(node, finder)
        if finder.found:
            return True
    return False


def plannable(ex: Any) -> bool:
    """A query whose operation and fragments carry no directive: what it selects then does
    not depend on variables, so one plan serves every request with this document."""
    operation = ex.operation
    known = _DOCUMENTS.get((operation,))
    if known is not MISSING:
        return known
    ok = operation.operation is OperationType.QUERY and not _contains(
        [operation, *(f.definition for f in ex.fragments.values())], "directive")
    return _DOCUMENTS.put((operation,), ok)


# -- compiling ----------------------------------------------------------------
_PLANS = ByIdentity(maxsize=MAX_PLANS)   # (object type, *field nodes) -> ObjectPlan or None


def plan_for(ex: Any, return_type: GraphQLObjectType, field_details_list: Any) -> ObjectPlan | None:
    """The plan for completing `return_type` with these fields' selections, or None."""
    objects = (return_type, *(fd.node for fd in field_details_list))
    known = _PLANS.get(objects)
    if known is not MISSING:
        return known
    if any(fd.defer_usage is not None or fd.fragment_variable_values is not None for fd in field_details_list):
        return None
    return _PLANS.put(objects, _compile_object(ex, return_type, field_details_list))


def _compile_object(ex: Any, type_: GraphQLObjectType, field_details_list: Any) -> ObjectPlan | None:
    grouped, new_defer_usages, *_ = ex.collect_subfields(type_, field_details_list)
    if new_defer_usages:
        return None
    steps = []
    for key, sub_fields in grouped.items():
        step = _compile_step(ex, type_, key, sub_fields)
        if step is None:
            return None
        steps.append(step)
    return ObjectPlan(type_, tuple(steps))


def _compile_step(ex: Any, parent: GraphQLObjectType, key: str, sub_fields: Any) -> Step | None:
    first = sub_fields[0]
    if first.defer_usage is not None or first.fragment_variable_values is not None:
        return None
    node = first.node
    name = node.name.value
    if name == "__typename":
        return Step(key, TYPENAME, typename=parent.name)
    field_def = parent.fields.get(name)
    if field_def is None or field_def.resolve is None:   # introspection, or not strawberry's
        return None
    completion = _compile_type(ex, field_def.type, sub_fields)
    if completion is None:
        return None
    strawberry_field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    nodes = [fd.node for fd in sub_fields]
    if (strawberry_field is not None and not field_def.args and not strawberry_field.extensions
            and getattr(field_def.resolve, "_is_default", False)):
        return Step(key, ATTR, attr=strawberry_field.python_name, field_def=field_def, nodes=nodes,
                    completion=completion)
    dynamic = _contains(node.arguments or (), "variable")
    args: dict[str, Any] | None = None
    lean = None
    if not dynamic:
        try:
            args = get_argument_values(field_def, node) if field_def.args or node.arguments else {}
            lean = _lean_call(ex, strawberry_field, args) if strawberry_field is not None else None
        except Exception:   # graphql-core reports it
            return None
    return Step(key, RESOLVE, field_def=field_def, nodes=nodes, args=args, dynamic_args=dynamic,
                completion=completion, lean=lean)


def _compile_type(ex: Any, type_: Any, sub_fields: Any) -> Completion | None:
    nullable = not is_non_null_type(type_)
    inner = type_ if nullable else type_.of_type
    if is_leaf_type(inner):
        return Completion(nullable, LEAF, leaf=inner)
    if is_list_type(inner):
        item = _compile_type(ex, inner.of_type, sub_fields)
        return None if item is None else Completion(nullable, LIST, item=item)
    if is_object_type(inner):
        plan = _compile_object(ex, inner, sub_fields)
        return None if plan is None else Completion(nullable, OBJECT, plan=plan)
    return None   # an interface or union: the runtime type decides


# -- running ------------------------------------------------------------------
_PENDING = object()
new_path = tuple.__new__   # Path is a NamedTuple: tuple.__new__(Path, (prev, key, typename)) skips its __new__


def _coerce(completion: Completion, value: Any) -> Any:
    """A non-null leaf through its scalar, as graphql-core's complete_leaf_value."""
    if isinstance(value, Exception):   # graphql-core raises a returned exception
        raise Bail
    coerced = completion.coerce(value)
    if coerced is None or coerced is Undefined:
        raise Bail
    return coerced


def _checks_type(completion: Completion) -> bool:
    """Whether completing this list's items calls an object type's `is_type_of`."""
    while completion.kind is LIST:
        completion = completion.item
    return completion.kind is OBJECT and completion.plan.is_type_of is not None


class Run:
    """One plan's run over one object. A resolver that returns an awaitable leaves a
    placeholder under its key (so the keys keep their order) and is completed when the
    awaitables of this round have been awaited together; completing it may leave more."""
    __slots__ = ("ex", "pending")

    def __init__(self, ex: Any) -> None:
        self.ex = ex
        # (step, awaitable, the dict it completes into, parent path, parent type, info)
        self.pending: list[tuple[Step, Any, dict[str, Any], Path, GraphQLObjectType, Any]] = []

    def complete_root(self, plan: ObjectPlan, source: Any, info: Any, path: Path) -> Any:
        """The completed object, an awaitable of it, or Bail."""
        if plan.is_type_of is not None and plan.is_type_of(source, info) is not True:
            raise Bail
        if plan.record_type is not None and not isinstance(source, plan.record_type):
            raise Bail
        try:
            result = plan.run(self, source, path)
        except BaseException:
            self._discard()   # never awaited: close them, graphql-core calls again
            raise
        if not self.pending:
            return result
        return self._rounds(result)

    async def _rounds(self, result: dict[str, Any]) -> dict[str, Any]:
        try:
            for _ in range(MAX_ROUNDS):
                pending, self.pending = self.pending, []
                values = await asyncio.gather(*(entry[1] for entry in pending), return_exceptions=True)
                for (step, _, out, path, parent, info), value in zip(pending, values):
                    if isinstance(value, BaseException):
                        raise Bail from value   # graphql-core calls it again and reports the error
                    out[step.key] = self.complete_step(step, value, path, parent, info)
                if not self.pending:
                    return result
            raise Bail
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        for entry in self.pending:
            close = getattr(entry[1], "close", None)
            if close is not None:
                close()
        self.pending.clear()

    def resolve(self, step: Step, source: Any, info: Any, out: dict[str, Any], path: Path,
                parent: GraphQLObjectType) -> Any:
        ex = self.ex
        if step.lean is not None:
            value = step.lean(source, info)
        else:
            args = step.args
            if step.dynamic_args:
                args = get_argument_values(step.field_def, step.nodes[0], ex.variable_values, None,
                                           ex.hide_suggestions)
            value = step.field_def.resolve(source, info, **args)
        if ex.is_awaitable(value):
            out[step.key] = None   # its place in the key order; the value comes in a later round
            self.pending.append((step, value, out, path, parent, info))
            return _PENDING
        return value

    def complete_step(self, step: Step, value: Any, path: Path, parent: GraphQLObjectType, info: Any) -> Any:
        """A step's value completed, as the generated code does it (for awaited values)."""
        completion = step.completion
        if value is None:
            if completion.nullable:
                return None
            raise Bail
        if completion.kind is LEAF:
            kind = type(value)
            if kind is completion.same:
                return value
            if kind is completion.enum:
                return completion.names[value]
            return _coerce(completion, value)
        if isinstance(value, Exception):
            raise Bail
        field_path = new_path(Path, (path, step.key, parent.name)) if completion.needs_path else None
        return self.complete(completion, value, field_path, step, parent, info)

    def complete(self, completion: Completion, value: Any, path: Path, step: Step, parent: GraphQLObjectType,
                 info: Any) -> Any:
        """A non-null, non-exception `value` of an object or list type. `info` is the
        field's (built here when `is_type_of` needs one, as graphql-core passes it)."""
        if completion.kind is OBJECT:
            plan = completion.plan
            if plan.is_type_of is not None:
                if info is None:
                    info = self.ex.build_resolve_info(step.field_def, step.nodes, parent, path)
                if plan.is_type_of(value, info) is not True:
                    raise Bail
            elif plan.record_type is not None and not isinstance(value, plan.record_type):
                raise Bail
            return plan.run(self, value, path)
        if type(value) is not list and type(value) is not tuple:
            raise Bail
        item = completion.item
        if info is None and _checks_type(item):
            info = self.ex.build_resolve_info(step.field_def, step.nodes, parent, path)
        out = []
        append = out.append
        if item.kind is LEAF:
            for entry in value:
                if entry is None:
                    if not item.nullable:
                        raise Bail
                    append(None)
                elif type(entry) is item.same:
                    append(entry)
                elif type(entry) is item.enum:
                    append(item.names[entry])
                else:
                    append(_coerce(item, entry))
            return out
        for index, entry in enumerate(value):
            if entry is None:
                if not item.nullable:
                    raise Bail
                append(None)
                continue
            if isinstance(entry, Exception):
                raise Bail
            append(self.complete(item, entry, new_path(Path, (path, index, None)) if item.needs_path else None,
                                 step, parent, info))
        return out


# -- generated code -------------------------------------------------------------
# Each ObjectPlan runs as a Python function generated from its steps: straight-line code
# per response key with the step's constants bound as names, so completing a value costs
# an attribute read, a type test and a dict store. What it does per step is what
# `Run.complete` does generically (lists of lists and of leaves go through it).

def _generate(plan: ObjectPlan) -> tuple[str, Any]:
    names: dict[str, Any] = {"Bail": Bail, "Path": Path, "new_path": new_path, "_coerce": _coerce,
                             "_PENDING": _PENDING, "T": plan.type}
    lines = ["def run_plan(run, source, path):", "    out = {}"]
    for i, step in enumerate(plan.steps):
        names[f"S{i}"] = step
        key = repr(step.key)
        if step.how is TYPENAME:
            lines.append(f"    out[{key}] = {step.typename!r}")
            continue
        field_path = f"new_path(Path, (path, {key}, {plan.type.name!r}))"
        if step.how is ATTR:
            attr = step.attr
            read = f"source.{attr}" if attr.isidentifier() and not keyword.iskeyword(attr) else f"getattr(source, {attr!r})"
            lines.append(f"    v = {read}")
            lines.extend("    " + line for line in _completion_code(i, step.completion, key, field_path, names,
                                                                  has_info=False))
        else:
            lines.append(f"    info = run.ex.build_resolve_info(S{i}.field_def, S{i}.nodes, T, {field_path})")
            lines.append(f"    v = run.resolve(S{i}, source, info, out, path, T)")
            lines.append("    if v is not _PENDING:")
            lines.extend("        " + line for line in _completion_code(i, step.completion, key, field_path, names,
                                                                      has_info=True))
    lines.append("    return out")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<plan {plan.type.name}>", "exec"), names)
    return source, names["run_plan"]


def _completion_code(i: int, completion: Completion, key: str, field_path: str, names: dict[str, Any], *,
                     has_info: bool) -> list[str]:
    """Completing `v` into `out[key]`, as Run.complete would."""
    names[f"C{i}"] = completion
    code = ["if v is None:", f"    out[{key}] = None" if completion.nullable else "    raise Bail"]
    if completion.kind is LEAF:
        if completion.same is not None:
            code += [f"elif type(v) is {completion.same.__name__}:", f"    out[{key}] = v"]
        if completion.enum is not None:
            names[f"E{i}"], names[f"M{i}"] = completion.enum, completion.names
            code += [f"elif type(v) is E{i}:", f"    out[{key}] = M{i}[v]"]
        return code + ["else:", f"    out[{key}] = _coerce(C{i}, v)"]
    code += ["elif isinstance(v, Exception):", "    raise Bail", "else:"]
    path = field_path if completion.needs_path else "None"
    info = "info" if has_info else f"run.ex.build_resolve_info(S{i}.field_def, S{i}.nodes, T, p)"
    item = completion.item
    if completion.kind is OBJECT:
        names[f"R{i}"] = completion.plan.run
        code.append(f"    p = {path}")
        if completion.plan.is_type_of is not None:
            names[f"I{i}"] = completion.plan.is_type_of
            code += [f"    if I{i}(v, {info}) is not True:", "        raise Bail"]
        elif completion.plan.record_type is not None:
            names[f"K{i}"] = completion.plan.record_type
            code += [f"    if not isinstance(v, K{i}):", "        raise Bail"]
        return code + [f"    out[{key}] = R{i}(run, v, p)"]
    if item.kind is not OBJECT:   # leaves, or lists of lists
        return code + [f"    out[{key}] = run.complete(C{i}, v, {path}, S{i}, T, {'info' if has_info else 'None'})"]
    names[f"R{i}"] = item.plan.run
    code += [f"    p = {path}",
             "    if type(v) is not list and type(v) is not tuple:", "        raise Bail",
             "    items = []", "    append = items.append"]
    if item.plan.is_type_of is not None:
        names[f"I{i}"] = item.plan.is_type_of
        code.append(f"    item_info = {info}")   # graphql-core passes the list field's info for each item
    item_path = "new_path(Path, (p, index, None))" if item.needs_path else "None"
    code += ["    for index, e in enumerate(v):",
             "        if e is None:", "            append(None)" if item.nullable else "            raise Bail",
             "        elif isinstance(e, Exception):", "            raise Bail",
             "        else:"]
    if item.plan.is_type_of is not None:
        code += [f"            if I{i}(e, item_info) is not True:", "                raise Bail"]
    elif item.plan.record_type is not None:
        names[f"K{i}"] = item.plan.record_type
        code += [f"            if not isinstance(e, K{i}):", "                raise Bail"]
    return code + [f"            append(R{i}(run, e, {item_path}))", f"    out[{key}] = items"]
