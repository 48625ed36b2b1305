"""The loop: models × devices × dtypes × memory formats × compile modes × modes × batch sizes
→ rows.

Each row is measured by :func:`measure_row` and written before the next one starts. Any
failure inside a row (out of memory, a dtype the device cannot run, a model that raises, a
CPU batch refused by the memory estimate) becomes that row's ``error``, its traceback goes to
the folder's ``errors.log``, and the run goes on. What the loop does is told to a
:data:`bench.events.Listener` (a model started, a row done, a model finished).
Ctrl-C (``KeyboardInterrupt``) stops the loop between two writes: every finished row is on
disk and ``meta.json`` records ``interrupted: true``.

With ``RunPlan.passes`` above 1 (both presets: 2), the rows are re-timed once all are written,
with a shorter timer, and each row's ``pass_spread_rel`` is the spread of its passes' medians
(:func:`pass_spread`): the run-to-run noise ``bench compare`` judges changes by
(:func:`_later_passes` says why and which rows).

``achieved_gflops`` = FLOPs per sample × batch / median step time: ``flops`` (forward) for an
inference row, ``train_flops`` for a training row, counted on the row's own training step
(forward and backward as autograd runs them: the first layer computes no input gradient).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zoo
from bench.events import Listener, ModelFinished, ModelStarted, Note, RowDone, silent
from bench.measure import memory
from bench.measure.counting import (
    Counts,
    count_model,
    count_step_flops,
)
from bench.measure.layer_times import LayerTimes, time_layers
from bench.measure.machine import Machine, describe, load_average, native_bf16
from bench.measure.rows import base_row
from bench.measure.timing import (
    TimerSettings,
    Timing,
    time_phased_steps,
    time_phased_steps_cuda,
    time_steps,
    time_steps_cuda,
)
from bench.measure.workload import Workload, cold_compile_cache, make_workload
from bench.schema import (
    MEASURED_COLUMNS,
    ResultsWriter,
    error_text,
    row_key,
    settings_text,
    timestamp,
)
from bench.sweep.plan import FASTEST_FORMAT, RunPlan

__all__ = [
    "RowSpec",
    "plan_rows",
    "measure_row",
    "find_max_batch",
    "run_plan",
    "train_rate",
    "new_run_dir",
    "pass_spread",
]

MAX_BATCH_LIMIT = 65_536  # --max-batch stops doubling here
# The phases a training row's step is split into (bench.measure.workload's train_marked).
PHASES = ("forward", "backward", "optimizer")


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
    compile: str = "none"  # torch.compile mode ("none": eager)

    def settings(self, threads: int) -> dict[str, Any]:
        """The row's settings columns (those of ``bench.schema.KEY_COLUMNS``)."""
        return dict(
            model=self.model, device=self.device, dtype=self.dtype,
            memory_format=self.memory_format, threads=threads,
            batch_size=self.batch_size, mode=self.mode, max_batch=self.max_batch,
            compile=self.compile,
        )  # fmt: skip

    def key(self, threads: int) -> tuple[Any, ...]:
        return row_key(self.settings(threads))


def plan_rows(plan: RunPlan, model: str) -> list[RowSpec]:
    """The rows ``plan`` measures for ``model``, in measuring order (only its ``shard``'s)."""
    card = zoo.get_card(model)
    rows = []
    for device in plan.devices:
        for dtype, memory_format, added in _formats(plan, device):
            batches_for = plan.fastest_batches if added else plan.batches_for
            for compile in plan.compiles:
                for mode in plan.modes:
                    placed = (model, device, dtype, memory_format, mode)
                    for batch in batches_for(card.input_shape, mode):
                        rows.append(RowSpec(*placed, batch, compile=compile))
                    if plan.max_batch and device == "cuda":
                        rows.append(RowSpec(*placed, 0, True, compile=compile))
    if plan.shard is not None:
        rows = [r for r in rows if plan.shard.holds(r.settings(plan.threads))]
    return rows


