"""The loop: models × devices × dtypes × memory formats × modes × batch sizes → rows.

Each row is measured by :func:`measure_row` and written before the next one starts. Any
failure inside a row (out of memory, a dtype the device cannot run, a model that raises, a
CPU batch refused by the memory estimate) becomes that row's ``error``; the run goes on.
Ctrl-C (``KeyboardInterrupt``) stops the loop between two writes: every finished row is on
disk and ``meta.json`` records ``interrupted: true``.

``achieved_gflops`` = FLOPs per sample × batch / median step time: ``flops`` (forward) for an
inference row, ``train_flops`` for a training row, counted on the row's own training step
(forward and backward as autograd runs them: the first layer computes no input gradient).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

import zoo
from bench.measure import memory
from bench.measure.counting import Counts, count_model, count_step_flops, uncounted_ops_text
from bench.measure.machine import Machine, describe, load_average, row_tf32
from bench.measure.timing import TimerSettings, Timing, time_steps, time_steps_cuda
from bench.measure.workload import make_workload
from bench.schema import ACCURACY_COLUMNS, ResultsWriter, row_key
from bench.sweep.plan import RunPlan
from bench.training.recipes import loss_fn, recipe_for

__all__ = [
    "RowSpec",
    "Progress",
    "plan_rows",
    "base_row",
    "measure_row",
    "find_max_batch",
    "run_plan",
    "new_run_dir",
]

log = logging.getLogger(__name__)

MAX_BATCH_LIMIT = 65_536  # --max-batch stops doubling here


@dataclass(frozen=True)
class RowSpec:
    """The settings of one row."""

    model: str
    device: str
    dtype: str
    memory_format: str
    mode: str
    batch_size: int
    max_batch: bool = False  # find the largest batch that fits first (CUDA, --max-batch)

    def settings(self, threads: int) -> dict[str, Any]:
        """The row's settings columns (those of ``bench.schema.KEY_COLUMNS``)."""
        return dict(
            model=self.model, device=self.device, dtype=self.dtype,
            memory_format=self.memory_format, threads=threads,
            batch_size=self.batch_size, mode=self.mode, max_batch=self.max_batch,
        )  # fmt: skip

    def key(self, threads: int) -> tuple[Any, ...]:
        return row_key(self.settings(threads))


class Progress(Protocol):
    """What the loop reports; the CLI draws bars and lines from it (library code prints nothing)."""

    def model_started(self, model: str, rows: int) -> None: ...

    def row_done(self, row: dict[str, Any], skipped: bool) -> None: ...

    def model_finished(self, model: str) -> None: ...


def plan_rows(plan: RunPlan, model: str) -> list[RowSpec]:
    """The rows ``plan`` measures for ``model``, in measuring order (only its ``shard``'s)."""
    card = zoo.get_card(model)
    rows = []
    for device in plan.devices:
        for dtype in plan.dtypes:
            for memory_format in plan.memory_formats:
                for mode in plan.modes:
                    for batch in plan.batches_for(card.input_shape, mode):
                        rows.append(RowSpec(model, device, dtype, memory_format, mode, batch))
                    if plan.max_batch and device == "cuda":
                        rows.append(RowSpec(model, device, dtype, memory_format, mode, 0, True))
    if plan.shard is not None:
        rows = [r for r in rows if plan.shard.holds(r.settings(plan.threads))]
    return rows


def base_row(
    spec: RowSpec, counts: Counts | None, threads: int, machine: Machine
) -> dict[str, Any]:
    """A row with the settings and counts filled in and every measurement null."""
    card = zoo.get_card(spec.model)
    return {
        "model": spec.model,
        "family": card.family,
        "input_shape": "x".join(str(d) for d in card.input_shape),
        "num_classes": card.num_classes,
        "device": spec.device,
        "device_name": machine.gpu if spec.device == "cuda" else machine.cpu_model,
        "dtype": spec.dtype,
        "memory_format": spec.memory_format,
        "threads": threads,
        "batch_size": spec.batch_size,
        "mode": spec.mode,
        "params": counts.params if counts else None,
        "params_total": counts.params_total if counts else None,
        "macs_fvcore": counts.macs_fvcore if counts else None,
        "flops": counts.flops if counts else None,
        "train_flops": None,
        "uncounted_ops": uncounted_ops_text(counts.skipped_ops) if counts else None,
        "weights_mib": None,
        "grads_mib": None,
        "optimizer_mib": None,
        "activations_mib": None,
        "peak_mem_mib": None,
        "peak_mem_method": None,
        "peak_mem_estimate_mib": None,
        "step_ms_median": None,
        "step_ms_p10": None,
        "step_ms_p90": None,
        "steps_timed": None,
        "samples_per_s": None,
        "achieved_gflops": None,
        "tf32": row_tf32(spec.device, spec.dtype),
        # The largest batch that fits, on a --max-batch row only (0 until found).
        "max_batch": 0 if spec.max_batch else None,
        "torch_version": machine.torch_version,
        "git_commit": machine.git_commit,
        "session": None,
        "timestamp": _now(),
        "error": None,
        **dict.fromkeys(ACCURACY_COLUMNS),
    }


