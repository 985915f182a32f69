"""The layout's one rule, checked: data flows server → schema → resolvers/engine → upstream and
sources → domain, and nothing imports upward or in a cycle. Every import counts, including
ones inside functions and under TYPE_CHECKING: a cycle broken by a lazy import is still a cycle.
GraphQL and strawberry stay in the rooms that speak GraphQL."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "schema", "resolvers")

# Rooms from the bottom up; a module may import its own room or any room below it.
# Rooms on one level may not import each other.
LEVELS: list[tuple[str, ...]] = [
    ("gateway.support",),
    ("gateway.domain",),
    ("gateway.observability",),
    ("gateway.upstream",),
    ("gateway.simulation.control",),
    ("gateway.sources", "gateway.fx"),
    ("gateway.store",),
    ("gateway.config",),
    ("gateway.accounts",),
    ("gateway.history",),
    ("gateway.live",),
    ("resolvers", "gateway.engine"),
    ("schema",),
    ("gateway.policy",),
    ("gateway.simulation.world",),
    ("gateway.server",),
    ("gateway.__main__", "gateway"),    # `python -m gateway`; the package's own __init__
]
GRAPHQL_ROOMS = ("gateway.server", "schema", "resolvers", "gateway.engine")
GRAPHQL_LIBS = ("graphql", "strawberry")


def room_of(module: str) -> tuple[int, str]:
    best = None
    for level, rooms in enumerate(LEVELS):
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and (best is None or len(room) > len(best[1])):
                best = (level, room)
    assert best is not None, f"{module} is in no room of tests/project/test_layout.py LEVELS"
    return best


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "static" in path.parts or "node_modules" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules `module` imports (resolved to the modules themselves, not packages
    that merely contain them), and third-party top-level names prefixed with '!'."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    out.add(target)
            else:
                out.add("!" + target.split(".")[0])
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, m, set(mods)) for m, p in mods.items()}


def test_every_module_is_in_a_room():
    for module in modules():
        room_of(module)


def test_nothing_imports_upward_or_sideways():
    wrong = []
    for module, targets in graph().items():
        level, room = room_of(module)
        for target in sorted(t for t in targets if not t.startswith("!")):
            t_level, t_room = room_of(target)
            if t_level > level or (t_level == level and t_room != room and room != "gateway"):
                wrong.append(f"{module} ({room}) imports {target} ({t_room})")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_import_cycles():
    g = {m: {t for t in ts if not t.startswith("!")} for m, ts in graph().items()}
    # Packages' __init__ are ordinary modules here; a package importing its own submodules is fine,
    # a submodule importing its package back is the cycle we want to see.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_graphql_stays_in_the_graphql_rooms():
    wrong = []
    for module, targets in graph().items():
        if any(module == r or module.startswith(r + ".") for r in GRAPHQL_ROOMS):
            continue
        for lib in GRAPHQL_LIBS:
            if "!" + lib in targets:
                wrong.append(f"{module} imports {lib}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an upward import in a scratch module is found."""
    path = tmp_path / "x.py"
    path.write_text("from resolvers.context import GatewayState\n")
    found = imports(path, "gateway.domain.x", set(modules()) | {"gateway.domain.x"})
    assert "resolvers.context" in found
    assert room_of("resolvers.context")[0] > room_of("gateway.domain.x")[0]
