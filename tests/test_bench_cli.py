"""The command line: user errors are one line and exit code 2, before any work starts."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, register_test_models, run_cli

from bench import cli
from bench.cli import sweep
from bench.schema import read_jsonl

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to measure fails the test: errors must come before the work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("run_plan was called")

    monkeypatch.setattr("bench.sweep.loop.run_plan", refuse)


BAD = {
    "unknown model": (["run", "--models", "resnet35"], "unknown model 'resnet35'"),
    "pattern matching nothing": (["run", "--models", "xyz*"], "no model matches 'xyz*'"),
    "batch 0": (["run", "--batch-sizes", "0"], "bad batch size '0'"),
    "negative batch": (["run", "--batch-sizes", "8", "-4"], "bad batch size '-4'"),
    "fractional batch": (["run", "--batch-sizes", "2.5"], "bad batch size '2.5'"),
    "word batch": (["run", "--batch-sizes", "big"], "bad batch size 'big'"),
    "unknown dtype": (["run", "--dtypes", "fp16"], "unknown dtype 'fp16'"),
    "unknown device": (["run", "--devices", "tpu"], "unknown device 'tpu'"),
    "layers of unknown model": (["layers", "vgg17"], "unknown model 'vgg17'"),
    "unknown subcommand": (["measure"], "invalid choice: 'measure'"),
    "resume without results": (["run", "--resume", "--out", "/nonexistent/run"], "does not exist"),
}


@pytest.mark.parametrize("args, message", list(BAD.values()), ids=list(BAD))
def test_user_errors_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error(
    capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    code, _, err = run_cli(["run", "--models", "lenet5", "--devices", "cuda"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no CUDA device" in err


def test_default_devices_use_cuda_only_when_present() -> None:
    parser = cli.build_parser()
    plan = cli.build_plan(parser.parse_args(["run", "--models", "lenet5", "--threads", "1"]))
    assert plan.devices == (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    assert plan.label == "short" and plan.threads == 1


def test_full_plan_and_overrides() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["run", "--models", "lenet*", "--full", "--batch-sizes", "4", "8", "--min-steps", "3"]
    )
    plan = cli.build_plan(args)
    assert plan.label == "full" and plan.batch_sizes == (4, 8)
    assert plan.models[0].startswith("lenet") and "vgg16" not in plan.models
    assert plan.timer.min_steps == 3 and plan.large_timer.min_steps == 3
    assert set(plan.dtypes) == {"fp32", "bf16_autocast", "bf16"}


def test_min_steps_keeps_the_time_cap_of_the_short_plan() -> None:
    parser = cli.build_parser()
    plan = cli.build_plan(parser.parse_args(["run", "--models", "vgg16", "--min-steps", "7"]))
    # RunPlan.short's timer: max_time_s=2.0, floor_steps=3 (bench/sweep/plan.py)
    assert plan.timer.min_steps == 7 and plan.timer.max_time_s == 2.0
    assert plan.timer.floor_steps == 3 and plan.timer.warmup == 1
    plan = cli.build_plan(parser.parse_args(["run", "--models", "vgg16", "--min-time", "1.5"]))
    assert plan.timer.min_time_s == 1.5 and plan.timer.max_time_s == 2.0


def test_a_row_line_without_spread_gives_median_and_count() -> None:
    row = {
        "model": "vgg16", "device": "cpu", "dtype": "fp32", "memory_format": "contiguous",
        "mode": "train", "batch_size": 1, "max_batch": None, "error": None,
        "step_ms_median": 1500.0, "step_ms_p10": None, "step_ms_p90": None, "steps_timed": 3,
        "samples_per_s": 0.67, "achieved_gflops": 61.9, "peak_mem_mib": 2048.0,
    }  # fmt: skip
    line = sweep.row_line(row, skipped=False)
    assert "1500.00 ms/step (n=3)" in line and "p10" not in line
    spread = sweep.row_line({**row, "step_ms_p10": 1400.0, "step_ms_p90": 1600.0}, skipped=False)
    assert "(p10 1400.00, p90 1600.00, n=3)" in spread


def test_list_and_layers_print_tables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["list", "lenet*"], capsys)
    assert code == 0 and "lenet5_modern" in out and "vgg16" not in out
    code, out, _ = run_cli(["layers", "lenet5"], capsys)
    assert code == 0
    assert "RBFOutput" in out and "326,520" in out and "60,000" in out


def test_run_writes_rows_for_a_registered_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    args = ["run", "--models", "tiny_net", "--batch-sizes", "2", "--threads", "1",
            "--min-steps", "2", "--min-time", "0", "--no-fastest-format",
            "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.count("tiny_net cpu fp32 contiguous") == 2  # a line per row
    assert len(read_jsonl(tmp_path / "run" / "results.jsonl")) == 2
    code, out, _ = run_cli([*args, "--resume"], capsys)
    assert code == 0 and out.count("already measured, skipped") == 2


def test_a_subcommand_is_a_row_of_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("thing")

    def run(args: argparse.Namespace) -> int:
        seen.append(args.thing)
        return 0

    monkeypatch.setitem(cli.SUBCOMMANDS, "hello_test", cli.Subcommand("a test", add_arguments, run))
    assert cli.main(["hello_test", "world"]) == 0
    assert seen == ["world"]


def test_python_dash_m_bench_reports_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--models", "lenet6"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: unknown model 'lenet6': did you mean lenet5")


def test_all_runs_the_plan_then_its_follow_ups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    seen: list[tuple[str, Path]] = []

    def follow_up(name: str) -> cli.Subcommand:
        def run(args: argparse.Namespace) -> int:
            seen.append((name, args.out if name == "accuracy" else args.results_dirs[0]))
            return 0

        return cli.Subcommand(name, cli.SUBCOMMANDS[name].add_arguments, run)

    for name in ("accuracy", "report"):
        monkeypatch.setitem(cli.SUBCOMMANDS, name, follow_up(name))
    out = tmp_path / "run"
    args = ["all", "--models", "tiny_net", "--batch-sizes", "2", "--modes", "infer",
            "--threads", "1", "--min-steps", "2", "--min-time", "0", "--no-fastest-format",
            "--out", str(out)]  # fmt: skip
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data"))  # no CIFAR-10 there
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert seen == [("accuracy", out), ("report", out)]
    assert len(read_jsonl(out / "results.jsonl")) == 1
    assert "cifar10: not provisioned, its plan skipped (`python -m data fetch cifar10" in stdout


def test_all_trains_the_main_jobs_cifar_runs_where_cifar10_is_provisioned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import data
    from bench.training.runs import MAIN_JOB_CIFAR

    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    monkeypatch.setattr(data, "cifar10_copy", lambda root=None: object())  # provisioned
    asked: list[list[str]] = []

    def accuracy(args: argparse.Namespace) -> int:
        asked.append([args.data, *(args.models or [])])
        return 0

    monkeypatch.setitem(
        cli.SUBCOMMANDS,
        "accuracy",
        cli.Subcommand("accuracy", cli.SUBCOMMANDS["accuracy"].add_arguments, accuracy),
    )
    report = cli.SUBCOMMANDS["report"]
    monkeypatch.setitem(
        cli.SUBCOMMANDS, "report", cli.Subcommand("report", report.add_arguments, lambda a: 0)
    )
    args = ["all", "--models", "lenet5_mnist", "--batch-sizes", "1", "--modes", "infer",
            "--threads", "1", "--min-steps", "2", "--min-time", "0", "--no-fastest-format",
            "--passes", "1", "--dtypes", "fp32", "--out", str(tmp_path / "run")]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    # --models asked: the CIFAR step gets the same patterns (none of them a CIFAR model here)
    assert asked == [["mnist", "lenet5_mnist"], ["cifar10", "lenet5_mnist"]]
    assert MAIN_JOB_CIFAR == ("lenet5_cifar",)


def test_full_trains_the_deep_cifar_models_200_passes_of_crops_and_flips() -> None:
    from bench.cli import build_parser
    from bench.cli.training import _train_settings
    from bench.training import runs

    literature = 200 * 50_000  # 200 passes over CIFAR-10's 50,000 training images
    full = {s.model: s.samples for s in runs.accuracy_plan("cifar10", full=True)}
    assert full == {
        "lenet5_cifar": 500_000,  # no literature length: the recipe's own
        "alexnet_cifar_kaiming": 150_000,
        "alexnet_cifar": 150_000,
        "vgg16_cifar": literature,
        "vgg19_cifar": literature,
        "resnet34_cifar": literature,
    }
    assert len(runs.accuracy_plan("cifar10", full=True)) == 3 * len(full)  # seeds 0-2

    def settings(*argv: str) -> object:
        return _train_settings(build_parser().parse_args(["train", *argv]))

    assert settings("vgg16_cifar", "--data", "cifar10", "--full").samples == literature
    assert settings("vgg16_cifar", "--data", "cifar10").samples is None  # the recipe's 150,000
    # Flips alone in three passes; the literature's 200 passes with its crops and flips, unless
    # another augmentation is asked.
    deep = ("vgg16_cifar", "vgg19_cifar", "resnet34_cifar")
    full_plan = runs.accuracy_plan("cifar10", full=True)
    assert {s.augment for s in full_plan if s.model in deep} == {"crop4_flip"}
    assert settings("vgg16_cifar", "--data", "cifar10").augment is None  # the recipe's flips
    assert settings("vgg16_cifar", "--data", "cifar10", "--full").augment == "crop4_flip"
    full_flip = settings("vgg16_cifar", "--data", "cifar10", "--full", "--augment", "flip")
    assert full_flip.augment == "flip"
    assert settings("lenet5_cifar", "--data", "cifar10", "--full").augment is None
    assert settings("lenet5", "--full").samples == 20 * 60_000  # LeNet-5's 20 passes
    with pytest.raises(ValueError, match="--full trains the recipe's whole length"):
        settings("vgg16_cifar", "--full", "--samples", "1000")


def test_the_cifar_plan_is_every_cifar_sized_variant_and_needs_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import zoo
    from bench.training import runs
    from bench.training.recipes import recipe_for

    cifar_sized = [n for n in zoo.list_models() if zoo.get_card(n).input_shape == (3, 32, 32)]
    assert {s.model for s in runs.accuracy_plan("cifar10")} == set(cifar_sized)
    assert {s.data for s in runs.accuracy_plan("cifar10", full=True)} == {"cifar10"}
    # Flips alone in three passes, where crops and flips cost the big networks more fit than
    # they give back; lenet5_cifar's ten passes keep both.
    assert {n: recipe_for(n).augment for n in cifar_sized} == {
        n: "crop4_flip" if n == "lenet5_cifar" else "flip" for n in cifar_sized
    }
    # Targets only where five seeds were measured; MNIST's as before.
    assert runs.default_target(recipe_for("lenet5_cifar"), "cifar10") == 0.65
    assert runs.default_target(recipe_for("vgg16_cifar"), "cifar10") is None
    assert runs.default_target(recipe_for("lenet5_mnist"), "mnist") == 0.985
    assert runs.default_target(recipe_for("lab_cnn"), "mnist") == 0.99
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data"))
    code, stdout, err = run_cli(["accuracy", str(tmp_path / "out"), "--data", "cifar10"], capsys)
    (line,) = err.strip().splitlines()
    assert code == 2 and "CIFAR-10 is not provisioned" in line and "python -m data fetch" in line
    assert not (tmp_path / "out" / "results.jsonl").exists()


# --- --shard I/N: one sweep over several machines (issue 8) ---------------------------------

SHARD_ERRORS = {
    "I above N": (["run", "--shard", "3/2"], "--shard 3/2: I must be 1..N"),
    "no slices": (["run", "--shard", "0/0"], "--shard 0/0: I must be 1..N"),
    "zero-based": (["run", "--shard", "0/4"], "--shard 0/4: I must be 1..N"),
    "not I/N": (["run", "--shard", "2"], "write I/N"),
    "accuracy plan": (["accuracy", "out", "--shard", "5/4"], "--shard 5/4: I must be 1..N"),
}


@pytest.mark.parametrize("args, message", list(SHARD_ERRORS.values()), ids=list(SHARD_ERRORS))
def test_impossible_shards_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def _plan_keys(args: list[str]) -> list[tuple[object, ...]]:
    from bench.sweep.loop import plan_rows

    plan = cli.build_plan(cli.build_parser().parse_args(["run", *args]))
    return [spec.key(plan.threads) for m in plan.models for spec in plan_rows(plan, m)]


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_are_disjoint_and_cover_the_whole_plan(count: int) -> None:
    whole = _plan_keys(["--full", "--devices", "cpu"])
    slices = [_plan_keys(["--full", "--devices", "cpu", "--shard", f"{i}/{count}"])
              for i in range(1, count + 1)]  # fmt: skip
    assert sorted(k for part in slices for k in part) == sorted(whole)  # no row twice, none lost
    assert all(part for part in slices)
    # Machines with different core counts (the default --threads) agree on every row's slice.
    assert [len(p) for p in slices] == [
        len(_plan_keys(["--full", "--devices", "cpu", "--threads", "7", "--shard", f"{i}/{count}"]))
        for i in range(1, count + 1)
    ]


def test_shards_run_on_two_machines_merge_into_the_whole_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.report import build_report, load_run, merge_runs

    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    sweep = ["run", "--models", "tiny_net", "--batch-sizes", "1", "2", "3", "4", "--threads",
             "1", "--min-steps", "1", "--min-time", "0", "--no-fastest-format"]  # fmt: skip
    folders = []
    for i in (1, 2):
        folders.append(tmp_path / f"machine{i}")
        code, _, err = run_cli([*sweep, "--shard", f"{i}/2", "--out", str(folders[-1])], capsys)
        assert code == 0, err
        assert f"shard {i}/2: " in err and "of the plan's 8 rows" in err
    parts = [read_jsonl(f / "results.jsonl") for f in folders]
    assert all(parts) and sum(len(p) for p in parts) == 8
    merged = merge_runs([load_run(f) for f in folders]).results
    assert sorted(zip(merged["mode"], merged["batch_size"])) == sorted(
        (mode, b) for mode in ("infer", "train") for b in (1, 2, 3, 4)
    )
    out = build_report(folders, tmp_path / "report")
    assert "| shard | 1 of 2 | 2 of 2 |" in (out / "report.md").read_text()


def test_resume_of_a_shard_finds_that_shards_latest_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("20260101-000000-shard1of2", "20260101-000001-shard2of2", "20260101-000002"):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "results.jsonl").write_text("")
    parser = cli.build_parser()
    mine = parser.parse_args(["run", "--resume", "--shard", "1/2"])
    assert sweep.resolve_out(mine) == Path("results/20260101-000000-shard1of2")
    missing = parser.parse_args(["run", "--resume", "--shard", "2/3"])
    with pytest.raises(FileNotFoundError, match="shard2of3"):
        sweep.resolve_out(missing)


def test_the_harness_leaves_out_a_variant_whose_network_is_anothers() -> None:
    parser = cli.build_parser()
    # alexnet_mnist_kaiming is alexnet_mnist with another initialisation: same counts and speed
    swept = cli.build_plan(parser.parse_args(["run", "--models", "alexnet*"])).models
    assert "alexnet_mnist" in swept and "alexnet_mnist_kaiming" not in swept
    named = cli.build_plan(parser.parse_args(["run", "--models", "alexnet_mnist_kaiming"]))
    assert named.models == ("alexnet_mnist_kaiming",)