def _formats(plan: RunPlan, device: str) -> list[tuple[str, str, bool]]:
    """The (dtype, memory format, added) triples ``plan`` measures on ``device``: every dtype
    with every format, and with ``fastest_format`` :data:`bench.sweep.plan.FASTEST_FORMAT`
    where the device has native bf16 (``added``: at :meth:`RunPlan.fastest_batches` only)."""
    pairs = [(d, f) for d in plan.dtypes for f in plan.memory_formats]
    triples = [(d, f, False) for d, f in pairs]
    if plan.fastest_format and FASTEST_FORMAT not in pairs and native_bf16(device):
        triples.append((*FASTEST_FORMAT, True))
    return triples


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
    device = torch.device(spec.device)
    if device.type == "cpu" and counts is not None:
        _check_fits_cpu(model, spec, row, counts)
    work = _workload(model, spec, spec.batch_size)
    step = work.train if spec.mode == "train" else work.infer
    train_flops: int | None = None
    first_call_s: float | None = None
    try:
        if spec.compile != "none":
            with cold_compile_cache():
                first_call_s = _first_call_seconds(step, device)
        if spec.mode == "train":
            # The first warm-up step also counts the FLOPs of the step timed (untimed itself).
            train_flops = count_step_flops(step) // spec.batch_size
        for _ in range(timer.warmup - (spec.mode == "train")):
            step()
        peak, saved_bytes = _memory_step(work, step, spec.mode)
        timing = _time(work, spec.mode, dataclasses.replace(timer, warmup=0))  # warmed up above
        row.update(_memory_columns(work, spec.mode, saved_bytes))
        if spec.mode == "train" and counts is not None:
            row.update(_estimate_columns(work, spec, counts, peak))
    finally:
        if work.optimizer is not None:
            work.optimizer.zero_grad(set_to_none=True)  # free the gradients for the next row
    row.update(_timing_columns(spec, peak, timing, train_flops, counts))
    if first_call_s is not None:
        row.update(compile_s=compile_seconds(first_call_s, timing.median_ms), compile_cache="cold")
    return row


def compile_seconds(first_call_s: float, step_ms_median: float) -> float:
    """A compiled row's ``compile_s``: its first call's seconds less one steady step (the
    median timed one), so that what is left is tracing, code generation and the build."""
    return max(first_call_s - step_ms_median / 1e3, 0.0)


def _first_call_seconds(step: Callable[[], object], device: torch.device) -> float:
    """Seconds of ``step``'s first call, until its result is ready: a compiled step's compile
    time (tracing, inductor's code generation and the C++/Triton build) and one run."""
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _time(work: Workload, mode: str, timer: TimerSettings) -> Timing:
    """Time ``work``'s step; a training step split into its phases (forward, backward,
    optimizer), timed over the same steps as the whole."""
    cuda = work.device.type == "cuda"
    if mode == "train":
        if cuda:
            return time_phased_steps_cuda(work.train_marked, timer, device=work.device)
        return time_phased_steps(work.train_marked, timer)
    if cuda:
        return time_steps_cuda(work.infer, timer, device=work.device)
    return time_steps(work.infer, timer)


def _estimate_columns(
    work: Workload, spec: RowSpec, counts: Counts, peak: memory.PeakMemory
) -> dict[str, float]:
    """The analytical training-memory estimate (:func:`bench.measure.memory.estimate_train_bytes`)
    and the measured peak's ratio to it."""
    estimate = memory.estimate_train_bytes(
        model_bytes=memory.model_bytes(work.model),
        momentum_buffers=1,  # SGD with momentum: one buffer per trainable parameter
        activation_bytes_per_sample=counts.activation_bytes,
        activation_scale=0.5 if spec.dtype in ("bf16", "bf16_autocast") else 1.0,
        input_bytes_per_sample=work.inputs[0].numel() * work.inputs.element_size(),
        batch_size=spec.batch_size,
        index_bytes_per_sample=counts.index_bytes,
    )
    return dict(
        mem_estimate_mib=estimate / memory.MIB,
        mem_estimate_ratio=peak.peak_bytes / estimate if estimate else None,
    )


