"""The peaks' spread over their repeats (meta.json's ``peak_gflops_spread``) beside every "% of
peak" of the report, and "spread not measured" for a folder from before peaks were repeated.

Built from a copy of the small fixture in tests/fixtures/report, its meta.json given spreads
here; expectations are computed from the fixture's files, never copied from a built report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.report.runs import (
    SPREAD_NOT_MEASURED,
    PeakSpread,
    device_peaks,
    device_spreads,
    session_meta,
    split_sessions,
    spread_text,
)

FIXTURE = Path(__file__).parent / "fixtures" / "report"
ROWS = [
    json.loads(line)
    for line in (FIXTURE / "results.jsonl").read_text().splitlines()
    if line.strip()
]
META = json.loads((FIXTURE / "meta.json").read_text())
FP32 = META["peak_gflops"]["fp32_matmul"]  # 180.0
BF16 = META["peak_gflops"]["bf16_matmul"]  # 360.0
SPREADS = {
    "fp32_matmul": {"min": FP32 - 30, "median": FP32 - 10, "max": FP32, "repeats": 5},
    "bf16_matmul": {"min": BF16 - 60, "median": BF16 - 20, "max": BF16, "repeats": 5},
}


def _folder(dst: Path, spreads: dict[str, Any] | None) -> Path:
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    meta = dict(META)
    if spreads is not None:
        meta["peak_gflops_spread"] = spreads
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def _markdown(tmp_path: Path, spreads: dict[str, Any] | None) -> str:
    run = _folder(tmp_path / "run", spreads)
    return (report.build_report([run], tmp_path / "out") / "report.md").read_text()


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def _table(section: str) -> tuple[list[str], list[list[str]]]:
    """The first table of ``section``: its headers and body rows, as cells."""
    lines = [x for x in section.splitlines() if x.startswith("| ")]
    cells = [[c.strip() for c in x.strip().strip("|").split(" | ")] for x in lines]
    return cells[0], [c for c in cells[1:] if not set("".join(c)) <= set("-: ")]


def _shared_rows() -> list[dict[str, Any]]:
    """The fixture's rows that show a share of peak: error-free with a rate, fp32 or bf16."""
    return [
        r
        for r in ROWS
        if not r.get("error") and r["mode"] != "accuracy" and r.get("achieved_gflops")
    ]


def test_spreads_are_read_per_device_and_a_missing_one_is_not_measured() -> None:
    meta = {
        "peak_gflops": {"fp32_matmul": 429.0, "cuda_fp32_matmul": 5e4, "bf16_matmul": 9.0},
        "peak_gflops_spread": {
            "fp32_matmul": {"min": 331.0, "median": 388.0, "max": 429.0, "repeats": 5},
            "cuda_fp32_matmul": {"min": 4e4, "median": 4.5e4, "max": 5e4, "repeats": 3},
            "bf16_matmul": {"min": "?", "median": 1, "max": 9.0, "repeats": 5},  # unreadable
        },
    }
    assert device_spreads(meta, "cpu") == {"fp32_matmul": PeakSpread(331.0, 388.0, 429.0, 5)}
    assert device_spreads(meta, "cuda") == {"fp32_matmul": PeakSpread(4e4, 4.5e4, 5e4, 3)}
    assert device_spreads(META, "cpu") == {}  # the fixture: written before the repeats
    cpu = device_spreads(meta, "cpu")["fp32_matmul"]
    assert spread_text(cpu) == "331.0–429.0 GFLOP/s over 5 repeats, median 388.0"
    assert spread_text(None) == SPREAD_NOT_MEASURED == "spread not measured"


