"""``list``, ``layers`` and ``run``: the zoo, one model's layers, and the throughput sweep."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.cli.options import (
    add_out,
    add_shard,
    add_threads,
    positive,
    resolve_shard,
    shard_is_auto,
    shard_out,
)
from bench.events import Event, ModelFinished, ModelStarted, Note, RowDone
from bench.schema import settings_text

__all__ = [
    "add_list_arguments",
    "run_list",
    "add_layers_arguments",
    "run_layers",
    "add_run_arguments",
    "run_run",
    "resolve_models",
    "build_plan",
    "SweepListener",
    "row_line",
]


# --- list -------------------------------------------------------------------------------------


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'vgg*'")


def run_list(args: argparse.Namespace) -> int:
    """List the registered models."""
    import zoo

    names = zoo.list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}: see `python -m bench list`")
    print(f"{'model':<16} {'family':<8} {'input':<10} {'classes':>7} {'paper params':>13}  summary")
    for name in names:
        card = zoo.get_card(name)
        shape = "x".join(str(d) for d in card.input_shape)
        params = f"{card.paper.params:,}" if card.paper and card.paper.params else "-"
        columns = f"{name:<16} {card.family:<8} {shape:<10} {card.num_classes:>7} {params:>13}"
        print(f"{columns}  {card.summary}")
    return 0


# --- layers -----------------------------------------------------------------------------------


def add_layers_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model name (see `list`)")
    parser.add_argument(
        "--times",
        action="store_true",
        help="time each paper layer's forward and backward in a training step (forward only "
        "with --mode infer; module hooks, in steps of their own) and hold their sum against "
        "the step's own clock",
    )
    parser.add_argument(
        "--mode", default="train", choices=["train", "infer"], help="--times: the step (train)"
    )
    parser.add_argument(
        "--memory-format",
        default="contiguous",
        choices=["contiguous", "channels_last"],
        help="--times: the inputs' and weights' layout (contiguous)",
    )
    parser.add_argument(
        "--batch-size", type=positive(int), default=8, metavar="N", help="--times: batch (8)"
    )
    parser.add_argument(
        "--steps", type=positive(int), default=5, metavar="N", help="--times: timed steps (5)"
    )
    parser.add_argument("--device", default="cpu", help="--times: cpu or cuda (default cpu)")
    parser.add_argument(
        "--dtype", default="fp32", help="--times: fp32, bf16_autocast or bf16 (default fp32)"
    )
    add_threads(parser)


def run_layers(args: argparse.Namespace) -> int:
    """Print one model's layers by the paper's names, each with its modules beneath: output
    shapes, parameters, MACs, activations; with ``--times``, each paper layer's time."""
    import zoo
    from bench.measure.counting import count_model, paper_layer_groups, uncounted_ops_text

    card = zoo.get_card(args.model)
    counts = count_model(zoo.get_model(args.model), card.input_shape, card.paper_names)
    if getattr(args, "times", False):
        return _print_layer_times(args, card, counts)
    width = max([len(layer.layer) + 2 for layer in counts.layers] + [12])
    print(
        f"{'#':>3} {'paper layer':<{width}} {'type':<18} {'output shape':<14} "
        f"{'params':>12} {'MACs':>15} {'new KiB':>9} {'calls':>5}"
    )
    for name, parts in paper_layer_groups(counts.layers):
        if len(parts) > 1 or parts[0].layer != name:
            _print_layer_line("", name, "", parts[-1].output_shape, parts, width)
        for part in parts:
            label = f"  {part.layer}" if (len(parts) > 1 or part.layer != name) else name
            _print_layer_line(str(part.index), label, part.type, part.output_shape, [part], width)
    print(
        "a paper layer's line sums its modules, indented beneath it; "
        "new KiB: the tensors a layer's own calls create, one sample, fp32 (an in-place ReLU "
        "or a view creates none; a layer called twice, both calls)"
    )
    print(
        f"{card.name}: input {'x'.join(map(str, card.input_shape))}; params {counts.params:,} "
        f"trainable ({counts.params_total:,} total); MACs {counts.macs_fvcore:,} per sample "
        f"(fvcore, {counts.macs_by_handles:,} of them by our LRN/RBF handles); "
        f"FLOPs {counts.flops:,} (FlopCounterMode); tensors the forward pass creates "
        f"{counts.activation_bytes / 2**20:.2f} MiB per sample (fp32, each storage once)"
    )
    if counts.skipped_ops:
        print(
            "not counted (elementwise/pooling, fvcore's convention), calls per forward pass: "
            f"{uncounted_ops_text(counts.skipped_ops)}"
        )
    return 0


