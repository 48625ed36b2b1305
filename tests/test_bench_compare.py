"""`bench compare OLD NEW` on two small folders written here: a regression, a change within the
noise, a row on one side only, a machine mismatch; and the same comparison as a section of the
report (`bench report NEW --compare OLD`, `bench all --compare OLD`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from bench.compare import Pair, compare_folders, slower_than
from bench.schema import ROW_COLUMNS

MACHINE = {"cpu_model": "test cpu", "gpu": None, "hostname": "box"}


def row(model: str, mode: str, samples_per_s: float | None, iqr: float | None) -> dict[str, Any]:
    line: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    line.update(
        model=model, device="cpu", dtype="fp32", memory_format="contiguous", threads=2,
        batch_size=32, mode=mode, samples_per_s=samples_per_s, step_iqr_rel=iqr,
        error=None if samples_per_s else "RuntimeError: boom",
    )  # fmt: skip
    return line


def folder(path: Path, rows: list[dict[str, Any]], **machine: Any) -> Path:
    path.mkdir()
    meta = {"run_id": path.name, "started": "2026-12-01T10:00:00+00:00", **MACHINE, **machine}
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    old = folder(
        tmp_path / "old",
        [
            row("vgg11", "train", 100.0, 0.02),  # NEW 80: 20% slower, noise 4%: a regression
            row("lenet5", "infer", 1000.0, 0.05),  # NEW 1030: 3% faster, noise 10%: noise
            row("alexnet", "infer", 50.0, None),  # no spread: not judged
            row("resnet18", "infer", 10.0, 0.01),  # only in OLD
        ],
    )
    new = folder(
        tmp_path / "new",
        [
            row("lenet5", "infer", 1030.0, 0.05),
            row("vgg11", "train", 80.0, 0.02),
            row("alexnet", "infer", 55.0, 0.01),
            row("resnet34", "infer", 5.0, 0.01),  # only in NEW
        ],
    )
    return old, new


def test_rows_are_matched_by_their_settings(two_runs: tuple[Path, Path]) -> None:
    comparison = compare_folders(*two_runs)
    by_model = {p.old["model"]: p for p in comparison.pairs}
    assert set(by_model) == {"vgg11", "lenet5", "alexnet"}
    assert by_model["vgg11"].ratio == pytest.approx(0.8)
    assert by_model["vgg11"].verdict == "slower"
    assert by_model["lenet5"].verdict == "within noise"
    assert by_model["alexnet"].verdict == "no spread"
    assert [r["model"] for r in comparison.only_old] == ["resnet18"]
    assert [r["model"] for r in comparison.only_new] == ["resnet34"]
    assert [p.old["model"] for p in slower_than(comparison.pairs, 10)] == ["vgg11"]
    assert slower_than(comparison.pairs, 25) == []


def test_a_change_just_beyond_the_noise_is_flagged() -> None:
    # Noise 0.03 + 0.02 = 5%: 1.06 is beyond, 1.04 within.
    assert Pair(row("m", "infer", 100.0, 0.03), row("m", "infer", 106.0, 0.02)).verdict == "faster"
    assert Pair(row("m", "infer", 100.0, 0.03), row("m", "infer", 104.0, 0.02)).verdict == (
        "within noise"
    )
    assert Pair(row("m", "infer", 100.0, 0.03), row("m", "infer", None, None)).verdict == "error"


def test_cli_prints_every_row_and_fails_above_the_threshold(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = two_runs
    code, out, _ = run_cli(["compare", str(old), str(new)], capsys)
    assert code == 0
    assert "vgg11 cpu fp32 contiguous train b=32 t=2" in out
    assert "0.800  slower !" in out
    assert "100.0 (IQR 2.0%)" in out and "80.0 (IQR 2.0%)" in out
    assert "only in OLD: resnet18" in out and "only in NEW: resnet34" in out
    assert "3 matched (1 no spread, 1 slower, 1 within noise)" in out
    code, out, _ = run_cli(["compare", str(old), str(new), "--fail-above", "10"], capsys)
    assert code == 1 and "FAIL: 1 matched rows slower by more than 10%" in out
    code, _, _ = run_cli(["compare", str(old), str(new), "--fail-above", "25"], capsys)
    assert code == 0


def test_different_machines_are_refused_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = folder(tmp_path / "a", [row("lenet5", "infer", 10.0, 0.01)])
    new = folder(tmp_path / "b", [row("lenet5", "infer", 20.0, 0.01)], hostname="other")
    code, out, err = run_cli(["compare", str(old), str(new)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "hostname differ" in err
    code, out, _ = run_cli(["compare", str(old), str(new), "--across-machines"], capsys)
    assert code == 0
    assert "ACROSS MACHINES: OLD on box (test cpu), NEW on other (test cpu)" in out


def test_a_folder_without_results_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["compare", str(tmp_path), str(tmp_path)], capsys)
    assert code == 2 and "results.jsonl does not exist" in err


# --- the comparison as a section of the report (`bench report NEW --compare OLD`) ---------------


def section(markdown: str, title: str) -> str:
    """The text of the report's section ``title``, up to the next section."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def test_the_report_shows_the_comparison_as_a_section(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = two_runs
    out = tmp_path / "report"
    code, _, err = run_cli(["report", str(new), "--compare", str(old), "--out", str(out)], capsys)
    assert code == 0, err
    markdown = (out / "report.md").read_text()
    assert "- [Against an earlier run](#against-an-earlier-run)" in markdown  # contents
    text = section(markdown, "Against an earlier run")
    assert f"NEW is this report's folder, `{new}`" in text and f"OLD is `{old}`" in text
    assert "Both measured on box (test cpu)." in text
    assert "3 matched (1 no spread, 1 slower, 1 within noise); 1 only in OLD, 1 only in NEW" in text
    # NEW/OLD by hand: 80/100, 1030/1000, 55/50; noise 2%+2% = 4% < 20% (flagged), 5%+5% = 10%
    # > 3% (within noise), and alexnet's OLD row has no spread.
    assert (
        "| vgg11 cpu fp32 contiguous train b=32 t=2 | 100.0 (IQR 2.0%) | 80.0 (IQR 2.0%) "
        "| 0.800 | slower ! |"
    ) in text
    assert "| 1000.0 (IQR 5.0%) | 1030.0 (IQR 5.0%) | 1.030 | within noise |" in text
    assert "| 50.0 (no IQR) | 55.0 (IQR 1.0%) | 1.100 | no spread |" in text
    flagged = text.split("Changes beyond the noise:")[1].split("Rows only one folder has:")[0]
    assert flagged.strip() == (
        "- vgg11 cpu fp32 contiguous train b=32 t=2: slower, NEW/OLD 0.800 (100.0 → 80.0 samples/s)"
    )
    assert "- only in OLD: resnet18 cpu fp32 contiguous infer b=32 t=2" in text
    assert "- only in NEW: resnet34 cpu fp32 contiguous infer b=32 t=2" in text
    page = (out / "report.html").read_text()
    assert 'href="#against-an-earlier-run"' in page and 'id="against-an-earlier-run"' in page