def _check_fits_cpu(model: nn.Module, spec: RowSpec, row: dict[str, Any], counts: Counts) -> None:
    """Refuse (:class:`bench.measure.memory.MemoryRefused`) a CPU batch whose estimated peak
    does not fit in memory; the estimate goes in ``row`` either way."""
    card = zoo.get_card(spec.model)
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


def _workload(model: nn.Module, spec: RowSpec, batch_size: int) -> Workload:
    card = zoo.get_card(spec.model)
    return make_workload(
        model, input_shape=card.input_shape, num_classes=card.num_classes,
        batch_size=batch_size, device=spec.device, dtype=spec.dtype,
        memory_format=spec.memory_format, mode=spec.mode,
        loss=zoo.criterion(spec.model), compile=spec.compile,
    )  # fmt: skip


def _memory_step(
    work: Workload, step: Callable[[], object], mode: str
) -> tuple[memory.PeakMemory, int]:
    """One untimed step after the warm-up: its peak memory and, when training, the bytes of
    the activations autograd saves (0 otherwise; the hooks only look, so the peak is the same)."""
    saved: list[int] = []

    def memory_step() -> None:
        if mode == "train":
            saved.append(memory.saved_activation_bytes(work.model, step))
        else:
            step()

    if work.device.type == "cuda":
        peak = memory.peak_cuda(memory_step, work.device)
    else:
        resident = memory.resident_tensor_bytes(
            work.model, work.optimizer, work.inputs, work.targets
        )
        peak = memory.peak_cpu(memory_step, resident)
    return peak, sum(saved)


def _memory_columns(work: Workload, mode: str, saved_bytes: int) -> dict[str, float]:
    """The model's share of a row's memory: weights, and when training gradients, optimizer
    state and the activations saved for the backward pass."""
    sizes = memory.model_bytes(work.model)
    if mode != "train":
        return dict(
            weights_mib=sizes.weights / memory.MIB,
            grads_mib=0.0,
            optimizer_mib=0.0,
            activations_mib=0.0,
        )
    assert work.optimizer is not None
    return dict(
        weights_mib=sizes.weights / memory.MIB,
        grads_mib=sizes.trainable / memory.MIB,
        optimizer_mib=memory.optimizer_bytes(work.optimizer) / memory.MIB,
        activations_mib=saved_bytes / memory.MIB,
    )


def _timing_columns(
    spec: RowSpec,
    peak: memory.PeakMemory,
    timing: Timing,
    train_flops: int | None,
    counts: Counts | None,
) -> dict[str, Any]:
    per_sample = train_flops if spec.mode == "train" else (counts.flops if counts else None)
    achieved = (
        None
        if per_sample is None
        else per_sample * spec.batch_size / (timing.median_ms / 1e3) / 1e9
    )
    return dict(
        peak_mem_mib=peak.peak_bytes / memory.MIB,
        peak_mem_method=peak.method,
        step_ms_median=timing.median_ms,
        step_ms_p10=timing.p10_ms,
        step_ms_p90=timing.p90_ms,
        step_iqr_rel=timing.iqr_rel,
        noisy=timing.noisy,
        steps_timed=timing.steps,
        samples_per_s=timing.samples_per_s(spec.batch_size),
        train_flops=train_flops,
        achieved_gflops=achieved,
        **{f"{phase}_ms": (timing.phases_ms or {}).get(phase) for phase in PHASES},
    )


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
    try:
        work = _workload(model, spec, batch)
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
    listen: Listener = silent,
    machine: Machine | None = None,
    resume: bool = False,
) -> Path:
    """Measure every row of ``plan`` into the results folder ``out``; returns ``out``.

    With ``resume``, rows whose settings are already in ``out/results.jsonl`` are skipped.
    ``machine`` defaults to :func:`bench.measure.machine.describe` (which measures the matmul peak).
    ``listen`` is told each model started and finished and each row done or skipped.
    """
    torch.set_num_threads(plan.threads)
    writer = ResultsWriter(out)
    machine = machine or describe(plan.devices, plan.threads)
    started = time.time()
    meta, session = _open_session(writer, plan, machine, resume)
    interrupted = True
    try:
        measured: list[tuple[RowSpec, dict[str, Any]]] = []
        for name in plan.models:
            measured += _run_model(plan, name, writer, machine, listen)
        _later_passes(plan, measured, writer, listen)
        interrupted = False
    finally:
        # Also on KeyboardInterrupt: the rows are already on disk; say how the run ended.
        session["finished"] = meta["finished"] = timestamp()
        session["duration_s"] = round(time.time() - started, 1)
        durations = (s.get("duration_s") or 0.0 for s in meta["sessions"])
        meta["duration_s"] = round(sum(durations), 1)
        session["interrupted"] = meta["interrupted"] = interrupted
        # The load that went with the run's last rows (the start's is load_average_1m).
        session["load_average_1m_end"] = meta["load_average_1m_end"] = load_average()
        writer.write_meta(meta)
        writer.write_csv()
    return out


