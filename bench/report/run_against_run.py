"""The report's section for ``bench report NEW --compare OLD``: run against run, read from
:func:`bench.compare.compare_folders` (the matching, the noise rule and the verdicts live
there; this module only lays them out)."""

from __future__ import annotations

from bench.compare import (
    FLAGGED,
    NOISE_RULE,
    Comparison,
    rate_text,
    ratio_text,
    row_settings,
    verdict_counts,
    verdict_text,
)
from bench.report.document import Block, Bullets, Heading, Para, table

__all__ = ["COMPARE_TITLE", "compare_blocks"]

COMPARE_TITLE = "Against an earlier run"


def compare_blocks(comparison: Comparison) -> list[Block]:
    """The header (both folders, the machine or the machines), one table row per matched row,
    the flagged changes and the rows only one folder has."""
    blocks: list[Block] = [Heading(2, COMPARE_TITLE), Para(_header(comparison))]
    if comparison.pairs:
        blocks.append(
            table(
                ("row", "OLD samples/s", "NEW samples/s", "NEW/OLD", "verdict"),
                [
                    (
                        row_settings(p.old),
                        rate_text(p.old),
                        rate_text(p.new),
                        ratio_text(p),
                        verdict_text(p),
                    )
                    for p in comparison.pairs
                ],
                (False, True, True, True, False),
            )
        )
    flagged = [p for p in comparison.pairs if p.verdict in FLAGGED]
    blocks.append(Para("Changes beyond the noise:" if flagged else "No change beyond the noise."))
    if flagged:
        blocks.append(
            Bullets(
                tuple(
                    f"{row_settings(p.old)}: {p.verdict}, NEW/OLD {ratio_text(p)} "
                    f"({p.old['samples_per_s']:.1f} → {p.new['samples_per_s']:.1f} samples/s)"
                    for p in flagged
                )
            )
        )
    one_side = [
        f"only in {side}: {row_settings(row)}"
        for side, rows in (("OLD", comparison.only_old), ("NEW", comparison.only_new))
        for row in rows
    ]
    if one_side:
        blocks += [Para("Rows only one folder has:"), Bullets(tuple(one_side))]
    return blocks


def _header(comparison: Comparison) -> str:
    """Which folder is which, where they were measured, the rule and the tally."""
    old, new = comparison.old, comparison.new
    if comparison.across_machines:
        machine = (
            f"ACROSS MACHINES: OLD on {old.machine()}, NEW on {new.machine()}; the ratios "
            "mix the change of machine with the change of code."
        )
    else:
        machine = f"Both measured on {old.machine()}."
    return (
        f"NEW is this report's folder, `{new.path}` (started {new.meta.get('started', '?')}); "
        f"OLD is `{old.path}` (started {old.meta.get('started', '?')}). {machine} Rows are "
        f"matched by their settings. Cells: {NOISE_RULE}. {verdict_counts(comparison)}."
    )