def measure_row(
    model: nn.Module,
    spec: RowSpec,
    row: dict[str, Any],
    timer: TimerSettings,
    counts: Counts | None,
) -> dict[str, Any]:
    """Time and measure the memory of ``spec`` on ``model``; fill ``row`` and return it.

    Raises on failure (the caller turns that into an ``error`` row). On CPU the batch is
    first checked against ``MemAvailable`` (:class:`bench.measure.memory.MemoryRefused`).
    """
    card = zoo.get_card(spec.model)
    device = torch.device(spec.device)
    if device.type == "cpu" and counts is not None:
        element_scale = 0.5 if spec.dtype == "bf16" else 1.0
        sizes = memory.model_bytes(model)
        # A model an earlier row of this placement ran is already bf16: do not halve it twice.
        already_cast = any(p.dtype == torch.bfloat16 for p in model.parameters())
        weight_scale = 1.0 if already_cast else element_scale
        estimate = memory.estimate_peak_bytes(
            weight_bytes=int(sizes.weights * weight_scale),
            trainable_bytes=int(sizes.trainable * weight_scale),
            activation_bytes_per_sample=counts.activation_bytes,
            largest_activation_per_sample=counts.largest_activation_bytes,
            input_bytes_per_sample=4 * _numel(card.input_shape),
            batch_size=spec.batch_size,
            mode=spec.mode,
            element_scale=element_scale,
        )
        row["peak_mem_estimate_mib"] = estimate / memory.MIB  # also on a refused row
        memory.check_fits_cpu(estimate)
    work = make_workload(
        model,
        input_shape=card.input_shape,
        num_classes=card.num_classes,
        batch_size=spec.batch_size,
        device=device,
        dtype=spec.dtype,
        memory_format=spec.memory_format,
        mode=spec.mode,
        loss=loss_fn(recipe_for(spec.model)),
    )
    step = work.train if spec.mode == "train" else work.infer
    train_flops: int | None = None
    try:
        if spec.mode == "train":
            # The first warm-up step also counts the FLOPs of the step timed (untimed itself).
            train_flops = count_step_flops(step) // spec.batch_size
        for _ in range(timer.warmup - (spec.mode == "train")):
            step()
        # One untimed step after the warm-up measures memory: its peak and, when training,
        # the activations autograd saves (the hooks only look, so they do not change the peak).
        saved: list[int] = []

        def memory_step() -> None:
            if spec.mode == "train":
                saved.append(memory.saved_activation_bytes(work.model, step))
            else:
                step()

        if device.type == "cuda":
            peak = memory.peak_cuda(memory_step, device)
        else:
            resident = memory.resident_tensor_bytes(
                work.model, work.optimizer, work.inputs, work.targets
            )
            peak = memory.peak_cpu(memory_step, resident)
        timed = dataclasses.replace(timer, warmup=0)  # warmed up above
        timing: Timing = (
            time_steps_cuda(step, timed, device=device)
            if device.type == "cuda"
            else time_steps(step, timed)
        )
        sizes = memory.model_bytes(work.model)
        row["weights_mib"] = sizes.weights / memory.MIB
        if spec.mode == "train":
            assert work.optimizer is not None
            row["grads_mib"] = sizes.trainable / memory.MIB
            row["optimizer_mib"] = memory.optimizer_bytes(work.optimizer) / memory.MIB
            row["activations_mib"] = saved[0] / memory.MIB
        else:
            row["grads_mib"] = row["optimizer_mib"] = row["activations_mib"] = 0.0
    finally:
        if work.optimizer is not None:
            work.optimizer.zero_grad(set_to_none=True)  # free the gradients for the next row
    row["peak_mem_mib"] = peak.peak_bytes / memory.MIB
    row["peak_mem_method"] = peak.method
    row["step_ms_median"] = timing.median_ms
    row["step_ms_p10"] = timing.p10_ms
    row["step_ms_p90"] = timing.p90_ms
    row["steps_timed"] = timing.steps
    row["samples_per_s"] = timing.samples_per_s(spec.batch_size)
    row["train_flops"] = train_flops
    per_sample = train_flops if spec.mode == "train" else (counts.flops if counts else None)
    if per_sample is not None:
        row["achieved_gflops"] = per_sample * spec.batch_size / (timing.median_ms / 1e3) / 1e9
    return row


