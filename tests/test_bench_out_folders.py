"""Where runs write and how they end (issues 30 and 31): a folder that holds a run is continued
only with --resume, --resume continues a run killed at any point, a run whose every row failed
exits non-zero, and results and reports go under the current directory, never the checkout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FAKE_MACHINE, register_test_models, run_cli

from bench.schema import read_jsonl, row_key

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "report"

TINY = ["--models", "tiny_net", "--batch-sizes", "2", "--threads", "1", "--min-steps", "2",
        "--min-time", "0", "--no-fastest-format"]  # fmt: skip


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny test models registered; no peaks measured."""
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)


def _one_error_line(err: str) -> str:
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    return line


# --- a folder that holds a run: only --resume writes into it again (issue 30, item 2) ---------


def test_running_again_into_a_run_without_resume_is_refused_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_machine: None
) -> None:
    out = tmp_path / "run"
    args = ["run", *TINY, "--out", str(out)]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli([*args, "--resume"], capsys)[0] == 0  # a second session, nothing measured
    before = {name: (out / name).read_bytes() for name in ("meta.json", "results.jsonl")}
    assert len(json.loads(before["meta.json"])["sessions"]) == 2

    for command in ("run", "all"):
        code, stdout, err = run_cli([command, *TINY, "--out", str(out)], capsys)
        assert code == 2 and stdout == ""
        assert err.count("\n") == 1
        assert _one_error_line(err) == (
            f"error: --out {out} already holds a run: add --resume to continue it, "
            "or give a new folder"
        )
    # Both sessions and their peaks are kept; no row was measured or skipped again.
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_folder_killed_before_its_first_row_holds_a_run_and_an_empty_one_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_machine: None
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    (started / "meta.json").write_text("{}")
    code, _, err = run_cli(["run", *TINY, "--out", str(started)], capsys)
    assert code == 2 and "already holds a run: add --resume" in err
    empty = tmp_path / "empty"
    empty.mkdir()  # e.g. made by mktemp -d: a new folder
    assert run_cli(["run", *TINY, "--out", str(empty)], capsys)[0] == 0
    assert len(read_jsonl(empty / "results.jsonl")) == 2


# --- --resume on a folder killed before its first row (issue 31) ----------------------------


def _killed_before_the_first_row(folder: Path) -> None:
    """What a kill leaves between meta.json and the first row: meta.json unfinished and the
    model's layer breakdown, no results.jsonl."""
    for name in ("results.jsonl", "results.csv"):
        (folder / name).unlink()
    meta = json.loads((folder / "meta.json").read_text())
    for record in (meta, meta["sessions"][0]):
        record.update(finished=None, duration_s=None, interrupted=None, load_average_1m_end=None)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_resume_continues_a_run_killed_before_its_first_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_machine: None
) -> None:
    out = tmp_path / "run"
    args = ["run", *TINY, "--out", str(out)]
    assert run_cli(args, capsys)[0] == 0
    _killed_before_the_first_row(out)

    code, stdout, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    rows = read_jsonl(out / "results.jsonl")
    assert sorted(r["mode"] for r in rows) == ["infer", "train"]
    assert [r["session"] for r in rows] == [2, 2] and "skipped" not in stdout
    assert [s["session"] for s in json.loads((out / "meta.json").read_text())["sessions"]] == [1, 2]
    assert len(read_jsonl(out / "layers.jsonl")) == 4  # the breakdown kept, not written twice


