"""The report's section for ``bench report NEW --compare OLD``: run against run, read from
:func:`bench.compare.compare_folders` (the matching, the noise rule, the verdicts and the
outcome's wording live there; this module only lays them out). The section says "No change
beyond the noise" only where :func:`bench.compare.outcome_text` does: every matched row judged,
none beyond the noise, none lost; rows not judged and rows NEW lost are listed by name."""

from __future__ import annotations

from bench.compare import (
    FLAGGED,
    NOISE_RULE,
    Comparison,
    noise_estimate_text,
    noise_text,
    outcome_text,
    rate_text,
    ratio_text,
    unjudged_text,
    verdict_counts,
    verdict_text,
)
from bench.report.document import Block, Bullets, Heading, Para, table
from bench.schema import settings_text

__all__ = ["COMPARE_TITLE", "compare_blocks"]

COMPARE_TITLE = "Against an earlier run"


def compare_blocks(comparison: Comparison) -> list[Block]:
    """The header (both folders, the machine or the machines, the noise rule and estimate),
    one table row per matched row, the outcome, the flagged changes, the rows only one folder
    has and the rows not judged."""
    blocks: list[Block] = [Heading(2, COMPARE_TITLE), Para(_header(comparison))]
    if comparison.pairs:
        blocks.append(
            table(
                ("row", "OLD samples/s", "NEW samples/s", "NEW/OLD", "noise", "verdict"),
                [
                    (
                        settings_text(p.old, as_key=True),
                        rate_text(p.old),
                        rate_text(p.new),
                        ratio_text(p),
                        noise_text(p),
                        verdict_text(p),
                    )
                    for p in comparison.pairs
                ],
                (False, True, True, True, True, False),
            )
        )
    blocks.append(Para(outcome_text(comparison)))
    flagged = [p for p in comparison.pairs if p.verdict in FLAGGED]
    if flagged:
        blocks.append(Para("Changes beyond the noise:"))
        blocks.append(
            Bullets(
                tuple(
                    f"{settings_text(p.old, as_key=True)}: {p.verdict}, NEW/OLD {ratio_text(p)} "
                    f"({p.old['samples_per_s']:.1f} → {p.new['samples_per_s']:.1f} samples/s)"
                    for p in flagged
                )
            )
        )
    one_side = [
        f"only in {side}: {settings_text(row, as_key=True)}"
        for side, rows in (("OLD", comparison.only_old), ("NEW", comparison.only_new))
        for row in rows
    ]
    if one_side:
        blocks += [Para("Rows only one folder has:"), Bullets(tuple(one_side))]
    unjudged = comparison.unjudged()
    if unjudged:
        blocks += [
            Para("Rows not judged against the noise:"),
            Bullets(tuple(unjudged_text(p) for p in unjudged)),
        ]
    return blocks


def _header(comparison: Comparison) -> str:
    """Which folder is which, where they were measured, the rule, the noise and the tally."""
    old, new = comparison.old, comparison.new
    if comparison.across_machines:
        machine = (
            f"ACROSS MACHINES: OLD on {old.machine()}, NEW on {new.machine()}; the ratios "
            "mix the change of machine with the change of code."
        )
    else:
        machine = f"Both measured on {old.machine()}."
    noise = noise_estimate_text(comparison)
    return (
        f"NEW is this report's folder, `{new.path}` (started {new.meta.get('started', '?')}); "
        f"OLD is `{old.path}` (started {old.meta.get('started', '?')}). {machine} Rows are "
        f"matched by their settings. Cells: {NOISE_RULE}. {noise[0].upper()}{noise[1:]}. "
        f"{verdict_counts(comparison)}."
    )
