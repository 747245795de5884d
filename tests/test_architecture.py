"""The shape of the package: floors with one-way imports, one public API, no web stack for embedders.

``service/`` is built in floors, each importing only those below it::

    config  <-  engine  <-  live  <-  api  <-  cli
                   ^
                testing (the simulator and demo fleet: config and engine only)
    integrations (routers talking HTTP to router-health: config only)

These tests read the source (AST), so an upward import fails here even when
it hides inside a function or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import service

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "service"

#: Each floor, and the floors it may import (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "config": frozenset({"config"}),
    "engine": frozenset({"config", "engine"}),
    "live": frozenset({"config", "engine", "live"}),
    "api": frozenset({"config", "engine", "live", "api"}),
    "testing": frozenset({"config", "engine", "testing"}),
    # Plugins for routers (LiteLLM): HTTP to router-health, and its provider names.
    "integrations": frozenset({"config", "integrations"}),
    "logs": frozenset({"logs"}),
    # The command line and the package facade stand on top of everything.
    "cli": frozenset({"config", "engine", "live", "api", "testing", "logs", "cli"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset({"config", "engine", "api"}),
}
#: The web stack and the Redis client: only the floors that need them may import them.
THIRD_PARTY: dict[str, frozenset[str]] = {
    "quart": frozenset({"api"}),
    "quart_trio": frozenset({"api"}),
    "hypercorn": frozenset({"api"}),
    "werkzeug": frozenset({"api"}),
    "prometheus_client": frozenset({"api"}),
    "coredis": frozenset({"live"}),
}
#: What an embedder who only wants the checker must not pay for.
WEB_AND_REDIS = ("quart", "quart_trio", "hypercorn", "werkzeug", "coredis", "prometheus_client")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (service.* resolved to a module, else top-level name)
    line: int
    top_level: bool  # at module level, outside `if TYPE_CHECKING:` (so it runs at import time)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve(source: str, package: bool, node: ast.ImportFrom) -> list[str]:
    """The modules an ``from ... import ...`` names (a submodule when a name is one)."""
    if node.level:
        base = source.split(".") if package else source.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join([*base, node.module] if node.module else base)
    else:
        stem = node.module or ""
    targets = []
    for alias in node.names:
        candidate = f"{stem}.{alias.name}"
        exists = (ROOT / Path(*candidate.split(".")) ).with_suffix(".py").exists() or (
            ROOT / Path(*candidate.split(".")) / "__init__.py"
        ).exists()
        targets.append(candidate if exists else stem)
    return targets


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> Iterator[Import]:
    source = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def visit(node: ast.AST, top_level: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, node.lineno, top_level)
        elif isinstance(node, ast.ImportFrom):
            for target in resolve(source, is_package(path), node):
                yield Import(source, target, node.lineno, top_level)
        elif isinstance(node, ast.If) and is_type_checking(node):
            for child in node.body:
                yield from visit(child, False)
            for child in node.orelse:
                yield from visit(child, top_level)
        else:
            # A function body runs later: nothing in it is imported at import time.
            deferred = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for child in ast.iter_child_nodes(node):
                yield from visit(child, top_level and not deferred)

    yield from visit(tree, True)


def floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def test_every_module_sits_on_a_known_floor() -> None:
    floors = {floor(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert floors <= set(ALLOWED), f"new top-level module(s) {floors - set(ALLOWED)}: add a floor"


def test_service_imports_point_down_only() -> None:
    upward = [
        f"{imp.source}:{imp.line} imports {imp.target} ({floor(imp.source)} -> {floor(imp.target)})"
        for imp in all_imports()
        if imp.target.split(".")[0] == "service"
        and floor(imp.target) not in ALLOWED[floor(imp.source)]
    ]
    assert not upward, "imports against the floors:\n" + "\n".join(upward)


def test_web_stack_and_redis_are_imported_only_where_they_belong() -> None:
    misplaced = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if imp.target.split(".")[0] in THIRD_PARTY
        and floor(imp.source) not in THIRD_PARTY[imp.target.split(".")[0]]
    ]
    assert not misplaced, "\n".join(misplaced)


def test_adapters_never_import_service() -> None:
    found = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for path in sorted((ROOT / "adapters").rglob("*.py"))
        for imp in imports_of(path)
        if imp.target.split(".")[0] == "service"
    ]
    assert not found, "\n".join(found)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_service_modules() -> None:
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.target.split(".")[0] == "service" and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert cycles(edges) == []


def test_the_lazily_loaded_web_parts_are_on_a_floor_the_facade_may_use() -> None:
    # service.__init__ names these modules in strings (importlib), out of the AST's sight.
    lazy = {floor(module) for module in service._WEB.values()}
    assert lazy <= ALLOWED["__init__"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- the public API ---------------------------------------------------------------

# Pinned here on purpose: a change to the public API must change this line too.
PUBLIC_API = [
    "AdapterManager", "CheckerSettings", "ChecksConfig", "Config", "ConfigError",
    "HealthChecker", "HealthReport", "HealthStatus", "ModelConfig", "ModelHealthReport",
    "ModelReport", "PassivePolicy", "ProbeResult", "ProbeStatus", "ProviderConfig",
    "ResultCallback", "ServerConfig", "UnknownModelError", "create_app", "load_config",
    "parse_config", "raise_open_file_limit", "serve",
]


def test_public_api_is_exactly_the_listed_names() -> None:
    assert sorted(service.__all__) == PUBLIC_API


@pytest.mark.parametrize("name", PUBLIC_API)
def test_every_exported_member_is_reachable_and_ours(name: str) -> None:
    member = getattr(service, name)
    if hasattr(member, "__module__") and not isinstance(member, type(sys)):
        owner = member.__module__ or ""
        # ResultCallback is a typing alias: its __module__ is typing's.
        assert owner.startswith("service.") or name == "ResultCallback", (name, owner)
    assert name in dir(service)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        service.nope  # type: ignore[attr-defined]  # noqa: B018


def fresh_interpreter_modules(code: str) -> list[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    loaded: list[str] = json.loads(output.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "code",
    [
        "from service import load_config, AdapterManager",
        "import service.engine.checker, service.config",
        "import service.testing.demo",
    ],
)
def test_embedding_the_checker_loads_no_web_stack_and_no_redis(code: str) -> None:
    loaded = fresh_interpreter_modules(code)
    pulled = sorted({m.split(".")[0] for m in loaded} & set(WEB_AND_REDIS))
    assert pulled == [], f"{code!r} imported {pulled}"


def test_the_web_parts_load_on_first_use() -> None:
    loaded = fresh_interpreter_modules("import service\nservice.create_app")
    assert "quart_trio" in {m.split(".")[0] for m in loaded}


#: Distributions whose import name differs from the distribution's name.
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "google_auth": "google",
    "opentelemetry_api": "opentelemetry",
    "opentelemetry_sdk": "opentelemetry",
    "opentelemetry_exporter_otlp_proto_http": "opentelemetry",
}
#: Extras that are tools for working on the project, not features of it.
WORK_EXTRAS = {"dev", "bench"}


def _import_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        name = name.strip().lower().replace("-", "_")
        names.add(IMPORT_NAMES.get(name, name))
    return names


def declared_dependencies() -> set[str]:
    """Import names of [project] dependencies."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return _import_names(project["dependencies"])


def optional_dependencies() -> set[str]:
    """Import names of the feature extras (``router-health[bedrock]``, ...)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    return _import_names(
        [req for name, reqs in extras.items() if name not in WORK_EXTRAS for req in reqs]
    )


def test_every_third_party_import_is_a_declared_dependency() -> None:
    # An extra's library may only be imported lazily (in a function), so the
    # module still imports without it and says which extra to install.
    ours = {"service", "adapters"}
    known = ours | set(sys.stdlib_module_names) | declared_dependencies()
    paths = [*sorted(PACKAGE.rglob("*.py")), *sorted((ROOT / "adapters").rglob("*.py"))]
    imports = [imp for path in paths for imp in imports_of(path)]
    undeclared = {imp.target.split(".")[0] for imp in imports} - known - optional_dependencies()
    eager_extras = sorted(
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports
        if imp.top_level and imp.target.split(".")[0] not in known
    )
    assert eager_extras == [], "an optional extra imported at module level"
    assert undeclared == set(), f"imported but not in [project] dependencies: {sorted(undeclared)}"