def find_max_batch(fits: Callable[[int], bool], limit: int = MAX_BATCH_LIMIT) -> int:
    """The largest batch for which ``fits(batch)`` holds: double from 1, then bisect.

    Returns 0 if not even batch 1 fits. Assumes that a batch fits whenever a larger one does.
    """
    if not fits(1):
        return 0
    good, bad = 1, None
    while bad is None:
        candidate = good * 2
        if candidate > limit:
            return good
        if fits(candidate):
            good = candidate
        else:
            bad = candidate
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def _cuda_fits(model: nn.Module, spec: RowSpec, batch: int) -> bool:
    card = zoo.get_card(spec.model)
    try:
        work = make_workload(
            model, input_shape=card.input_shape, num_classes=card.num_classes,
            batch_size=batch, device=spec.device, dtype=spec.dtype,
            memory_format=spec.memory_format, mode=spec.mode,
            loss=loss_fn(recipe_for(spec.model)),
        )  # fmt: skip
        step = work.train if spec.mode == "train" else work.infer
        step()
        step()  # the second training step holds the optimizer state too
        torch.cuda.synchronize()
        if work.optimizer is not None:
            work.optimizer.zero_grad(set_to_none=True)
        return True
    except torch.cuda.OutOfMemoryError:
        for parameter in model.parameters():
            parameter.grad = None
        return False
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def new_run_dir(root: Path = Path("results"), suffix: str = "") -> Path:
    """``root/<run-id>``, the run id being the start time (``20260131-142501``) and ``suffix``
    (``-shard2of4``: the folders of one sweep's slices keep apart when they are merged)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + suffix
    folder = root / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = root / f"{stamp}-{suffix}"
    return folder


def run_plan(
    plan: RunPlan,
    out: Path,
    *,
    progress: Progress | None = None,
    machine: Machine | None = None,
    resume: bool = False,
) -> Path:
    """Measure every row of ``plan`` into the results folder ``out``; returns ``out``.

    With ``resume``, rows whose settings are already in ``out/results.jsonl`` are skipped.
    ``machine`` defaults to :func:`bench.measure.machine.describe` (which measures the matmul peak).
    """
    torch.set_num_threads(plan.threads)
    writer = ResultsWriter(out)
    machine = machine or describe(plan.devices, plan.threads)
    started = time.time()
    previous = writer.read_meta() if resume else None
    meta: dict[str, Any] = {
        "run_id": out.name,
        "started": _now(),
        "finished": None,
        "duration_s": None,
        "interrupted": None,
        "plan": plan.as_dict(),
        "cpu_model": machine.cpu_model,
        "cpu_flags": list(machine.cpu_flags),
        "gpu": machine.gpu,
        "threads": machine.threads,
        "torch_version": machine.torch_version,
        "torchvision_version": machine.torchvision_version,
        "git_commit": machine.git_commit,
        "peak_gflops": machine.peak_gflops,
        "peak_gflops_skipped": machine.peak_gflops_skipped,
        "cuda_tf32": machine.cuda_tf32,
        "hostname": machine.hostname,
        "load_average_1m": load_average(),  # at the start: above the core count, others compete
    }
    # Each run_plan call is a session with its own machine facts; rows name theirs. The
    # top-level keys stay the first session's (readers from before sessions existed).
    sessions = _earlier_sessions(previous)
    number = 1 + max((s["session"] for s in sessions), default=0)
    session = {"session": number, **{k: v for k, v in meta.items() if k != "run_id"}}
    sessions.append(session)
    if previous:
        meta = {**previous, "run_id": out.name}
    meta["sessions"] = sessions
    writer.session = number
    writer.write_meta(meta)
    interrupted = True
    try:
        for name in plan.models:
            _run_model(plan, name, writer, machine, progress)
        interrupted = False
    finally:
        # Also on KeyboardInterrupt: the rows are already on disk; say how the run ended.
        session["finished"] = meta["finished"] = _now()
        session["duration_s"] = round(time.time() - started, 1)
        meta["duration_s"] = round(sum(s.get("duration_s") or 0.0 for s in sessions), 1)
        session["interrupted"] = meta["interrupted"] = interrupted
        writer.write_meta(meta)
        writer.write_csv()
    return out


def _earlier_sessions(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The sessions ``meta.json`` lists; a folder written before sessions existed is one."""
    if not previous:
        return []
    listed = previous.get("sessions")
    if isinstance(listed, list):
        return [
            dict(s) for s in listed if isinstance(s, dict) and isinstance(s.get("session"), int)
        ]
    return [{"session": 1, **{k: v for k, v in previous.items() if k != "run_id"}}]