def _print_layer_times(args: argparse.Namespace, card: Any, counts: Any) -> int:
    """`bench layers MODEL --times`: the table of `bench.measure.layer_times.time_layers`."""
    import torch

    import zoo
    from bench.measure.layer_times import ELEMENT_SIZES, time_layers

    if args.dtype not in ELEMENT_SIZES:
        raise ValueError(f"--dtype {args.dtype}: give one of {', '.join(ELEMENT_SIZES)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    times = time_layers(
        zoo.get_model(card.name),
        counts.layers,
        input_shape=card.input_shape,
        num_classes=card.num_classes,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        memory_format=args.memory_format,
        mode=args.mode,
        loss=zoo.criterion(card.name),
        steps=args.steps,
    )
    batch = times.batch_size
    width = max([len(layer.name) for layer in times.layers] + [12])
    print(
        f"{'paper layer':<{width}} {'fwd ms':>9} {'bwd ms':>9} {'MACs':>15} {'fwd bytes':>13} "
        f"{'FLOP/B':>7} {'fwd GFLOP/s':>11}"
    )
    for layer in times.layers:
        intensity = layer.intensity(batch)
        rate = layer.forward_gflops(batch)
        print(
            f"{layer.name:<{width}} {layer.forward_s * 1e3:>9.3f} {layer.backward_s * 1e3:>9.3f} "
            f"{layer.macs * batch:>15,} {layer.bytes:>13,} "
            f"{'-' if intensity is None else f'{intensity:.2f}':>7} "
            f"{'-' if rate is None else f'{rate:.1f}':>11}"
        )
    rest = times.hooked_step_s - times.layers_s
    step = "training" if args.mode == "train" else "inference"
    print(
        f"{card.name}, {args.dtype} {args.memory_format}, batch {batch}, {args.device}, medians "
        f"of {times.steps} {step} steps: MACs per batch, forward; bytes: inputs + outputs + "
        f"weights once, at {ELEMENT_SIZES[args.dtype]} bytes an element"
    )
    print(
        f"sum check: the layers add up to {times.layers_s * 1e3:.2f} ms = "
        f"{times.share_of_step:.0%} of the step's own median {times.step_s * 1e3:.2f} ms "
        f"(timed without hooks); with hooks a step took {times.hooked_step_s * 1e3:.2f} ms, "
        f"{rest * 1e3:.2f} ms of it outside the layers ("
        + ("loss, zero_grad, optimizer, hooks)" if args.mode == "train" else "hooks)")
    )
    return 0


def _print_layer_line(
    index: str,
    label: str,
    kind: str,
    shape: tuple[int, ...],
    parts: list[Any],
    width: int,
) -> None:
    dims = "x".join(str(d) for d in shape)
    params = sum(p.params for p in parts)
    macs = sum(p.macs for p in parts)
    kib = sum(p.activation_bytes for p in parts) / 1024
    calls = str(parts[0].calls) if len(parts) == 1 else ""
    print(
        f"{index:>3} {label:<{width}} {kind:<18} {dims:<14} "
        f"{params:>12,} {macs:>15,} {kib:>9.1f} {calls:>5}"
    )


# --- run --------------------------------------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``run`` (and ``all``): what to measure, how long, where to write."""
    _add_plan_axes(parser)
    _add_timing(parser)
    add_out(
        parser,
        "results folder (default: results/<run-id>); one that holds a run only with --resume",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip rows already in DIR (default DIR: the latest under results/)",
    )
    add_shard(
        parser,
        "measure only the I-th of N disjoint slices of the plan (I = 1..N), one per machine; "
        "auto: I and N from a Slurm job array, a Kubernetes Indexed Job or torchrun, into "
        "--out ROOT/shard-I-of-N; merge with `bench report DIR...` or `bench report ROOT`",
    )


