"""The code stays readable and one-way (docs/architecture.md, "Layers").

Every import in src/ is read from the source: top-level ones, lazy ones inside functions and
those under TYPE_CHECKING alike, since each is a dependency a reader has to follow. An import
may point down a layer or stay within one; it may never point up, and the module graph has no
circle. Each failure names the file and line of the import. Modules stay under 400 lines (src/
well under, so the next change has room) and functions under 60, in src/, tests/ and scripts/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "fmnist_tl"
PACKAGE = "fmnist_tl"
MAX_MODULE_LINES = 400
SRC_HEADROOM = 25  # a src/ module stays this far below the cap
MAX_FUNCTION_LINES = 60

# Top to bottom. A module's layer is that of its first name under fmnist_tl (a module or a
# subpackage); a name not listed here fails test_every_module_has_a_layer.
LAYERS: list[tuple[str, set[str]]] = [
    ("api", {"__init__"}),
    ("cli", {"cli"}),
    ("experiments", {"experiments"}),
    ("training", {"training"}),
    ("components", {"models", "data", "evaluation", "reporting", "tracking"}),
    ("config", {"config"}),
    (
        "base",
        {
            "_version",
            "tfenv",
            "libdirs",
            "errors",
            "paths",
            "atomic",
            "records",
            "classes",
            "progress",
            "machine",
            "layout",
            "metrics",
            "lifecycle",
            "net",
            "cache",
        },
    ),  # fmt: skip
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts]) if parts != ["__init__"] else PACKAGE


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> int:
    head = module.split(".")[1] if module != PACKAGE else "__init__"
    for rank, (_, names) in enumerate(LAYERS):
        if head in names:
            return rank
    raise LookupError(head)


def _target(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str | None:
    """The project module an import names (the deepest existing one), or None (a library)."""
    if isinstance(node, ast.Import):
        name = alias.name
    else:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            name = ".".join([*base, node.module] if node.module else base)
        else:
            name = node.module or ""
        if f"{name}.{alias.name}" in MODULES:
            name = f"{name}.{alias.name}"
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def imports() -> list[tuple[str, int, str]]:
    """(importer, line, imported module) for every project import in src/, and for the
    packages Python runs on the way (importing a.b.c from outside `a` runs a and a.b)."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for alias in node.names:
                target = _target(module, node, alias)
                if target is None or target == module:
                    continue
                found.append((module, node.lineno, target))
                parts = target.split(".")
                for i in range(2, len(parts)):
                    package = ".".join(parts[:i])
                    if not module.startswith(package + ".") and package != module:
                        found.append((module, node.lineno, package))
    return found


def where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(REPO)}:{line}"


def test_every_module_has_a_layer():
    unplaced = []
    for module in MODULES:
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert not unplaced, f"add these to a layer in LAYERS: {unplaced}"


def test_imports_point_down_or_within_a_layer():
    upward = [
        f"{where(m, line)}: {m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, line, t in imports()
        if layer_of(t) < layer_of(m)
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def find_circle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One circle of the graph (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt)) is not None:
                return circle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (circle := visit(start)) is not None:
            return circle
    return None


def test_no_import_circle():
    edges: dict[str, dict[str, int]] = {}
    for m, line, t in imports():
        edges.setdefault(m, {}).setdefault(t, line)
    circle = find_circle(edges)
    if circle is not None:
        pairs = zip(circle, circle[1:], strict=False)
        steps = [f"{where(a, edges[a][b])}: {a} imports {b}" for a, b in pairs]
        pytest.fail("an import circle:\n" + "\n".join(steps))


def test_the_checks_catch_an_upward_import_and_a_circle():
    assert layer_of("fmnist_tl.cli.app") < layer_of("fmnist_tl.training.trainer")
    assert layer_of("fmnist_tl.config.schema") > layer_of("fmnist_tl.models.assembly")
    looped = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_circle(looped) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b": 1}, "b": {}}) is None


def python_files() -> list[Path]:
    folders = [SRC.rglob("*.py"), (REPO / "tests").glob("*.py"), (REPO / "scripts").glob("*.py")]
    return sorted(path for found in folders for path in found)


def test_no_module_is_longer_than_400_lines():
    long = {}
    for path in python_files():
        cap = MAX_MODULE_LINES - (SRC_HEADROOM if SRC in path.parents else 0)
        if (n := len(path.read_text().splitlines())) > cap:
            long[str(path.relative_to(REPO))] = f"{n} lines (at most {cap})"
    assert not long, long


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.name}"] = lines
    assert not long, long
