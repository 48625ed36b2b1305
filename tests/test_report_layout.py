"""The report's reading order and pieces: answers first, contents, a readable plan, where the
rows came from, the layers by the papers' names, the interactive page's parts, the figures."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import report
from bench.report import figures
from bench.report.answers import ANSWER_FIGURES, ANSWERS_TITLE
from bench.report.document import slug
from bench.report.sections import plan_text

FIXTURE = Path(__file__).parent / "fixtures" / "report"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


ROWS = _jsonl(FIXTURE / "results.jsonl")
LAYERS = _jsonl(FIXTURE / "layers.jsonl")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.build_report([FIXTURE], tmp_path_factory.mktemp("layout") / "out")


@pytest.fixture(scope="module")
def markdown(built: Path) -> str:
    return (built / "report.md").read_text()


@pytest.fixture(scope="module")
def page(built: Path) -> str:
    return (built / "report.html").read_text()


def _headings(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.M)


def test_the_answers_and_their_four_figures_come_first(markdown: str) -> None:
    assert _headings(markdown)[0] == ANSWERS_TITLE
    opening = markdown[: markdown.index("**Contents**")]
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", opening)
    assert shown == [file for file, _ in ANSWER_FIGURES]
    assert "Latency follows compute" in opening and "Training memory" in opening


def test_the_latency_sentence_reads_the_rows(markdown: str) -> None:
    batch1 = [
        r
        for r in ROWS
        if r["mode"] == "infer" and r["batch_size"] == 1 and not r["error"] and r["dtype"] == "fp32"
    ]
    low = min(batch1, key=lambda r: r["macs_fvcore"])
    high = max(batch1, key=lambda r: r["macs_fvcore"])
    ratio = high["step_ms_median"] / low["step_ms_median"]
    text = f"{ratio:.1f}× the time" if ratio < 10 else f"{ratio:,.0f}× the time"
    assert f"{low['model']} (" in markdown and text in markdown


def test_contents_link_every_section_by_githubs_anchors(markdown: str, page: str) -> None:
    contents = markdown[markdown.index("**Contents**") :].split("\n\n")[1]
    links = re.findall(r"- \[(.+)\]\(#([^)]+)\)", contents)
    after = _headings(markdown)[1:]
    assert [text for text, _ in links] == after
    for text, anchor in links:
        assert anchor == slug(text)
        assert f'id="{anchor}"' in page


def test_the_plan_is_a_table_not_json(markdown: str) -> None:
    header = markdown[markdown.index("## What was measured where") :]
    header = header[: header.index("\n## ")]
    plan_lines = [line for line in header.splitlines() if line.startswith("| plan")]
    assert plan_lines and not any("{" in line or "[" in line for line in plan_lines)
    assert "| plan: devices | cpu |" in header


def test_plan_settings_read_as_words() -> None:
    assert plan_text("infer_batches", [[1, 32], [1]]) == (
        "1, 32 (small inputs); 1 (ImageNet-sized inputs)"
    )
    timer = {
        "warmup": 1, "min_steps": 10, "min_time_s": 0.5, "max_time_s": 3.0,
        "max_steps": 10000, "floor_steps": 3,
    }  # fmt: skip
    assert plan_text("timer", timer) == (
        "warm-up 1 step(s); at least 10 steps and 0.5 s; at most 3 s or 10,000 steps "
        "(never under 3 steps)"
    )
    assert plan_text("models", ["a", "b"]) == "2: a, b"
    assert plan_text("max_batch", False) == "no"


def test_a_report_of_two_folders_says_where_each_row_came_from(tmp_path: Path) -> None:
    folders = []
    for name, threads in (("run-a", 2), ("run-b", 1)):
        dst = tmp_path / name
        shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.py", "*.md"))
        meta = json.loads((dst / "meta.json").read_text())
        (dst / "meta.json").write_text(json.dumps({**meta, "run_id": name, "hostname": name}))
        rows = [{**r, "threads": threads} for r in ROWS]
        (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        folders.append(dst)
    out = report.build_report(folders, tmp_path / "out")
    md = (out / "report.md").read_text()
    origin = md[md.index("### Where the rows came from") :]
    for name in ("run-a", "run-b"):
        line = next(x for x in origin.splitlines() if x.startswith(f"| {name} |"))
        assert f"| {name} |" in line and f"| {len(ROWS)} |" in line
    measured = md[md.index("## All measured rows") :]
    assert "| folder |" in measured.splitlines()[2] or "folder |" in measured
    body = [x for x in measured.splitlines() if x.startswith("| ") and "---" not in x][1:]
    assert {x.rstrip(" |").rsplit("| ", 1)[1] for x in body} == {"run-a", "run-b"}


def test_each_model_opens_to_its_layers_by_the_papers_names(markdown: str, page: str) -> None:
    section = markdown[markdown.index("## Each model, layer by layer") :]
    section = section[: section.index("\n## ")]
    lenet = section[section.index("<summary>lenet5_modern") :]
    lenet = lenet[: lenet.index("</details>")]
    names = [
        line.split(" | ")[0].strip("| ") for line in lenet.splitlines() if line.startswith("| ")
    ]
    assert names[1:] == ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT"]
    vgg = [la for la in LAYERS if la["model"] == "vgg16"]
    fc6 = sum(la["params"] for la in vgg if la["paper_layer"] == "fc6")
    assert "| fc6 | " in section and f"{fc6:,}" in section
    assert page.count("<details>") >= len({la["model"] for la in LAYERS})


def test_the_page_carries_its_script_and_sortable_tables(page: str) -> None:
    assert page.count("<script>") == 1 and "data-ready" in page
    assert 'class="sortable"' in page and "data-filter" in page
    assert "<script src" not in page and "http" not in page.split("<script>")[1]


def _rows(batches: list[int], model: str = "m", family: str = "vgg") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model, "family": family, "device": "cpu", "mode": "infer",
            "dtype": "fp32", "memory_format": "contiguous", "batch_size": batches,
            "samples_per_s": [10.0 * b for b in batches],
        }
    )  # fmt: skip


def test_a_batch_sweep_is_drawn_only_where_several_batches_were_measured(tmp_path: Path) -> None:
    single = pd.concat([_rows([1], "a"), _rows([1], "b")])
    assert figures.throughput_vs_batch(single, tmp_path / "one.png") is None
    swept = pd.concat([single, _rows([1, 8], "c")])
    assert figures.throughput_vs_batch(swept, tmp_path / "two.png") is not None


def test_one_colour_per_family_a_shade_per_variant() -> None:
    colors = figures.variant_colors({"vgg16": "vgg", "vgg19": "vgg", "resnet34": "resnet"})
    assert colors["vgg16"] != colors["vgg19"]
    red = [max(range(3), key=lambda i: c[i]) for c in (colors["vgg16"], colors["vgg19"])]
    assert red == [0, 0]  # both shades of VGG's red
    assert max(range(3), key=lambda i: colors["resnet34"][i]) == 1  # ResNet's green


def _markdown_cells(markdown: str) -> list[str]:
    """Every body cell of every GFM table (alignment rows and header rows left out)."""
    cells: list[str] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| ") or i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            continue
        inner = line.strip()[1:-1]
        cells += [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]
    return cells


def test_markdown_and_page_show_the_same_numbers(markdown: str, page: str) -> None:
    page_cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", page)]
    assert sorted(_markdown_cells(markdown)) == sorted(page_cells)
    lines = markdown.splitlines()
    for i, line in enumerate(lines):  # every GFM table: header, alignment row, equal widths
        if line.startswith("|---"):
            assert re.fullmatch(r"\|(---:?\|)+", line), line
            width = line.count("|")
            j = i - 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(re.findall(r"(?<!\\)\|", lines[j])) == width, lines[j]
                j += 1