def test_resume_continues_a_run_killed_before_it_wrote_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_machine: None
) -> None:
    out = tmp_path / "run"
    out.mkdir()  # the folder is made first, meta.json after the machine's peaks
    code, _, err = run_cli(["run", *TINY, "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert len(read_jsonl(out / "results.jsonl")) == 2


def test_resume_without_out_finds_the_latest_run_even_before_its_first_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import cli
    from bench.cli import sweep

    monkeypatch.chdir(tmp_path)
    older, newer = (tmp_path / "results" / n for n in ("20260101-000000", "20260101-000001"))
    older.mkdir(parents=True)
    (older / "results.jsonl").write_text("")
    newer.mkdir()
    (newer / "meta.json").write_text("{}")
    (tmp_path / "results" / "notes.txt").write_text("not a run")
    args = cli.build_parser().parse_args(["run", "--resume"])
    assert sweep.resolve_out(args) == Path("results/20260101-000001")


# Peaks are not what these runs test: the subprocess skips them (2-4 s a start).
NO_PEAKS = (
    "import sys; import bench.sweep.loop as loop; from bench.measure import machine; "
    "loop.describe = lambda d, t: machine.describe(d, t, measure_peak=False); "
    "from bench.cli import main; sys.exit(main(sys.argv[1:]))"
)
MODELS = ("lenet5_modern", "lenet5_mnist", "lenet5_cifar")


def _sweep(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", NO_PEAKS, "run", "--models", *MODELS, "--batch-sizes", "1",
        "--devices", "cpu", "--threads", "1", "--min-steps", "1", "--min-time", "0.2",
        "--no-fastest-format", "--out", str(out), *extra,
    ]  # fmt: skip


def _kill_when(argv: list[str], ready: Callable[[], bool], limit_s: float = 120.0) -> None:
    """Start ``argv``, SIGKILL it as soon as ``ready()``; fail if it ends first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + limit_s
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before the kill"
            assert time.monotonic() < deadline, "the run never got there"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def _whole_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resume_after_kills_before_the_first_row_and_mid_plan_measures_each_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # Killed as soon as meta.json is written: counting the first model comes before its rows.
    _kill_when(_sweep(out), lambda: (out / "meta.json").exists())
    assert not (out / "results.jsonl").exists()
    # Resumed, and killed again mid-plan, after its second row.
    _kill_when(_sweep(out, "--resume"), lambda: _whole_lines(out / "results.jsonl") >= 2)
    measured_before = _whole_lines(out / "results.jsonl")
    assert 2 <= measured_before < 2 * len(MODELS)

    # The last resume in this process (a third start would cost seconds, not coverage).
    from bench.measure import machine

    monkeypatch.setattr(
        "bench.sweep.loop.describe", lambda d, t: machine.describe(d, t, measure_peak=False)
    )
    code, stdout, err = run_cli(_sweep(out, "--resume")[3:], capsys)
    assert code == 0, err
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # no torn line
    assert len({row_key(r) for r in rows}) == len(rows) == 2 * len(MODELS)  # every row, once
    assert all(r["error"] is None for r in rows)
    assert stdout.count("already measured, skipped") == measured_before
    meta = json.loads((out / "meta.json").read_text())
    assert [s["session"] for s in meta["sessions"]] == [1, 2, 3]
    assert meta["sessions"][-1]["interrupted"] is False
    assert {r["session"] for r in rows} <= {2, 3}


# --- a run in which every row failed exits non-zero (issue 31) --------------------------------


def test_a_run_whose_every_row_failed_exits_1_and_says_how_many_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_machine: None
) -> None:
    broken = ["run", *TINY, "--models", "broken_net", "--out", str(tmp_path / "broken")]
    code, stdout, err = run_cli(broken, capsys)
    assert code == 1
    assert stdout.count("ERROR RuntimeError: this model always fails") == 2
    assert "0 of 2 rows noisy (IQR over 10% of the median), 2 of 2 failed;" in err
    assert _one_error_line(err) == (
        f"error: all 2 rows measured failed: their errors are above, the tracebacks in "
        f"{tmp_path / 'broken' / 'errors.log'}"
    )
    # Some rows measured: the failures are rows, the run passes.
    mixed = ["run", *TINY, "--models", "tiny_net", "broken_net", "--out", str(tmp_path / "mix")]
    code, _, err = run_cli(mixed, capsys)
    assert code == 0 and "2 of 4 failed;" in err and "error: " not in err
    # Nothing left to measure is not a failure.
    code, _, err = run_cli([*broken, "--resume"], capsys)
    assert code == 0 and "0 of 0 failed" in err


# --- outputs where the user works (issue 31) ------------------------------------------------


def test_results_and_reports_go_under_the_current_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_machine: None,
) -> None:
    reports_before = sorted((REPO / "reports").glob("*")) if (REPO / "reports").exists() else []
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    results = work / "results" / "run-x"
    shutil.copytree(FIXTURE, results, ignore=shutil.ignore_patterns("*.py", "*.md"))
    meta = json.loads((results / "meta.json").read_text())
    run_id = meta["run_id"]

    code, stdout, err = run_cli(["report", "results/run-x"], capsys)
    assert code == 0, err
    assert stdout.strip() == str(Path("reports") / run_id / "report.md")
    assert (work / "reports" / run_id / "report.html").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["reports", "results"]
    now = sorted((REPO / "reports").glob("*")) if (REPO / "reports").exists() else []
    assert now == reports_before  # nothing written into the checkout

    code, _, err = run_cli(["run", *TINY], capsys)  # no --out: results/<run-id> here
    assert code == 0, err
    (made,) = [p for p in (work / "results").iterdir() if p.name != "run-x"]
    assert len(read_jsonl(made / "results.jsonl")) == 2


def test_the_console_script_is_the_cli() -> None:
    tomllib = pytest.importorskip("tomllib")
    from importlib import import_module

    from bench import cli

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["cnn-zoo-bench"].partition(":")
    assert getattr(import_module(module), name) is cli.main