def _add_plan_axes(parser: argparse.ArgumentParser) -> None:
    """The plan's axes: models × devices × batch sizes × dtypes × formats × modes."""
    from bench.sweep.plan import COMPILE_MODES, DTYPES, MEMORY_FORMATS, MODES

    axes = [
        ("--models", "PATTERN", ["*"], "model names or shell patterns (default: every model)"),
        ("--devices", "DEVICE", None, "cpu and/or cuda (default: cpu, plus cuda when present)"),
        (
            "--batch-sizes",
            "N",
            None,
            "batch sizes for every model and mode (default: per model, see the plan)",
        ),
        ("--dtypes", "DTYPE", None, f"{' '.join(DTYPES)} (default: fp32; --full: all)"),
        (
            "--memory-formats",
            "FORMAT",
            None,
            f"{' '.join(MEMORY_FORMATS)} (default: contiguous; --full: both)",
        ),
        ("--modes", "MODE", None, f"{' '.join(MODES)} (default: both)"),
        (
            "--compile",
            "MODE",
            None,
            f"{' '.join(COMPILE_MODES)}: eager and/or torch.compile modes, each its own row "
            "with its compile time (default: none, eager)",
        ),
    ]
    for flag, metavar, default, help in axes:
        parser.add_argument(flag, nargs="+", default=default, metavar=metavar, help=help)


def _add_timing(parser: argparse.ArgumentParser) -> None:
    """How the rows are measured: threads, timing length, passes, the long plan, --max-batch."""
    add_threads(parser)
    parser.add_argument(
        "--passes",
        type=positive(int),
        default=None,
        metavar="N",
        help="timing passes per row (default 2; 1: none again): once every row is measured, "
        "passes 2..N re-time each with a shorter timer (compiled rows and, in the short plan, "
        "ImageNet-sized rows excepted) and the row's pass_spread_rel, the spread of its "
        "passes' medians, is the run-to-run noise `bench compare` judges changes by",
    )
    parser.add_argument(
        "--layer-times",
        nargs="*",
        default=None,
        metavar="MODE",
        help="after a model's rows, time each of its layers (forward, and backward in train) "
        "in steps of their own, at each device and format's largest batch, into "
        "layer_times.jsonl: the MODEs given (train, infer), every mode without one, none: "
        "off (default: off; `all`: train)",
    )
    parser.add_argument("--min-steps", type=int, default=None, help="timed steps at least")
    parser.add_argument(
        "--min-time", type=float, default=None, metavar="SECONDS", help="timed seconds at least"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the long plan: all dtypes and formats, a batch sweep, longer timing",
    )
    parser.add_argument(
        "--max-batch",
        action="store_true",
        help="CUDA: also find and measure the largest batch that fits",
    )
    parser.add_argument(
        "--fastest-format",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bf16 autocast with channels_last, at each mode's largest batch, on "
        "each device with native bf16 (detected; none extra elsewhere); default: on in the "
        "short plan, off with --full (which measures every format)",
    )


# Variants whose network is another's (only the initialisation differs): every count and
# speed the harness measures is that model's, so the harness leaves them out unless named
# (their accuracy runs are another matter: `all` still trains them).
SAME_NETWORK = {
    "alexnet_mnist_kaiming": "alexnet_mnist",
    "alexnet_cifar_kaiming": "alexnet_cifar",
}


def resolve_models(patterns: Sequence[str]) -> tuple[str, ...]:
    """Model names from names and shell patterns, in order, each once; unknown: ``ValueError``."""
    import zoo

    chosen: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            names = zoo.list_models(pattern)
            if not names:
                raise ValueError(f"no model matches {pattern!r}: see `python -m bench list`")
        else:
            names = [zoo.get_card(pattern).name]  # unknown name: one line with close matches
        chosen.extend(n for n in names if n not in chosen)
    return tuple(chosen)


