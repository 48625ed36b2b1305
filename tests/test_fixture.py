"""The report fixture (tests/fixtures/report) is what `nox -s fixture` makes from bench/schema.py.

When a column is added to the schema these fail until the fixture is regenerated:
``nox -s fixture``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.schema import EPOCH_COLUMNS, LAYER_COLUMNS, ROW_COLUMNS

FIXTURE = Path(__file__).parent / "fixtures" / "report"
TABLES = [
    ("results.jsonl", ROW_COLUMNS),
    ("layers.jsonl", LAYER_COLUMNS),
    ("epochs.jsonl", EPOCH_COLUMNS),
]


def _columns(path: Path) -> set[tuple[str, ...]]:
    return {tuple(json.loads(line)) for line in path.read_text().splitlines() if line.strip()}


@pytest.mark.parametrize("name, columns", TABLES)
def test_every_fixture_line_has_the_schemas_columns_in_order(name: str, columns: tuple) -> None:
    assert _columns(FIXTURE / name) == {columns}


def test_the_committed_fixture_is_what_the_generator_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURE / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    make_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixture)
    make_fixture.main([str(tmp_path)])
    for name in ("meta.json", *(table for table, _ in TABLES)):
        assert (tmp_path / name).read_text() == (FIXTURE / name).read_text(), name
