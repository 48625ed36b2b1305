"""--resume sessions (meta.json keeps each session's machine facts, rows name their session),
layer breakdowns a kill cut short, and report folders named from meta.json's run id."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from conftest import FAKE_MACHINE, register_test_models

from bench import report
from bench.measure.timing import TimerSettings
from bench.report.build import _default_out_dir
from bench.report.runs import device_peaks, load_run, session_meta
from bench.report.sections import header_blocks, measured_blocks
from bench.schema import ResultsWriter, read_jsonl
from bench.sweep.loop import run_plan
from bench.sweep.plan import RunPlan

FAST = TimerSettings(warmup=1, min_steps=2, min_time_s=0.0)
FIRST = dataclasses.replace(
    FAKE_MACHINE, hostname="first", peak_gflops={"fp32_matmul": 10.0, "bf16_matmul": 5.0}
)
SECOND = dataclasses.replace(
    FAKE_MACHINE, hostname="second", peak_gflops={"fp32_matmul": 40.0, "bf16_matmul": 80.0}
)
FIXTURE = Path(__file__).parent / "fixtures" / "report"


def plan(modes: tuple[str, ...]) -> RunPlan:
    return RunPlan(
        models=("tiny_net",), batch_sizes=(2,), threads=1, timer=FAST, large_timer=FAST,
        devices=("cpu",), modes=modes,
    )  # fmt: skip


def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def test_resume_keeps_each_sessions_peaks_and_rows_name_their_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("infer",)), tmp_path, machine=FIRST)
    run_plan(plan(("infer", "train")), tmp_path, machine=SECOND, resume=True)

    meta = _meta(tmp_path)
    # The top-level keys stay the first session's; each session keeps its own.
    assert meta["peak_gflops"] == FIRST.peak_gflops and meta["hostname"] == "first"
    first, second = meta["sessions"]
    assert (first["session"], second["session"]) == (1, 2)
    assert first["peak_gflops"] == FIRST.peak_gflops and first["hostname"] == "first"
    assert second["peak_gflops"] == SECOND.peak_gflops and second["hostname"] == "second"
    assert first["plan"]["modes"] == ["infer"] and second["plan"]["modes"] == ["infer", "train"]
    assert first["interrupted"] is False and second["interrupted"] is False
    assert meta["started"] == first["started"] and meta["finished"] == second["finished"]
    assert meta["duration_s"] == pytest.approx(first["duration_s"] + second["duration_s"], abs=0.1)

    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [(r["mode"], r["session"]) for r in rows] == [("infer", 1), ("train", 2)]

    # The report judges each row against the peaks of the session that measured it.
    run = load_run(tmp_path)
    machines = {1: FIRST, 2: SECOND}
    for row in run.results.to_dict("records"):
        peaks = device_peaks(session_meta(run.metas[0], row["session"]), "cpu")
        assert peaks == machines[int(row["session"])].peak_gflops
    header = header_blocks(run)[1]  # a column per session
    assert header.headers == ("", f"{tmp_path.name} session 1", f"{tmp_path.name} session 2")
    assert ("host", "first", "second") in header.rows
    assert ("cpu fp32 matmul peak (GFLOP/s)", "10.00", "40.00") in header.rows
    table = measured_blocks(run.results, run.metas)[-1]
    shares = {r[6]: r[10] for r in table.rows}  # mode → "% of peak"
    for row in rows:
        peak = machines[row["session"]].peak_gflops["fp32_matmul"]
        assert shares[row["mode"]] == f"{100 * row['achieved_gflops'] / peak:.1f}%"


def test_a_folder_from_before_sessions_reads_as_the_first_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("infer",)), tmp_path, machine=FIRST)
    # As an older version wrote it: no sessions in meta.json, no session column.
    old = {k: v for k, v in _meta(tmp_path).items() if k != "sessions"}
    (tmp_path / "meta.json").write_text(json.dumps(old))
    rows = [
        {k: v for k, v in r.items() if k != "session"}
        for r in read_jsonl(tmp_path / "results.jsonl")
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert device_peaks(session_meta(old, None)) == FIRST.peak_gflops

    run_plan(plan(("infer", "train")), tmp_path, machine=SECOND, resume=True)
    meta = _meta(tmp_path)
    assert [s["peak_gflops"] for s in meta["sessions"]] == [
        FIRST.peak_gflops,
        SECOND.peak_gflops,
    ]
    assert [r.get("session") for r in read_jsonl(tmp_path / "results.jsonl")] == [None, 2]
    run = load_run(tmp_path)
    infer, train = run.results.to_dict("records")
    assert device_peaks(session_meta(run.metas[0], infer["session"])) == FIRST.peak_gflops
    assert device_peaks(session_meta(run.metas[0], train["session"])) == SECOND.peak_gflops


def test_a_session_meta_json_does_not_list_has_no_peaks() -> None:
    meta = {"peak_gflops": {"fp32_matmul": 1.0}, "sessions": [{"session": 1}]}
    assert device_peaks(session_meta(meta, 3)) == {}


def test_a_layer_breakdown_cut_short_is_completed_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("infer",)), tmp_path, machine=FIRST)
    layers_path = tmp_path / "layers.jsonl"
    whole = layers_path.read_text().splitlines(keepends=True)
    assert len(whole) == 4
    # A kill mid-batch: half the lines and a torn one.
    layers_path.write_text("".join(whole[:2]) + whole[2][:10])

    run_plan(plan(("infer",)), tmp_path, machine=FIRST, resume=True)  # every row is done
    layers = read_jsonl(layers_path)
    assert [(x["index"], x["layer"]) for x in layers] == [
        (0, "conv"), (1, "relu"), (2, "pool"), (3, "fc"),
    ]  # fmt: skip
    assert {x["layer_count"] for x in layers} == {4}
    assert len(read_jsonl(tmp_path / "results.jsonl")) == 1  # no row measured again


def test_rewriting_a_breakdown_keeps_the_other_models_lines(tmp_path: Path) -> None:
    def lines(model: str, n: int) -> list[dict]:
        return [
            dict(model=model, family="f", index=i, layer=f"l{i}", type="Conv2d",
                 output_shape="1", params=1, macs=1, activation_mib=0.0)
            for i in range(n)
        ]  # fmt: skip

    ResultsWriter(tmp_path).write_layers(lines("a", 2))
    ResultsWriter(tmp_path).write_layers(lines("b", 3))
    path = tmp_path / "layers.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:4]))  # b: 2 of 3 lines

    writer = ResultsWriter(tmp_path)
    assert writer.has_layers("a") and not writer.has_layers("b")
    writer.write_layers(lines("b", 3))
    written = [(x["model"], x["index"]) for x in read_jsonl(path)]
    assert written == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert ResultsWriter(tmp_path).has_layers("b")


@pytest.mark.parametrize("run_id", ["..", "../escape", "a/b", "/tmp/absolute", ".", ".hidden"])
def test_a_run_id_names_one_visible_folder_under_reports(run_id: str) -> None:
    out = _default_out_dir(run_id)
    assert out.parent == Path("reports") and len(out.parts) == 2
    assert out.name not in ("", ".", "..") and not out.name.startswith(".")


def test_a_run_id_cannot_place_the_report_outside_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "../escape"  # the whole build, once: the folder above is where it writes
    folder = tmp_path / "results" / "run"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py", "*.md"))
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "run_id": run_id}))
    work = tmp_path / "work"  # where the user stands: the report goes under it
    work.mkdir()
    monkeypatch.chdir(work)
    out = report.build_report([folder])
    reports = (work / "reports").resolve()
    assert out.resolve().parent == reports
    assert not out.name.startswith(".")
    assert (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "work"]