def build_plan(args: argparse.Namespace) -> Any:
    """The :class:`bench.sweep.plan.RunPlan` of ``run``'s arguments; ``ValueError`` on bad input."""
    import torch

    from bench.sweep.plan import MODES, RunPlan, parse_batch_size

    models = tuple(
        m for m in resolve_models(args.models) if m not in SAME_NETWORK or m in args.models
    )
    cuda = torch.cuda.is_available()
    if args.devices is None:
        devices: tuple[str, ...] = ("cpu", "cuda") if cuda else ("cpu",)
    else:
        devices = tuple(dict.fromkeys(args.devices))
        if "cuda" in devices and not cuda:
            raise ValueError("cuda requested but no CUDA device is available: use --devices cpu")
    if args.max_batch and "cuda" not in devices:
        raise ValueError("--max-batch needs a CUDA device (--devices cuda)")
    overrides: dict[str, Any] = {"devices": devices, "max_batch": args.max_batch}
    if getattr(args, "fastest_format", None) is not None:  # None: the preset's
        overrides["fastest_format"] = args.fastest_format
    if getattr(args, "passes", None) is not None:  # None: the preset's (2)
        overrides["passes"] = args.passes
    if args.batch_sizes is not None:
        overrides["batch_sizes"] = tuple(parse_batch_size(b) for b in args.batch_sizes)
    for option, field in (
        ("dtypes", "dtypes"),
        ("memory_formats", "memory_formats"),
        ("modes", "modes"),
        ("compile", "compiles"),
    ):
        if getattr(args, option, None) is not None:
            overrides[field] = tuple(dict.fromkeys(getattr(args, option)))
    if args.threads is not None:
        overrides["threads"] = args.threads
    layer_modes = getattr(args, "layer_times", None)
    if layer_modes is not None and layer_modes != ["none"]:
        modes = layer_modes or overrides.get("modes") or MODES
        overrides["layer_times"] = tuple(dict.fromkeys(modes))
    if args.shard is not None:
        overrides["shard"] = resolve_shard(args)
    preset = RunPlan.full if args.full else RunPlan.short
    return _with_timing(preset(models, **overrides), args.min_steps, args.min_time)


def _with_timing(plan: Any, min_steps: int | None, min_time: float | None) -> Any:
    """``plan`` with --min-steps/--min-time applied to both its timers."""
    if min_steps is None and min_time is None:
        return plan
    from bench.measure.timing import TimerSettings

    def adjust(timer: TimerSettings) -> TimerSettings:
        # replace, not a new TimerSettings: the time cap (max_time_s, floor_steps) stays
        return replace(
            timer,
            min_steps=min_steps if min_steps is not None else timer.min_steps,
            min_time_s=min_time if min_time is not None else timer.min_time_s,
            max_steps=max(timer.max_steps, min_steps or 0),
        )

    return replace(plan, timer=adjust(plan.timer), large_timer=adjust(plan.large_timer))


# What a run writes into its folder, from its start (meta.json, layers.jsonl) to its rows: a
# folder holding any of them holds a run, which only --resume may write into again.
RUN_FILES = ("meta.json", "results.jsonl", "layers.jsonl")


