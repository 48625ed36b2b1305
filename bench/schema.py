"""A results folder (see docs/ARCHITECTURE.md): its columns, the row key, and its writer.

The row, layer and epoch columns, which of them hold numbers, which settings say "which row is
this" (:func:`row_key`), a row's settings in words (:func:`settings_text`), a failure as a row's
one-line ``error`` (:func:`error_text`) and the one JSON-lines reader (:func:`read_jsonl`) are
defined here once, for the sweep, the training runs, ``bench compare``, the report and the CLI.
This module is the bottom of ``bench/``: it imports nothing of ``bench``, the zoo or torch (a
row's base is filled in by :func:`bench.measure.rows.base_row`).

Rows are appended as they are measured: each is one JSON line, written, flushed and fsynced
before the next measurement starts, so Ctrl-C or a kill loses nothing already measured.
``results.csv`` is regenerated from the JSON lines after every row (through a temporary file and
an atomic rename), so it is never half written. ``--resume`` reads the JSON lines back and skips
every row whose settings (:data:`KEY_COLUMNS`) are already present, error rows included.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
import os
import re
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ROW_COLUMNS",
    "ACCURACY_COLUMNS",
    "LAYER_COLUMNS",
    "LAYER_TIME_COLUMNS",
    "OVER_BUDGET_COLUMNS",
    "EPOCH_COLUMNS",
    "MEASURED_COLUMNS",
    "NUMERIC_COLUMNS",
    "NUMERIC_LAYER_COLUMNS",
    "NUMERIC_LAYER_TIME_COLUMNS",
    "NUMERIC_OVER_BUDGET_COLUMNS",
    "NUMERIC_EPOCH_COLUMNS",
    "SETTING_COLUMNS",
    "TRAINING_KEY_COLUMNS",
    "KEY_COLUMNS",
    "row_key",
    "key_value",
    "settings_text",
    "ERROR_CHARS",
    "one_line",
    "error_text",
    "timestamp",
    "shard_folder",
    "parse_shard_folder",
    "read_jsonl",
    "ResultsWriter",
]

log = logging.getLogger(__name__)

# The columns of results.jsonl / results.csv, in order (docs/ARCHITECTURE.md).
ROW_COLUMNS = (
    "model", "family", "input_shape", "num_classes", "device", "device_name", "dtype",
    "memory_format", "threads", "batch_size", "mode", "compile", "params", "params_total",
    "macs_fvcore", "flops", "train_flops", "uncounted_ops", "activation_elements", "weights_mib",
    "grads_mib", "optimizer_mib",
    "activations_mib", "peak_mem_mib", "peak_mem_method", "peak_mem_estimate_mib",
    "mem_estimate_mib", "mem_estimate_ratio",
    "step_ms_median", "step_ms_p10", "step_ms_p90", "step_iqr_rel", "noisy", "steps_timed",
    "pass_spread_rel", "samples_per_s", "achieved_gflops", "forward_ms", "backward_ms",
    "optimizer_ms", "compile_s", "compile_cache", "tf32", "max_batch", "torch_version",
    "git_commit", "session",
    "timestamp", "error",
) + (
    # Accuracy rows (mode "accuracy", bench.training.runs); null on the harness's rows.
    # data_source: which copy of a provisioned data set ("official …", or a CIFAR-10
    # image-folder copy with its SHA-256); null for an ImageFolder path. top5: null where the
    # data has five classes or fewer.
    "data", "data_source", "accuracy", "top5", "target_acc", "time_to_target_s", "budget_s",
    "epochs", "seed",
    # recipe_name: the alternative recipe a run was asked for (--recipe), null for its own.
    # augment: the training batches' augmentation (one of data.augment.AUGMENTS). length: the
    # run's length as asked, in words (bench.training.runs.run_length: "150016 samples", the
    # asked samples in whole batches; "3 passes"; "60 s" where a budget is the length; "within
    # 60 s" where one caps it; "or the target" where it stops there).
    # data_wait_s: of train_s, the seconds the loop waited for its next batch (rank 0's): where
    # it is a large share, data, not compute, was the limit. data_fed_per_s: images a second
    # the training data path fed one process alone, no model (bench.training.loop.feed_rate):
    # below the training's samples_per_s (per process), data was the limit.
    "recipe", "recipe_name", "augment", "length", "data_loading_in_timing", "data_on_clock",
    "data_setup_s", "train_s", "data_wait_s", "data_fed_per_s",
    "test_samples", "eval_dtype", "run", "samples_seen", "stopped_by", "curve_test_samples",
    # Training processes (torchrun): world_size 1 and backend null for one process.
    "world_size", "backend", "global_batch",
    # per_class_accuracy: {class name: top-1 on its test samples} at the end (a JSON object;
    # JSON text in results.csv). weights: what an evaluation of given weights loaded
    # ("torchvision:ResNet34_Weights.IMAGENET1K_V1"), null for a training run;
    # published_top1/5: those weights' ImageNet-1K accuracy as torchvision publishes it.
    "per_class_accuracy", "weights", "published_top1", "published_top5",
)  # fmt: skip
ACCURACY_COLUMNS = ROW_COLUMNS[ROW_COLUMNS.index("data") :]
LAYER_COLUMNS = (
    "model", "family", "index", "layer", "paper_layer", "type", "output_shape", "params", "macs",
    "activation_mib", "layer_count",
)  # fmt: skip
# layer_times.jsonl (``bench run --layer-times``): one line per module of a model's breakdown in
# one profiled step (bench.measure.layer_times), the step's settings first (its row key, as a
# row's), then the module's own forward and backward time (medians, ms; backward 0 in
# inference), its forward MACs per sample, its forward FLOPs (2 × MACs) and bytes moved
# (counting.layer_bytes) for the whole batch at the step's element size, and so its forward
# GFLOP/s (flops over forward_ms) and arithmetic intensity (flops over bytes, FLOP/byte; null
# without bytes); then the step's own median without hooks (step_ms), with hooks
# (hooked_step_ms), the modules' sum (layers_ms) and how many steps of each kind were timed.
LAYER_TIME_COLUMNS = (
    "model", "device", "dtype", "memory_format", "threads", "batch_size", "mode", "compile",
    "index", "layer", "paper_layer", "type", "forward_ms", "backward_ms", "macs", "flops",
    "bytes", "forward_gflops", "intensity", "step_ms", "hooked_step_ms", "layers_ms", "steps",
    "session", "timestamp",
)  # fmt: skip
# over_budget.jsonl: a run of an accuracy plan left out of a job with a budget (the main job's
# minutes, `bench all --job-budget-min`): its settings (its length as a row's), its predicted
# seconds and how they were predicted (bench.training.estimate), the seconds left of the budget
# when it was due, and the command that trains it.
OVER_BUDGET_COLUMNS = (
    "model", "recipe_name", "data", "device", "seed", "length", "predicted_s", "predicted",
    "left_s", "budget_s", "command", "timestamp",
)  # fmt: skip
# epochs.jsonl: one line per evaluation during training; ``run`` names the training run (the
# ``run`` column of its results row), so each run is one curve however many share a folder;
# ``test_samples``: how many test samples the line's accuracy is on (null: a line written before
# the column).
EPOCH_COLUMNS = (
    "run", "model", "recipe_name", "data", "seed", "world_size", "device", "epoch", "wall_s",
    "train_loss", "test_accuracy", "samples_per_s", "test_samples",
)  # fmt: skip
# What a sweep row measured; null on a row that failed (its ``error`` says why).
MEASURED_COLUMNS = (
    "weights_mib", "grads_mib", "optimizer_mib", "activations_mib", "peak_mem_mib",
    "peak_mem_method", "step_ms_median", "step_ms_p10", "step_ms_p90", "steps_timed",
    "samples_per_s", "achieved_gflops", "train_flops", "step_iqr_rel", "noisy", "forward_ms",
    "backward_ms", "optimizer_ms", "mem_estimate_mib", "mem_estimate_ratio", "compile_s",
    "compile_cache", "pass_spread_rel",
)  # fmt: skip
# The columns a reader takes as numbers, by table (the others are text, flags or mixed).
NUMERIC_COLUMNS = (
    "num_classes", "threads", "batch_size", "params", "params_total", "macs_fvcore", "flops",
    "train_flops", "weights_mib", "grads_mib", "optimizer_mib", "activations_mib",
    "peak_mem_mib", "peak_mem_estimate_mib", "step_ms_median", "step_ms_p10", "step_ms_p90",
    "steps_timed", "samples_per_s", "achieved_gflops", "max_batch", "accuracy", "top5",
    "target_acc",
    "mem_estimate_mib", "mem_estimate_ratio", "step_iqr_rel", "forward_ms", "backward_ms",
    "optimizer_ms", "compile_s", "activation_elements", "pass_spread_rel",
    "time_to_target_s", "budget_s", "epochs", "train_s", "data_wait_s", "data_fed_per_s",
    "world_size",
    "global_batch",
    "samples_seen", "curve_test_samples", "published_top1", "published_top5",
)  # fmt: skip
NUMERIC_LAYER_COLUMNS = ("index", "params", "macs", "activation_mib")
NUMERIC_LAYER_TIME_COLUMNS = (
    "threads", "batch_size", "index", "forward_ms", "backward_ms", "macs", "flops", "bytes",
    "forward_gflops", "intensity", "step_ms", "hooked_step_ms", "layers_ms", "steps",
)  # fmt: skip
NUMERIC_OVER_BUDGET_COLUMNS = ("seed", "predicted_s", "left_s", "budget_s")
NUMERIC_EPOCH_COLUMNS = (
    "world_size", "epoch", "wall_s", "train_loss", "test_accuracy", "samples_per_s",
    "test_samples",
)  # fmt: skip
# The settings that identify a row: --resume skips a row whose key is already written. A
# training (accuracy) row is also told apart by its data, seed and number of processes, and by
# what it trained and how it was scored: its recipe (an alternative's name), augmentation,
# length and evaluation dtype, so that a --full run and a short one, or two augmentations, of
# one model and seed are two rows.
SETTING_COLUMNS = (
    "model", "device", "dtype", "memory_format", "batch_size", "mode", "threads", "compile",
)  # fmt: skip
TRAINING_KEY_COLUMNS = (
    "data", "seed", "world_size", "recipe_name", "augment", "length", "eval_dtype",
)  # fmt: skip
KEY_COLUMNS = (*SETTING_COLUMNS, "max_batch", *TRAINING_KEY_COLUMNS)


def row_key(row: Mapping[str, Any], *, merge: bool = False) -> tuple[Any, ...]:
    """Which row ``row`` is: its settings of :data:`KEY_COLUMNS`, the one key ``--resume``,
    ``bench compare``, the sweep's later passes and ``bench report``'s merge compare rows by.

    Read alike from every folder: a row without ``compile`` (written before the column, or an
    accuracy row) ran eagerly, ``"none"``; numbers read back through pandas compare as the
    integers and nulls they were written as (``32.0`` is 32, NaN null). A ``--max-batch`` row
    matches whatever batch it found: its key has ``batch_size`` None and ``max_batch`` True;
    every other row has ``max_batch`` False.

    The training extension (:data:`TRAINING_KEY_COLUMNS`): an accuracy row is also told apart
    by its data, seed and number of training processes (``world_size``; a row from before that
    column ran one), its alternative recipe, augmentation, length and evaluation dtype, all null
    on the sweep's rows. An accuracy row from before the ``length`` column matches no run
    (``--resume`` trains it again) rather than one it may not be.

    ``merge``: the key under which ``bench report`` merges folders, where two folders' rows with
    one key collide. There a ``--max-batch`` row is the batch it found (its ``max_batch`` is not
    compared: it measured that batch like any other row), and each training run is a row of its
    own, told apart by its id, ``run`` (a re-run, or a budgeted and a full run of one model, are
    two rows; rows from before run ids, null, fall back to their settings).
    """
    values = {column: key_value(row.get(column)) for column in KEY_COLUMNS}
    values["compile"] = values["compile"] or "none"
    if row.get("mode") == "accuracy":
        values["world_size"] = values["world_size"] or 1
    if merge:
        values["max_batch"] = False
        training_run = row.get("run") if row.get("mode") == "accuracy" else None
        return (*values.values(), key_value(training_run))
    values["max_batch"] = _is_max(row)
    if values["max_batch"]:
        values["batch_size"] = None
    return tuple(values.values())


def key_value(value: Any) -> Any:
    """A setting as keys compare it: a float that is a whole number is that integer (pandas
    reads integer columns with nulls as floats), NaN is null."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value