def train_rate(model: str, device: str, dtype: str, memory_format: str, batch_size: int) -> float:
    """Samples/s of ``model``'s eager training step at this batch, dtype and memory format,
    timed as the default plan times a row, on CPU after its memory check; nothing is written.
    What an accuracy plan measures where a run's prediction would otherwise read another batch
    or format's rate (``bench.training.runs``). Raises as :func:`measure_row` does."""
    spec = RowSpec(model, device, dtype, memory_format, "train", batch_size)
    card = zoo.get_card(model)
    counts = count_model(zoo.get_model(model), card.input_shape, card.paper_names)
    timer = _row_timer(RunPlan(models=(model,)), spec)
    row = measure_row(zoo.get_model(model), spec, {}, timer, counts)
    _release(device)
    return float(row["samples_per_s"])


def _open_session(
    writer: ResultsWriter, plan: RunPlan, machine: Machine, resume: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write meta.json with this call as a new session; returns the meta and the session
    (listed in the meta's ``sessions``), which the caller completes when the run ends."""
    previous = writer.read_meta() if resume else None
    facts: dict[str, Any] = {
        "started": timestamp(),
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
        "peak_gflops_spread": machine.peak_gflops_spread,
        "peak_gflops_skipped": machine.peak_gflops_skipped,
        "peak_bandwidth_gbs": machine.peak_bandwidth_gbs,
        "peak_bandwidth_gbs_spread": machine.peak_bandwidth_gbs_spread,
        "cuda_tf32": machine.cuda_tf32,
        "hostname": machine.hostname,
        "load_average_1m": load_average(),  # at the start: above the core count, others compete
    }
    # Each run_plan call is a session with its own machine facts; rows name theirs. The
    # top-level keys stay the first session's (readers from before sessions existed).
    sessions = _earlier_sessions(previous)
    number = 1 + max((s["session"] for s in sessions), default=0)
    session = {"session": number, **facts}
    sessions.append(session)
    run_id = writer.folder.name
    meta = {**previous, "run_id": run_id} if previous else {"run_id": run_id, **facts}
    meta["sessions"] = sessions
    writer.session = number
    writer.write_meta(meta)
    return meta, session


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
    plan: RunPlan, name: str, writer: ResultsWriter, machine: Machine, listen: Listener
) -> list[tuple[RowSpec, dict[str, Any]]]:
    """Measure and write ``name``'s rows of ``plan`` (and its layer breakdown), skipping rows
    already written; returns the rows measured without an error, with their settings (what
    the later passes re-time)."""
    specs = plan_rows(plan, name)
    measured: list[tuple[RowSpec, dict[str, Any]]] = []
    if not specs:  # --shard: none of this model's rows are in the slice
        return measured
    listen(ModelStarted(name, len(specs)))
    counts, count_error = _count(plan, name, specs, writer)
    placed = _PlacedModel(name)
    for spec in specs:
        if writer.has_row(spec.key(plan.threads)):
            listen(RowDone(spec.settings(plan.threads), skipped=True))
            continue
        row = base_row(
            **dataclasses.asdict(spec), threads=plan.threads, counts=counts, machine=machine
        )
        row["activation_elements"] = counts.activation_elements if counts is not None else None
        if _measure_or_fail(plan, spec, placed, row, counts, writer) and count_error:
            row["error"] = count_error
        row["timestamp"] = timestamp()
        writer.write_row(row)
        listen(RowDone(row, skipped=False))
        if row["error"] is None:
            measured.append((spec, row))
    placed.discard()
    _release("cuda" if "cuda" in plan.devices else "cpu")
    if plan.layer_times and counts is not None:
        _profile_layers(plan, name, measured, counts, writer, listen)
    listen(ModelFinished(name))
    return measured


def profiled_steps(
    plan: RunPlan, measured: Sequence[tuple[RowSpec, dict[str, Any]]]
) -> list[tuple[RowSpec, dict[str, Any]]]:
    """The rows whose step ``--layer-times`` profiles among the rows measured: for each device,
    dtype, memory format and mode of ``plan.layer_times``, the largest batch measured eagerly
    (a ``--max-batch`` row is left out: its batch is the device's limit, not a step's)."""
    largest: dict[tuple[str, str, str, str], tuple[RowSpec, dict[str, Any]]] = {}
    for spec, row in measured:
        if spec.mode not in plan.layer_times or spec.compile != "none" or spec.max_batch:
            continue
        where = (spec.device, spec.dtype, spec.memory_format, spec.mode)
        if where not in largest or spec.batch_size > largest[where][0].batch_size:
            largest[where] = (spec, row)
    return list(largest.values())


def _profile_layers(
    plan: RunPlan,
    name: str,
    measured: Sequence[tuple[RowSpec, dict[str, Any]]],
    counts: Counts,
    writer: ResultsWriter,
    listen: Listener,
) -> None:
    """Profile ``name``'s steps (:func:`profiled_steps`) per layer on a model of their own,
    after its rows are timed, and append each to layer_times.jsonl; a failure is a note (its
    traceback in errors.log) and the run goes on. A step already profiled is skipped."""
    card = zoo.get_card(name)
    for spec, row in profiled_steps(plan, measured):
        warmup, steps = plan.layer_steps(row["step_ms_median"])
        settings = spec.settings(plan.threads)
        if writer.has_layer_times(row_key(settings)):
            continue
        try:
            times = time_layers(
                zoo.get_model(name), counts.layers, input_shape=card.input_shape,
                num_classes=card.num_classes, batch_size=spec.batch_size, device=spec.device,
                dtype=spec.dtype, memory_format=spec.memory_format, mode=spec.mode,
                loss=zoo.criterion(name), warmup=warmup, steps=steps,
            )  # fmt: skip
        except Exception as error:
            writer.write_traceback(f"{settings_text(settings)} (layer times)", error)
            listen(Note(f"{settings_text(settings)}: layer times failed, {_error_text(error)}"))
            continue
        finally:
            _release(spec.device)
        writer.write_layer_times(layer_time_lines(times, settings))
        listen(
            Note(
                f"{settings_text(settings)}: layers {times.layers_s * 1e3:.1f} ms = "
                f"{times.share_of_step:.0%} of the step's {times.step_s * 1e3:.1f} ms"
            )
        )


def layer_time_lines(times: LayerTimes, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """``times`` as layer_times.jsonl's lines (:data:`bench.schema.LAYER_TIME_COLUMNS`)."""
    keys = ("model", "device", "dtype", "memory_format", "threads", "batch_size", "mode")
    step = {key: settings[key] for key in keys}
    return [
        {
            **step,
            "compile": "none",
            "index": index,
            "layer": module.path,
            "paper_layer": module.paper_layer,
            "type": module.type,
            "forward_ms": module.forward_s * 1e3,
            "backward_ms": module.backward_s * 1e3,
            "macs": module.macs,
            "flops": 2 * module.macs * times.batch_size,
            "bytes": module.bytes,
            "forward_gflops": module.forward_gflops(times.batch_size),
            "intensity": module.intensity(times.batch_size),
            "step_ms": times.step_s * 1e3,
            "hooked_step_ms": times.hooked_step_s * 1e3,
            "layers_ms": times.layers_s * 1e3,
            "steps": times.steps,
            "session": None,
            "timestamp": timestamp(),
        }
        for index, module in enumerate(times.modules)
    ]


def _count(
    plan: RunPlan, name: str, specs: list[RowSpec], writer: ResultsWriter
) -> tuple[Counts | None, str | None]:
    """``name``'s counts, and its layer breakdown written, unless the rows and the breakdown are
    all written already. A model the counters cannot trace is still timed: then the counts are
    None and the error (its traceback in errors.log) is the rows' ``error``."""
    todo = any(not writer.has_row(s.key(plan.threads)) for s in specs)
    if not todo and writer.has_layers(name):
        return None, None
    card = zoo.get_card(name)
    try:
        counts = count_model(zoo.get_model(name), card.input_shape, card.paper_names)
    except Exception as error:
        writer.write_traceback(f"{name} counting", error)
        return None, error_text(error, "counting failed")
    if not writer.has_layers(name):
        writer.write_layers(
            {
                "model": name,
                "family": card.family,
                "index": layer.index,
                "layer": layer.layer,
                "paper_layer": layer.paper_layer,
                "type": layer.type,
                "output_shape": "x".join(str(d) for d in layer.output_shape),
                "params": layer.params,
                "macs": layer.macs,
                "activation_mib": layer.activation_mib,
            }  # fmt: skip
            for layer in counts.layers
        )
    return counts, None


class _PlacedModel:
    """The model the rows of one placement (device, dtype, memory format) share: built for the
    first, again when the placement changes or after a row that failed mid-step."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model: nn.Module | None = None
        self.placement: tuple[str, str, str] | None = None

    def for_row(self, spec: RowSpec) -> nn.Module:
        placement = (spec.device, spec.dtype, spec.memory_format)
        if self.model is None or self.placement != placement:
            self.model = None
            _release(spec.device)
            self.model = zoo.get_model(self.name)
            self.placement = placement
        return self.model

    def discard(self) -> None:
        self.model = None


def _measure_or_fail(
    plan: RunPlan,
    spec: RowSpec,
    placed: _PlacedModel,
    row: dict[str, Any],
    counts: Counts | None,
    writer: ResultsWriter,
) -> bool:
    """Measure ``spec`` into ``row``; True if it worked. A failure is the row's ``error`` (one
    line; the traceback goes to errors.log) and the run goes on."""
    try:
        model = placed.for_row(spec)
        timer = _row_timer(plan, spec)
        if spec.max_batch:
            spec = _find_max_batch(model, spec, row)
        measure_row(model, spec, row, timer, counts)
        return True
    except Exception as error:
        row["error"] = _error_text(error)
        writer.write_traceback(settings_text(row), error)
        if not isinstance(error, memory.MemoryRefused):  # refused before anything ran
            _clear_measurements(row)
            placed.discard()  # a model that failed mid-step may be in any state: rebuild it
        return False


def _row_timer(plan: RunPlan, spec: RowSpec) -> TimerSettings:
    """The timer of a row's first pass: the plan's (by input size on CPU; CUDA steps are short)."""
    card = zoo.get_card(spec.model)
    return plan.timer if spec.device == "cuda" else plan.timer_for(card.input_shape)


def pass_spread(medians_ms: Sequence[float]) -> float | None:
    """The spread between a row's timing passes: (largest − smallest median) over the mean of
    the medians; for two passes ``|m1 − m2| / ((m1 + m2) / 2)``. None below two passes."""
    if len(medians_ms) < 2:
        return None
    mean = sum(medians_ms) / len(medians_ms)
    return (max(medians_ms) - min(medians_ms)) / mean if mean > 0 else None


def _later_passes(
    plan: RunPlan,
    measured: list[tuple[RowSpec, dict[str, Any]]],
    writer: ResultsWriter,
    listen: Listener,
) -> None:
    """Passes 2..``plan.passes``: re-time the rows this session measured
    (:meth:`RunPlan.retimes`) once all of them are written, each with
    :meth:`RunPlan.pass_timer`, a model at a time (a row's passes 2..N one after another),
    and write each row's ``pass_spread_rel`` (:func:`pass_spread` of pass 1's median and the
    re-timed ones) into results.jsonl.

    Why after the whole sweep: runs differ by more than the spread of the steps within one
    (the load of a shared machine changes over minutes), and a re-timing minutes after pass 1
    sees such changes; one right after it would not. The row's headline numbers (median,
    percentiles, IQR, phases, samples/s) stay pass 1's, the longer timing. A re-timing that
    fails leaves the row's spread null (its traceback in errors.log); Ctrl-C keeps the models
    whose spreads are written."""
    if plan.passes < 2:
        return
    rows = [
        (spec, row)
        for spec, row in measured
        if plan.retimes(zoo.get_card(spec.model).input_shape, spec.compile)
    ]
    left_out = len(measured) - len(rows)
    which = "pass 2" if plan.passes == 2 else f"passes 2-{plan.passes}"
    listen(
        Note(
            f"{which}: re-timing {len(rows)} rows with a shorter timer (the spread between "
            "passes is bench compare's run-to-run noise)"
            + (f"; {left_out} rows not re-timed (compiled or ImageNet-sized)" if left_out else "")
        )
    )
    by_model: dict[str, list[tuple[RowSpec, dict[str, Any]]]] = {}
    for spec, row in rows:
        by_model.setdefault(spec.model, []).append((spec, row))
    spreads: list[float] = []
    for name, group in by_model.items():
        placed = _PlacedModel(name)
        updates: dict[tuple[Any, ...], dict[str, Any]] = {}
        for spec, row in group:
            medians = [row["step_ms_median"]]
            for _ in range(plan.passes - 1):
                median = _retime_or_fail(plan, spec, placed, row, writer, listen)
                if median is None:
                    break
                medians.append(median)
            spread = pass_spread(medians) if len(medians) == plan.passes else None
            updates[row_key(row)] = {"pass_spread_rel": spread}
            if spread is not None:
                spreads.append(spread)
        placed.discard()
        _release(group[0][0].device)
        writer.update_rows(updates)
    if spreads:
        ordered = sorted(spreads)
        listen(
            Note(
                f"spread between passes over {len(ordered)} rows: median "
                f"{ordered[len(ordered) // 2]:.1%}, largest {ordered[-1]:.1%}"
            )
        )


def _retime_or_fail(
    plan: RunPlan,
    spec: RowSpec,
    placed: _PlacedModel,
    row: dict[str, Any],
    writer: ResultsWriter,
    listen: Listener,
) -> float | None:
    """One later pass of a row: its median step in ms, with :meth:`RunPlan.pass_timer`; None
    if it failed (traceback in errors.log, a note; the row keeps pass 1's numbers)."""
    work = None
    try:
        model = placed.for_row(spec)
        work = _workload(model, spec, row["batch_size"])  # a --max-batch row: the batch found
        return _time(work, spec.mode, plan.pass_timer(_row_timer(plan, spec))).median_ms
    except Exception as error:
        writer.write_traceback(f"{settings_text(row)} (a later timing pass)", error)
        listen(Note(f"{settings_text(row)}: later timing pass failed, {_error_text(error)}"))
        placed.discard()
        return None
    finally:
        if work is not None and work.optimizer is not None:
            work.optimizer.zero_grad(set_to_none=True)


def _find_max_batch(model: nn.Module, spec: RowSpec, row: dict[str, Any]) -> RowSpec:
    """``spec`` at the largest batch that fits (written in ``row``), for a --max-batch row."""
    largest = find_max_batch(functools.partial(_cuda_fits, model, spec), limit=MAX_BATCH_LIMIT)
    if largest == 0:
        raise torch.cuda.OutOfMemoryError("batch 1 does not fit")
    row["batch_size"] = row["max_batch"] = largest
    return dataclasses.replace(spec, batch_size=largest)


def _error_text(error: Exception) -> str:
    """A failed row's ``error`` (:func:`bench.schema.error_text`): what failed named for the
    two failures a sweep expects, the exception's type for the rest."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return error_text(error, "out of memory")
    if isinstance(error, memory.MemoryRefused):
        return error_text(error, "")  # its message names the refusal and the estimate
    return error_text(error)


def _clear_measurements(row: dict[str, Any]) -> None:
    for column in MEASURED_COLUMNS:
        row[column] = None


def _release(device: str) -> None:
    gc.collect()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