def resolve_out(args: argparse.Namespace) -> Path:
    """The results folder: --out (with --shard auto, the root holding the slice's folder,
    :func:`bench.cli.options.shard_out`), a new results/<run-id>, or with --resume the latest
    one.

    Without --resume, an --out that already holds a run is refused (a second run there would
    skip its rows and start meta.json afresh, losing the earlier sessions and their peaks).
    With --resume, any folder a killed run left continues, even one killed before its first
    row (meta.json, or nothing yet, but no results.jsonl); with --shard auto, also a slice's
    folder not yet started (a job array's task requeued runs the same command).
    """
    from bench.sweep.loop import new_run_dir

    out = shard_out(args, args.out)
    if out is not None:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file: give a results folder (new or existing)")
        # A requeued or retried task resumes its slice, started or not: auto names its folder.
        if args.resume and not out.is_dir() and not shard_is_auto(args):
            raise FileNotFoundError(
                f"--resume: {out} does not exist; give the folder of the run to continue"
            )
        if not args.resume and _holds_run(out):
            raise ValueError(
                f"--out {out} already holds a run: add --resume to continue it, "
                "or give a new folder"
            )
        return out
    if not args.resume:
        return new_run_dir(suffix=_shard_suffix(args))
    # The latest run of the same slice: another slice's folder holds other rows. A folder
    # killed before it wrote anything is empty, and still the latest run.
    pattern = f"*{_shard_suffix(args)}" if args.shard else "*"
    runs = sorted(
        p
        for p in Path("results").glob(pattern)
        if p.is_dir() and (_holds_run(p) or not any(p.iterdir()))
    )
    if not runs:
        raise FileNotFoundError(
            f"--resume: no results/<run-id>{_shard_suffix(args)} folder to resume; give --out DIR"
        )
    return runs[-1]


def _holds_run(folder: Path) -> bool:
    """True if ``folder`` holds what a run writes (:data:`RUN_FILES`), if only its start."""
    return any((folder / name).exists() for name in RUN_FILES)


def _shard_suffix(args: argparse.Namespace) -> str:
    shard = resolve_shard(args)
    return "" if shard is None else f"-shard{shard.index}of{shard.count}"


class SweepListener:
    """Renders the sweep's events: a bar per model on stderr and a line per row on stdout."""

    def __init__(self) -> None:
        self._bar: Any = None
        self.measured = 0  # rows measured (not skipped), error rows included
        self.noisy = 0  # of them, rows flagged noisy
        self.failed = 0  # of them, error rows

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        if isinstance(event, ModelStarted):
            self._bar = tqdm(
                total=event.rows, desc=event.model, unit="row", file=sys.stderr, leave=False
            )
        elif isinstance(event, RowDone):
            if not event.skipped:
                self.measured += 1
                self.noisy += event.row.get("noisy") is True
                self.failed += bool(event.row.get("error"))
            tqdm.write(row_line(event.row, event.skipped), file=sys.stdout)
            sys.stdout.flush()  # a line per row as it is measured, also into a pipe or a file
            if self._bar is not None:
                self._bar.update(1)
        elif isinstance(event, ModelFinished) and self._bar is not None:
            self._bar.close()
            self._bar = None
        elif isinstance(event, Note):
            tqdm.write(event.text, file=sys.stderr)


def row_line(row: dict[str, Any], skipped: bool) -> str:
    """A sweep row in one line: its settings and step time, or its error."""
    what = settings_text(row)
    if skipped:
        return f"{what}: already measured, skipped"
    if row.get("error"):
        return f"{what}: ERROR {row['error']}"
    gflops = row.get("achieved_gflops")
    p10, p90 = row.get("step_ms_p10"), row.get("step_ms_p90")
    spread = "" if p10 is None or p90 is None else f"p10 {p10:.2f}, p90 {p90:.2f}, "
    iqr = row.get("step_iqr_rel")
    spread += "" if iqr is None else f"IQR {iqr:.0%}{' NOISY' if row.get('noisy') else ''}, "
    return (
        f"{what}: {row['step_ms_median']:.2f} ms/step ({spread}n={row['steps_timed']})"
        + _phases_text(row)
        + f", {row['samples_per_s']:.1f} samples/s"
        + (f", {gflops:.1f} GFLOP/s" if gflops is not None else "")
        + f", peak {row['peak_mem_mib']:.0f} MiB"
        + (
            f" (analytic estimate {row['mem_estimate_mib']:.1f})"
            if row.get("mem_estimate_mib") is not None
            else ""
        )
        + (f", compiled in {row['compile_s']:.1f} s" if row.get("compile_s") is not None else "")
    )