def test_a_refused_comparison_writes_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = folder(tmp_path / "a", [row("lenet5", "infer", 10.0, 0.01)])
    new = folder(tmp_path / "b", [row("lenet5", "infer", 20.0, 0.01)], hostname="other")
    out = tmp_path / "report"
    code, out_text, err = run_cli(
        ["report", str(new), "--compare", str(old), "--out", str(out)], capsys
    )
    assert code == 2 and out_text == "" and not out.exists()
    assert err.startswith("error: ") and err.count("\n") == 1 and "--across-machines" in err
    code, _, err = run_cli(["report", str(new), str(old), "--compare", str(old)], capsys)
    assert code == 2 and "--compare needs one RESULTS_DIR" in err
    argv = ["report", str(new), "--compare", str(old), "--across-machines", "--out", str(out)]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    text = section((out / "report.md").read_text(), "Against an earlier run")
    assert "ACROSS MACHINES: OLD on box (test cpu), NEW on other (test cpu)" in text
    assert "| 10.0 (IQR 1.0%) | 20.0 (IQR 1.0%) | 2.000 | faster ! |" in text


def test_all_refuses_another_machines_folder_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = folder(tmp_path / "old", [row("lenet5", "infer", 10.0, 0.01)], hostname="elsewhere")
    out = tmp_path / "run"
    argv = ["all", "--models", "lenet5", "--compare", str(old), "--out", str(out)]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "hostname differ" in err and "--across-machines" in err
    assert not out.exists()  # nothing was measured


def test_all_hands_the_comparison_to_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import cli
    from bench.measure.machine import describe

    here = describe((), 1, measure_peak=False)
    machine = {"cpu_model": here.cpu_model, "gpu": here.gpu, "hostname": here.hostname}
    old = folder(tmp_path / "old", [row("lenet5", "infer", 10.0, 0.01)], **machine)
    out = tmp_path / "run"
    reported: list[argparse.Namespace] = []

    def fake_run(args: argparse.Namespace) -> int:
        folder(out, [row("lenet5", "infer", 12.0, 0.01)], **machine)
        args.resolved_out = out
        return 0

    def fake(name: str, run: Any) -> cli.Subcommand:
        return cli.Subcommand(name, cli.SUBCOMMANDS[name].add_arguments, run)

    monkeypatch.setitem(cli.SUBCOMMANDS, "run", fake("run", fake_run))
    monkeypatch.setitem(cli.SUBCOMMANDS, "accuracy", fake("accuracy", lambda args: 0))
    monkeypatch.setitem(
        cli.SUBCOMMANDS, "report", fake("report", lambda args: reported.append(args) or 0)
    )
    code, _, err = run_cli(["all", "--compare", str(old), "--out", str(out)], capsys)
    assert code == 0, err
    (args,) = reported
    assert args.results_dirs == [out] and args.compare == old and not args.across_machines
