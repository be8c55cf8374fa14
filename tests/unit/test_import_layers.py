"""The packages import one way only, top to bottom, so the layout keeps showing the architecture.

    commands → outcomes → launcher → transforms → sources → krux, storage → config → schedule → errors

Every `import` and `from ... import` in the shipped packages is read from the source (function
bodies included, so a lazy import cannot hide a cycle) and checked against that order.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS = (
    ("pipeline.commands",),
    ("pipeline.outcomes",),
    ("pipeline.launcher",),
    ("transforms",),
    ("pipeline.sources",),
    ("pipeline.krux", "pipeline.storage"),
    ("pipeline.config",),
    ("pipeline.schedule",),
    ("pipeline.errors",),
)
"""Higher layers first; a module may import its own layer's package and any lower layer."""

SAME_LAYER_ORDER: set[tuple[str, str]] = {("pipeline.storage", "pipeline.krux")}
"""Imports allowed between packages of one layer (importer, imported): publishing the day's
object (storage/publish.py) follows krux's layout of keys; krux never touches storage."""


def layer_of(module: str) -> tuple[int, str] | None:
    for depth, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return depth, package
    return None


def shipped_modules():
    for package in ("pipeline", "transforms"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield module.removesuffix(".__init__"), path


def imported_modules(path: Path, module: str):
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            else:
                yield node.lineno, node.module
                for alias in node.names:  # `from pipeline import storage` imports a package
                    yield node.lineno, f"{node.module}.{alias.name}"


def layering_violations(modules):
    found = []
    for module, path in modules:
        own = layer_of(module)
        if own is None:
            continue
        for line, target in imported_modules(path, module):
            theirs = layer_of(target)
            if theirs is None or theirs[1] == own[1]:
                continue
            if theirs[0] < own[0] or (theirs[0] == own[0] and (own[1], theirs[1]) not in SAME_LAYER_ORDER):
                found.append(f"{path.name}:{line}: {module} imports {target}")
    return found


def test_every_shipped_module_belongs_to_a_layer():
    loose = [module for module, _ in shipped_modules() if layer_of(module) is None]
    assert loose == ["pipeline", "pipeline.__main__"]


def test_imports_run_down_the_layers_only():
    assert layering_violations(shipped_modules()) == []


@pytest.mark.parametrize(
    "module, source, violation",
    [
        ("pipeline.config.jobs", "from pipeline.launcher import run\n", "pipeline.config.jobs imports pipeline.launcher"),
        ("pipeline.krux.lines", "def f():\n    import transforms.check\n", "pipeline.krux.lines imports transforms.check"),
        ("pipeline.krux.grouping", "from pipeline.storage import stores\n", "imports pipeline.storage"),
    ],
)
def test_the_check_catches_an_import_running_back_up(tmp_path, module, source, violation):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert any(violation in line for line in layering_violations([(module, path)]))