def _is_max(row: Mapping[str, Any]) -> bool:
    """True for a ``--max-batch`` row (its ``max_batch`` set: 0 until the batch is found)."""
    value = key_value(row.get("max_batch"))
    return value is not None and value is not False


def settings_text(row: Mapping[str, Any], *, as_key: bool = False) -> str:
    """A row's settings in a few words, how the CLI, ``bench compare``, the report and
    ``errors.log`` name a row: ``vgg16 cpu fp32 contiguous train b=32 t=2``; its compile mode
    where it is not eager (``compile=max-autotune``); an accuracy row's data and seed, its
    processes where it ran several, its alternative recipe, augmentation (not ``none``),
    evaluation dtype where it is not the training's, and length (``data=cifar10 seed=0
    world_size=2 augment=flip 150016 samples``); nulls left out. A
    ``--max-batch`` row's batch reads ``b=256 (max)`` once found, ``b=max`` before; ``as_key``:
    the settings :func:`row_key` compares, where it reads ``b=max`` (rows matched by their key,
    as ``bench compare`` matches them, may have found different batches)."""
    batch = key_value(row.get("batch_size"))
    if _is_max(row):
        batch = "max" if as_key or not batch else f"{batch} (max)"
    words = [row.get(c) for c in ("model", "device", "dtype", "memory_format", "mode")]
    words.append(None if batch is None else f"b={batch}")
    compile = key_value(row.get("compile"))
    words.append(None if compile in (None, "none") else f"compile={compile}")
    threads = key_value(row.get("threads"))
    words.append(None if threads is None else f"t={threads}")
    for column in ("data", "seed", "world_size"):
        value = key_value(row.get(column))
        if value is not None and not (column == "world_size" and value == 1):
            words.append(f"{column}={value}")
    if row.get("recipe_name"):
        words.append(f"recipe={row['recipe_name']}")
    if row.get("augment") not in (None, "none"):
        words.append(f"augment={row['augment']}")
    if row.get("eval_dtype") not in (None, row.get("dtype")):
        words.append(f"eval_dtype={row['eval_dtype']}")
    words.append(row.get("length"))
    return " ".join(str(word) for word in words if word is not None)


