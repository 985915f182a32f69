"""The documentation and deployment files say what the code does.

- every GraphQL example in docs/SCHEMA.md runs against the test gateway, with only the
  errors the doc announces (`<!-- doc-test: ... -->` just before the fence);
- every TOML example in docs/CONFIG.md and deploy/gateway.example.toml is a valid config
  (given a value for each `${VAR}` and a file for each `${file:...}`);
- docs/ERRORS.md lists exactly the error and warning codes the code emits;
- every file the Dockerfile copies exists and is in the Docker build context.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.domain.tokens import TokenRegistry
from tests.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLE_CONFIG = ROOT / "deploy" / "gateway.example.toml"

_FENCE = re.compile(r"(?P<marker>(?:<!--\s*doc-test:[^>]*-->\s*\n)?)```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.S)
_REF = re.compile(r"\$\{(file:[^}]+|[A-Za-z_][A-Za-z0-9_]*)\}")


def fenced(doc: Path, lang: str) -> list[tuple[str, str, int]]:
    """(body, doc-test marker text, line number) of every ```lang block of a doc."""
    text = doc.read_text()
    return [(m["body"], m["marker"], text.count("\n", 0, m.start("body")) + 1)
            for m in _FENCE.finditer(text) if m["lang"] == lang]


# -- docs/SCHEMA.md: every example runs ------------------------------------------------------
SCHEMA_EXAMPLES = fenced(DOCS / "SCHEMA.md", "graphql")


def _marker(marker: str) -> dict[str, str]:
    body = re.search(r"doc-test:(.*?)-->", marker)
    return dict(item.split("=", 1) for item in body[1].split()) if body else {}


def _find(value: Any, key: str) -> list[Any]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == key] + [x for v in value.values() for x in _find(v, key)]
    if isinstance(value, list):
        return [x for v in value for x in _find(v, key)]
    return []


def test_schema_doc_has_examples_for_every_use():
    names = {re.search(r"query (\w+)", body)[1] for body, _, _ in SCHEMA_EXAMPLES if re.search(r"query (\w+)", body)}
    for wanted in ("Portfolio", "Wallets", "PositionsByChain", "PositionsByAsset", "HoldingsPage", "History",
                   "Fresh", "Refreshed", "Health", "Entities", "Sdl"):
        assert wanted in names, f"docs/SCHEMA.md lost its {wanted} example"


@pytest.mark.usefixtures("clean_simulators")
@pytest.mark.parametrize("query,marker,line", SCHEMA_EXAMPLES, ids=[f"SCHEMA.md:{line}" for _, _, line in SCHEMA_EXAMPLES])
def test_schema_doc_example_runs(client, query, marker, line):
    options = _marker(marker)
    key = ADMIN_KEY if options.get("key") == "admin" else "demo-key"
    expected = set(filter(None, options.get("expect", "").split(",")))
    body = client.query(query, key=key)
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    assert codes == expected, f"docs/SCHEMA.md line {line}: errors {body.get('errors')}"
    assert body.get("data") is not None
    # A paging example must also page: the next page with the cursor it returned.
    if "$after" in query:
        more = [p for p in _find(body["data"], "pageInfo") if p.get("hasNextPage")]
        if more:
            page2 = client.query(query, {"after": more[0]["endCursor"]}, key=key)
            assert "errors" not in page2, page2["errors"]


# -- TOML examples are valid configs ------------------------------------------------------------
def _dummy(name: str) -> str:
    """A plausible value for a variable, from its name."""
    if "SHA256" in name:
        return "sha256:" + "ab" * 32
    if name.endswith("REGISTRY_KEY"):   # [store] encryption_keys: base64 of 32 bytes
        return "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    if "REDIS" in name:
        return "redis://:dummy-password@redis.internal:6379/0"
    if name.endswith("_URL"):
        return "https://" + name.lower().replace("_", "-") + ".example.test"
    return f"dummy-{name.lower()}"


def _materialize(text: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The config text with each `${file:/x/y}` pointing at a dummy file under tmp_path, and an
    environment with a dummy value for each `${VAR}`."""
    env = {}
    for ref in dict.fromkeys(_REF.findall(text)):
        if ref.startswith("file:"):
            target = tmp_path / "secrets" / ref[5:].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"dummy-secret-{target.name}\n")
            text = text.replace("${" + ref + "}", "${file:" + str(target) + "}")
        else:
            env[ref] = _dummy(ref)
    # Files the config reads at load (the JWKS, the persisted-query manifest): valid dummies.
    for option, path in dict.fromkeys(_READ_FILES.findall(text)):
        target = tmp_path / "files" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_DUMMY_JWKS if option == "jwks_file" else {"operations": []}))
        text = text.replace(f'"{path}"', f'"{target}"')
    return text, env


_READ_FILES = re.compile(r'^\s*(jwks_file|manifest)\s*=\s*"([^"$]+)"', re.M)
_DUMMY_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "doc", "use": "sig",
                         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}


def _valid(text: str, tmp_path: Path) -> GatewayConfig:
    text, env = _materialize(text, tmp_path)
    config = parse_config(text, env)
    if config.registry:
        TokenRegistry.default(config.registry)   # what create_app does with it
    return config


CONFIG_EXAMPLES = fenced(DOCS / "CONFIG.md", "toml")


@pytest.mark.parametrize("text,_m,line", CONFIG_EXAMPLES, ids=[f"CONFIG.md:{line}" for _, _, line in CONFIG_EXAMPLES])
def test_config_doc_example_is_a_valid_config(text, _m, line, tmp_path):
    _valid(text, tmp_path)


def test_config_doc_covers_every_option():
    """Every option of every config model, each source's included, is named in
    docs/CONFIG.md (as `name`, `name =`, `[name` or `.name]`)."""
    doc = (DOCS / "CONFIG.md").read_text()
    from gateway import config as cfg
    from gateway.sources.catalog import SPECS
    models = [m for m in vars(cfg).values() if isinstance(m, type) and issubclass(m, cfg._Model) and m is not cfg._Model]
    models += [m for spec in SPECS for m in (spec.source_config, spec.account_config)]   # in each source's folder
    missing = sorted({f"{m.__name__}.{name}" for m in models for name in m.model_fields
                      if not any(form in doc for form in (f"`{name}`", f"{name} =", f"[{name}", f".{name}]"))})
    assert not missing, f"docs/CONFIG.md does not describe: {missing}"


def test_example_production_config_is_valid_and_safe(tmp_path):
    text = EXAMPLE_CONFIG.read_text()
    config = _valid(text, tmp_path)
    assert not config.server.graphiql and not config.server.introspection and not config.demo
    assert config.server.cors_origins and config.server.csrf_prevention
    assert config.cache.enabled and config.cache.redis_url is not None
    assert {s.key for s in __import__("gateway.sources.catalog", fromlist=["Source"]).Source} == \
        {k for k, v in config.sources.model_dump().items() if v is not None}
    assert config.accounts and all(a.api_keys for a in config.accounts)
    # Every secret is a reference, never a literal.
    raw = tomllib.loads(text)
    secrets = [v for k, v in _walk(raw) if k in ("token", "api_key", "api_keys", "admin_keys", "redis_url",
                                                 "hs256_secret")]
    assert secrets and all(_REF.fullmatch(s) for s in secrets), secrets


def _walk(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _walk(v, k)]
    if isinstance(value, list):
        return [x for v in value for x in _walk(v, key)]
    return [(key, value)] if isinstance(value, str) else []


def test_check_config_accepts_the_example_and_masks_its_secrets(tmp_path):
    text, env = _materialize(EXAMPLE_CONFIG.read_text(), tmp_path)
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["cache"]["redis_url"] == "**********"
    for value in list(env.values()) + ["dummy-secret-"]:
        if "example.test" not in value:          # base URLs are not secrets
            assert value not in result.stdout


# -- docs/ERRORS.md lists exactly the codes the code emits ------------------------------------------
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{3,}$")
CODE_DIRS = ("gateway", "resolvers", "schema")
# Calls whose string arguments are error or warning codes.
_CODE_CALLS = {"error_response", "_reject", "_error", "SourceWarning", "_warn", "client_error", "UpstreamError"}
# Upper-case literals that are not codes the gateway emits, and why.
NOT_ERROR_CODES = {
    "UNKNOWN": "DALP's placeholder symbol for an unresolved yield denomination",
}


def _sources() -> list[Path]:
    # simulators speak for the upstreams, not for the gateway
    skip = ("gateway/simulation/", "gateway/server/static/")
    return [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.py"))
            if not any(str(p.relative_to(ROOT)).startswith(s) for s in skip) and p.name != "simulator.py"]


def _constants(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and _CODE.match(n.value)}


def emitted_codes() -> dict[str, str]:
    """Codes in code positions: code enums, `"code": ...` entries, `code=` arguments, error
    and warning constructors, `x.code == ...` comparisons. -> {code: where}."""
    found: dict[str, str] = {}

    def add(node: ast.AST, path: Path) -> None:
        for code in _constants(node):
            found.setdefault(code, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")

    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Code"):
                add(node, path)
            elif isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value == "code":
                        add(v, path)
            elif isinstance(node, ast.keyword) and node.arg == "code":
                add(node.value, path)
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in _CODE_CALLS:
                    for arg in node.args:
                        if isinstance(arg, ast.Constant):
                            add(arg, path)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(_names_code(t) for t in targets) and node.value is not None:
                    add(node.value, path)
            elif isinstance(node, ast.Compare) and _names_code(node.left):
                for comparator in node.comparators:
                    add(comparator, path)
    return found


def _names_code(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "code"
    if isinstance(node, ast.Attribute):
        return node.attr == "code"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "code"
    return False


def all_upper_literals() -> dict[str, str]:
    """Every upper-case string literal of six or more characters in the code (the brief's grep)."""
    found: dict[str, str] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{5,}", node.value):
                found.setdefault(node.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def documented_codes() -> set[str]:
    """First-column codes of the tables in docs/ERRORS.md."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (DOCS / "ERRORS.md").read_text(), re.M))


def _not_codes() -> set[str]:
    """Upper-case literals that are schema enum values, HTTP methods or environment variables."""
    from graphql import GraphQLEnumType

    from schema import schema
    enum_values = {v for t in schema._schema.type_map.values() if isinstance(t, GraphQLEnumType) for v in t.values}
    methods = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
    return enum_values | methods | set(NOT_ERROR_CODES)


def test_every_code_the_code_emits_is_documented():
    documented = documented_codes()
    emitted = emitted_codes()
    missing = {code: where for code, where in emitted.items() if code not in documented and code not in NOT_ERROR_CODES}
    assert not missing, f"codes emitted but not in docs/ERRORS.md: {missing}"
    # The plain grep, as a net for codes emitted in a way emitted_codes() does not recognize.
    env_var = re.compile(r"^(GATEWAY_|OTEL_|BALANCE_GATEWAY_|PROMETHEUS_)")
    unknown = {lit: where for lit, where in all_upper_literals().items()
               if lit not in documented and lit not in _not_codes() and not env_var.match(lit)}
    assert not unknown, (f"upper-case literals that are neither documented codes in docs/ERRORS.md nor known "
                         f"non-codes (add them to NOT_ERROR_CODES with a reason): {unknown}")


def test_every_documented_code_exists_in_the_code():
    literals: set[str] = set()
    for path in _sources():
        literals |= _constants(ast.parse(path.read_text()))
    stale = documented_codes() - literals
    assert not stale, f"docs/ERRORS.md documents codes the code never emits: {sorted(stale)}"
    assert {"UPSTREAM_UNAVAILABLE", "BAD_USER_INPUT", "STALE", "POSSIBLY_TRUNCATED"} <= documented_codes()


# -- Dockerfile ----------------------------------------------------------------------------------------
def _dockerfile() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _copy_sources() -> list[str]:
    sources = []
    for line in _dockerfile():
        words = line.split()
        if words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        if line.rstrip().endswith("]"):   # JSON form
            args = json.loads(line[line.index("["):])
        sources.extend(args[:-1])
    return sources


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (`**` spans folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern excludes the paths it matches and everything under them; the
    last matching pattern wins, and `!` re-includes."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    sources = _copy_sources()
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not _ignored(source.rstrip("/"), patterns), f".dockerignore excludes {source}"
    # Everything `pip install .` packages is copied: each package folder and its data files.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for include in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert include.rstrip("*") in [s.rstrip("/") for s in sources], f"the image lacks package {include}"
    for package, globs in pyproject["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            for data in (ROOT / package.replace(".", "/")).glob(pattern):
                assert not _ignored(str(data.relative_to(ROOT)), patterns), f".dockerignore excludes {data}"
    # Sources and tests never go into the context.
    for private in (".venv", ".git", "tests/project/test_docs.py", "gateway/server/static/graphiql/x.js", "node_modules",
                    "gateway/server/__pycache__/app.cpython-311.pyc"):
        assert _ignored(private, patterns), f".dockerignore lets {private} into the build context"


def test_dockerfile_runs_the_gateway_as_documented():
    lines = _dockerfile()
    stages = [line.split()[-1] for line in lines if line.upper().startswith("FROM ") and " AS " in line.upper()]
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)
    assert any(line.startswith("FROM node:20-slim") for line in lines)
    for line in lines:
        if "--from=" in line:
            assert line.split("--from=")[1].split()[0] in stages, line
    assert any("fetch_graphiql_assets.sh" in line for line in lines if line.startswith("RUN"))
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "EXPOSE 8000" in lines
    assert any(line.startswith("HEALTHCHECK") and "/health" in line for line in lines)
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["balance-gateway", "serve"] and "--config" not in cmd   # the config comes from GATEWAY_CONFIG
    assert any("GATEWAY_CONFIG=" in line for line in lines if line.startswith("ENV"))
    # The command line the image runs parses (and names real options).
    from gateway.server import cli
    with pytest.raises(SystemExit) as exit_:
        cli.main([*cmd[1:], "--help"])
    assert exit_.value.code == 0
