"""The comparison report, built from the small fixture results folder in tests/fixtures/report.

Expectations are computed from the fixture's files here, never copied from a built report.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import report
from bench.cli.report import main as report_main
from bench.report.runs import device_peaks, reference_peak

FIXTURE = Path(__file__).parent / "fixtures" / "report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


ROWS = _jsonl(FIXTURE / "results.jsonl")
LAYERS = _jsonl(FIXTURE / "layers.jsonl")


def _ok(row: dict[str, Any]) -> bool:
    return not row.get("error")


def _models() -> list[str]:
    return sorted({r["model"] for r in ROWS})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.build_report([FIXTURE], tmp_path_factory.mktemp("report") / "out")


@pytest.fixture(scope="module")
def summary(built: Path) -> pd.DataFrame:
    return pd.read_csv(built / "summary.csv", dtype=str, keep_default_na=False).set_index("model")


@pytest.fixture(scope="module")
def markdown(built: Path) -> str:
    return (built / "report.md").read_text()


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def _table_row(section: str, first_cell: str) -> list[str]:
    for line in section.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [c.strip() for c in line.strip("|").split(" | ")]
    raise AssertionError(f"no row for {first_cell!r}")


def test_summary_has_one_row_per_model_including_failed_ones(summary: pd.DataFrame) -> None:
    assert sorted(summary.index) == _models()


@pytest.mark.parametrize("model", sorted({r["model"] for r in ROWS if _ok(r) and r.get("params")}))
def test_summary_counts_match_the_fixture(summary: pd.DataFrame, model: str) -> None:
    row = next(r for r in ROWS if r["model"] == model and _ok(r) and r["mode"] != "accuracy")
    assert summary.loc[model, "params"] == str(row["params"])
    assert summary.loc[model, "macs"] == str(row["macs_fvcore"])
    assert summary.loc[model, "flops"] == str(row["flops"])
    assert float(summary.loc[model, "weights_mib"]) == pytest.approx(row["weights_mib"])


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("model", ["lenet5_modern", "lab_cnn", "vgg16", "resnet34"])
def test_summary_throughput_is_the_best_fp32_row(
    summary: pd.DataFrame, model: str, mode: str
) -> None:
    candidates = [
        r
        for r in ROWS
        if r["model"] == model
        and r["mode"] == mode
        and _ok(r)
        and r["dtype"] == "fp32"
        and r["memory_format"] == "contiguous"
    ]
    best = max(candidates, key=lambda r: r["samples_per_s"])
    assert float(summary.loc[model, f"cpu_{mode}_samples_per_s"]) == pytest.approx(
        best["samples_per_s"]
    )
    assert summary.loc[model, f"cpu_{mode}_batch"] == str(best["batch_size"])
    assert float(summary.loc[model, f"cpu_{mode}_peak_mem_mib"]) == pytest.approx(
        best["peak_mem_mib"]
    )


def test_summary_activations_per_sample_from_the_smallest_train_batch(
    summary: pd.DataFrame,
) -> None:
    for model in ("lenet5_modern", "lab_cnn", "vgg16", "resnet34"):
        train = [r for r in ROWS if r["model"] == model and r["mode"] == "train" and _ok(r)]
        row = min(train, key=lambda r: r["batch_size"])
        assert float(summary.loc[model, "activations_mib_per_sample"]) == pytest.approx(
            row["activations_mib"] / row["batch_size"]
        )


def test_summary_accuracy_is_the_mean_over_seeds(summary: pd.DataFrame) -> None:
    for model in ("lab_cnn", "lenet5_modern"):
        acc = [r for r in ROWS if r["model"] == model and r["mode"] == "accuracy"]
        assert float(summary.loc[model, "accuracy"]) == pytest.approx(
            sum(r["accuracy"] for r in acc) / len(acc)
        )
        reached = sorted(r["time_to_target_s"] for r in acc if r["time_to_target_s"] is not None)
        assert summary.loc[model, "reached_target"] == f"{len(reached)}/{len(acc)}"
        if reached:
            assert float(summary.loc[model, "time_to_target_s"]) == pytest.approx(
                pd.Series(reached).median()
            )
        else:
            assert summary.loc[model, "time_to_target_s"] == ""


def test_a_model_whose_every_row_failed_reads_error(summary: pd.DataFrame, markdown: str) -> None:
    dead = sorted({r["model"] for r in ROWS} - {r["model"] for r in ROWS if _ok(r)})
    assert dead, "the fixture must hold a model with only failed rows"
    for model in dead:
        assert summary.loc[model, "params"] == "error"
        assert summary.loc[model, "cpu_infer_samples_per_s"] == "error"
        cells = _table_row(_section(markdown, "The zoo at a glance"), model)
        assert "error" in cells


def test_markdown_tables_show_the_fixture_numbers(markdown: str) -> None:
    glance = _section(markdown, "The zoo at a glance")
    for model in ("lenet5_modern", "lab_cnn", "vgg16", "resnet34"):
        row = next(r for r in ROWS if r["model"] == model and _ok(r))
        cells = _table_row(glance, model)
        assert f"{row['params']:,}" in cells
        assert report.fmt_si(row["macs_fvcore"]) in cells


def test_every_error_row_is_listed(markdown: str) -> None:
    errors = _section(markdown, "Errors")
    failed = [r for r in ROWS if not _ok(r)]
    assert len(failed) >= 2
    for row in failed:
        assert any(
            line.startswith(f"| {row['model']} |")
            and row["error"] in line
            and f"| {row['batch_size']} |" in line
            for line in errors.splitlines()
        )


def test_paper_columns_come_from_the_registry(summary: pd.DataFrame, markdown: str) -> None:
    import zoo

    facts = zoo.get_card("vgg16").paper
    assert facts is not None and facts.params == 138_357_544  # the paper's count: configuration D
    assert summary.loc["vgg16", "paper_params"] == str(facts.params)
    ours = next(r["params"] for r in ROWS if r["model"] == "vgg16" and _ok(r))
    assert float(summary.loc["vgg16", "params_diff_pct"]) == pytest.approx(
        100 * (ours - facts.params) / facts.params
    )
    cells = _table_row(_section(markdown, "The zoo at a glance"), "vgg16")
    assert cells.count(f"{facts.params:,}") == 2  # ours and the paper's, side by side
    assert facts.citation in _section(markdown, "What the papers say")


def test_sentences_are_computed_from_the_rows(markdown: str) -> None:
    def first(model: str, column: str) -> float:
        return next(r[column] for r in ROWS if r["model"] == model and _ok(r))

    params = first("vgg16", "params") / first("resnet34", "params")
    macs = first("vgg16", "macs_fvcore") / first("resnet34", "macs_fvcore")
    vgg_layers = [layer for layer in LAYERS if layer["model"] == "vgg16"]
    fc = sum(la["params"] for la in vgg_layers if la["type"] == "Linear")
    share = 100 * fc / sum(la["params"] for la in vgg_layers)
    expected = (
        f"vgg16 has {params:.1f}× the parameters of resnet34 and {macs:.1f}× its MACs; "
        f"{share:.0f}% of its parameters are in the classifier (Linear layers)."
    )
    assert expected in _section(markdown, "What the numbers say")
    assert "vgg16 has 6.3× the parameters of resnet34 and 4.2× its MACs; 89%" in expected


def test_every_plot_is_a_png_referenced_by_the_markdown(built: Path, markdown: str) -> None:
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    families = sorted({la["family"] for la in LAYERS})
    expected = {
        "fig_accuracy_vs_cost.png",
        "fig_latency_vs_macs.png",
        "fig_params_vs_macs.png",
        "fig_throughput_vs_batch.png",
        "fig_gflops_vs_peak.png",
        "fig_memory.png",
        "fig_time_to_accuracy.png",
        "fig_layer_share.png",
        *(f"fig_layers_{f}.png" for f in families),
    }
    assert set(referenced) == expected
    assert {p.name for p in built.glob("*.png")} == expected
    for name in expected:
        assert (built / name).read_bytes()[:8] == PNG_SIGNATURE, name


def test_html_is_self_contained(built: Path, markdown: str) -> None:
    page = (built / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == markdown.count("![")
    assert "<link" not in page and "http://" not in page and "https://" not in page


def test_a_second_build_gives_identical_bytes(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert report_main([str(FIXTURE), "--out", str(again)]) == 0
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (built / name).read_bytes() == (again / name).read_bytes(), name


def _copy_fixture(dst: Path, run_id: str, **overrides: Any) -> Path:
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    meta = json.loads((dst / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps({**meta, "run_id": run_id}))
    rows = [{**r, **overrides} for r in ROWS]
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_merging_colliding_folders_is_refused(tmp_path: Path) -> None:
    a = _copy_fixture(tmp_path / "a", "run-a")
    b = _copy_fixture(tmp_path / "b", "run-b")
    with pytest.raises(
        ValueError,
        match=r"rows collide: run-a and run-b both measured \S+ cpu (fp32|bf16\S*) ",
    ) as info:
        report.build_report([a, b], tmp_path / "out")
    assert "\n" not in str(info.value)


def test_a_folder_from_before_the_compile_column_collides_with_its_eager_twin(
    tmp_path: Path,
) -> None:
    """Rows without ``compile`` ran eagerly: the same settings as a new folder's ``"none"``."""
    old = _copy_fixture(tmp_path / "old", "run-old", compile=None)
    new = _copy_fixture(tmp_path / "new", "run-new", compile="none")
    with pytest.raises(ValueError, match=r"rows collide: run-old and run-new both measured "):
        report.build_report([old, new], tmp_path / "out")


