"""``compare``: ``python -m bench compare OLD NEW``, run against run (:mod:`bench.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.options import positive

__all__ = [
    "add_compare_arguments",
    "add_compare_with",
    "refuse_before_measuring",
    "run_compare",
    "compare_lines",
]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``: the two folders, ``--fail-above PCT``, ``--across-machines``."""
    parser.add_argument("old", type=Path, metavar="OLD", help="the earlier results folder")
    parser.add_argument("new", type=Path, metavar="NEW", help="the later results folder")
    parser.add_argument(
        "--fail-above",
        type=positive(float),
        default=None,
        metavar="PCT",
        help="exit 1 (for CI) if NEW lost a row OLD has, errs on a row OLD measured, or is "
        "slower on a row by more than PCT percent beyond the noise (or with no noise "
        "estimate); one line per reason",
    )
    _add_across_machines(parser)


def add_compare_with(parser: argparse.ArgumentParser, across_help: str | None = None) -> None:
    """``--compare OLD`` and ``--across-machines``: the report's section against an earlier
    results folder (``report`` and ``all``); ``across_help``: what else the flag allows."""
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OLD",
        help="add a section comparing the results with the earlier results folder OLD, row "
        "against row, as `bench compare OLD NEW` does",
    )
    _add_across_machines(parser, across_help)


def refuse_before_measuring(old: Path, across_machines: bool) -> None:
    """``all --compare OLD``: refuse OLD (not a results folder, or another machine's without
    ``--across-machines``) before anything is measured, not after the whole run."""
    from bench.compare import MACHINE_KEYS, Folder, read_folder, refuse_other_machine
    from bench.measure.machine import describe

    here = describe((), 1, measure_peak=False)
    this_run = Folder(Path("this run"), {key: getattr(here, key) for key in MACHINE_KEYS}, {})
    refuse_other_machine(read_folder(old), this_run, across_machines)


def _add_across_machines(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--across-machines",
        action="store_true",
        help=help or "compare folders measured on different machines (refused otherwise)",
    )


def run_compare(args: argparse.Namespace) -> int:
    """Print the comparison; with ``--fail-above PCT`` its gate (:func:`bench.compare.gate`):
    a ``FAIL:`` line per reason and exit 1, or a ``PASS:`` line."""
    from bench.compare import compare_folders, gate

    comparison = compare_folders(args.old, args.new, across_machines=args.across_machines)
    for line in compare_lines(comparison):
        print(line)
    if args.fail_above is None:
        return 0
    result = gate(comparison, args.fail_above)
    for line in result.notes:
        print(f"note: {line}")
    for line in result.failures:
        print(f"FAIL: {line}")
    if not result.passed:
        return 1
    print(
        f"PASS: no row lost or newly failing, none slower by more than {args.fail_above:g}% "
        "beyond the noise"
    )
    return 0


def compare_lines(comparison: Any) -> list[str]:
    """The comparison as lines: a header, a line per matched row, the rows on one side only,
    and a tally of the verdicts."""
    from bench.compare import (
        NOISE_RULE,
        noise_estimate_text,
        noise_text,
        outcome_text,
        rate_text,
        ratio_text,
        unjudged_text,
        verdict_counts,
        verdict_text,
    )
    from bench.schema import settings_text

    old, new = comparison.old, comparison.new
    lines = [f"OLD {old.path} ({old.meta.get('started', '?')})"]
    lines.append(f"NEW {new.path} ({new.meta.get('started', '?')})")
    if comparison.across_machines:
        lines.append(f"ACROSS MACHINES: OLD on {old.machine()}, NEW on {new.machine()}")
    else:
        lines.append(f"machine: {old.machine()}")
    lines.append(NOISE_RULE)
    lines.append(noise_estimate_text(comparison))
    width = max((len(settings_text(p.old, as_key=True)) for p in comparison.pairs), default=10)
    rates = [len(rate_text(r)) for p in comparison.pairs for r in (p.old, p.new)]
    rate = max(rates, default=22)
    lines.append(
        f"{'row':<{width}}  {'OLD':>{rate}}  {'NEW':>{rate}}  {'NEW/OLD':>8}  {'noise':>6}  verdict"
    )
    for pair in comparison.pairs:
        lines.append(
            f"{settings_text(pair.old, as_key=True):<{width}}  {rate_text(pair.old):>{rate}}  "
            f"{rate_text(pair.new):>{rate}}  {ratio_text(pair):>8}  {noise_text(pair):>6}  "
            f"{verdict_text(pair)}"
        )
    for side, rows in (("OLD", comparison.only_old), ("NEW", comparison.only_new)):
        for row in rows:
            lines.append(f"only in {side}: {settings_text(row, as_key=True)}")
    for pair in comparison.unjudged():
        lines.append(f"not judged: {unjudged_text(pair)}")
    lines.append(verdict_counts(comparison))
    lines.append(outcome_text(comparison))
    return lines