def _run_model(
    plan: RunPlan,
    name: str,
    writer: ResultsWriter,
    machine: Machine,
    progress: Progress | None,
) -> None:
    card = zoo.get_card(name)
    specs = plan_rows(plan, name)
    if not specs:  # --shard: none of this model's rows are in the slice
        return
    if progress:
        progress.model_started(name, len(specs))
    todo = [s for s in specs if not writer.has_row(s.key(plan.threads))]
    counts: Counts | None = None
    count_error: str | None = None
    if todo or not writer.has_layers(name):
        try:
            counts = count_model(zoo.get_model(name), card.input_shape)
        except Exception as error:  # a model fvcore cannot trace still gets timed
            log.debug("counting %s failed", name, exc_info=True)
            count_error = f"counting failed: {_one_line(error)}"
    if counts is not None and not writer.has_layers(name):
        writer.write_layers(
            {
                "model": name,
                "family": card.family,
                "index": layer.index,
                "layer": layer.layer,
                "type": layer.type,
                "output_shape": "x".join(str(d) for d in layer.output_shape),
                "params": layer.params,
                "macs": layer.macs,
                "activation_mib": layer.activation_mib,
            }  # fmt: skip
            for layer in counts.layers
        )
    model: nn.Module | None = None
    placed: tuple[str, str, str] | None = None
    for spec in specs:
        key = spec.key(plan.threads)
        if writer.has_row(key):
            if progress:
                progress.row_done(spec.settings(plan.threads), skipped=True)
            continue
        row = base_row(spec, counts, plan.threads, machine)
        try:
            if model is None or placed != (spec.device, spec.dtype, spec.memory_format):
                model = None
                _release(spec.device)
                model = zoo.get_model(name)
                placed = (spec.device, spec.dtype, spec.memory_format)
            current = model
            timer = plan.timer if spec.device == "cuda" else plan.timer_for(card.input_shape)
            if spec.max_batch:
                largest = find_max_batch(
                    functools.partial(_cuda_fits, current, spec), limit=MAX_BATCH_LIMIT
                )
                if largest == 0:
                    raise torch.cuda.OutOfMemoryError("batch 1 does not fit")
                spec = RowSpec(**{**spec.__dict__, "batch_size": largest})
                row["batch_size"] = row["max_batch"] = largest
            measure_row(current, spec, row, timer, counts)
            if count_error:
                row["error"] = count_error
        except torch.cuda.OutOfMemoryError as error:
            row["error"] = f"out of memory: {_one_line(error)}"
            _clear_measurements(row)
            model = None
        except memory.MemoryRefused as error:
            row["error"] = _one_line(error)
        except Exception as error:
            log.debug("row %s failed", spec, exc_info=True)
            row["error"] = f"{type(error).__name__}: {_one_line(error)}"
            _clear_measurements(row)
            model = None  # a model that failed mid-step may be in any state: rebuild it
        row["timestamp"] = _now()
        writer.write_row(row)
        if progress:
            progress.row_done(row, skipped=False)
    model = None
    _release("cuda" if "cuda" in plan.devices else "cpu")
    if progress:
        progress.model_finished(name)


_MEASURED = (
    "weights_mib", "grads_mib", "optimizer_mib", "activations_mib", "peak_mem_mib",
    "peak_mem_method", "step_ms_median", "step_ms_p10", "step_ms_p90", "steps_timed",
    "samples_per_s", "achieved_gflops", "train_flops",
)  # fmt: skip


def _clear_measurements(row: dict[str, Any]) -> None:
    for column in _MEASURED:
        row[column] = None


def _release(device: str) -> None:
    gc.collect()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