def test_merging_distinct_folders_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _copy_fixture(tmp_path / "a", "run-a")
    b = _copy_fixture(tmp_path / "b", "run-b", threads=1)
    monkeypatch.chdir(tmp_path)
    out = report.build_report([a, b])
    assert out.resolve() == (tmp_path / "reports" / "run-a+1").resolve()
    measured = _section((out / "report.md").read_text(), "All measured rows")
    assert sum(line.startswith("| ") for line in measured.splitlines()) - 1 == 2 * sum(
        r["mode"] != "accuracy" for r in ROWS
    )


def test_missing_folder_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.build_report([tmp_path / "nope"], tmp_path / "out")
    assert report_main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_empty_results_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="has no rows"):
        report.build_report([tmp_path / "run"], tmp_path / "out")
    (tmp_path / "run" / "results.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="results.jsonl is missing"):
        report.build_report([tmp_path / "run"], tmp_path / "out")


def test_peaks_are_read_per_device() -> None:
    meta = {"peak_gflops": {"fp32_matmul": 180.0, "bf16_matmul": 360.0, "cuda_fp32_matmul": 5e4}}
    assert device_peaks(meta, "cpu") == {"fp32_matmul": 180.0, "bf16_matmul": 360.0}
    assert device_peaks(meta, "cuda") == {"fp32_matmul": 5e4}
    assert device_peaks({}, "cpu") == {}


def test_fp32_rows_are_judged_against_the_faster_of_matmul_and_conv() -> None:
    peaks = {"fp32_matmul": 93.0, "fp32_conv3x3": 150.0, "bf16_matmul": 1.1}
    assert reference_peak(peaks, "fp32") == ("fp32_conv3x3", 150.0)
    assert reference_peak({**peaks, "fp32_matmul": 200.0}, "fp32") == ("fp32_matmul", 200.0)
    assert reference_peak(peaks, "bf16_autocast") == ("bf16_matmul", 1.1)
    assert reference_peak({}, "fp32") is None


def test_a_conv_peak_in_meta_is_the_yardstick_of_the_report(tmp_path: Path) -> None:
    run = _copy_fixture(tmp_path / "run", "with-conv-peak")
    meta = json.loads((run / "meta.json").read_text())
    fp32 = meta["peak_gflops"]["fp32_matmul"]
    meta["peak_gflops"]["fp32_conv3x3"] = 2 * fp32
    (run / "meta.json").write_text(json.dumps(meta))
    markdown = (report.build_report([run], tmp_path / "out") / "report.md").read_text()
    assert "fp32 conv3x3 peak" in markdown
    row = next(r for r in ROWS if _ok(r) and r["dtype"] == "fp32" and r["achieved_gflops"])
    share = f"{100 * row['achieved_gflops'] / (2 * fp32):.1f}%"
    assert share in _section(markdown, "All measured rows")


@pytest.mark.parametrize("dtype", ["bf16_autocast", "bf16"])
def test_bf16_rows_are_judged_against_the_faster_of_bf16_matmul_and_conv(dtype: str) -> None:
    fp32 = {"fp32_matmul": 93.0, "fp32_conv3x3": 150.0}
    conv_faster = {**fp32, "bf16_matmul": 300.0, "bf16_conv3x3": 450.0}
    assert reference_peak(conv_faster, dtype) == ("bf16_conv3x3", 450.0)
    matmul_faster = {**fp32, "bf16_matmul": 500.0, "bf16_conv3x3": 450.0}
    assert reference_peak(matmul_faster, dtype) == ("bf16_matmul", 500.0)
    assert reference_peak({**fp32, "bf16_conv3x3": 450.0}, dtype) == ("bf16_conv3x3", 450.0)
    assert reference_peak(fp32, dtype) is None  # bf16 peaks skipped: no share, not fp32's
    # fp32 rows never take a bf16 peak, however fast
    assert reference_peak(conv_faster, "fp32") == ("fp32_conv3x3", 150.0)


def test_the_bf16_conv_peak_is_read_per_device() -> None:
    meta = {"peak_gflops": {"bf16_conv3x3": 400.0, "cuda_bf16_conv3x3": 9e5}}
    assert device_peaks(meta, "cpu") == {"bf16_conv3x3": 400.0}
    assert device_peaks(meta, "cuda") == {"bf16_conv3x3": 9e5}


def test_a_bf16_conv_peak_in_meta_is_the_yardstick_of_bf16_rows(tmp_path: Path) -> None:
    run = _copy_fixture(tmp_path / "run", "with-bf16-conv-peak")
    meta = json.loads((run / "meta.json").read_text())
    bf16 = meta["peak_gflops"]["bf16_matmul"]
    meta["peak_gflops"]["bf16_conv3x3"] = 2 * bf16
    (run / "meta.json").write_text(json.dumps(meta))
    markdown = (report.build_report([run], tmp_path / "out") / "report.md").read_text()
    assert "bf16 conv3x3 peak" in markdown
    row = next(r for r in ROWS if _ok(r) and "bf16" in r["dtype"] and r["achieved_gflops"])
    share = f"{100 * row['achieved_gflops'] / (2 * bf16):.1f}%"
    assert share in _section(markdown, "All measured rows")


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    run = _copy_fixture(tmp_path / "run", "torn")
    with open(run / "results.jsonl", "a") as f:
        f.write('{"model": "vgg16", "dev')
    loaded = report.load_run(run)
    assert len(loaded.results) == len(ROWS)


def test_the_report_subcommand_is_the_one_of_python_dash_m_bench_report() -> None:
    from bench import cli
    from bench.cli import report as report_cli

    assert cli.SUBCOMMANDS["report"].run is report_cli.run_report
    assert cli.SUBCOMMANDS["report"].add_arguments is report_cli.add_report_arguments


def test_the_same_run_on_two_processes_is_a_row_of_its_own(tmp_path: Path) -> None:
    """A torchrun (DDP) accuracy row does not collide with the one-process row it repeats."""
    a = _copy_fixture(tmp_path / "a", "run-a")
    b = tmp_path / "b"
    _copy_fixture(b, "run-b")
    ddp = [
        {**r, "world_size": 2, "backend": "gloo", "global_batch": r["batch_size"]}
        for r in ROWS
        if r["mode"] == "accuracy" and not r.get("weights")  # training runs
    ]
    (b / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ddp))
    out = report.build_report([a, b], tmp_path / "out")
    section = _section((out / "report.md").read_text(), "Time to accuracy")
    assert section.count("| 2 (gloo) |") == len(ddp)
    assert section.count("| 1 |") >= len(ddp)


