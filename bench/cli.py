"""``python -m bench``: the command line. Subcommands ``list``, ``layers``, ``run`` live here;
``train``, ``eval`` and ``report`` come from their own modules (see :data:`LAZY_SUBCOMMANDS`).

Adding a subcommand from another module: list its name and module in
:data:`LAZY_SUBCOMMANDS`, and give the module two functions, ``add_arguments(parser)`` (its
options) and ``run(args) -> int`` (the work; its docstring's first line is the help). A module
that registers several subcommands defines ``register_cli(register)`` instead and calls
``register(name, help=..., add_arguments=..., run=...)`` for each. The module is imported only
when its subcommand is the one asked for (so ``list`` stays fast), and only if it exists.

User errors (an unknown model, a bad batch size, ``cuda`` without a GPU, ...) are checked
before any work starts and end the program with one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

__all__ = ["Subcommand", "Register", "SUBCOMMANDS", "LAZY_SUBCOMMANDS", "register", "main"]

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Subcommand:
    """One ``python -m bench NAME``: its help line, options and body."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class Register(Protocol):
    def __call__(
        self,
        name: str,
        *,
        help: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], int],
    ) -> None: ...


SUBCOMMANDS: dict[str, Subcommand] = {}
# Subcommands defined elsewhere: name -> module with a register_cli(register) function.
LAZY_SUBCOMMANDS: dict[str, str] = {
    "train": "bench.training.runs",
    "eval": "bench.training.runs",
    "accuracy": "bench.training.runs",
    "report": "bench.report",
}


