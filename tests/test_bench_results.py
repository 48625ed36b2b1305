"""The writer: rows appended and durable at once, CSV regenerated, resume keys, torn lines; the
one row key, a row's settings in words and a failure in one line (:mod:`bench.schema`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_MACHINE

from bench.measure.rows import base_row
from bench.schema import (
    EPOCH_COLUMNS,
    KEY_COLUMNS,
    LAYER_COLUMNS,
    MEASURED_COLUMNS,
    NUMERIC_COLUMNS,
    NUMERIC_EPOCH_COLUMNS,
    NUMERIC_LAYER_COLUMNS,
    ROW_COLUMNS,
    ResultsWriter,
    error_text,
    one_line,
    read_jsonl,
    row_key,
    settings_text,
)


def make_row(**settings: Any) -> dict[str, Any]:
    row: dict[str, Any] = {column: None for column in ROW_COLUMNS}
    row.update(
        model="tiny_net", device="cpu", dtype="fp32", memory_format="contiguous", threads=1,
        batch_size=2, mode="infer", step_ms_median=1.5,
    )  # fmt: skip
    row.update(settings)
    return row


def test_each_row_is_on_disk_before_the_next(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    writer.write_row(make_row(batch_size=1))
    # read through a separate handle while the writer lives: flushed already
    assert [r["batch_size"] for r in read_jsonl(tmp_path / "results.jsonl")] == [1]
    writer.write_row(make_row(batch_size=2, error="out of memory: x"))
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [r["batch_size"] for r in rows] == [1, 2]
    assert list(rows[0]) == list(ROW_COLUMNS)  # the documented column order
    assert rows[1]["error"] == "out of memory: x"


def test_csv_is_regenerated_with_every_row(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    for batch in (1, 2, 3):
        writer.write_row(make_row(batch_size=batch))
        with (tmp_path / "results.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == batch
    assert rows[0]["error"] == ""  # null is an empty cell
    assert list(rows[0]) == list(ROW_COLUMNS)


def test_nan_becomes_null(tmp_path: Path) -> None:
    ResultsWriter(tmp_path).write_row(make_row(samples_per_s=float("nan")))
    assert read_jsonl(tmp_path / "results.jsonl")[0]["samples_per_s"] is None


def test_resume_knows_the_rows_already_written(tmp_path: Path) -> None:
    ResultsWriter(tmp_path).write_row(make_row(batch_size=4, mode="train"))
    again = ResultsWriter(tmp_path)
    assert again.has_row(row_key(make_row(batch_size=4, mode="train")))
    assert not again.has_row(row_key(make_row(batch_size=4, mode="infer")))
    assert not again.has_row(row_key(make_row(batch_size=4, mode="train", threads=2)))


def test_max_batch_rows_match_whatever_batch_they_found(tmp_path: Path) -> None:
    ResultsWriter(tmp_path).write_row(make_row(batch_size=384, max_batch=384, device="cuda"))
    again = ResultsWriter(tmp_path)
    spec_key = row_key(make_row(batch_size=0, max_batch=True, device="cuda"))
    assert again.has_row(spec_key)
    assert not again.has_row(row_key(make_row(batch_size=384, device="cuda")))


def test_a_line_torn_by_a_kill_is_dropped(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    writer.write_row(make_row(batch_size=1))
    with (tmp_path / "results.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"model": "tiny_net", "batch')  # killed mid-write
    assert len(read_jsonl(tmp_path / "results.jsonl")) == 1
    resumed = ResultsWriter(tmp_path)
    resumed.write_row(make_row(batch_size=2))
    assert [r["batch_size"] for r in read_jsonl(tmp_path / "results.jsonl")] == [1, 2]


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":2 is not a JSON line"):
        read_jsonl(path)


def test_a_line_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n{"a": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":2 is not a JSON object"):
        read_jsonl(path)


def test_the_column_groups_are_columns_of_their_table() -> None:
    for group in (KEY_COLUMNS, MEASURED_COLUMNS, NUMERIC_COLUMNS):
        assert set(group) <= set(ROW_COLUMNS)
    assert set(NUMERIC_LAYER_COLUMNS) <= set(LAYER_COLUMNS)
    assert set(NUMERIC_EPOCH_COLUMNS) <= set(EPOCH_COLUMNS)


def test_a_base_row_has_every_column_and_no_measurement() -> None:
    row = base_row(
        "lenet5", "cpu", "fp32", "contiguous", "infer", 4,
        threads=2, counts=None, machine=FAKE_MACHINE,
    )  # fmt: skip
    assert list(row) == list(ROW_COLUMNS)
    assert row["family"] == "lenet" and row["input_shape"] == "1x32x32"
    assert row["batch_size"] == 4 and row["threads"] == 2 and row["max_batch"] is None
    assert all(row[column] is None for column in MEASURED_COLUMNS)
    assert row["params"] is None and row["error"] is None


def test_meta_is_written_whole(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    writer.write_meta({"run_id": "x", "finished": None})
    writer.write_meta({"run_id": "x", "finished": "now"})
    assert json.loads((tmp_path / "meta.json").read_text())["finished"] == "now"
    assert writer.read_meta() == {"run_id": "x", "finished": "now"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_row_with_wrong_columns_is_refused(tmp_path: Path) -> None:
    row = make_row()
    del row["error"]
    with pytest.raises(ValueError, match="missing"):
        ResultsWriter(tmp_path).write_row(row)


# --- one home per idea: the row key, a row's settings in words, a failure in one line -------


def accuracy_row(**settings: Any) -> dict[str, Any]:
    defaults = dict(batch_size=128, data="mnist", seed=0, world_size=1, run="r1")
    return make_row(mode="accuracy", **{**defaults, **settings})


def test_the_row_key_reads_alike_from_json_and_from_pandas() -> None:
    written = accuracy_row(compile=None)
    read_back = {**written, "batch_size": 128.0, "threads": 1.0, "max_batch": float("nan")}
    assert row_key(read_back) == row_key(written) == row_key({**written, "compile": "none"})
    # An accuracy row from before world_size ran one process; --resume finds it done.
    assert row_key({**written, "world_size": None}) == row_key(written)
    assert row_key({**written, "world_size": 2}) != row_key(written)
    assert row_key(make_row(max_batch=0)) == row_key(make_row(batch_size=512, max_batch=512))


def test_the_merge_key_tells_training_runs_and_max_batch_rows_apart() -> None:
    """--resume skips a run whose settings are done; a merged report keeps each training run
    (its id) and takes a --max-batch row as the batch it found."""
    one, again = accuracy_row(), accuracy_row(run="r2")
    assert row_key(one) == row_key(again)
    assert row_key(one, merge=True) != row_key(again, merge=True)
    found = make_row(batch_size=256, max_batch=256)
    assert row_key(found) != row_key(make_row(batch_size=256))
    assert row_key(found, merge=True) == row_key(make_row(batch_size=256), merge=True)


def test_a_rows_settings_in_words() -> None:
    assert settings_text(make_row(mode="train", batch_size=32, threads=2)) == (
        "tiny_net cpu fp32 contiguous train b=32 t=2"
    )
    found = make_row(batch_size=256, max_batch=256, compile="max-autotune")
    assert (
        settings_text(found)
        == "tiny_net cpu fp32 contiguous infer b=256 (max) compile=max-autotune t=1"
    )
    assert " b=max " in settings_text(found, as_key=True)
    assert " b=max " in settings_text(make_row(batch_size=0, max_batch=True))  # not yet found
    assert settings_text(accuracy_row()).endswith("accuracy b=128 t=1 data=mnist seed=0")
    assert settings_text(accuracy_row(world_size=2.0)).endswith("seed=0 world_size=2")


def test_a_failure_is_one_line_in_one_format() -> None:
    error = RuntimeError("CUDA out of   memory.\nTried to allocate 2 GiB\n  more detail")
    assert one_line(error) == "CUDA out of memory."
    assert error_text(error) == "RuntimeError: CUDA out of memory."
    assert error_text(error, "out of memory") == "out of memory: CUDA out of memory."
    assert error_text(error, "") == "CUDA out of memory."
    assert error_text(ArithmeticError()) == one_line(ArithmeticError()) == "ArithmeticError"
    assert len(error_text(ValueError("x" * 1000))) == 300