def test_the_summary_shows_fp32_and_the_fastest_format_side_by_side(tmp_path: Path) -> None:
    run = _copy_fixture(tmp_path / "run", "fastest")

    def best_fp32(model: str, mode: str) -> dict[str, Any]:
        rows = [r for r in ROWS if r["model"] == model and r["mode"] == mode and _ok(r)]
        rows = [r for r in rows if (r["dtype"], r["memory_format"]) == ("fp32", "contiguous")]
        return max(rows, key=lambda r: r["samples_per_s"])

    # bf16 autocast + channels_last beside fp32: 1.5x, 2x and 1.8x faster, and once slower.
    speedups = {("lenet5_modern", "infer"): 1.5, ("lenet5_modern", "train"): 0.8,
                ("lab_cnn", "infer"): 2.0, ("lab_cnn", "train"): 1.8}  # fmt: skip
    added = []
    for (model, mode), times in speedups.items():
        fp32 = best_fp32(model, mode)
        added.append({**fp32, "dtype": "bf16_autocast", "memory_format": "channels_last",
                      "samples_per_s": times * fp32["samples_per_s"]})  # fmt: skip
    # vgg16's bf16 training row failed: its fastest format is unknown, not fp32's.
    vgg_train = best_fp32("vgg16", "train")
    added.append({**vgg_train, "dtype": "bf16_autocast", "memory_format": "channels_last",
                  "samples_per_s": None, "error": "out of memory"})  # fmt: skip
    with open(run / "results.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in added))
    built = report.build_report([run], tmp_path / "out")
    summary = pd.read_csv(built / "summary.csv", dtype=str, keep_default_na=False)
    summary = summary.set_index("model")
    assert summary.loc["vgg16", "cpu_train_fastest_samples_per_s"] == "error"
    lenet = summary.loc["lenet5_modern"]
    infer = best_fp32("lenet5_modern", "infer")
    assert float(lenet["cpu_infer_fastest_samples_per_s"]) == pytest.approx(
        1.5 * infer["samples_per_s"]
    )
    assert lenet["cpu_infer_fastest_format"] == "bf16_autocast/channels_last"
    assert lenet["cpu_infer_fastest_batch"] == str(infer["batch_size"])
    assert float(lenet["cpu_infer_fastest_speedup"]) == pytest.approx(1.5)
    assert lenet["cpu_train_fastest_format"] == "fp32/contiguous"  # bf16 was slower
    # vgg16 was measured in fp32 only: no fastest format to name, and no speed-up of 1.
    assert summary.loc["vgg16", "cpu_infer_fastest_format"] == ""
    assert summary.loc["vgg16", "cpu_infer_fastest_speedup"] == ""
    markdown = (built / "report.md").read_text()
    glance = _section(markdown, "The zoo at a glance").split("Speed and memory at")[1]
    assert "| cpu infer samples/s | cpu infer samples/s, fastest format |" in glance
    cells = _table_row(glance, "lenet5_modern")
    fp32_cell = f"{infer['samples_per_s']:,.0f} (b=32)"  # 9,603: four significant digits
    fastest = f"{1.5 * infer['samples_per_s']:,.0f} (b=32, bf16_autocast/channels_last, 1.50× fp32)"
    assert cells[1:5] == [fp32_cell, fastest, cells[3], "= fp32"]
    assert _table_row(glance, "lab_cnn")[4].endswith(
        "(b=32, bf16_autocast/channels_last, 1.80× fp32)"
    )
    # The opening: each model's fastest over its fp32, only where more than fp32 was measured
    # (the fixture's third, in bf16 contiguous, in inference): inference 1.5x (lenet5_modern) to
    # 2.0x (lab_cnn) over 3 models, training 1.0x (fp32 won) to 1.8x over 2.
    opening = _section(markdown, "In short: why these networks differ")
    assert "The fastest format against fp32: on cpu" in opening
    assert "1.50× to 2.00× over 3 models)" in opening and "1.00× to 1.80× over 2 models)" in opening


def test_the_accuracy_table_says_how_far_each_run_went_and_what_ended_it(markdown: str) -> None:
    section = _section(markdown, "Time to accuracy")
    assert "| epochs | samples seen | stopped by | final accuracy |" in section
    runs = [r for r in ROWS if r["mode"] == "accuracy" and not r.get("weights")]
    assert runs and all(r["samples_seen"] and r["stopped_by"] for r in runs)
    for r in runs:  # e.g. lab_cnn: 3 passes of MNIST's 60,000 images, ended by its length
        cells = f"| {r['epochs']} | {r['samples_seen']:,} | {r['stopped_by']} | "
        assert f"{cells}{100 * r['accuracy']:.2f}% |" in section


def test_lenet5s_test_error_is_set_beside_the_papers(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    shutil.copytree(FIXTURE, folder)
    template = next(r for r in ROWS if r["mode"] == "accuracy" and _ok(r))
    published = "sdlm lr passes ..., 1,200,000 samples"
    runs = [  # (recipe, its name, samples seen, accuracy): two full runs, one pass, the stand-in
        (published, None, 1_200_000, 0.9890),
        (published, None, 1_200_000, 0.9894),
        ("sdlm lr passes ..., 60,000 samples", None, 60_000, 0.9500),
        ("sgd lr passes ..., 1,200,000 samples", "lenet5_sgd", 1_200_000, 0.9990),
    ]
    with open(folder / "results.jsonl", "a") as f:
        for seed, (recipe, name, seen, accuracy) in enumerate(runs):
            row = {**template, "model": "lenet5", "family": "lenet", "recipe": recipe}
            row.update(seed=seed, samples_seen=seen, accuracy=accuracy, data="mnist")
            row.update(recipe_name=name)
            f.write(json.dumps(row) + "\n")
    built = report.build_report([folder], tmp_path / "out")
    summary = pd.read_csv(built / "summary.csv", dtype=str, keep_default_na=False)
    lenet5 = summary.set_index("model").loc["lenet5"]
    # The two full runs of the model's own recipe: not the one pass, not the stand-in.
    assert float(lenet5["accuracy"]) == pytest.approx((0.9890 + 0.9894) / 2)
    assert float(lenet5["accuracy_samples"]) == 1_200_000 and lenet5["accuracy_seeds"] == "2"
    markdown = (built / "report.md").read_text()
    papers = _section(markdown, "What the papers say")
    assert "lenet5: 1.08% test error on mnist after 1,200,000 training samples" in papers
    assert "against the paper's 0.95%" in papers


def test_each_curve_says_the_alternative_recipe_it_trained_with() -> None:
    from bench.report.runs import epoch_curves

    base = {"model": "lenet5", "data": "mnist", "seed": 0, "world_size": 1, "device": "cpu"}
    epochs = pd.DataFrame(
        [
            {**base, "run": "a", "recipe_name": None, "epoch": 1.0, "wall_s": 9.0},
            {**base, "run": "b", "recipe_name": "lenet5_sgd", "epoch": 1.0, "wall_s": 4.0},
        ]
    ).assign(folder="f", test_accuracy=0.97)
    names = {c.run: c.recipe_name for c in epoch_curves(epochs)}
    assert names == {"a": None, "b": "lenet5_sgd"}


def test_the_accuracy_section_names_the_copy_of_each_data_set() -> None:
    from bench.report.document import Bullets
    from bench.report.sections import accuracy_blocks
    from bench.schema import ROW_COLUMNS

    row = dict.fromkeys(ROW_COLUMNS)
    row.update(model="lenet5_cifar", mode="accuracy", data="cifar10", seed=0, accuracy=0.66,
               data_source="CIFAR-10 image-folder copy x.tar.gz, sha256 abc")  # fmt: skip
    mnist = {**row, "model": "lenet5_mnist", "data": "mnist", "data_source": None}
    blocks = accuracy_blocks(pd.DataFrame([row, mnist, {**row, "seed": 1}]), None)
    (copies,) = [b for b in blocks if isinstance(b, Bullets)]
    assert copies.items == ("cifar10: CIFAR-10 image-folder copy x.tar.gz, sha256 abc",)


def test_given_weights_have_their_own_section_with_the_published_accuracy_beside(
    markdown: str,
) -> None:
    (given,) = [r for r in ROWS if r.get("weights")]
    section = _section(markdown, "Given weights, evaluated here")
    cells = _table_row(section, given["model"])
    assert cells[1] == given["weights"] and cells[3] == str(given["test_samples"])
    expected = [given["accuracy"], given["top5"], given["published_top1"], given["published_top5"]]
    assert cells[5:9] == [f"{100 * v:.2f}%" for v in expected]
    weakest = min(given["per_class_accuracy"], key=given["per_class_accuracy"].get)
    assert cells[9].startswith(f"{weakest} ")
    # Not a training run: the time-to-accuracy table does not list it.
    assert given["data"] not in _section(markdown, "Time to accuracy")


def test_accuracy_by_class_has_a_column_per_class_and_names_the_weakest(markdown: str) -> None:
    runs = [r for r in ROWS if r.get("mode") == "accuracy" and not r.get("weights")]
    section = _section(markdown, "Accuracy by class")
    header = next(line for line in section.splitlines() if line.startswith("| run |"))
    assert [c.strip() for c in header.strip("|").split(" | ")] == [
        "run",
        *(str(d) for d in range(10)),
        "weakest",
    ]
    for run in runs:
        cells = _table_row(section, f"{run['model']} seed {run['seed']}")
        scores = run["per_class_accuracy"]
        assert cells[1:11] == [f"{100 * scores[str(d)]:.2f}%" for d in range(10)]
        assert cells[11] == min(scores, key=lambda name: (scores[name], name))
