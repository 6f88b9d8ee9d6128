"""The package's import rules, read from the source with ast (imports inside functions too):

1. no import cycles between the package's modules;
2. nothing imports ``celerinfer.cli`` (but the command line itself and ``__main__``);
3. ``celerinfer.results`` and ``celerinfer.plots`` never reach the engine (``_core``, the Engine
   and Model modules), directly or through what they import: results can be read and plotted
   anywhere, and the plots take the registry as data;
4. no module imports through a package's ``__init__`` (``from celerinfer import X``,
   ``import celerinfer``): it imports the module that defines X. The ``__init__`` files
   themselves gather their package's public names from its modules.

Each rule is a function returning what breaks it, checked here on the package and, to show the
checks can fail, on small packages written for the purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "python" / "celerinfer"
#: the engine: what results/ and plots/ must not reach
ENGINE = ("celerinfer._core", "celerinfer._cuda", "celerinfer.engine", "celerinfer.model")
#: the packages whose modules must not reach the engine
ENGINE_FREE = ("celerinfer.results", "celerinfer.plots")
#: who may import the command line
CLI = "celerinfer.cli"
ENTRY_POINTS = ("celerinfer.__main__",)


# ---- reading the package ---------------------------------------------------------------------

def modules_of(package_dir: Path, name: str | None = None) -> dict[str, Path]:
    """{dotted module name: source file} of a package; compiled extensions (with a .pyi stub or
    a .so) count as modules without source."""
    name = name or package_dir.name
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if "__pycache__" in rel.parts:
            continue
        if path.suffix == ".py":
            parts = rel.with_suffix("").parts
            dotted = ".".join((name, *parts[:-1])) if parts[-1] == "__init__" else ".".join((name, *parts))
            found[dotted] = path
        elif path.suffix in (".pyi", ".so"):
            found.setdefault(".".join((name, *rel.parts[:-1], rel.name.split(".")[0])), path)
    return found


def is_package(modules: dict[str, Path], name: str) -> bool:
    path = modules.get(name)
    return path is not None and path.name == "__init__.py"


def imports_of(modules: dict[str, Path], name: str) -> list[tuple[str, int, str]]:
    """(imported module, line, how it was written) for every import statement of module
    `name` that names a module of the package, at any depth of the file. ``from P import N``
    counts as importing P.N when that is a module, else as importing P (a name P defines)."""
    path = modules[name]
    if path.suffix != ".py":
        return []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = name.split(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    out.append((alias.name, node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != root:
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                written = f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                out.append((target if target in modules else source, node.lineno, written))
    return out


def graph_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {target for target, _, _ in imports_of(modules, name) if target in modules and target != name}
            for name in modules}


# ---- the rules -------------------------------------------------------------------------------

def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def cli_importers(modules: dict[str, Path], cli: str = CLI, allowed=ENTRY_POINTS) -> list[str]:
    """'module:line: how' of every import of the command line from outside it."""
    bad = []
    for name in modules:
        if name == cli or name.startswith(cli + ".") or name in allowed:
            continue
        for target, line, written in imports_of(modules, name):
            if target == cli or target.startswith(cli + "."):
                bad.append(f"{name}:{line}: {written}")
    return bad


def engine_paths(modules: dict[str, Path], packages=ENGINE_FREE, engine=ENGINE) -> list[str]:
    """'a -> b -> ... -> engine module' for every module of `packages` that reaches the engine,
    through explicit imports and the package __init__ files an import runs (not the root's:
    every import runs it, it is the public API)."""
    graph = graph_of(modules)
    root = next(iter(modules)).split(".")[0]

    def parents(name):  # the __init__ of every package above `name`, below the root
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))} - {root}

    def edges(name):
        out = set(graph.get(name, ()))
        for target in list(out):
            out |= parents(target) - {name}
        return out

    found = []
    for start in sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)):
        seen, queue = {start: [start]}, [start]
        while queue:
            node = queue.pop(0)
            if node in engine:
                found.append(" -> ".join(seen[node]))
                break
            for nxt in sorted(edges(node)):
                if nxt not in seen:
                    seen[nxt] = seen[node] + [nxt]
                    queue.append(nxt)
    return found


def through_init(modules: dict[str, Path]) -> list[str]:
    """'module:line: how' of every import that takes a name from a package's __init__ (instead
    of the module defining it), or imports a bare package to use its attributes. A package's
    own __init__ may gather names from its modules."""
    bad = []
    for name, path in modules.items():
        if path.name == "__init__.py":
            continue
        for target, line, written in imports_of(modules, name):
            if is_package(modules, target):
                bad.append(f"{name}:{line}: {written}")
    return bad


# ---- the package -----------------------------------------------------------------------------

MODULES = modules_of(PACKAGE_DIR)


def test_the_package_is_read():
    assert {"celerinfer", "celerinfer._core", "celerinfer.engine", "celerinfer.cli.app",
            "celerinfer.results.store", "celerinfer.plots.style"} <= set(MODULES)
    # imports inside functions count too
    assert "celerinfer.plots.catalog" in graph_of(MODULES)["celerinfer.cli.bench_commands"]


def test_no_import_cycles():
    cycle = find_cycle(graph_of(MODULES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_nothing_imports_the_command_line():
    bad = cli_importers(MODULES)
    assert not bad, "imports of the command line:\n" + "\n".join(bad)


def test_results_and_plots_never_reach_the_engine():
    paths = engine_paths(MODULES)
    assert not paths, "results/plots reach the engine:\n" + "\n".join(paths)


def test_no_module_imports_through_a_package_init():
    bad = through_init(MODULES)
    assert not bad, "import the defining module instead:\n" + "\n".join(bad)


# ---- the checks fail where they should -------------------------------------------------------

def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules_of(root / "pkg")


@pytest.fixture
def broken(tmp_path):
    return write_package(tmp_path, {
        "__init__.py": "from .engine import Engine\n",
        "_core.pyi": "",
        "engine.py": "from . import _core\n\nclass Engine: ...\n",
        "model.py": "def load():\n    from .io.files import read  # a cycle, inside a function\n",
        "io/__init__.py": "",
        "io/files.py": "from ..model import load\n\ndef read(): ...\n",
        "cli/__init__.py": "",
        "cli/app.py": "from ..engine import Engine\n",
        "results/__init__.py": "",
        "results/store.py": "from ..formats import table\n",
        "formats.py": "from ._core import weight_formats as table\n",
        "plots/__init__.py": "from .style import color\n",
        "plots/style.py": "from .. import Engine\n\ndef color(): ...\n",
        "bench.py": "from .cli import app\n",
    })


def test_a_cycle_is_found_and_named(broken):
    cycle = find_cycle(graph_of(broken))
    assert cycle is not None
    assert cycle[0] == cycle[-1] and set(cycle) == {"pkg.model", "pkg.io.files"}


def test_an_import_of_the_cli_is_found(broken):
    assert cli_importers(broken, cli="pkg.cli", allowed=()) == ["pkg.bench:1: from .cli import app"]


def test_reaching_the_engine_is_found_with_the_path(broken):
    paths = engine_paths(broken, packages=("pkg.results", "pkg.plots"), engine=("pkg._core", "pkg.engine"))
    assert "pkg.results.store -> pkg.formats -> pkg._core" in paths
    # through a package __init__ an import runs: plots.style's parent, pkg.plots
    assert any(p.startswith("pkg.plots ->") for p in paths)


def test_an_import_through_an_init_is_found(broken):
    assert through_init(broken) == ["pkg.plots.style:1: from .. import Engine"]
