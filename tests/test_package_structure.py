"""The package's structure: no import cycles, models apart from the training toolkit,
private names kept inside their modules, back-ends apart from their dispatcher.

Every ``import`` statement of every module of ``rnnjax/`` is read from the
source with ``ast`` (module-level ones and those inside functions alike, so a
cycle cannot hide behind a function-level import), and the rules are checked
on that graph.
"""

from __future__ import annotations

import ast
import functools
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rnnjax"

# Modules that are models or the layers and loops under them: they may not use
# the training toolkit (rnnjax.train depends on them, not the other way round).
MODELS = (
    "rnnjax.cells",
    "rnnjax.timeloop",
    "rnnjax.layers",
    "rnnjax.readout",
    "rnnjax.sequence_model",
    "rnnjax.token_model",
    "rnnjax.seq2seq",
    "rnnjax.generation",
    "rnnjax.beam",
    "rnnjax.language_model",
    "rnnjax.diagnostics",
    "rnnjax.masking",
    "rnnjax.losses",
    "rnnjax.metrics",
    "rnnjax.data",
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: pathlib.Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(imported module, names taken from it)`` for every import in ``path``
    that reaches into ``rnnjax`` (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, tuple(alias.name for alias in node.names)))
    return [(m, names) for m, names in found if m == "rnnjax" or m.startswith("rnnjax.")]


@functools.cache
def edges() -> dict[str, set[str]]:
    """Module -> the rnnjax modules it imports (``from rnnjax.x import y`` is an
    edge to ``rnnjax.x.y`` when that is a module, else to ``rnnjax.x``)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        for module, names in imports(name, path):
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            targets.update(submodules or [module])
        graph[name] = targets - {name}
    return graph


def packages() -> set[str]:
    return {n for n, p in modules().items() if p.name == "__init__.py"}


def find_cycle(graph: dict[str, set[str]], skip: set[str]) -> list[str] | None:
    """A cycle among the modules of ``graph`` but ``skip`` (the packages'
    ``__init__`` re-exports: importing a package runs its ``__init__``, which
    imports its modules, so every module reached through its package would look
    cyclic)."""
    nodes = {n for n in graph if n not in skip}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in nodes:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_graph_is_read_from_every_source_file():
    graph = edges()
    assert "rnnjax.timeloop.dispatch" in graph and "rnnjax.timeloop.fused" in graph
    assert "rnnjax.timeloop.fused" in graph["rnnjax.timeloop.dispatch"]


def test_no_module_imports_back_a_module_that_imports_it():
    assert find_cycle(edges(), skip=packages()) is None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    source = "def f():\n    from rnnjax.a import g\n"
    name_imports = imports("rnnjax.b", _write(tmp_path / "b.py", source))
    assert name_imports == [("rnnjax.a", ("g",))]
    graph = {"rnnjax.a": {"rnnjax.b"}, "rnnjax.b": {"rnnjax.c"}, "rnnjax.c": {"rnnjax.a"}}
    assert find_cycle(graph, skip=set()) == ["rnnjax.a", "rnnjax.b", "rnnjax.c", "rnnjax.a"]
    assert find_cycle({"rnnjax.a": {"rnnjax.b"}, "rnnjax.b": set()}, skip=set()) is None


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("model", MODELS)
def test_models_do_not_depend_on_the_training_toolkit(model):
    offenders = {
        name: sorted(t for t in targets if t == "rnnjax.train" or t.startswith("rnnjax.train."))
        for name, targets in edges().items()
        if name == model or name.startswith(model + ".")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_back_ends_never_import_the_dispatcher_or_each_other():
    graph = edges()
    back_ends = ("scan", "fused", "cudnn", "parallel")
    for name in back_ends:
        targets = graph[f"rnnjax.timeloop.{name}"]
        forbidden = {"rnnjax.timeloop", "rnnjax.timeloop.dispatch"} | {
            f"rnnjax.timeloop.{other}" for other in back_ends if other != name
        }
        assert not targets & forbidden, (name, targets & forbidden)
        assert "rnnjax.timeloop.common" in targets


def test_no_private_name_crosses_a_module_boundary():
    """``from rnnjax.x import _y`` and ``import rnnjax._x`` are refused: what a module
    shares is public, and what is private stays in its module."""
    crossing = []
    for name, path in modules().items():
        for module, names in imports(name, path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if any(part.startswith("_") for part in module.split(".")) or private:
                crossing.append(f"{name}: from {module} import {names}")
        for node in ast.walk(ast.parse(path.read_text())):
            # rnnjax.module._private used through an imported module object
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                value = node.value
                if isinstance(value, ast.Name) and value.id in _imported_modules(name, path):
                    crossing.append(f"{name}: {value.id}.{node.attr}")
    assert not crossing


def _imported_modules(name: str, path: pathlib.Path) -> set[str]:
    """Local names bound to rnnjax modules in ``path`` (``from rnnjax import checks``)."""
    known = modules()
    bound = set()
    for module, names in imports(name, path):
        bound.update(n for n in names if f"{module}.{n}" in known)
    return bound


def test_the_package_init_files_only_re_export():
    """An ``__init__.py`` holds a docstring, imports and ``__all__`` (and the
    version): no definitions, no logic."""
    for name, path in modules().items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            if isinstance(node, ast.Assign):
                targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
                ok = targets <= {"__all__", "__version__"}
            assert ok, f"{name} line {node.lineno}: {ast.unparse(node)[:80]}"
