"""The main job's budget (`bench all --job-budget-min`, 15 minutes by default): each accuracy
run's time is predicted from the harness's rates in the same folder, and a run over what is
left of the budget is left out, said in one line, written to over_budget.jsonl and listed in
the report. Expected values are worked by hand from the rows the tests write."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import exit_code

from bench import cli
from bench.cli import main
from bench.events import RunOverBudget, RunRateMeasured
from bench.measure.memory import MemoryRefused
from bench.report.sections import accuracy_blocks, left_out_lines
from bench.schema import OVER_BUDGET_COLUMNS, read_jsonl
from bench.sweep.loop import train_rate
from bench.training.estimate import SETUP_S, RateRow, interpolated_rate, predict_run
from bench.training.loop import TrainSettings
from bench.training.recipes import recipe_for
from bench.training.runs import run_accuracy_plan


def _row(model: str, mode: str, batch: int, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "mode": mode,
        "device": "cpu",
        "dtype": "fp32",
        "compile": "none",
        "batch_size": batch,
        "samples_per_s": rate,
        "max_batch": None,
        "error": None,
        "params": None,
        **extra,
    }


def _harness_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(exist_ok=True)
    with (out / "results.jsonl").open("a") as file:
        file.writelines(json.dumps(r) + "\n" for r in rows)


def test_a_rate_between_two_batches_is_read_on_a_log_scale():
    points = {1: 100.0, 32: 1100.0}
    # log 8 / log 32 = 3/5 of the way from batch 1 to batch 32
    assert interpolated_rate(points, 8) == pytest.approx(100 + 0.6 * 1000)
    assert interpolated_rate(points, 1) == 100.0
    assert interpolated_rate(points, 256) == 1100.0  # past the largest: the largest's rate
    assert interpolated_rate({}, 8) is None


def test_lenet5_mnists_run_is_its_samples_over_the_rate_plus_its_three_evaluations():
    rows = [
        _row("lenet5_mnist", "train", 32, 4000.0),
        _row("lenet5_mnist", "train", 128, 8000.0),
        _row("lenet5_mnist", "train", 128, 99999.0, compile="inductor"),  # not plain: ignored
        _row("lenet5_mnist", "train", 128, 99999.0, dtype="bf16_autocast"),  # not its dtype
        _row("lenet5_mnist", "infer", 32, 10000.0),
    ]
    settings = TrainSettings("lenet5_mnist", dtype="fp32")
    predicted = predict_run(settings, rows)
    assert predicted is not None
    # The recipe: 90,000 samples at batch 128 -> 704 steps (90,112 samples). Two evaluations
    # a pass of 468 steps: every 234 steps, at 234 and 468, and the last at 704 (702's, two
    # steps before it, is left to it): three, each on all 10,000 test images (no eval_limit),
    # at the only inference rate measured.
    assert predicted.train_samples == math.ceil(90_000 / 128) * 128 == 90_112
    assert predicted.train_rate == 8000.0
    assert predicted.eval_samples == 3 * 10_000
    assert predicted.seconds == pytest.approx(SETUP_S + 90_112 / 8000 + 30_000 / 10_000)
    assert predicted.text().startswith("about 17 s (90,112 samples at 8,000 samples/s")


def test_a_curve_on_a_subset_is_counted_as_such_and_the_last_evaluation_whole():
    rows = [_row("vgg16_mnist", "train", 32, 64.0), _row("vgg16_mnist", "infer", 32, 250.0)]
    predicted = predict_run(TrainSettings("vgg16_mnist", dtype="fp32", eval_limit=250), rows)
    assert predicted is not None
    # 7,680 samples at batch 32: 240 steps, shorter than a pass (1,875 steps), so evaluated at
    # least four times (every 60 steps): three on 250 images, the last on all 10,000.
    assert predicted.train_samples == 7_680
    assert predicted.eval_samples == 3 * 250 + 10_000
    assert predicted.seconds == pytest.approx(SETUP_S + 7_680 / 64 + 10_750 / 250)


def test_the_runs_memory_format_is_preferred_and_a_rate_from_elsewhere_is_said():
    # vgg16_cifar's recipe trains at batch 128 in channels_last (a recipe's default); the
    # default sweep measures training at batch 32, contiguous.
    assert recipe_for("vgg16_cifar").batch_size == 128 and recipe_for("vgg16_cifar").channels_last
    infer = _row("vgg16_cifar", "infer", 32, 200.0)
    swept = [_row("vgg16_cifar", "train", 32, 20.0), infer]
    predicted = predict_run(TrainSettings("vgg16_cifar", data="cifar10", dtype="fp32"), swept)
    assert predicted is not None and predicted.train_rate == 20.0
    assert predicted.rate_elsewhere == (
        "batch 32, contiguous, where the run trains at batch 128, channels_last"
    )
    assert predicted.text().endswith(
        "; the training rate from batch 32, contiguous, where the run trains at batch 128, "
        "channels_last)"
    )
    # Both formats measured at 32 and 512: the run's is read, between its batches, unremarked,
    # though the other format is faster.
    both = [
        infer,
        *(_row("vgg16_cifar", "train", b, r) for b, r in ((32, 50.0), (512, 60.0))),
        *(
            _row("vgg16_cifar", "train", b, r, memory_format="channels_last")
            for b, r in ((32, 30.0), (512, 40.0))
        ),
    ]
    predicted = predict_run(TrainSettings("vgg16_cifar", data="cifar10", dtype="fp32"), both)
    assert predicted is not None and predicted.rate_elsewhere == ""
    assert predicted.train_rate == pytest.approx(30.0 + 0.5 * 10.0)  # log 128 halfway 32..512
    # LeNet-5's published recipe trains contiguous, at batch 1: measured there, its own format.
    lenet = [
        _row("lenet5", mode, 1, 100.0, memory_format=memory_format)
        for mode in ("train", "infer")
        for memory_format in ("contiguous", "channels_last")
    ]
    assert recipe_for("lenet5").batch_size == 1 and not recipe_for("lenet5").channels_last
    predicted = predict_run(TrainSettings("lenet5", dtype="fp32"), lenet)
    assert predicted is not None and predicted.rate_elsewhere == ""
    # Only channels_last measured, for a contiguous run: the format is named, not the batch.
    only_cl = [r for r in lenet if r["memory_format"] == "channels_last"]
    predicted = predict_run(TrainSettings("lenet5", dtype="fp32"), only_cl)
    assert predicted is not None and predicted.rate_elsewhere == (
        "channels_last, where the run trains at batch 1, contiguous"
    )


def test_a_model_the_harness_did_not_measure_borrows_the_rates_of_the_same_layers():
    # alexnet_mnist_kaiming is alexnet_mnist with another initialisation: 23,322,314
    # parameters both (conv 1->96 5x5 ... fc 4096->10; the zoo's counting tests check it)
    rows = [
        _row("alexnet_mnist", "train", 32, 80.0, params=23_322_314),
        _row("alexnet_mnist", "infer", 32, 200.0, params=23_322_314),
    ]
    predicted = predict_run(TrainSettings("alexnet_mnist_kaiming", dtype="fp32"), rows)
    assert predicted is not None and predicted.rates_of == "alexnet_mnist"
    assert "rates of alexnet_mnist, the same layers" in predicted.text()
    other = [{**r, "params": 1} for r in rows]  # another network: no stand-in
    assert predict_run(TrainSettings("alexnet_mnist_kaiming", dtype="fp32"), other) is None
    assert predict_run(TrainSettings("lenet5_mnist", dtype="fp32"), rows) is None  # unmeasured


def test_a_run_over_the_budget_is_left_out_written_down_and_announced(tmp_path):
    out = tmp_path / "r"
    # The harness's rows, 1 sample/s: hours for any recipe
    lines = [_row("lenet5_mnist", mode, 32, 1.0) for mode in ("train", "infer")]
    _harness_rows(out, lines)
    heard: list[Any] = []
    done = run_accuracy_plan(
        [TrainSettings("lenet5_mnist", dtype="fp32")], out, listen=heard.append, budget_s=600.0
    )
    assert done == []  # nothing trained: no data read, no row written
    assert [r["mode"] for r in read_jsonl(out / "results.jsonl")] == ["train", "infer"]
    (line,) = read_jsonl(out / "over_budget.jsonl")
    assert set(line) == set(OVER_BUDGET_COLUMNS)
    assert line["model"] == "lenet5_mnist" and line["budget_s"] == 600.0
    # 90,112 samples and three evaluations of 10,000 images, at 1 sample/s
    assert line["predicted_s"] == pytest.approx(SETUP_S + 90_112 + 30_000, abs=0.1)
    assert 0 < line["left_s"] <= 600.0
    assert line["command"] == f"python -m bench accuracy {out} --models lenet5_mnist --resume"
    (event,) = heard
    assert isinstance(event, RunOverBudget) and event.command == line["command"]


def test_a_run_left_out_of_the_full_plan_is_trained_again_by_the_full_plan(tmp_path):
    out = tmp_path / "r"
    lines = [_row("lenet5_mnist", mode, 32, 1.0) for mode in ("train", "infer")]
    _harness_rows(out, lines)
    plan = [TrainSettings("lenet5_mnist", dtype="fp32")]
    assert run_accuracy_plan(plan, out, budget_s=600.0, full=True) == []
    (line,) = read_jsonl(out / "over_budget.jsonl")
    command = f"python -m bench accuracy {out} --full --models lenet5_mnist --resume"
    assert line["command"] == command
    assert line["length"] == f"{704 * 128} samples"  # 90,000 at batch 128, in whole batches


def test_a_run_predicted_near_the_budget_from_another_batch_has_its_own_rate_measured(tmp_path):
    # lenet5_mnist's recipe: 90,112 samples at batch 128, channels_last; three evaluations of
    # all 10,000 test images. The sweep's rows: batch 32, contiguous.
    recipe = recipe_for("lenet5_mnist")
    assert (recipe.batch_size, recipe.channels_last) == (128, True)
    out = tmp_path / "r"
    swept = [_row("lenet5_mnist", "train", 32, 1000.0), _row("lenet5_mnist", "infer", 32, 40e3)]
    _harness_rows(out, swept)
    asked: list[RateRow] = []

    def measure(row: RateRow) -> float:  # the harness, timing the run's own batch and format
        asked.append(row)
        return 500.0

    heard: list[Any] = []
    plan = [TrainSettings("lenet5_mnist", dtype="fp32")]
    # 3 + 90.1 + 0.75 s predicted from batch 32: within 3x of 120 s, so measured first; at its
    # own 500 samples/s, 3 + 180.2 + 0.75 s, over the budget: left out.
    done = run_accuracy_plan(plan, out, listen=heard.append, budget_s=120.0, measure_rate=measure)
    assert done == []
    assert asked == [RateRow("lenet5_mnist", "cpu", "fp32", "channels_last", 128)]
    measured, left_out = heard
    assert isinstance(measured, RunRateMeasured)
    assert measured.row == "batch 128, channels_last, fp32"
    assert "the training rate from batch 32, contiguous" in measured.predicted
    assert isinstance(left_out, RunOverBudget) and "from batch" not in left_out.predicted
    assert left_out.predicted.endswith(
        "; the training rate measured at the run's batch and format before it)"
    )
    (line,) = read_jsonl(out / "over_budget.jsonl")
    assert line["predicted_s"] == pytest.approx(SETUP_S + 90_112 / 500 + 0.75, abs=0.1)
    assert read_jsonl(out / "results.jsonl") == swept  # the rate decided; it is not a row


def test_a_rate_measured_for_a_model_with_the_same_layers_is_read_for_the_run(tmp_path):
    # alexnet_mnist_kaiming trains at batch 64, channels_last, on alexnet_mnist's rates (the
    # same 23,322,314 parameters); the measured row, kept in memory, has no parameter count.
    recipe = recipe_for("alexnet_mnist_kaiming")
    assert (recipe.batch_size, recipe.channels_last, recipe.samples) == (64, True, 11_520)
    out = tmp_path / "r"
    swept = [
        _row("alexnet_mnist", mode, 32, rate, params=23_322_314)
        for mode, rate in (("train", 40.0), ("infer", 10_750.0))
    ]
    _harness_rows(out, swept)
    asked: list[RateRow] = []

    def measure(row: RateRow) -> float:
        asked.append(row)
        return 80.0

    heard: list[Any] = []
    plan = [TrainSettings("alexnet_mnist_kaiming", dtype="fp32", eval_limit=250)]
    # 3 + 288 + 1 s from batch 32 against 140 s: within 3x, measured; at 80 samples/s,
    # 3 + 144 + 1 s (three evaluations of 250 images and the last of 10,000): left out
    assert (
        run_accuracy_plan(plan, out, listen=heard.append, budget_s=140.0, measure_rate=measure)
        == []
    )
    assert asked == [RateRow("alexnet_mnist", "cpu", "fp32", "channels_last", 64)]
    (line,) = read_jsonl(out / "over_budget.jsonl")
    assert line["predicted_s"] == pytest.approx(
        SETUP_S + 11_520 / 80 + (3 * 250 + 10_000) / 10_750, abs=0.1
    )
    assert "measured at the run's batch and format" in line["predicted"]


def test_a_rate_that_could_not_be_measured_leaves_the_first_prediction(tmp_path):
    out = tmp_path / "r"
    _harness_rows(
        out, [_row("lenet5_mnist", m, 32, r) for m, r in (("train", 1e3), ("infer", 4e4))]
    )
    plan = [TrainSettings("lenet5_mnist", dtype="fp32")]
    assert run_accuracy_plan(plan, out, budget_s=60.0, measure_rate=lambda row: None) == []
    (line,) = read_jsonl(out / "over_budget.jsonl")  # 93.9 s predicted from batch 32, 60 s
    assert line["predicted_s"] == pytest.approx(SETUP_S + 90_112 / 1000 + 0.75, abs=0.1)
    assert "the training rate from batch 32, contiguous" in line["predicted"]


@pytest.mark.parametrize("budget_s", [20.0, 600.0])
def test_a_prediction_far_from_the_budget_or_from_the_runs_own_rate_is_not_measured(
    tmp_path, budget_s
):
    out = tmp_path / "r"
    swept = [_row("lenet5_mnist", "train", 32, 1000.0), _row("lenet5_mnist", "infer", 32, 40e3)]
    own = _row("lenet5_mnist", "train", 128, 60.0, memory_format="channels_last")
    asked: list[RateRow] = []
    plan = [TrainSettings("lenet5_mnist", dtype="fp32")]
    if budget_s < 93.9 / 3:  # over three times what is left: left out, unmeasured
        _harness_rows(out, swept)
    else:  # its own rate read (3 + 1,502 + 0.75 s): unsure of nothing, left out
        _harness_rows(out, [*swept, own])
    assert run_accuracy_plan(plan, out, budget_s=budget_s, measure_rate=asked.append) == []
    assert asked == []
    (line,) = read_jsonl(out / "over_budget.jsonl")
    rate = 1000.0 if budget_s < 93.9 / 3 else 60.0
    assert line["predicted_s"] == pytest.approx(SETUP_S + 90_112 / rate + 0.75, abs=0.1)


def test_the_harness_times_the_row_a_prediction_needs_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rate = train_rate("lenet5_mnist", "cpu", "fp32", "channels_last", 8)
    assert rate > 0 and list(tmp_path.iterdir()) == []
    # a batch over the memory check is the harness's one-line refusal
    with pytest.raises(MemoryRefused):
        train_rate("lenet5_mnist", "cpu", "fp32", "contiguous", 100_000_000)


def test_the_report_lists_what_was_left_out_until_a_row_trains_it():
    over = pd.DataFrame(
        [
            {
                "model": m,
                "recipe_name": None,
                "data": "mnist",
                "device": "cpu",
                "seed": 0,
                "predicted_s": 436.0,
                "predicted": "about 7.3 min (...)",
                "left_s": 125.0,
                "budget_s": 500.0,
                "command": f"python -m bench accuracy r --models {m} --resume",
                "timestamp": "t",
            }
            for m in ("resnet34_mnist", "vgg16_mnist")
        ]
    )
    trained = pd.DataFrame(
        [{"model": "vgg16_mnist", "recipe_name": None, "data": "mnist", "device": "cpu",
          "seed": 0.0}]
    )  # fmt: skip
    (line,) = left_out_lines(over, trained)
    assert line == (
        "`resnet34_mnist` on mnist, cpu, seed 0: about 7.3 min (...) predicted, 2 min 5 s "
        "left; `python -m bench accuracy r --models resnet34_mnist --resume`"
    )
    # A folder whose only accuracy run was left out still says so under "Time to accuracy"
    results = pd.DataFrame(
        [{"mode": "train", "model": "resnet34_mnist", "data": None, "seed": None}]
    )
    blocks = accuracy_blocks(results, None, over)
    assert any("resnet34_mnist" in str(b) for b in blocks)


def test_a_left_out_run_is_trained_only_by_a_row_of_its_length():
    """A short run of a model and seed does not train the --full run the budget left out; a line
    from before the length column is trained by a row of any length."""

    def line(model: str, length: str | None) -> dict[str, Any]:
        return {"model": model, "recipe_name": None, "data": "cifar10", "device": "cpu",
                "seed": 0, "length": length, "predicted": "p", "left_s": 1.0,
                "command": f"c {model}"}  # fmt: skip

    over = pd.DataFrame(
        [line("vgg16_cifar", "10000000 samples"), line("vgg19_cifar", "10000000 samples"),
         line("resnet34_cifar", None)]
    )  # fmt: skip
    trained = pd.DataFrame(
        [{**line(m, length), "mode": "accuracy"} for m, length in (
            ("vgg16_cifar", "150016 samples"), ("vgg19_cifar", "10000000 samples"),
            ("resnet34_cifar", "150016 samples"))]
    )  # fmt: skip
    assert [line.split("`")[1] for line in left_out_lines(over, trained)] == ["vgg16_cifar"]


def _accuracy_step(monkeypatch, tmp_path) -> list[argparse.Namespace]:
    seen: list[argparse.Namespace] = []

    def fake_run(args: argparse.Namespace) -> int:
        args.resolved_out = tmp_path / "r"
        return 0

    def capture(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    real = cli.SUBCOMMANDS
    monkeypatch.setitem(real, "run", cli.Subcommand("run", real["run"].add_arguments, fake_run))
    accuracy = cli.Subcommand("accuracy", real["accuracy"].add_arguments, capture)
    monkeypatch.setitem(real, "accuracy", accuracy)
    monkeypatch.setitem(
        real, "report", cli.Subcommand("report", real["report"].add_arguments, lambda a: 0)
    )
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data"))  # no CIFAR-10 there
    return seen


@pytest.mark.parametrize(
    "flags, most",
    [
        ([], 15 * 60 - cli.REPORT_RESERVE_S),  # the main job's 15 minutes
        (["--job-budget-min", "5"], 5 * 60 - cli.REPORT_RESERVE_S),
        (["--job-budget-min", "0"], None),  # none
        (["--full"], None),  # the long plan has none unless asked
    ],
)
def test_all_gives_its_accuracy_step_what_is_left_of_the_jobs_budget(
    tmp_path, monkeypatch, flags, most
):
    seen = _accuracy_step(monkeypatch, tmp_path)
    assert main(["all", "--models", "lenet5_mnist", *flags]) == 0
    (step,) = seen
    if most is None:
        assert step.plan_budget_s is None
    else:  # the (faked) harness took no time: all of it but a moment is left
        assert most - 5 < step.plan_budget_s <= most


def test_a_negative_budget_is_refused_in_one_line(tmp_path, capsys):
    assert exit_code(["accuracy", str(tmp_path), "--plan-budget-s", "-1"]) == 2
    assert exit_code(["all", "--job-budget-min", "soon"]) == 2
    err = capsys.readouterr().err
    assert "must be 0 or more, got -1" in err and "must be a float, got 'soon'" in err


def test_a_left_out_model_is_named_in_the_glance_table_and_under_time_to_accuracy(tmp_path):
    """The report fixture with vgg16's accuracy run left out (it has harness rows, no
    accuracy row) and lab_cnn's left out but trained since (its seed 0 has an accuracy row)."""
    from bench import report
    from bench.report.glance import LEFT_OUT_CELL

    folder = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "report", folder)
    lines = [
        {
            "model": model,
            "recipe_name": None,
            "data": "mnist",
            "device": "cpu",
            "seed": 0,
            "predicted_s": 400.0,
            "predicted": "about 6.7 min (...)",
            "left_s": 100.0,
            "budget_s": 600.0,
            "command": f"python -m bench accuracy run --models {model} --resume",
            "timestamp": "t",
        }
        for model in ("vgg16", "lab_cnn")
    ]
    (folder / "over_budget.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    text = (report.build_report([folder], tmp_path / "out") / "report.md").read_text()
    glance = text[text.index("## The zoo at a glance") : text.index("## What the papers say")]
    marked = [line for line in glance.splitlines() if LEFT_OUT_CELL in line]
    assert marked and all(line.startswith("| vgg16 |") for line in marked)  # its speed rows
    timed = text[text.index("## Time to accuracy") :]
    assert "python -m bench accuracy run --models vgg16 --resume" in timed
    assert "--models lab_cnn --resume" not in timed


@pytest.mark.parametrize(
    "flags, dtype", [(("avx512_bf16",), "bf16_autocast"), (("avx2", "fma"), "fp32")]
)
def test_the_recipes_auto_dtype_takes_the_rates_of_the_dtype_the_run_will_train_in(
    monkeypatch, flags, dtype
):
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: flags)
    rows = [
        _row("lenet5_mnist", mode, 128, rate, dtype=measured)
        for mode in ("train", "infer")
        for measured, rate in (("fp32", 1000.0), ("bf16_autocast", 4000.0))
    ]
    predicted = predict_run(TrainSettings("lenet5_mnist"), rows)  # the recipe's dtype: auto
    assert predicted is not None
    assert predicted.train_rate == (4000.0 if dtype == "bf16_autocast" else 1000.0)