def register(
    name: str,
    *,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add subcommand ``name`` (a later registration of the same name replaces it)."""
    SUBCOMMANDS[name] = Subcommand(help=help, add_arguments=add_arguments, run=run)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------------------------
# list


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'vgg*'")


def _list_run(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------------------------------------
# layers


def _layers_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model name (see `list`)")


def _layers_run(args: argparse.Namespace) -> int:
    import zoo
    from bench.measure.counting import count_model, uncounted_ops_text

    card = zoo.get_card(args.model)
    counts = count_model(zoo.get_model(args.model), card.input_shape)
    width = max([len(layer.layer) for layer in counts.layers] + [5])
    print(
        f"{'#':>3} {'layer':<{width}} {'type':<18} {'output shape':<14} "
        f"{'params':>12} {'MACs':>15} {'new KiB':>9} {'calls':>5}"
    )
    for layer in counts.layers:
        shape = "x".join(str(d) for d in layer.output_shape)
        print(
            f"{layer.index:>3} {layer.layer:<{width}} {layer.type:<18} {shape:<14} "
            f"{layer.params:>12,} {layer.macs:>15,} {layer.activation_bytes / 1024:>9.1f} "
            f"{layer.calls:>5}"
        )
    print(
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


# ---------------------------------------------------------------------------------------------
# run


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.sweep.plan import DTYPES, MEMORY_FORMATS, MODES

    parser.add_argument(
        "--models",
        nargs="+",
        default=["*"],
        metavar="PATTERN",
        help="model names or shell patterns (default: every model)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=None,
        metavar="DEVICE",
        help="cpu and/or cuda (default: cpu, plus cuda when present)",
    )
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        default=None,
        metavar="N",
        help="batch sizes for every model and mode (default: per model, see the plan)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=None,
        metavar="DTYPE",
        help=f"{' '.join(DTYPES)} (default: fp32; --full: all)",
    )
    parser.add_argument(
        "--memory-formats",
        nargs="+",
        default=None,
        metavar="FORMAT",
        help=f"{' '.join(MEMORY_FORMATS)} (default: contiguous; --full: both)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=None,
        metavar="MODE",
        help=f"{' '.join(MODES)} (default: both)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the cores this process may use)",
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
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="results folder (default: results/<run-id>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip rows already in DIR (default DIR: the latest under results/)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="measure only the I-th of N disjoint slices of the plan (I = 1..N), one per "
        "machine or job-array task; merge the folders with `bench report DIR...`",
    )


def _resolve_models(patterns: Sequence[str]) -> tuple[str, ...]:
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

    from bench.measure.timing import TimerSettings
    from bench.sweep.plan import RunPlan, parse_batch_size

    models = _resolve_models(args.models)
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
    if args.batch_sizes is not None:
        overrides["batch_sizes"] = tuple(parse_batch_size(b) for b in args.batch_sizes)
    for option in ("dtypes", "memory_formats", "modes"):
        if getattr(args, option) is not None:
            overrides[option] = tuple(dict.fromkeys(getattr(args, option)))
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.shard is not None:
        from bench.sweep.shards import Shard

        overrides["shard"] = Shard.parse(args.shard)
    preset = RunPlan.full if args.full else RunPlan.short
    plan = preset(models, **overrides)
    if args.min_steps is not None or args.min_time is not None:
        from dataclasses import replace

        def adjust(timer: TimerSettings) -> TimerSettings:
            # replace, not a new TimerSettings: the time cap (max_time_s, floor_steps) stays
            return replace(
                timer,
                min_steps=args.min_steps if args.min_steps is not None else timer.min_steps,
                min_time_s=args.min_time if args.min_time is not None else timer.min_time_s,
                max_steps=max(timer.max_steps, args.min_steps or 0),
            )

        plan = replace(plan, timer=adjust(plan.timer), large_timer=adjust(plan.large_timer))
    return plan


def _resolve_out(args: argparse.Namespace) -> Path:
    from bench.sweep.loop import new_run_dir

    if not args.resume:
        if args.out is not None:
            return args.out
        return new_run_dir(suffix=_shard_suffix(args))
    if args.out is not None:
        if not (args.out / "results.jsonl").exists():
            raise FileNotFoundError(f"--resume: {args.out}/results.jsonl does not exist")
        return args.out
    # The latest run of the same slice: another slice's folder holds other rows.
    pattern = f"*{_shard_suffix(args)}/results.jsonl" if args.shard else "*/results.jsonl"
    runs = sorted(p.parent for p in Path("results").glob(pattern))
    if not runs:
        raise FileNotFoundError(
            f"--resume: no results/<run-id>{_shard_suffix(args)}/results.jsonl to resume; "
            "give --out DIR"
        )
    return runs[-1]


def _shard_suffix(args: argparse.Namespace) -> str:
    if args.shard is None:
        return ""
    from bench.sweep.shards import Shard

    shard = Shard.parse(args.shard)
    return f"-shard{shard.index}of{shard.count}"


class _TqdmProgress:
    """A bar per model on stderr and a line per row on stdout."""

    def __init__(self) -> None:
        self._bar: Any = None

    def model_started(self, model: str, rows: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=rows, desc=model, unit="row", file=sys.stderr, leave=False)

    def row_done(self, row: dict[str, Any], skipped: bool) -> None:
        from tqdm import tqdm

        tqdm.write(_row_line(row, skipped), file=sys.stdout)
        sys.stdout.flush()  # a line per row as it is measured, also into a pipe or a file
        if self._bar is not None:
            self._bar.update(1)

    def model_finished(self, model: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _row_line(row: dict[str, Any], skipped: bool) -> str:
    what = (
        f"{row['model']} {row['device']} {row['dtype']} {row['memory_format']} "
        f"{row['mode']} b={row['batch_size']}{' (max)' if row.get('max_batch') is not None else ''}"
    )
    if skipped:
        return f"{what}: already measured, skipped"
    if row.get("error"):
        return f"{what}: ERROR {row['error']}"
    gflops = row.get("achieved_gflops")
    p10, p90 = row.get("step_ms_p10"), row.get("step_ms_p90")
    spread = "" if p10 is None or p90 is None else f"p10 {p10:.2f}, p90 {p90:.2f}, "
    return (
        f"{what}: {row['step_ms_median']:.2f} ms/step ({spread}n={row['steps_timed']}), "
        f"{row['samples_per_s']:.1f} samples/s"
        + (f", {gflops:.1f} GFLOP/s" if gflops is not None else "")
        + f", peak {row['peak_mem_mib']:.0f} MiB"
    )


def _run_run(args: argparse.Namespace) -> int:
    import time

    import torch

    from bench.sweep.loop import run_plan

    plan = build_plan(args)
    out = _resolve_out(args)
    args.resolved_out = out
    if not torch.cuda.is_available():
        print("cuda: absent (no CUDA device); measuring on cpu", file=sys.stderr)
    print(
        f"plan {plan.label}: {len(plan.models)} models on {', '.join(plan.devices)}, "
        f"{plan.threads} threads; writing {out}",
        file=sys.stderr,
    )
    if plan.shard is not None:
        from dataclasses import replace

        from bench.sweep.loop import plan_rows

        whole = replace(plan, shard=None)
        total = sum(len(plan_rows(whole, m)) for m in plan.models)
        mine = sum(len(plan_rows(plan, m)) for m in plan.models)
        print(f"shard {plan.shard}: {mine} of the plan's {total} rows", file=sys.stderr)
    from bench.measure.machine import load_average
    from bench.sweep.plan import default_threads

    load, cores = load_average(), default_threads()
    if load is not None and plan.threads > 1 and load + plan.threads > cores + 0.5:
        print(
            f"warning: load average {load:.1f} on {cores} cores: other work competes for them, "
            f"and timings with {plan.threads} threads will suffer (--threads 1 is steadier)",
            file=sys.stderr,
        )
    started = time.perf_counter()
    try:
        run_plan(plan, out, progress=_TqdmProgress(), resume=args.resume)
    except KeyboardInterrupt:
        print(
            f"interrupted: rows measured so far are in {out} (continue with --resume --out {out})",
            file=sys.stderr,
        )
        return 130
    print(f"done in {time.perf_counter() - started:.0f} s: {out}", file=sys.stderr)
    return 0


def _all_run(args: argparse.Namespace) -> int:
    """``run`` with the same arguments, then ``report`` of its folder when bench.report exists."""
    code = _run_run(args)
    if code != 0:
        return code
    for name, make_argv in ALL_FOLLOW_UPS:
        module_name = LAZY_SUBCOMMANDS.get(name)
        if name not in SUBCOMMANDS and module_name and importlib.util.find_spec(module_name):
            _register_module(name, module_name)
        if name not in SUBCOMMANDS:
            print(f"{name}: not available, skipped", file=sys.stderr)
            continue
        if name == "report" and not (args.resolved_out / "results.jsonl").exists():
            print(f"report: {args.resolved_out} has no rows (an empty shard), skipped")
            continue
        follow = build_parser([name]).parse_args([name, *make_argv(args.resolved_out, args)])
        code = SUBCOMMANDS[name].run(follow)
        if code != 0:
            return code
    return 0


def _accuracy_argv(out: Path, args: argparse.Namespace) -> list[str]:
    """``accuracy``'s arguments from ``all``'s: every option of ``all`` that concerns training
    (models, devices, threads, the plan's length, resume, shard) applies to it too."""
    argv = [str(out)]
    argv += ["--full"] if args.full else []
    argv += ["--resume"] if args.resume else []
    argv += ["--shard", args.shard] if args.shard else []
    if list(args.models) != ["*"]:
        argv += ["--models", *_resolve_models(args.models), "--none-ok"]
    argv += ["--devices", *dict.fromkeys(args.devices)] if args.devices else []
    argv += ["--threads", str(args.threads)] if args.threads is not None else []
    return argv


# What `all` runs after `run`, in order: (subcommand, its arguments given the results folder
# and `all`'s own arguments).
ALL_FOLLOW_UPS: list[tuple[str, Callable[[Path, argparse.Namespace], list[str]]]] = [
    ("accuracy", _accuracy_argv),
    ("report", lambda out, args: [str(out)]),
]


register("list", help="list the registered models", add_arguments=_list_arguments, run=_list_run)
register(
    "layers",
    help="per-layer breakdown of one model: shapes, parameters, MACs, activations",
    add_arguments=_layers_arguments,
    run=_layers_run,
)
register(
    "run",
    help="measure models × devices × dtypes × formats × modes × batch sizes",
    add_arguments=_run_arguments,
    run=_run_run,
)
register(
    "all",
    help="the main job (nox -s bench): `run` (default: the short plan), `accuracy`, `report`",
    add_arguments=_run_arguments,
    run=_all_run,
)


# ---------------------------------------------------------------------------------------------


def _requested(argv: Sequence[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token
    return None


def _register_module(name: str, module_name: str) -> None:
    module = importlib.import_module(module_name)
    if hasattr(module, "register_cli"):
        module.register_cli(register)
    elif not (hasattr(module, "add_arguments") and hasattr(module, "run")):
        raise ValueError(f"`{name}` is not available yet: {module_name} has no command line")
    else:
        doc = (module.run.__doc__ or module.__doc__ or name).strip().splitlines()[0]
        register(name, help=doc, add_arguments=module.add_arguments, run=module.run)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the lazy subcommand named in ``argv`` (if any) is imported and registered."""
    wanted = _requested(argv)
    for name, module_name in LAZY_SUBCOMMANDS.items():
        if name in SUBCOMMANDS or name != wanted:
            continue
        if importlib.util.find_spec(module_name) is not None:
            _register_module(name, module_name)
    parser = _Parser(
        prog="python -m bench", description="Count, time and measure the zoo's models."
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for name, command in SUBCOMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    for name, module_name in LAZY_SUBCOMMANDS.items():
        if name not in SUBCOMMANDS and importlib.util.find_spec(module_name) is not None:
            sub.add_parser(name, help=f"see `python -m bench {name} --help` ({module_name})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        return SUBCOMMANDS[args.command].run(args)
    except (ValueError, FileNotFoundError) as error:
        message = str(error).strip().splitlines()
        print(f"error: {message[0] if message else type(error).__name__}", file=sys.stderr)
        return 2