# A row's ``error`` is cut here: the whole message and traceback go to errors.log.
ERROR_CHARS = 300


def one_line(error: BaseException) -> str:
    """``error``'s message in one line, as a row's ``error`` and the CLI's ``error: …`` show it:
    its first line (the rest of a library's message is detail for errors.log), white space
    folded; its type's name where it has no message."""
    lines = str(error).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(error).__name__


def error_text(error: BaseException, kind: str | None = None) -> str:
    """A failure as a row's ``error``: ``kind: message`` in one line (:func:`one_line`), at most
    :data:`ERROR_CHARS` characters. ``kind``: what failed, the exception's type unless given
    (``"out of memory"``); ``""``: a message that says it all."""
    message = one_line(error)
    if kind is None:
        kind = type(error).__name__ if str(error).strip() else ""
    return (f"{kind}: {message}" if kind else message)[:ERROR_CHARS]


def timestamp() -> str:
    """Now, as rows and meta.json record it: local time with its UTC offset, to the second."""
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def shard_folder(index: int, count: int) -> str:
    """``shard-2-of-4``: the folder of slice ``index`` of ``count`` under a root the slices
    share (``bench run --shard auto --out ROOT``), where ``bench report ROOT`` finds it."""
    return f"shard-{index}-of-{count}"


