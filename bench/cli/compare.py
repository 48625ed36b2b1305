"""``compare``: ``python -m bench compare OLD NEW``, run against run (:mod:`bench.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.options import positive

__all__ = ["add_compare_arguments", "run_compare", "compare_lines"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``: the two folders, ``--fail-above PCT``, ``--across-machines``."""
    parser.add_argument("old", type=Path, metavar="OLD", help="the earlier results folder")
    parser.add_argument("new", type=Path, metavar="NEW", help="the later results folder")
    parser.add_argument(
        "--fail-above",
        type=positive(float),
        default=None,
        metavar="PCT",
        help="exit 1 if any matched row's samples/s fell by more than PCT percent (for CI)",
    )
    parser.add_argument(
        "--across-machines",
        action="store_true",
        help="compare folders measured on different machines (refused otherwise)",
    )


def run_compare(args: argparse.Namespace) -> int:
    """Print the comparison; 1 if ``--fail-above`` found a row slower by more than PCT."""
    from bench.compare import compare_folders, slower_than

    comparison = compare_folders(args.old, args.new, across_machines=args.across_machines)
    for line in compare_lines(comparison):
        print(line)
    if args.fail_above is None:
        return 0
    slower = slower_than(comparison.pairs, args.fail_above)
    if slower:
        print(f"FAIL: {len(slower)} matched rows slower by more than {args.fail_above:g}%")
        return 1
    return 0


def compare_lines(comparison: Any) -> list[str]:
    """The comparison as lines: a header, a line per matched row, the rows on one side only,
    and a tally of the verdicts."""
    from bench.compare import row_settings

    old, new = comparison.old, comparison.new
    lines = [f"OLD {old.path} ({old.meta.get('started', '?')})"]
    lines.append(f"NEW {new.path} ({new.meta.get('started', '?')})")
    if comparison.across_machines:
        lines.append(f"ACROSS MACHINES: OLD on {old.machine()}, NEW on {new.machine()}")
    else:
        lines.append(f"machine: {old.machine()}")
    lines.append(
        "samples/s (IQR: interquartile range of the step times over their median); "
        "a change is flagged when it exceeds the two rows' IQRs added up"
    )
    width = max((len(row_settings(p.old)) for p in comparison.pairs), default=10)
    lines.append(f"{'row':<{width}}  {'OLD':>22}  {'NEW':>22}  {'NEW/OLD':>8}  verdict")
    for pair in comparison.pairs:
        ratio = "-" if pair.ratio is None else f"{pair.ratio:.3f}"
        lines.append(
            f"{row_settings(pair.old):<{width}}  {_rate(pair.old):>22}  {_rate(pair.new):>22}  "
            f"{ratio:>8}  {pair.verdict}{' !' if pair.verdict in ('faster', 'slower') else ''}"
        )
    for side, rows in (("OLD", comparison.only_old), ("NEW", comparison.only_new)):
        for row in rows:
            lines.append(f"only in {side}: {row_settings(row)}")
    tally: dict[str, int] = {}
    for pair in comparison.pairs:
        tally[pair.verdict] = tally.get(pair.verdict, 0) + 1
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items())) or "none"
    lines.append(
        f"{len(comparison.pairs)} matched ({counts}); {len(comparison.only_old)} only in OLD, "
        f"{len(comparison.only_new)} only in NEW"
    )
    return lines


def _rate(row: dict[str, Any]) -> str:
    """``1234.5 (IQR 4.0%)`` (samples/s and its IQR over median), or the row's trouble."""
    rate = row.get("samples_per_s")
    if row.get("error") or not isinstance(rate, (int, float)):
        return "error"
    iqr = row.get("step_iqr_rel")
    return f"{rate:.1f} " + ("(no IQR)" if iqr is None else f"(IQR {iqr:.1%})")
