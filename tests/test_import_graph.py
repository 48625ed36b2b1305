"""The house of ``bench/`` (docs/ARCHITECTURE.md): wings import downward only.

Every import statement of every module is read with ``ast``, those inside functions and under
``TYPE_CHECKING`` too: a lazy import is still a dependency. Nothing is imported, so the check is
quick and needs no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports, absolute (``from . import x`` resolved)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


GRAPH = {
    _module(path): _imports(path)
    for package in ("bench", "zoo")
    for path in sorted((ROOT / package).rglob("*.py"))
    if path.name != "__main__.py"  # `python -m bench.report` is the CLI's door, not the wing
}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def _offending(modules: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Each module in ``modules`` (a module or a package) that imports any of ``forbidden``."""
    return {
        module: sorted(i for i in imports if any(_within(i, f) for f in forbidden))
        for module, imports in GRAPH.items()
        if _within(module, modules) and any(_within(i, f) for f in forbidden for i in imports)
    }


def test_the_graph_reads_every_module() -> None:
    assert {"bench.schema", "bench.shards", "bench.sweep.loop", "zoo.losses"} <= set(GRAPH)
    assert "bench.measure.rows" in GRAPH["bench.sweep.loop"]  # the reader resolves `from`


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        # The bottom: columns, keys and the writer; it fills no row from the zoo or a measurement.
        ("bench.schema", ("bench", "zoo", "torch", "data", "pandas")),
        # A plan's slice is shared by the sweep and the training plans: below both.
        ("bench.shards", ("bench.sweep", "bench.training", "bench.measure", "zoo", "torch")),
        ("bench.events", ("bench.sweep", "bench.training", "bench.measure", "zoo", "torch")),
        # The wings do not import each other; the loss of a train row is the zoo card's.
        ("bench.sweep", ("bench.training", "bench.report", "bench.cli")),
        ("bench.training", ("bench.sweep", "bench.report", "bench.cli")),
        ("bench.measure", ("bench.sweep", "bench.training", "bench.report", "bench.cli")),
        # The report and `bench compare` read folders through the schema: no measuring code.
        ("bench.report", ("bench.sweep", "bench.training", "bench.measure", "bench.cli")),
        (
            "bench.compare",
            ("bench.sweep", "bench.training", "bench.measure", "bench.report", "bench.cli"),
        ),
        # The zoo knows no harness.
        ("zoo", ("bench",)),
    ],
)
def test_wings_import_downward_only(modules: str, forbidden: tuple[str, ...]) -> None:
    assert _offending(modules, forbidden) == {}


def test_the_schema_and_compare_load_without_torch() -> None:
    """What the report and `bench compare` read folders with imports no torch when it runs."""
    code = (
        "import sys, bench.schema, bench.shards, bench.compare\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