def parse_shard_folder(name: str) -> tuple[int, int] | None:
    """``(2, 4)`` for a folder named by :func:`shard_folder`; None for any other name."""
    match = re.fullmatch(r"shard-(\d+)-of-(\d+)", name)
    return (int(match[1]), int(match[2])) if match else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows (JSON objects, one a line) of a JSON-lines file; none if it does not exist.

    A last line cut short by a kill is left out, with a warning; any other line that is not a
    JSON object is a one-line ``ValueError`` naming it.
    """
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # a write interrupted mid-line
                log.warning("%s:%d: skipping a truncated last line", path, number)
                continue
            raise ValueError(f"{path}:{number} is not a JSON line ({error.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number} is not a JSON object (one row a line)")
        rows.append(row)
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


def _check_columns(what: str, line: Mapping[str, Any], columns: tuple[str, ...]) -> None:
    missing = set(columns) - set(line)
    extra = set(line) - set(columns)
    if missing or extra:
        raise ValueError(f"{what} columns differ: missing {sorted(missing)}, extra {sorted(extra)}")


def _csv_cell(value: Any) -> Any:
    # A mapping or list (per_class_accuracy) is JSON text in its cell; null is empty.
    if isinstance(value, (dict, list)):
        return json.dumps(value, allow_nan=False)
    return "" if value is None else value


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
        self.layer_times_path = self.folder / "layer_times.jsonl"
        self.over_budget_path = self.folder / "over_budget.jsonl"
        self.csv_path = self.folder / "results.csv"
        self.meta_path = self.folder / "meta.json"
        self.errors_path = self.folder / "errors.log"
        self._repair_tail(self.results_path)
        self._repair_tail(self.layers_path)
        self._repair_tail(self.epochs_path)
        self._repair_tail(self.layer_times_path)
        self._repair_tail(self.over_budget_path)
        self._done = {row_key(row) for row in read_jsonl(self.results_path)}
        self._layer_models = _complete_models(read_jsonl(self.layers_path))
        self._profiled = {row_key(line) for line in read_jsonl(self.layer_times_path)}

    def has_row(self, key: tuple[Any, ...]) -> bool:
        """True if a row with these settings (:func:`row_key`) is already written."""
        return key in self._done

    def has_layers(self, model: str) -> bool:
        """True if ``model``'s whole breakdown is written (not a batch a kill cut short)."""
        return model in self._layer_models

    def write_row(self, row: Mapping[str, Any]) -> None:
        """Append one row (every column of :data:`ROW_COLUMNS`), durably; regenerate the CSV."""
        _check_columns("row", row, ROW_COLUMNS)
        ordered = {column: _clean(row[column]) for column in ROW_COLUMNS}
        if ordered["session"] is None:
            ordered["session"] = self.session
        self._append(self.results_path, [ordered])
        self._done.add(row_key(ordered))
        self.write_csv()

    def update_rows(self, updates: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> None:
        """Set columns of rows already written: ``updates`` maps a row key (:func:`row_key`) to
        its new values (the last row written with that key takes them). results.jsonl is
        rewritten through a temporary file and a rename, so a kill leaves the old or the new
        one; then the CSV. What the sweep's later timing passes add (``pass_spread_rel``)."""
        unknown = {c for values in updates.values() for c in values} - set(ROW_COLUMNS)
        if unknown:
            raise ValueError(f"update_rows: unknown columns {sorted(unknown)}; see ROW_COLUMNS")
        rows = read_jsonl(self.results_path)
        last = {row_key(row): index for index, row in enumerate(rows)}
        for key, values in updates.items():
            if key in last:
                rows[last[key]].update({c: _clean(v) for c, v in values.items()})
        temporary = self.results_path.with_suffix(".jsonl.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.results_path)
        self.write_csv()

    def write_layers(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append a model's per-layer breakdown, in one write; ``layer_count`` is filled in, and
        ``paper_layer`` is the module path where a line has none.

        Lines already in layers.jsonl for the same model (a batch a kill cut short) are
        removed first, so a model's breakdown is never partial or repeated.
        """
        rows = [{"paper_layer": row["layer"], **row} for row in rows]
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

    def has_layer_times(self, key: tuple[Any, ...]) -> bool:
        """True if the step with these settings (:func:`row_key`) is profiled already."""
        return key in self._profiled

    def write_layer_times(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Append one profiled step's lines (every column of :data:`LAYER_TIME_COLUMNS`) in one
        write; a session's null ``session`` is filled in."""
        ordered = []
        for line in lines:
            _check_columns("layer time", line, LAYER_TIME_COLUMNS)
            ordered.append({c: _clean(line[c]) for c in LAYER_TIME_COLUMNS})
            if ordered[-1]["session"] is None:
                ordered[-1]["session"] = self.session
        self._append(self.layer_times_path, ordered)
        self._profiled.update(row_key(line) for line in ordered)

    def write_over_budget(self, line: Mapping[str, Any]) -> None:
        """Append a run left out of a plan with a budget (every column of
        :data:`OVER_BUDGET_COLUMNS`)."""
        _check_columns("over-budget run", line, OVER_BUDGET_COLUMNS)
        self._append(self.over_budget_path, [{c: _clean(line[c]) for c in OVER_BUDGET_COLUMNS}])

    def write_epoch(self, line: Mapping[str, Any]) -> None:
        """Append one evaluation of a training run (every column of :data:`EPOCH_COLUMNS`)."""
        _check_columns("epoch", line, EPOCH_COLUMNS)
        self._append(self.epochs_path, [{c: _clean(line[c]) for c in EPOCH_COLUMNS}])

    def write_csv(self) -> None:
        """Rewrite results.csv from results.jsonl (atomically)."""
        rows = read_jsonl(self.results_path)
        temporary = self.csv_path.with_suffix(".csv.tmp")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(ROW_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_cell(v) for k, v in row.items()})
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
