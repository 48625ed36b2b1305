"""The training loop, recipes, weights and the `bench train` / `bench eval` command lines.

Everything runs on tiny synthetic data made here: no network, a few seconds each.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import MEANSTD, exit_code, separable_split

from bench.cli import main
from bench.events import EpochFinished, EpochStarted, StepsDone
from bench.training.loop import TrainSettings, _clock, load_weights, save_weights, train
from bench.training.recipes import (
    LENET5_SGD_SCALE,
    RECIPES,
    Recipe,
    lr_factor,
    recipe_for,
    resolve_dtype,
)
from data.batches import TensorSplit
from data.normalise import Normalisation
from data.splits import Splits

QUICK = Recipe(lr=0.05, batch_size=32, epochs=2, dtype="fp32", channels_last=False)


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits(
        "synthetic", separable_split(640, 0), separable_split(200, 1), (1, 28, 28), MEANSTD
    )


# --- schedules and recipes --------------------------------------------------------------------


def test_onecycle_warms_up_then_decays_to_zero():
    recipe = Recipe(warmup=0.25)
    factors = [lr_factor(recipe, p, 0) for p in np.linspace(0, 1, 101)]
    peak = int(np.argmax(factors))
    assert factors[peak] == pytest.approx(1.0) and peak == 25
    assert all(a <= b for a, b in zip(factors[:peak], factors[1 : peak + 1]))
    assert all(a >= b for a, b in zip(factors[peak:], factors[peak + 1 :]))
    assert factors[-1] == 0.0 and factors[0] < 0.01


def test_lenet5_recipe_is_the_papers_schedule():
    recipe = RECIPES["lenet5"]
    etas = [lr_factor(recipe, 0.0, epoch) * recipe.lr / LENET5_SGD_SCALE for epoch in range(20)]
    paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert etas == pytest.approx(paper)
    assert recipe.loss == "map" and recipe.epochs == 20 and recipe.normalisation == "lenet5_paper"
    assert "stands in" in recipe.describe()  # the SGD stand-in is said in every row


@pytest.mark.parametrize(
    "flags, expected",
    [
        (("avx2", "fma"), "fp32"),
        # An AVX-512 CPU without avx512_bf16: oneDNN would say yes, but bf16 is emulated there.
        (("avx2", "avx512f", "avx512_vnni"), "fp32"),
        (("avx2", "avx512f", "avx512_bf16"), "bf16_autocast"),
        (("avx2", "amx_bf16", "amx_tile"), "bf16_autocast"),
    ],
)
def test_auto_dtype_is_detected_from_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: flags)
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("fp32", "cpu") == "fp32"


@pytest.mark.parametrize("native", [False, True])
def test_harness_and_training_loop_share_one_bf16_detector(monkeypatch, native):
    from bench.measure.workload import check_dtype

    monkeypatch.setattr(
        "bench.measure.machine.cpu_flags", lambda: ("avx512_bf16",) if native else ()
    )
    trains_bf16 = resolve_dtype("auto", "cpu") == "bf16_autocast"
    try:
        check_dtype("bf16_autocast", torch.device("cpu"))
        harness_runs_bf16 = True
    except RuntimeError:
        harness_runs_bf16 = False
    assert trains_bf16 == harness_runs_bf16 == native


def test_each_recipe_row_names_a_model_and_only_lenet5_uses_the_map_loss():
    import zoo

    assert set(RECIPES) <= set(zoo.list_models())  # a misspelt row would never be used
    assert [name for name in zoo.list_models() if recipe_for(name).loss == "map"] == ["lenet5"]
    with pytest.raises(ValueError, match="unknown model 'lenet6'"):
        recipe_for("lenet6")


# --- the loop ---------------------------------------------------------------------------------


def test_training_reaches_the_target_and_logs_each_evaluation(splits):
    seen = []
    settings = TrainSettings("lenet5_mnist", target_acc=0.9, evals_per_epoch=2)
    outcome = train(settings, splits, QUICK, on_eval=seen.append)
    assert len(seen) == 4 and [p.epoch for p in seen] == [0.5, 1.0, 1.5, 2.0]
    assert outcome.accuracy == seen[-1].test_accuracy > 0.9
    first = next(p for p in seen if p.test_accuracy >= 0.9)
    assert outcome.time_to_target_s == first.wall_s
    assert all(b.wall_s > a.wall_s for a, b in zip(seen, seen[1:]))


def test_train_tells_its_listener_of_each_epoch_and_step(splits):
    heard: list[object] = []
    train(TrainSettings("lenet5_mnist", epochs=1), splits, QUICK, listen=heard.append)
    assert heard[0] == EpochStarted("lenet5_mnist", 1, 1, 20)  # 640 samples, batch 32
    assert heard[-1] == EpochFinished("lenet5_mnist", 1)
    steps = [event for event in heard if isinstance(event, StepsDone)]
    assert sum(event.steps for event in steps) == 20 == len(heard) - 2
    assert [event.loss is not None for event in steps] == [False] * 19 + [True]  # every 20th


def test_stop_at_target_and_budget(splits):
    settings = TrainSettings("lenet5_mnist", target_acc=0.2, stop_at_target=True, epochs=5)
    outcome = train(settings, splits, QUICK)
    assert outcome.epochs < 5 and outcome.time_to_target_s is not None
    tiny = train(TrainSettings("lenet5_mnist", budget_s=1e-6, epochs=5), splits, QUICK)
    assert tiny.epochs == pytest.approx(1 / 20)  # one step, then the budget is spent
    assert len(tiny.history) == 1


def test_the_training_clock_waits_for_queued_cuda_work(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    assert isinstance(_clock("cpu"), float) and synced == []
    _clock("cuda")
    _clock(torch.device("cuda", 1))
    assert synced == [torch.device("cuda"), torch.device("cuda", 1)]


def test_training_time_is_read_from_the_clock_function(splits, monkeypatch):
    readings = []

    def one_second_per_reading(device):
        readings.append(torch.device(device))
        return float(len(readings))

    monkeypatch.setattr("bench.training.loop._clock", one_second_per_reading)
    settings = TrainSettings("lenet5_mnist", epochs=1, evals_per_epoch=2)
    outcome = train(settings, splits, QUICK)
    # 640 samples / batch 32 = 20 steps, evaluated after steps 10 and 20. Readings: one at the
    # start, one after each step, one after each evaluation (which restarts the clock): each
    # step is 1 s on the clock, the evaluations none.
    assert len(readings) == 1 + 20 + 2 and set(readings) == {torch.device("cpu")}
    assert outcome.train_s == 20.0
    assert [p.wall_s for p in outcome.history] == [10.0, 20.0]


def test_same_seed_same_result(splits):
    a = train(TrainSettings("lenet5_mnist", epochs=1), splits, QUICK)
    b = train(TrainSettings("lenet5_mnist", epochs=1), splits, QUICK)
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_lenet5_trains_with_the_map_loss():
    norm = Normalisation.make("lenet5_paper", (0.0,), (1.0,))
    train_split, test_split = (
        TensorSplit(
            s.images,
            s.labels,
            class_names=s.class_names,
            input_shape=(1, 32, 32),
            normalisation=norm,
        )
        for s in (separable_split(3000, 0), separable_split(200, 1))
    )
    padded = Splits("synthetic", train_split, test_split, (1, 32, 32), norm)
    recipe = replace(RECIPES["lenet5"], epochs=2)  # the recipe's first two passes
    outcome = train(TrainSettings("lenet5"), padded, recipe)
    assert outcome.history[0].train_loss > outcome.history[-1].train_loss
    assert outcome.accuracy > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_acc": 99.0}, r"fraction in \(0, 1\]"),
        ({"target_acc": 0.0}, r"fraction in \(0, 1\]"),
        ({"budget_s": 0}, "must be positive"),
        ({"budget_s": -5}, "must be positive"),
        ({"dtype": "bf16"}, "bf16_autocast"),
        ({"model": "lenet6"}, "unknown model 'lenet6'"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**{"model": "lenet5_mnist", **kwargs})


# --- weights ----------------------------------------------------------------------------------


def test_weights_round_trip_and_tampering(tmp_path):
    import zoo

    model = zoo.get_model("lenet5_mnist")
    path = tmp_path / "w.pt"
    save_weights(model, path)
    state = load_weights(path)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state[name], value)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_weights(path)
    (tmp_path / "w.pt.sha256").unlink()
    with pytest.raises(FileNotFoundError, match="sha256"):
        load_weights(path)


# --- the command line -------------------------------------------------------------------------


def test_train_and_eval_an_imagefolder_with_no_other_flag(
    gray_folder, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))
    for model in ("lenet5_mnist", "lab_cnn"):
        out = tmp_path / model
        assert main(["train", model, "--data", str(gray_folder), "--out", str(out)]) == 0
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["mode"] == "accuracy" and rows[0]["error"] is None
        assert 0.0 <= rows[0]["accuracy"] <= 1.0 and rows[0]["data_loading_in_timing"] is False
        assert rows[0]["num_classes"] == 10 and rows[0]["recipe"]
        epochs = (out / "epochs.jsonl").read_text().splitlines()
        assert len(epochs) >= 1
        weights = out / "weights" / f"{model}-seed0.pt"
        assert main(["eval", model, "--weights", str(weights), "--data", str(gray_folder)]) == 0
        assert f"accuracy {rows[0]['accuracy']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "lenet5_mnist", "--target-acc", "1.5"], "fraction in (0, 1]"),
        (["train", "lenet5_mnist", "--budget-s", "0"], "must be positive"),
        (["train", "lenet5_mnist", "--device", "cuda"], "cuda"),
        (["train", "vgg16", "--data", "mnist"], "upscaled"),
        (["train", "resnet35"], "unknown model 'resnet35'"),
        (["train", "lenet5_mnist", "--data", "/no/such/folder"], "no such directory"),
        (["train", "lenet5_mnist", "--cache-limit-mb", "-1"], "--cache-limit-mb must be 0"),
        (["train", "lenet5_mnist", "--workers", "-2"], "--workers must be 0 or more"),
    ],
)
def test_train_refuses_bad_input_in_one_line(argv, message, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_num_classes_mismatch_and_bad_weights(gray_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--num-classes", "7"]
    assert main(argv + ["--out", str(tmp_path / "r")]) == 2
    assert "has 10 classes" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not weights")
    (tmp_path / "bad.pt.sha256").write_text("0" * 64 + "  bad.pt\n")
    assert main(["eval", "lenet5_mnist", "--weights", str(bad), "--data", str(gray_folder)]) == 2
    assert "SHA-256" in capsys.readouterr().err


@pytest.mark.parametrize(
    "forced, native", [("avx2,fma", False), ("avx2,avx512f,avx512_bf16", True)]
)
def test_the_cpu_flags_can_be_forced_for_the_whole_suite(monkeypatch, forced, native):
    from bench.measure import machine

    monkeypatch.setenv("CNN_ZOO_CPU_FLAGS", forced)
    assert set(machine.cpu_flags()) == set(forced.split(","))
    assert machine.native_bf16("cpu") is native
