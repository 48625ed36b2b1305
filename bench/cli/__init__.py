"""``python -m bench``: the command line, every subcommand in plain argparse. The only place
that prints or draws bars: library code reports through :mod:`bench.events`, and the listeners
here render it.

One module per group of subcommands, each subcommand an ``add_*_arguments(parser)`` and a
``run_*(args) -> int`` listed in :data:`SUBCOMMANDS`:

- :mod:`bench.cli.sweep`: ``list``, ``layers``, ``run`` (the throughput sweep);
- :mod:`bench.cli.training`: ``train``, ``eval``, ``accuracy`` (the accuracy plan);
- :mod:`bench.cli.report`: ``report`` (also ``python -m bench.report``);
- :mod:`bench.cli.compare`: ``compare`` (two results folders, row against row);
- here: ``all``, the three in a row.

The group modules import torch, the zoo and the report inside their subcommands, so that
``--help`` and ``list`` stay quick. User errors (an unknown model, a bad batch size, ``cuda``
without a GPU, ...) are checked before any work starts and end the program with one line
``error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cli import compare, report, sweep, training
from bench.cli.options import Parser, non_negative, resolve_shard, shard_is_auto
from bench.cli.sweep import build_plan
from bench.schema import one_line

__all__ = ["Subcommand", "SUBCOMMANDS", "build_parser", "build_plan", "main"]


@dataclass(frozen=True)
class Subcommand:
    """One ``python -m bench NAME``: its help line, options and body."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_all_arguments(parser: argparse.ArgumentParser) -> None:
    """``run``'s options, the accuracy step's ``--eval-dtype``, and the report's
    ``--compare OLD`` (``--across-machines``)."""
    sweep.add_run_arguments(parser)
    training.add_eval_dtype(parser)
    compare.add_compare_with(parser)
    parser.add_argument(
        "--job-budget-min",
        type=non_negative(float),
        default=None,
        metavar="MIN",
        help=f"the whole job's wall-clock minutes (default {JOB_BUDGET_MIN:g}; none with "
        "--full; 0: none): after the harness, the accuracy plans leave out each run predicted "
        "(from the harness's rates) not to fit what is left, one line each, listed in the "
        "report with the command that trains it",
    )


# The main job (`nox -s bench`) fits in this many minutes on a 2-core CPU: its accuracy plans
# leave out what would not fit after the harness (bench.training.estimate predicts each run).
JOB_BUDGET_MIN = 15.0
# Kept for the report at the job's end (about 20-40 s on a 2-core CPU with every figure).
REPORT_RESERVE_S = 45.0


def _job_budget_s(args: argparse.Namespace) -> float | None:
    """The job's budget in seconds: --job-budget-min, else the default but under --full."""
    minutes = args.job_budget_min
    if minutes is None:
        minutes = 0.0 if args.full else JOB_BUDGET_MIN
    return minutes * 60 if minutes > 0 else None


def _left_s(budget_s: float | None, started: float) -> float | None:
    """Seconds left of the job's budget for an accuracy plan, the report's share kept back."""
    if budget_s is None:
        return None
    return max(budget_s - (time.monotonic() - started) - REPORT_RESERVE_S, 0.0)


def run_all(args: argparse.Namespace) -> int:
    """``run`` with the same arguments, then ``accuracy`` and ``report`` of its folder (with
    ``--compare OLD``, checked before anything is measured). With ``--shard auto`` the report
    is left to ``bench report ROOT`` once every task is done: one slice is not the sweep.
    The job's budget (:func:`_job_budget_s`) bounds the accuracy plans: each gets what is left."""
    started = time.monotonic()
    budget_s = _job_budget_s(args)
    if args.compare is not None:
        if shard_is_auto(args):
            raise ValueError(
                "--compare with --shard auto: a task holds one slice; once every task is "
                "done, compare a slice's folder with `bench compare OLD ROOT/shard-I-of-N`"
            )
        compare.refuse_before_measuring(args.compare, args.across_machines)
    if args.layer_times is None:  # the main job profiles each model's training step
        args.layer_times = ["train"] if "train" in (args.modes or ["train"]) else ["none"]
    code = SUBCOMMANDS["run"].run(args)
    if code != 0:
        return code
    out: Path = args.resolved_out
    code = _follow_up("accuracy", _accuracy_argv(out, args, _left_s(budget_s, started)))
    if code == 0:
        code = _cifar_follow_up(out, args, budget_s, started)
    if code != 0:
        return code
    if shard_is_auto(args):
        print(f"report: once every task is done, `python -m bench report {out.parent}`")
        return 0
    if not (out / "results.jsonl").exists():
        print(f"report: {out} has no rows (an empty shard), skipped")
        return 0
    report_argv = [str(out)]
    report_argv += ["--compare", str(args.compare)] if args.compare is not None else []
    report_argv += ["--across-machines"] if args.across_machines else []
    return _follow_up("report", report_argv)


