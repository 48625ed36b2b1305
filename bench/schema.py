"""Writing a results folder (see docs/ARCHITECTURE.md): rows appended as they are measured.

Each row is one JSON line, written, flushed and fsynced before the next measurement starts,
so Ctrl-C or a kill loses nothing already measured. ``results.csv`` is regenerated from the
JSON lines after every row (through a temporary file and an atomic rename), so it is never
half written. ``--resume`` reads the JSON lines back and skips every row whose settings
(:data:`KEY_COLUMNS`) are already present, error rows included.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ROW_COLUMNS",
    "ACCURACY_COLUMNS",
    "LAYER_COLUMNS",
    "EPOCH_COLUMNS",
    "KEY_COLUMNS",
    "row_key",
    "read_jsonl",
    "ResultsWriter",
]

# The columns of results.jsonl / results.csv, in order (docs/ARCHITECTURE.md).
ROW_COLUMNS = (
    "model", "family", "input_shape", "num_classes", "device", "device_name", "dtype",
    "memory_format", "threads", "batch_size", "mode", "params", "params_total", "macs_fvcore",
    "flops", "train_flops", "uncounted_ops", "weights_mib", "grads_mib", "optimizer_mib",
    "activations_mib", "peak_mem_mib", "peak_mem_method", "peak_mem_estimate_mib",
    "step_ms_median", "step_ms_p10", "step_ms_p90", "steps_timed", "samples_per_s",
    "achieved_gflops", "tf32", "max_batch", "torch_version", "git_commit", "session",
    "timestamp", "error",
) + (
    # Accuracy rows (mode "accuracy", bench.training.runs); null on the harness's rows.
    "data", "accuracy", "target_acc", "time_to_target_s", "budget_s", "epochs", "seed",
    "recipe", "data_loading_in_timing", "data_on_clock", "data_setup_s", "train_s",
    "test_samples", "eval_dtype", "run",
    # Training processes (torchrun): world_size 1 and backend null for one process.
    "world_size", "backend", "global_batch",
)  # fmt: skip
ACCURACY_COLUMNS = ROW_COLUMNS[ROW_COLUMNS.index("data") :]
LAYER_COLUMNS = (
    "model", "family", "index", "layer", "type", "output_shape", "params", "macs",
    "activation_mib", "layer_count",
)  # fmt: skip
# epochs.jsonl: one line per evaluation during training; ``run`` names the training run (the
# ``run`` column of its results row), so each run is one curve however many share a folder.
EPOCH_COLUMNS = (
    "run", "model", "data", "seed", "world_size", "device", "epoch", "wall_s", "train_loss",
    "test_accuracy", "samples_per_s",
)  # fmt: skip
# The settings that identify a row: --resume skips a row whose key is already written.
KEY_COLUMNS = (
    "model",
    "device",
    "dtype",
    "memory_format",
    "threads",
    "batch_size",
    "mode",
    "max_batch",
    "data",
    "seed",
    "world_size",
)


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The settings of ``row`` that ``--resume`` compares.

    A ``--max-batch`` row (``max_batch`` set) matches whatever batch it found: its key has
    ``batch_size`` None and ``max_batch`` True; every other row has ``max_batch`` False.
    """
    is_max = row.get("max_batch") is not None and row.get("max_batch") is not False
    return tuple(
        (None if is_max else row.get(column))
        if column == "batch_size"
        else (is_max if column == "max_batch" else row.get(column))
        for column in KEY_COLUMNS
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a last line cut short by a kill is ignored."""
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a write interrupted mid-line
                continue
            raise ValueError(f"{path}:{number} is not a JSON line") from None
    return rows


def _complete_models(layers: Iterable[Mapping[str, Any]]) -> set[str]:
    """The models whose breakdown is whole: indexes 0..n-1 once each, n being every line's
    ``layer_count`` (lines written before that column: the indexes alone)."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for line in layers:
        by_model.setdefault(line["model"], []).append(line)
    complete = set()
    for model, lines in by_model.items():
        indexes = [line.get("index") for line in lines]
        counts = {line.get("layer_count") for line in lines}
        if not all(isinstance(i, int) for i in indexes):
            continue
        if sorted(indexes) == list(range(len(lines))) and counts in ({None}, {len(lines)}):
            complete.add(model)
    return complete


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a number we could not measure is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ResultsWriter:
    """Appends rows to ``results.jsonl`` and layers to ``layers.jsonl`` in ``folder``.

    ``session``: the number of the meta.json session writing (``sessions`` there); a row whose
    ``session`` is null is written with it.
    """

    def __init__(self, folder: Path, session: int | None = None) -> None:
        self.session = session
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(
                f"{self.folder} is a file, not a results folder: give a folder (new or existing)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.results_path = self.folder / "results.jsonl"
        self.layers_path = self.folder / "layers.jsonl"
        self.epochs_path = self.folder / "epochs.jsonl"
        self.csv_path = self.folder / "results.csv"
        self.meta_path = self.folder / "meta.json"
        self.errors_path = self.folder / "errors.log"
        self._repair_tail(self.results_path)
        self._repair_tail(self.layers_path)
        self._repair_tail(self.epochs_path)
        self._done = {row_key(row) for row in read_jsonl(self.results_path)}
        self._layer_models = _complete_models(read_jsonl(self.layers_path))

    def has_row(self, key: tuple[Any, ...]) -> bool:
        """True if a row with these settings (:func:`row_key`) is already written."""
        return key in self._done

    def has_layers(self, model: str) -> bool:
        """True if ``model``'s whole breakdown is written (not a batch a kill cut short)."""
        return model in self._layer_models

    def write_row(self, row: Mapping[str, Any]) -> None:
        """Append one row (every column of :data:`ROW_COLUMNS`), durably; regenerate the CSV."""
        missing = set(ROW_COLUMNS) - set(row)
        extra = set(row) - set(ROW_COLUMNS)
        if missing or extra:
            raise ValueError(
                f"row columns differ: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        ordered = {column: _clean(row[column]) for column in ROW_COLUMNS}
        if ordered["session"] is None:
            ordered["session"] = self.session
        self._append(self.results_path, [ordered])
        self._done.add(row_key(ordered))
        self.write_csv()

    def write_layers(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append a model's per-layer breakdown, in one write; ``layer_count`` is filled in.

        Lines already in layers.jsonl for the same model (a batch a kill cut short) are
        removed first, so a model's breakdown is never partial or repeated.
        """
        rows = list(rows)
        lines_per_model = Counter(row["model"] for row in rows)
        ordered = [
            {
                column: lines_per_model[row["model"]]
                if column == "layer_count"
                else _clean(row[column])
                for column in LAYER_COLUMNS
            }
            for row in rows
        ]
        self._drop_layers(set(lines_per_model))
        self._append(self.layers_path, ordered)
        self._layer_models.update(lines_per_model)

    def _drop_layers(self, models: set[str]) -> None:
        if not self.layers_path.exists():
            return
        lines = self.layers_path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line)["model"] not in models]
        if len(kept) == len(lines):
            return
        temporary = self.layers_path.with_suffix(".jsonl.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write("".join(kept))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.layers_path)

    def write_epoch(self, line: Mapping[str, Any]) -> None:
        """Append one evaluation of a training run (every column of :data:`EPOCH_COLUMNS`)."""
        missing = set(EPOCH_COLUMNS) - set(line)
        extra = set(line) - set(EPOCH_COLUMNS)
        if missing or extra:
            raise ValueError(
                f"epoch columns differ: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        self._append(self.epochs_path, [{c: _clean(line[c]) for c in EPOCH_COLUMNS}])

    def write_csv(self) -> None:
        """Rewrite results.csv from results.jsonl (atomically)."""
        rows = read_jsonl(self.results_path)
        temporary = self.csv_path.with_suffix(".csv.tmp")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(ROW_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
        os.replace(temporary, self.csv_path)

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Write meta.json (atomically: a kill leaves the old or the new one)."""
        temporary = self.meta_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(temporary, self.meta_path)

    def write_traceback(self, what: str, error: BaseException) -> None:
        """Append ``error``'s whole traceback to ``errors.log``: the row keeps one line, the log
        keeps how it came about (``what`` names the row or run)."""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        with self.errors_path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {stamp} {what}\n{text}\n")

    def read_meta(self) -> dict[str, Any] | None:
        if not self.meta_path.exists():
            return None
        meta: dict[str, Any] = json.loads(self.meta_path.read_text(encoding="utf-8"))
        return meta

    @staticmethod
    def _append(path: Path, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _repair_tail(path: Path) -> None:
        # A kill during a write can leave a last line without its newline: drop that line so
        # the next append starts on a line of its own.
        if not path.exists() or path.stat().st_size == 0:
            return
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(cut)