def _phases_text(row: dict[str, Any]) -> str:
    """`` [fwd 1.00 + bwd 2.00 + opt 0.50 ms]`` for a training row, else ``""``."""
    phases = [("fwd", "forward_ms"), ("bwd", "backward_ms"), ("opt", "optimizer_ms")]
    if any(row.get(column) is None for _, column in phases):
        return ""
    return " [" + " + ".join(f"{short} {row[column]:.2f}" for short, column in phases) + " ms]"


def closing_line(out: Path, seconds: float, listener: SweepListener) -> str:
    """The run's last line: where, how long, how many rows were noisy and how many failed,
    and the load average at the start and at the end of this session (meta.json's)."""
    import json

    from bench.measure.timing import NOISY_IQR_REL

    try:
        meta = json.loads((out / "meta.json").read_text())
        session = meta["sessions"][-1] if meta.get("sessions") else meta
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        session = {}
    loads = (session.get("load_average_1m"), session.get("load_average_1m_end"))
    load = "/".join("?" if v is None else f"{v:.1f}" for v in loads)
    return (
        f"done in {seconds:.0f} s: {out}; {listener.noisy} of {listener.measured} rows noisy "
        f"(IQR over {NOISY_IQR_REL:.0%} of the median), {listener.failed} of "
        f"{listener.measured} failed; load average {load} (start/end)"
    )


def run_run(args: argparse.Namespace) -> int:
    """Measure models × devices × dtypes × formats × modes × batch sizes; exit 1 when every
    row this run measured failed (a CI job must not pass having measured nothing)."""
    from bench.sweep.loop import run_plan

    plan = build_plan(args)
    out = resolve_out(args)
    args.resolved_out = out  # for `all`, which reports this folder next
    _print_plan(plan, out)
    started = time.perf_counter()
    listener = SweepListener()
    try:
        run_plan(plan, out, listen=listener, resume=args.resume)
    except KeyboardInterrupt:
        print(
            f"interrupted: rows measured so far are in {out} (continue with --resume --out {out})",
            file=sys.stderr,
        )
        return 130
    print(closing_line(out, time.perf_counter() - started, listener), file=sys.stderr)
    if listener.measured and listener.failed == listener.measured:
        print(
            f"error: all {listener.measured} rows measured failed: their errors are above, "
            f"the tracebacks in {out / 'errors.log'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_plan(plan: Any, out: Path) -> None:
    """What ``run`` is about to do, on stderr: devices, the slice, a warning if cores are busy."""
    import torch

    from bench.measure.machine import load_average
    from bench.sweep.plan import default_threads

    if not torch.cuda.is_available():
        print("cuda: absent (no CUDA device); measuring on cpu", file=sys.stderr)
    print(
        f"plan {plan.label}: {len(plan.models)} models on {', '.join(plan.devices)}, "
        f"{plan.threads} threads, {plan.passes} timing pass{'es' if plan.passes > 1 else ''}; "
        f"writing {out}",
        file=sys.stderr,
    )
    if plan.fastest_format:
        from bench.measure.machine import native_bf16
        from bench.sweep.plan import FASTEST_FORMAT

        native = [d for d in plan.devices if native_bf16(d)]
        where = (
            f"on {', '.join(native)}, at each mode's largest batch"
            + (" (small-input models)" if plan.label == "short" else "")
            if native
            else "nowhere"
        )
        print(
            f"fastest format {'/'.join(FASTEST_FORMAT)} beside the plan's: {where} "
            "(native bf16; --no-fastest-format leaves it out)",
            file=sys.stderr,
        )
    if plan.shard is not None:
        from bench.sweep.loop import plan_rows

        whole = replace(plan, shard=None)
        total = sum(len(plan_rows(whole, m)) for m in plan.models)
        mine = sum(len(plan_rows(plan, m)) for m in plan.models)
        print(f"shard {plan.shard}: {mine} of the plan's {total} rows", file=sys.stderr)
    load, cores = load_average(), default_threads()
    if load is not None and plan.threads > 1 and load + plan.threads > cores + 0.5:
        print(
            f"warning: load average {load:.1f} on {cores} cores: other work competes for them, "
            f"and timings with {plan.threads} threads will suffer (--threads 1 is steadier)",
            file=sys.stderr,
        )
