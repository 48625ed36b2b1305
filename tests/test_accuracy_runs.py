"""Accuracy runs (issue 12): run ids and curves, fp32 evaluation, what is on the training clock,
`bench all`'s options reaching the accuracy step, and bad input refused in one line.

Everything trains a LeNet for one epoch on a 200-image synthetic ImageFolder: a second or two.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import exit_code
from PIL import Image

import zoo
from bench import cli
from bench.cli import main
from bench.report.runs import epoch_curves, load_run, merge_runs
from bench.schema import EPOCH_COLUMNS, read_jsonl
from bench.training.runs import ON_CLOCK_STREAMED, ON_CLOCK_TENSOR
from data.batches import Epoch, Split

TINY = ["--epochs", "1", "--evals-per-epoch", "2", "--no-save"]


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))


def _train(folder: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    argv = ["train", "lenet5_mnist", "--data", str(folder), "--dtype", "fp32", "--out", str(out)]
    assert main([*argv, "--batch-size", "64", *TINY, *extra]) == 0
    return read_jsonl(out / "results.jsonl")


# --- item 5: each training run has an id; the report draws one curve per run ----------------


def test_two_runs_of_one_model_and_seed_in_one_folder_are_two_curves(gray_folder, tmp_path):
    out = tmp_path / "r"
    _train(gray_folder, out)
    rows = _train(gray_folder, out)
    assert len(rows) == 2 and rows[0]["run"] and rows[0]["run"] != rows[1]["run"]
    lines = read_jsonl(out / "epochs.jsonl")
    assert all(list(line) == list(EPOCH_COLUMNS) for line in lines)
    assert [line["run"] for line in lines] == [rows[0]["run"]] * 2 + [rows[1]["run"]] * 2

    curves = epoch_curves(load_run(out).epochs)
    assert sorted(c.run for c in curves) == sorted(r["run"] for r in rows)
    assert {(c.model, c.seed, c.device, len(c.points)) for c in curves} == {
        ("lenet5_mnist", 0, "cpu", 2)
    }
    assert all(list(c.points["epoch"]) == [0.5, 1.0] for c in curves)
    # Each run is its own row of the report too, not a retry of the other.
    merged = merge_runs([load_run(out)])
    assert sorted(merged.results["training_run"]) == sorted(r["run"] for r in rows)


def test_lines_without_a_run_id_are_one_curve_per_folder_model_and_seed():
    legacy = pd.DataFrame(
        {
            "folder": ["a", "a", "a", "a", "b", "b"],
            "model": ["lenet5"] * 4 + ["lenet5"] * 2,
            "data": ["mnist"] * 6,
            "seed": [0, 0, 1, 1, 0, 0],
            "world_size": [None] * 6,
            "epoch": [1.0, 0.5, 0.5, 1.0, 0.5, 1.0],
            "wall_s": [2.0, 1.0, 1.0, 2.0, 1.0, 2.0],
            "test_accuracy": [0.9, 0.8, 0.8, 0.9, 0.8, 0.9],
        }
    )
    curves = epoch_curves(legacy)
    assert [(c.folder, c.seed, list(c.points["epoch"])) for c in curves] == [
        ("a", 0, [0.5, 1.0]),
        ("a", 1, [0.5, 1.0]),
        ("b", 0, [0.5, 1.0]),
    ]


def test_a_torn_last_epochs_line_is_repaired_before_the_next_run(gray_folder, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    whole = json.dumps(dict.fromkeys(EPOCH_COLUMNS, 1))
    (out / "epochs.jsonl").write_text(whole + "\n" + '{"run": "killed-mid-wr')
    _train(gray_folder, out)
    lines = (out / "epochs.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is whole JSON
    assert len(parsed) == 3 and parsed[0] == json.loads(whole)


# --- item 12: evaluation in fp32 whatever the training dtype --------------------------------


@pytest.mark.parametrize(
    "flags, evaluated_in", [([], "bf16_autocast"), (["--eval-dtype", "fp32"], "fp32")]
)
def test_auto_trains_in_bf16_and_evaluates_in_the_dtype_the_row_names(
    flags, evaluated_in, gray_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx512_bf16",))
    forwards: list[tuple[bool, bool]] = []  # (training mode, autocast on) of every forward
    get_model = zoo.get_model

    def spied(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = get_model(*args, **kwargs)
        model.register_forward_hook(
            lambda m, i, o: forwards.append((m.training, torch.is_autocast_enabled("cpu")))
        )
        return model

    monkeypatch.setattr(zoo, "get_model", spied)
    out = tmp_path / "r"
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--dtype", "auto", *flags]
    assert main([*argv, "--epochs", "1", "--out", str(out)]) == 0
    (row,) = read_jsonl(out / "results.jsonl")
    assert row["dtype"] == "bf16_autocast" and row["eval_dtype"] == evaluated_in
    assert f"images, {evaluated_in})" in capsys.readouterr().out  # the run's line says it too
    assert (True, True) in forwards  # the training steps ran under bf16 autocast
    # Forwards in eval mode after training began are evaluations (before it: counting).
    evaluations = {on for training, on in forwards[forwards.index((True, True)) :] if not training}
    assert evaluations == {evaluated_in == "bf16_autocast"}

    weights = out / "weights" / "lenet5_mnist-seed0.pt"
    forwards.clear()
    evaluation = ["eval", "lenet5_mnist", "--weights", str(weights), "--data", str(gray_folder)]
    assert main(evaluation) == 0
    assert forwards and not any(autocast for _, autocast in forwards)
    assert "fp32" in capsys.readouterr().out


# --- item 13: what is on the training clock -------------------------------------------------


@pytest.mark.parametrize(
    "flags, on_clock, decoding_timed",
    [
        ([], ON_CLOCK_TENSOR, False),  # small: decoded once, before training
        (["--cache-limit-mb", "0", "--workers", "0"], ON_CLOCK_STREAMED, True),
    ],
    ids=["cached", "streamed"],
)
def test_rows_say_what_data_work_is_on_the_clock(
    gray_folder,
    tmp_path,
    flags,
    on_clock,
    decoding_timed,
):
    (row,) = _train(gray_folder, tmp_path / "r", *flags)
    assert row["data_on_clock"] == on_clock
    assert row["data_loading_in_timing"] is decoding_timed
    assert isinstance(row["data_setup_s"], float) and row["data_setup_s"] > 0
    assert 0 <= row["data_wait_s"] <= row["train_s"]
    assert row["data_fed_per_s"] > 0


DECODE_SLEEP_S = 0.004


def test_a_streamed_runs_row_says_how_long_it_waited_for_its_batches(
    gray_folder, tmp_path, monkeypatch
):
    """Each image decoded for training is made to take at least DECODE_SLEEP_S longer; with no
    workers the loop waits for every decode, so its wait is at least that times the samples,
    and the data path alone feeds at most 1 / DECODE_SLEEP_S images a second."""
    import time

    import data.imagefolder as imagefolder

    decode = imagefolder.decode_image

    def slow(*args: Any, **kwargs: Any) -> torch.Tensor:
        time.sleep(DECODE_SLEEP_S)
        return decode(*args, **kwargs)

    monkeypatch.setattr(imagefolder, "decode_image", slow)
    (row,) = _train(gray_folder, tmp_path / "r", "--cache-limit-mb", "0", "--workers", "0")
    assert row["samples_seen"] * DECODE_SLEEP_S <= row["data_wait_s"] <= row["train_s"]
    assert 0 < row["data_fed_per_s"] <= 1 / DECODE_SLEEP_S


class _Paced(Split):
    """A split of ``n`` one-pixel images whose batches past ``ready`` each take ``pause_s``."""

    def __init__(self, n: int, ready: int, pause_s: float) -> None:
        from data.normalise import Normalisation

        super().__init__(
            class_names=("a", "b"),
            input_shape=(1, 1, 1),
            normalisation=Normalisation.make("meanstd", (0.5,), (0.5,)),
        )
        self.n, self.ready, self.pause_s, self.drawn = n, ready, pause_s, 0

    def __len__(self) -> int:
        return self.n

    @property
    def ready_batches(self) -> int:
        return self.ready

    def _epoch(self, epoch: Epoch) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import time

        for first in range(0, epoch.n, epoch.batch_size):
            if self.drawn >= self.ready:
                time.sleep(self.pause_s)
            self.drawn += 1
            size = min(epoch.batch_size, epoch.n - first)
            yield torch.zeros(size, 1, 1, 1), torch.zeros(size, dtype=torch.int64)


def _probe_run(batch: int) -> Any:
    from types import SimpleNamespace

    from bench.training.distributed import ONE_PROCESS

    return SimpleNamespace(draw=batch, device="cpu", augment="none", fill=0.0, world=ONE_PROCESS)


def test_the_data_paths_rate_is_timed_past_its_ready_batches_on_a_bounded_number_of_images():
    """Batches past the 3 ready ones take at least 5 ms each: at batch 512 the rate is at most
    512 / 0.005 images a second, and the probe stops once FEED_PROBE_IMAGES are timed: the 3
    ready, the batch that starts the clock and ceil(4096 / 512) = 8 timed, 12 in all."""
    from bench.training.loop import FEED_PROBE_IMAGES, feed_rate

    split = _Paced(n=60_000, ready=3, pause_s=0.005)
    rate = feed_rate(_probe_run(512), split)
    assert FEED_PROBE_IMAGES == 4096 and split.drawn == 3 + 1 + 8
    assert rate is not None and 0 < rate <= 512 / 0.005


def test_a_split_too_small_to_time_has_no_data_rate():
    """Past one ready batch, the start batch and one more: one timed batch is not a rate."""
    from bench.training.loop import feed_rate

    assert feed_rate(_probe_run(10), _Paced(n=30, ready=1, pause_s=0.0)) is None


def test_the_report_says_the_share_of_the_clock_spent_waiting_for_batches():
    from bench.report.sections import _data_on_clock_cell

    row = pd.Series({"data_on_clock": ON_CLOCK_STREAMED, "data_wait_s": 1.5, "train_s": 6.0})
    assert _data_on_clock_cell(row) == f"{ON_CLOCK_STREAMED}; 1.5 s waiting for batches (25%)"
    fed = row.copy()
    fed["data_fed_per_s"], fed["samples_per_s"], fed["world_size"] = 2400.0, 3000.0, 2
    assert _data_on_clock_cell(fed) == (
        f"{ON_CLOCK_STREAMED}; 1.5 s waiting for batches (25%); "
        "data alone 2,400 images/s, training 1,500/s a process"
    )
    older = pd.Series({"data_on_clock": ON_CLOCK_TENSOR, "data_wait_s": None, "train_s": 6.0})
    assert _data_on_clock_cell(older) == ON_CLOCK_TENSOR


# --- item 8: `bench all` passes its options to the accuracy step ----------------------------


@pytest.mark.parametrize(
    "models, expected",
    [(["lenet5_mnist"], ["lenet5_mnist"]), (["lenet5*"], ["lenet5", "lenet5_modern"])],
)
def test_all_gives_the_accuracy_step_its_models_devices_threads_and_eval_dtype(
    tmp_path, monkeypatch, capsys, models, expected
):
    seen: dict[str, argparse.Namespace] = {}

    def fake_run(args: argparse.Namespace) -> int:
        args.resolved_out = tmp_path / "r"
        return 0

    def capture(name: str) -> cli.Subcommand:
        def run(args: argparse.Namespace) -> int:
            seen[name] = args
            return 0

        return cli.Subcommand(name, cli.SUBCOMMANDS[name].add_arguments, run)

    real = cli.SUBCOMMANDS["run"]
    monkeypatch.setitem(cli.SUBCOMMANDS, "run", cli.Subcommand("run", real.add_arguments, fake_run))
    monkeypatch.setitem(cli.SUBCOMMANDS, "accuracy", capture("accuracy"))
    monkeypatch.setitem(cli.SUBCOMMANDS, "report", capture("report"))
    argv = ["all", "--models", *models, "--devices", "cpu", "--threads", "1"]
    assert main([*argv, "--eval-dtype", "fp32"]) == 0, capsys.readouterr().err
    step = seen["accuracy"]
    assert set(expected) <= set(step.models) and all(m.startswith("lenet5") for m in step.models)
    assert step.devices == ["cpu"] and step.threads == 1 and step.out == tmp_path / "r"
    assert step.eval_dtype == "fp32"
    assert main(argv) == 0 and seen["accuracy"].eval_dtype is None  # the training dtype


def test_the_accuracy_step_with_no_matching_model_is_skipped_under_all(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["accuracy", str(out), "--models", "alexnet", "--none-ok"]) == 0
    assert "no run of the plan matches alexnet" in capsys.readouterr().out
    assert exit_code(["accuracy", str(out), "--models", "alexnet"]) == 2


# --- bad input: one line, exit 2 ------------------------------------------------------------


def _png_tree(root: Path, classes: int, per_class: int = 12) -> Path:
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (28, 28), 20 * c + i).save(root / f"c{c}" / f"{i}.png")
    return root


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert all(n in err for n in needles), err


def test_accuracy_into_a_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr("bench.training.runs.run_accuracy", refuse)
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    assert exit_code(["accuracy", str(afile), "--models", "lenet5_mnist"]) == 2
    _one_line_error(capsys, str(afile), "is a file", "folder")
    assert exit_code(["train", "lenet5_mnist", "--out", str(afile)]) == 2
    _one_line_error(capsys, str(afile), "is a file")


def test_an_imagefolder_with_one_class_is_refused_for_that(tmp_path, capsys):
    root = _png_tree(tmp_path / "one", classes=1)
    assert exit_code(["train", "lenet5_mnist", "--data", str(root), "--batch-size", "4"]) == 2
    _one_line_error(capsys, "one class folder", "needs at least 2 classes")


def test_a_stray_file_names_the_flag_that_skips_it(tmp_path, capsys):
    root = _png_tree(tmp_path / "two", classes=2)
    (root / "c0" / "notes.txt").write_text("hello")
    argv = ["train", "lenet5_mnist", "--data", str(root), "--batch-size", "4", *TINY]
    assert exit_code([*argv, "--out", str(tmp_path / "a")]) == 2
    _one_line_error(capsys, "notes.txt has no image extension", "--skip-bad-files")
    assert exit_code([*argv, "--out", str(tmp_path / "b"), "--skip-bad-files"]) == 0


def test_a_negative_seed_names_the_option(gray_folder, capsys):
    assert exit_code(["train", "lenet5_mnist", "--data", str(gray_folder), "--seed", "-1"]) == 2
    _one_line_error(capsys, "--seed", "0 or more")


# --- one failure policy with the sweep (issue 13) -------------------------------------------


def _fails_once_mid_training(monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:
    """The first model trained raises at its ``at_step``-th training step; later ones train."""
    steps = 0
    get_model = zoo.get_model

    def hook(module: torch.nn.Module, inputs: Any) -> None:
        nonlocal steps
        if module.training and torch.is_grad_enabled():  # not counting, not evaluation
            steps += 1
            if steps == at_step:
                raise ArithmeticError("the model broke mid-training")

    def breaking(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = get_model(*args, **kwargs)
        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(zoo, "get_model", breaking)


def test_a_run_that_fails_mid_training_is_an_error_row_and_the_next_seed_runs(
    gray_folder,
    tmp_path,
    monkeypatch,
    capsys,
):
    _fails_once_mid_training(monkeypatch, at_step=7)  # 9 steps a pass: after one evaluation
    out = tmp_path / "r"
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--dtype", "fp32"]
    argv += ["--batch-size", "16", "--seeds", "2", "--out", str(out), *TINY]
    assert exit_code(argv) == 1
    failed, trained = read_jsonl(out / "results.jsonl")
    assert (
        failed["seed"] == 0 and failed["error"] == "ArithmeticError: the model broke mid-training"
    )
    assert failed["accuracy"] is None and failed["params"] is not None  # counted, then failed
    assert trained["seed"] == 1 and trained["error"] is None and trained["accuracy"] is not None
    log = (out / "errors.log").read_text()
    assert failed["run"] in log and "Traceback" in log and "ArithmeticError" in log
    printed = capsys.readouterr()
    assert "seed 0: ERROR ArithmeticError: the model broke mid-training" in printed.out
    assert "lenet5_mnist seed 1 epoch  1.00" in printed.out  # an evaluation's line
    assert "lenet5_mnist epoch 1/1" in printed.err  # the epoch's bar


def test_an_accuracy_plan_goes_on_after_a_failed_run(gray_folder, tmp_path, monkeypatch, capsys):
    from bench.training.loop import TrainSettings

    _fails_once_mid_training(monkeypatch, at_step=3)
    quick = TrainSettings("lenet5_mnist", data=str(gray_folder), epochs=1, batch_size=16)
    plan = (quick, replace(quick, seed=1))
    monkeypatch.setattr("bench.training.runs.ACCURACY_PLAN", plan)
    out = tmp_path / "r"
    assert exit_code(["accuracy", str(out)]) == 1
    rows = read_jsonl(out / "results.jsonl")
    assert [row["error"] is None for row in rows] == [False, True]
    assert "ArithmeticError" in (out / "errors.log").read_text()
    printed = capsys.readouterr().out
    assert "[1/2] training lenet5_mnist" in printed and "[2/2] training lenet5_mnist" in printed


# --- --resume tells runs apart by what they trained: recipe, augmentation, length ------------


def test_resume_skips_only_a_run_that_trained_the_same_recipe_augmentation_and_length(
    gray_folder, tmp_path
):
    from bench.events import RunSkipped
    from bench.training.loop import TrainSettings
    from bench.training.runs import run_accuracy_plan

    # 40 samples at batch 16: three whole batches, 48 samples (the row's own count beside it)
    short = TrainSettings("lenet5_mnist", data=str(gray_folder), samples=40, batch_size=16)
    out = tmp_path / "r"
    (first,) = run_accuracy_plan([short], out)
    assert first.row["length"] == "48 samples" and first.row["samples_seen"] == 3 * 16
    assert first.row["augment"] == "none" and first.row["recipe_name"] is None

    heard: list[Any] = []
    longer, flipped = replace(short, samples=80), replace(short, augment="flip")
    done = run_accuracy_plan([short, longer, flipped], out, resume=True, listen=heard.append)
    assert [type(e) for e in heard if isinstance(e, RunSkipped)] == [RunSkipped]
    assert [(r.row["length"], r.row["augment"]) for r in done] == [
        ("80 samples", "none"),  # 5 batches of 16
        ("48 samples", "flip"),
    ]
    assert len(read_jsonl(out / "results.jsonl")) == 3


def test_a_runs_length_is_said_as_it_was_asked():
    from bench.training.loop import TrainSettings
    from bench.training.recipes import recipe_for
    from bench.training.runs import run_length

    def length(**asked: Any) -> str:
        return run_length(TrainSettings("lenet5_mnist", **asked), recipe_for("lenet5_mnist"))

    # lenet5_mnist's recipe: 90,000 samples at batch 128, 704 batches
    assert length() == "90112 samples" == f"{704 * 128} samples"
    assert length(samples=1000, batch_size=100) == "1000 samples"
    assert length(epochs=1) == "1 pass" and length(epochs=3) == "3 passes"
    assert length(budget_s=60) == "60 s"
    assert length(samples=1000, batch_size=100, budget_s=7.5) == "1000 samples within 7.5 s"
    assert length(epochs=2, stop_at_target=True) == "2 passes, or the target"


def test_a_full_plan_resumed_over_the_short_one_trains_every_run_it_lengthens():
    """`bench accuracy --full --resume` on the short plan's folder skips only the runs the two
    plans train alike, seed 0 of each network both plans train at its recipe's own length; the
    CIFAR VGG and ResNet's 200 passes, LeNet-5's 20 and the paper-initialised MNIST AlexNet's
    whole recipe (the short plan's is a part of it) are trained."""
    from bench.schema import row_key
    from bench.training.recipes import recipe_for
    from bench.training.runs import accuracy_plan, run_settings

    def keys(data: str, full: bool) -> dict[tuple[Any, ...], tuple[str, str | None]]:
        plan = accuracy_plan(data, full)
        return {
            row_key(run_settings(s, recipe_for(s.model, s.recipe))): (s.model, s.recipe)
            for s in plan
            if s.seed == 0
        }

    def alike(data: str) -> set[tuple[str, str | None]]:
        short = keys(data, full=False)
        return {run for key, run in keys(data, full=True).items() if key in short}

    same_length = {("lenet5_mnist", None), ("lab_cnn", None), ("alexnet_mnist_kaiming", None)}
    assert alike("mnist") == same_length | {("vgg16_mnist", None), ("resnet34_mnist", None)}
    # both CIFAR AlexNets train their recipe's whole 150,000 samples in the short plan too
    assert alike("cifar10") == {
        ("lenet5_cifar", None),
        ("alexnet_cifar_kaiming", None),
        ("alexnet_cifar", None),
    }