def _follow_up(name: str, argv: list[str]) -> int:
    """Subcommand ``name`` with ``argv``, parsed as on the command line."""
    return SUBCOMMANDS[name].run(build_parser().parse_args([name, *argv]))


def _cifar_follow_up(
    out: Path, args: argparse.Namespace, budget_s: float | None, started: float
) -> int:
    """The main job's part of the CIFAR-10 plan (:data:`bench.training.runs.MAIN_JOB_CIFAR`,
    or the asked --models' CIFAR runs) where CIFAR-10 is provisioned; one line where not."""
    import data
    from bench.training.runs import MAIN_JOB_CIFAR

    try:
        data.cifar10_copy()
    except data.MissingDataError:
        print(
            "cifar10: not provisioned, its plan skipped (`python -m data fetch cifar10 "
            "[--from PATH]` adds it to this job)"
        )
        return 0
    argv = _accuracy_argv(out, args, _left_s(budget_s, started))
    if "--models" not in argv:
        argv += ["--models", *MAIN_JOB_CIFAR]
    return _follow_up("accuracy", [*argv, "--data", "cifar10", "--none-ok"])


def _accuracy_argv(out: Path, args: argparse.Namespace, left_s: float | None = None) -> list[str]:
    """``accuracy``'s arguments from ``all``'s: every option of ``all`` that concerns training
    (models, devices, threads, the plan's length, resume, shard, eval dtype) applies to it too;
    ``left_s``: the seconds left of the job's budget (``--plan-budget-s``)."""
    argv = [str(out)]
    argv += ["--plan-budget-s", f"{left_s:.1f}"] if left_s is not None else []
    argv += ["--full"] if args.full else []
    argv += ["--resume"] if args.resume else []
    # The slice as run resolved it: out is already the slice's own folder under --shard auto.
    argv += ["--shard", str(resolve_shard(args))] if args.shard else []
    if list(args.models) != ["*"]:
        argv += ["--models", *sweep.resolve_models(args.models), "--none-ok"]
    argv += ["--devices", *dict.fromkeys(args.devices)] if args.devices else []
    argv += ["--threads", str(args.threads)] if args.threads is not None else []
    argv += ["--eval-dtype", args.eval_dtype] if args.eval_dtype is not None else []
    return argv


SUBCOMMANDS: dict[str, Subcommand] = {
    "list": Subcommand("list the registered models", sweep.add_list_arguments, sweep.run_list),
    "layers": Subcommand(
        "per-layer breakdown of one model: shapes, parameters, MACs, activations",
        sweep.add_layers_arguments,
        sweep.run_layers,
    ),
    "run": Subcommand(
        "measure models × devices × dtypes × formats × modes × batch sizes",
        sweep.add_run_arguments,
        sweep.run_run,
    ),
    "all": Subcommand(
        "the main job (nox -s bench): `run` (default: the short plan), `accuracy`, `report`",
        add_all_arguments,
        run_all,
    ),
    "train": Subcommand(
        "Train a model on MNIST or an ImageFolder: time-to-accuracy and accuracy-at-budget.",
        training.add_train_arguments,
        training.run_train,
    ),
    "eval": Subcommand(
        "Evaluate saved weights on the test (or val) split, after checking their SHA-256.",
        training.add_eval_arguments,
        training.run_eval,
    ),
    "accuracy": Subcommand(
        "Train the accuracy plan on MNIST (provisioned if missing), one row per run.",
        training.add_accuracy_arguments,
        training.run_accuracy_plan,
    ),
    "report": Subcommand(
        "write the comparison report (Markdown, HTML, CSV, plots) of results folders",
        report.add_report_arguments,
        report.run_report,
    ),
    "compare": Subcommand(
        "run against run: NEW/OLD samples/s of the rows two results folders share",
        compare.add_compare_arguments,
        compare.run_compare,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand in :data:`SUBCOMMANDS`."""
    parser = Parser(prog="python -m bench", description="Count, time and measure the zoo's models.")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for name, command in SUBCOMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command].run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