def test_a_session_without_spreads_does_not_take_the_first_sessions() -> None:
    first = {"fp32_matmul": 100.0}
    spread = {"fp32_matmul": {"min": 80.0, "median": 90.0, "max": 100.0, "repeats": 5}}
    meta = {
        "run_id": "r",
        "peak_gflops": first,
        "peak_gflops_spread": spread,
        "sessions": [
            {"session": 1, "peak_gflops": first, "peak_gflops_spread": spread},
            {"session": 2, "peak_gflops": {"fp32_matmul": 50.0}},  # an older version's
        ],
    }
    assert device_spreads(session_meta(meta, 1)) == {"fp32_matmul": PeakSpread(80, 90, 100, 5)}
    assert device_peaks(session_meta(meta, 2)) == {"fp32_matmul": 50.0}
    assert device_spreads(session_meta(meta, 2)) == {}
    assert device_spreads(session_meta(meta, 3)) == {}  # an unlisted session: no peaks either
    assert [device_spreads(m) != {} for m in split_sessions(meta)] == [True, False]


def test_the_spread_is_beside_every_share_of_peak(tmp_path: Path) -> None:
    markdown = _markdown(tmp_path, SPREADS)
    fp32_text = f"{FP32 - 30:.1f}–{FP32:.1f} GFLOP/s over 5 repeats, median {FP32 - 10:.1f}"
    bf16_text = f"{BF16 - 60:.1f}–{BF16:.1f} GFLOP/s over 5 repeats, median {BF16 - 20:.1f}"

    # The header: each peak, then its spread.
    header = _section(markdown, "What was measured where")
    assert f"| cpu fp32 matmul peak: spread | {fp32_text} |" in header
    assert f"| cpu bf16 matmul peak: spread | {bf16_text} |" in header

    # Every row's share, with the range of the peak it is of in the next column.
    headers, body = _table(_section(markdown, "All measured rows"))
    share_at = headers.index("% of peak")
    assert headers[share_at + 1] == "that peak's repeats (GFLOP/s)"
    shown = [cells for cells in body if cells[share_at]]
    assert len(shown) == len(_shared_rows()) > 0
    for cells in shown:
        peak, spread = (BF16, SPREADS["bf16_matmul"]) if "bf16" in cells[2] else (FP32, None)
        spread = spread or SPREADS["fp32_matmul"]
        assert cells[share_at + 1] == f"{spread['min']:.1f}–{peak:.1f} (5 repeats)"
    assert all(not cells[share_at + 1] for cells in body if not cells[share_at])

    # The sentences judging the best rate against its peak.
    said = _section(markdown, "What the numbers say")
    fp32_sentence = next(x for x in said.splitlines() if "fp32 matmul peak of" in x)
    assert f"peak of {FP32:.1f} GFLOP/s ({fp32_text})" in fp32_sentence
    if any("bf16" in r["dtype"] for r in _shared_rows()):
        assert f"peak of {BF16:.1f} GFLOP/s ({bf16_text})" in said

    # The figure's caption says what the band behind each peak's line is.
    speed = _section(markdown, "Speed and the hardware limit")
    assert "slowest to the fastest repeat" in speed and SPREAD_NOT_MEASURED in speed


def test_a_folder_from_before_the_repeats_says_spread_not_measured(tmp_path: Path) -> None:
    markdown = _markdown(tmp_path, None)
    header = _section(markdown, "What was measured where")
    assert f"| cpu fp32 matmul peak: spread | {SPREAD_NOT_MEASURED} |" in header
    headers, body = _table(_section(markdown, "All measured rows"))
    share_at = headers.index("% of peak")
    shown = [cells for cells in body if cells[share_at]]
    assert shown and all(cells[share_at + 1] == SPREAD_NOT_MEASURED for cells in shown)
    said = _section(markdown, "What the numbers say")
    assert f"peak of {FP32:.1f} GFLOP/s ({SPREAD_NOT_MEASURED})" in said


@pytest.mark.parametrize("spreads", [SPREADS, None])
def test_the_peak_figure_draws_with_and_without_spreads(
    tmp_path: Path, spreads: dict[str, Any] | None
) -> None:
    run = _folder(tmp_path / "run", spreads)
    out = report.build_report([run], tmp_path / "out")
    assert (out / "fig_gflops_vs_peak.png").stat().st_size > 0
