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

import data
import zoo
from bench.cli import main
from bench.events import EpochFinished, EpochStarted, StepsDone
from bench.training.loop import (
    TrainSettings,
    _clock,
    check_can_stop,
    evaluations,
    load_weights,
    save_weights,
    train,
)
from bench.training.recipes import (
    ALTERNATIVE_RECIPES,
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

QUICK = Recipe(lr=0.05, batch_size=32, samples=1280, dtype="fp32", channels_last=False)


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


PAPER_ETAS = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8  # Sec. II.D


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        # SDLM: the paper's eta capped at 5e-5 (5e-4 and 1e-4 diverged here; docs/lenet5-sdlm.md)
        (RECIPES["lenet5"], [min(eta, 5e-5) for eta in PAPER_ETAS]),
        (ALTERNATIVE_RECIPES["lenet5_sgd"], [LENET5_SGD_SCALE * eta for eta in PAPER_ETAS]),
    ],
)
def test_lenet5_recipes_follow_the_papers_schedule(recipe, expected):
    etas = [lr_factor(recipe, 0.0, epoch * 60_000 + 59_999) * recipe.lr for epoch in range(20)]
    assert etas == pytest.approx(expected)
    assert recipe.samples == 20 * 60_000 and recipe.normalisation == "lenet5_paper"
    # Each departure from the paper is said in every row: SDLM's eta cap, SGD in its place.
    assert ("eta" in recipe.note) and recipe.note in recipe.describe()


def test_label_smoothing_is_in_the_loss_and_said_in_the_row():
    """Smoothing eps: the loss is (1 - eps) x cross-entropy + eps x the mean over classes of
    -log p (Szegedy et al. 2016), computed here by hand from log-softmax."""
    recipe = replace(RECIPES["lab_cnn"], label_smoothing=0.1)
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    log_p = scores.log_softmax(1)
    nll = -log_p[torch.arange(2), labels]
    expected = (0.9 * nll + 0.1 * -log_p.mean(1)).mean()
    criterion = zoo.criterion("lab_cnn", recipe.label_smoothing)
    torch.testing.assert_close(criterion(scores, labels), expected)
    assert "label smoothing 0.1" in recipe.describe()
    assert "smoothing" not in replace(recipe, label_smoothing=0.0).describe()


def test_lenet5_trains_per_sample_with_sdlm_and_sgd_stays_available():
    assert RECIPES["lenet5"].optimizer == "sdlm" and RECIPES["lenet5"].batch_size == 1
    assert recipe_for("lenet5", "lenet5_sgd").optimizer == "sgd"
    with pytest.raises(ValueError, match="unknown recipe 'lenet5_adam'"):
        recipe_for("lenet5", "lenet5_adam")


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
    assert set(RECIPES) <= set(zoo.list_models())  # a misspelt row would never be used
    # The criterion is the model's card's, whatever the recipe (SDLM or the SGD stand-in).
    assert [name for name in zoo.list_models() if zoo.get_card(name).loss == "map"] == ["lenet5"]
    assert "map" in recipe_for("lenet5", "lenet5_sgd").describe(loss=zoo.get_card("lenet5").loss)
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
    assert outcome.stopped_by == "target"
    capped = train(TrainSettings("lenet5_mnist", budget_s=1e3, epochs=1), splits, QUICK)
    assert capped.stopped_by == "length" and capped.samples_seen == 640
    with pytest.raises(ValueError, match="ran out in the first training step"):
        train(TrainSettings("lenet5_mnist", budget_s=1e-9, epochs=5), splits, QUICK)


@pytest.mark.parametrize(
    "train_size, batch, samples, steps",
    [
        # 3,000 images at batch 128: 23 steps a pass; 60,000 samples are 469 steps (20.4
        # passes), not the one pass of 23 steps that a length in epochs gave.
        (3000, 128, 60_000, 469),
        (640, 32, 1000, 32),  # ceil(1000 / 32): 1,024 samples, 1.6 passes
        (640, 32, 64, 2),
    ],
)
def test_the_length_is_samples_whatever_the_data_size(train_size, batch, samples, steps):
    from bench.training.loop import length_steps

    recipe = replace(QUICK, batch_size=batch, samples=samples)
    assert length_steps(TrainSettings("lab_cnn"), recipe, train_size // batch) == steps
    assert length_steps(TrainSettings("lab_cnn", epochs=2), recipe, train_size // batch) == 2 * (
        train_size // batch
    )
    assert length_steps(TrainSettings("lab_cnn", budget_s=5.0), recipe, 1) is None


def test_a_small_split_trains_the_recipes_samples(splits):
    outcome = train(TrainSettings("lenet5_mnist"), splits, replace(QUICK, samples=1000))
    assert outcome.samples_seen == 1024 and outcome.epochs == pytest.approx(1.6)
    assert outcome.stopped_by == "length"
    # 32 steps at batch 32, two evaluations a pass of 20: after steps 10 and 20, and the last;
    # step 30's, two steps before the last, is left to it
    assert [round(p.epoch * 20) for p in outcome.history] == [10, 20, 32]


@pytest.mark.parametrize(
    "steps, every, due",
    [
        (704, 234, [234, 468, 704]),  # lenet5_mnist on MNIST: 702 is two steps from the end
        (1172, 195, [195, 390, 585, 780, 975, 1172]),  # a CIFAR recipe's 150,000 samples
        (40, 10, [10, 20, 30, 40]),  # the last multiple is the end: one evaluation there
        (37, 10, [10, 20, 30, 37]),  # 7 steps after 30: a quarter of 10 or more, kept
        (32, 10, [10, 20, 32]),  # 2 steps after 30: under a quarter, left to the end
        (5, 10, [5]),  # shorter than the interval: the end alone
    ],
)
def test_an_evaluation_just_before_the_end_is_left_to_the_last(steps, every, due):
    assert evaluations(steps, every) == len(due)


@pytest.mark.parametrize("steps, due", [(32, [10, 20, 32]), (37, [10, 20, 30, 37])])
def test_the_loop_evaluates_where_evaluations_counts(steps, due):
    # a pass of 10 steps at batch 8, evaluated once a pass
    splits = Splits(
        "synthetic", separable_split(80, 0), separable_split(40, 1), (1, 28, 28), MEANSTD
    )
    settings = TrainSettings("lenet5_mnist", samples=steps * 8, batch_size=8, evals_per_epoch=1)
    outcome = train(settings, splits, QUICK)
    assert [round(p.epoch * 10) for p in outcome.history] == due


def test_evaluations_during_training_use_the_subset_the_last_the_whole_split(splits, monkeypatch):
    sizes: list[int] = []
    real = TensorSplit.batches

    def counted(self, batch_size, **kw):
        if self is splits.test:
            sizes.append(min(kw.get("limit") or len(self), len(self)))
        return real(self, batch_size, **kw)

    monkeypatch.setattr(TensorSplit, "batches", counted)
    settings = TrainSettings("lenet5_mnist", samples=320, eval_limit=50)  # half a pass
    outcome = train(settings, splits, QUICK)
    # 10 steps, shorter than a pass: MIN_EVALS = 4 points, after steps 3, 6, 9 and 10
    assert sizes == [50, 50, 50, 200] and [p.epoch for p in outcome.history] == [
        0.15,
        0.3,
        0.45,
        0.5,
    ]
    assert outcome.accuracy == outcome.history[-1].test_accuracy


def _mislabelled_but(split: TensorSplit, kept: int) -> TensorSplit:
    """``split`` with every label but those of the ``kept`` samples an evaluation limited to
    ``kept`` scores (every ``len / kept``-th, worked out by hand below) moved to the next class:
    a model that learned the data scores well on those and badly on the rest."""
    step = len(split.labels) // kept
    assert step * kept == len(split.labels)
    wrong = torch.ones(len(split.labels), dtype=torch.bool)
    wrong[::step] = False  # floor(i * len / kept) = i * step
    labels = split.labels.clone()
    labels[wrong] = (labels[wrong] + 1) % 10
    return TensorSplit(
        split.images, labels, class_names=split.class_names, input_shape=split.input_shape,
        normalisation=split.normalisation,
    )  # fmt: skip


def _hand_accuracy(model: torch.nn.Module, split: TensorSplit) -> float:
    """The second method: every test image scored one at a time, in fp32, by the weights."""
    model.eval()
    with torch.inference_mode():
        x = split.normalisation.apply(split.images.float() / 255)
        right = sum(
            int(model(x[i : i + 1]).argmax(1).item() == split.labels[i].item())
            for i in range(len(split.labels))
        )
    return right / len(split.labels)


def test_a_target_is_reached_only_on_the_whole_test_split(splits, tmp_path):
    # The 50 test images a limited evaluation scores are labelled right and the other 150 wrong:
    # the subset says the target is passed, the whole split (at most about 25% right) says not.
    hard = Splits("synthetic", splits.train, _mislabelled_but(splits.test, 50), (1, 28, 28),
                  MEANSTD)  # fmt: skip
    settings = TrainSettings(
        "lenet5_mnist", target_acc=0.9, stop_at_target=True, epochs=2, eval_limit=50
    )
    outcome = train(settings, hard, QUICK)
    assert outcome.time_to_target_s is None and outcome.stopped_by == "length"
    subset = [p for p in outcome.history if p.test_samples == 50]
    whole = [p for p in outcome.history if p.test_samples == 200]
    # the subset passed the target before the end (a whole-split point in mid-run), and no
    # whole-split point did
    assert any(p.test_accuracy >= 0.9 for p in subset) or len(whole) > 1
    assert len(whole) > 1 and all(p.test_accuracy < 0.5 for p in whole)
    assert outcome.history[-1].test_samples == 200
    save_weights(outcome.model, tmp_path / "w.pt")
    model = zoo.get_model("lenet5_mnist")
    model.load_state_dict(load_weights(tmp_path / "w.pt"))
    assert outcome.accuracy == _hand_accuracy(model, hard.test)


def test_a_subset_at_the_target_is_confirmed_on_the_whole_split(splits):
    settings = TrainSettings(
        "lenet5_mnist", target_acc=0.6, stop_at_target=True, epochs=4, eval_limit=50
    )
    outcome = train(settings, splits, QUICK)
    assert outcome.stopped_by == "target"
    last = outcome.history[-1]
    assert last.test_samples == 200 and last.wall_s == outcome.time_to_target_s
    assert last.test_accuracy == outcome.accuracy == _hand_accuracy(outcome.model, splits.test)
    assert all(p.test_samples == 50 for p in outcome.history[:-1])


def test_the_budget_is_the_length_the_schedule_runs_over(splits, monkeypatch):
    import bench.training.loop as loop

    ticks = iter(range(1, 10_000))
    # 1 s a reading: a step's, and none for the evaluation's synchronised one (a second reading
    # at the same instant)
    last = [0.0]

    def clock(device, sync=True):
        if sync:
            return last[0]
        last[0] = float(next(ticks))
        return last[0]

    monkeypatch.setattr(loop, "_clock", clock)
    progress: list[float] = []
    real = loop.lr_factor
    monkeypatch.setattr(
        loop, "lr_factor", lambda r, p, seen: progress.append(p) or real(r, p, seen)
    )
    outcome = train(TrainSettings("lenet5_mnist", budget_s=10.0), splits, QUICK)
    assert progress == pytest.approx([k / 10 for k in range(10)])
    assert outcome.stopped_by == "budget" and outcome.samples_seen == 10 * 32
    assert outcome.train_s == 10.0
    # one-cycle over the budget: warm-up to the peak at 20% of it, then down towards 0
    factors = [real(QUICK, p, 0) for p in progress]
    assert factors[2] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.125)


def test_the_training_clock_waits_for_queued_cuda_work(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    assert isinstance(_clock("cpu"), float) and synced == []
    _clock("cuda")
    _clock(torch.device("cuda", 1))
    _clock("cuda", sync=False)  # between evaluations: the host goes on
    assert synced == [torch.device("cuda"), torch.device("cuda", 1)]


def test_training_time_is_read_from_the_clock_function(splits, monkeypatch):
    readings = []

    def one_second_per_reading(device, sync=True):
        readings.append((torch.device(device), sync))
        return float(len(readings))

    monkeypatch.setattr("bench.training.loop._clock", one_second_per_reading)
    settings = TrainSettings("lenet5_mnist", epochs=1, evals_per_epoch=2)
    outcome = train(settings, splits, QUICK)
    # 640 samples / batch 32 = 20 steps, evaluated after steps 10 and 20. Readings: one after
    # each step, not waiting for a GPU; waiting, one at the start, one before each evaluation
    # (the queued steps finish on the clock) and one after it (which restarts the clock). Each
    # reading is 1 s on the clock, the evaluations none: 10 + 1 s to the first, 10 + 1 more.
    assert [sync for _, sync in readings] == (
        [True] + [False] * 10 + [True, True] + [False] * 10 + [True, True]
    )
    assert {device for device, _ in readings} == {torch.device("cpu")}
    assert outcome.train_s == 22.0
    assert [p.wall_s for p in outcome.history] == [11.0, 22.0]


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
    # The recipe's first two passes, a pass made 3,000 samples long.
    recipe = replace(RECIPES["lenet5"], samples=6000, pass_samples=3000)
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
        ({"eval_dtype": "fp16"}, "--eval-dtype must be one of fp32, bf16_autocast"),
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
        short = ["--samples", "480"]  # the recipes' 60,000+ samples are too long for the suite
        argv = ["train", model, "--data", str(gray_folder), *short, "--out", str(out)]
        assert main(argv) == 0
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["mode"] == "accuracy" and rows[0]["error"] is None
        assert 0.0 <= rows[0]["accuracy"] <= 1.0 and rows[0]["data_loading_in_timing"] is False
        assert rows[0]["num_classes"] == 10 and rows[0]["recipe"]
        epochs = (out / "epochs.jsonl").read_text().splitlines()
        assert len(epochs) >= 1
        # Each class's accuracy, weighted by its test images, is the accuracy.
        per_class = rows[0]["per_class_accuracy"]
        test = data.load(str(gray_folder), input_shape=(1, 28, 28)).test  # its seeded split
        counts = {f"class_{c}": int((test.labels == c).sum()) for c in range(10)}
        assert set(per_class) == {name for name, count in counts.items() if count}
        weighted = sum(per_class[c] * counts[c] for c in per_class) / sum(counts.values())
        assert weighted == pytest.approx(rows[0]["accuracy"], abs=1e-5)
        weights = out / "weights" / f"{model}-seed0.pt"
        evaluated = tmp_path / f"{model}-eval"
        argv = ["eval", model, "--weights", str(weights), "--data", str(gray_folder)]
        assert main([*argv, "--out", str(evaluated)]) == 0
        assert f"accuracy {rows[0]['accuracy']:.4f}" in capsys.readouterr().out
        (again,) = [json.loads(x) for x in (evaluated / "results.jsonl").read_text().splitlines()]
        assert again["per_class_accuracy"] == per_class and again["weights"] == str(weights)
        assert again["accuracy"] == rows[0]["accuracy"] and again["epochs"] == 0


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


# --- bad input: one line, and a non-zero exit where nothing could be measured ---------------


def test_a_budget_too_short_for_one_step_is_an_error_row(gray_folder, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--budget-s", "1e-9"]
    assert main([*argv, "--no-save", "--out", str(out)]) == 1
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert "ran out in the first training step" in row["error"] and row["accuracy"] is None
    printed = [line for line in capsys.readouterr().out.splitlines() if "ERROR" in line]
    assert len(printed) == 1 and "give a longer budget" in printed[0]


def test_an_imagefolder_smaller_than_a_batch_is_refused_in_one_line(tmp_path, capsys):
    from PIL import Image

    split = separable_split(300, 4)
    for label in range(10):  # 4 images a class: 40, fewer than a batch in either split
        (tmp_path / "few" / f"c{label}").mkdir(parents=True)
        for i in (split.labels == label).nonzero().flatten()[:4].tolist():
            image = split.images[i, 0].numpy()
            Image.fromarray(image, mode="L").save(tmp_path / "few" / f"c{label}/{i}.png")
    out = tmp_path / "r"
    argv = ["train", "lenet5_mnist", "--data", str(tmp_path / "few"), "--out", str(out)]
    assert exit_code(argv) == 2  # the recipe's batch of 128 > the folder's training images
    err = capsys.readouterr().err.strip()
    assert "exceeds the" in err and "--batch-size" in err and "\n" not in err


def test_a_target_not_reached_within_the_length_is_said(gray_folder, tmp_path, capsys):
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--target-acc", "1.0"]
    argv += ["--stop-at-target", "--samples", "128", "--batch-size", "64", "--no-save"]
    argv += ["--out", str(tmp_path / "r")]
    assert main(argv) == 0  # it trained and was measured: the row says the target was missed
    (row,) = [json.loads(line) for line in (tmp_path / "r/results.jsonl").read_text().splitlines()]
    assert row["stopped_by"] == "length" and row["time_to_target_s"] is None
    assert row["samples_seen"] == 128 and row["test_samples"] > 0
    assert "100.00% not reached within its length" in capsys.readouterr().out


# --- AlexNet's two initialisations; the default accuracy plan ---------------------------------


def test_alexnet_mnist_keeps_the_papers_init_and_its_kaiming_twin_is_he_et_al():
    import zoo

    torch.manual_seed(0)
    paper, kaiming = (zoo.get_model(n) for n in ("alexnet_mnist", "alexnet_mnist_kaiming"))
    assert [p.shape for p in paper.parameters()] == [p.shape for p in kaiming.parameters()]
    fc6 = paper.classifier[0]  # 1,024 -> 4,096: four million draws
    assert fc6.weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert bool((fc6.bias == 1).all())
    conv2 = kaiming.features[4]  # 48 inputs a group x 5 x 5: fan_in 1,200
    assert isinstance(conv2, torch.nn.Conv2d) and conv2.groups == 2
    assert conv2.weight.std().item() == pytest.approx((2 / (48 * 25)) ** 0.5, rel=0.02)
    assert all(bool((m.bias == 0).all()) for m in kaiming.modules() if hasattr(m, "bias"))


def test_the_default_plan_trains_every_familys_mnist_model_by_samples():
    from bench.training.runs import ACCURACY_PLAN, CURVE_EVAL

    models = [s.model for s in ACCURACY_PLAN]
    assert set(models) == {
        "lenet5_mnist", "lab_cnn", "lenet5", "alexnet_mnist", "alexnet_mnist_kaiming",
        "vgg16_mnist", "resnet34_mnist",
    }  # fmt: skip
    assert all(s.budget_s is None and s.epochs is None for s in ACCURACY_PLAN)  # lengths: work
    big = [s for s in ACCURACY_PLAN if s.model.startswith(("alexnet", "vgg", "resnet"))]
    assert {s.eval_limit for s in big} == {CURVE_EVAL}
    assert recipe_for("alexnet_mnist_kaiming") == replace(
        recipe_for("alexnet_mnist"), note=recipe_for("alexnet_mnist_kaiming").note
    )  # only the initialisation (and its note) differs


def test_alexnet_cifar_has_a_he_initialised_twin_and_the_cifar_plan_trains_it_in_full():
    """The twin's conv1 reads 3 channels x 5 x 5 (fan_in 75), its fc6 256 x 3 x 3 = 2,304
    features; the paper's network keeps N(0, 0.01) and fc6's biases of 1."""
    import zoo
    from bench.training.runs import CIFAR_PLAN

    torch.manual_seed(0)
    paper, kaiming = (zoo.get_model(n) for n in ("alexnet_cifar", "alexnet_cifar_kaiming"))
    assert [p.shape for p in paper.parameters()] == [p.shape for p in kaiming.parameters()]
    assert paper.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert bool((paper.classifier[0].bias == 1).all())
    conv1 = kaiming.features[0]
    assert isinstance(conv1, torch.nn.Conv2d) and conv1.weight.shape[1:] == (3, 5, 5)
    assert conv1.weight.std().item() == pytest.approx((2 / 75) ** 0.5, rel=0.05)
    assert kaiming.classifier[0].in_features == 2_304
    assert all(bool((m.bias == 0).all()) for m in kaiming.modules() if hasattr(m, "bias"))
    assert recipe_for("alexnet_cifar_kaiming") == replace(
        recipe_for("alexnet_cifar"), note=recipe_for("alexnet_cifar_kaiming").note
    )  # only the initialisation (and its note) differs
    by_model = {s.model: s for s in CIFAR_PLAN}
    # both at the recipe's 150,000 samples, evaluated on the whole test split
    for model in ("alexnet_cifar_kaiming", "alexnet_cifar"):
        assert (by_model[model].samples, by_model[model].eval_limit) == (None, None)
    assert recipe_for("alexnet_cifar").samples == 150_000


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target-acc", "99"], "e.g. 0.99; got 99 (for 99% write 0.99)"),
        (["--target-acc", "99%"], "must be a fraction in (0, 1], e.g. 0.99; got '99%'"),
        (["--target-acc", "-0.5"], "e.g. 0.99; got -0.5"),
        (["--stop-at-target"], "--stop-at-target needs a target on"),  # no default off MNIST
        # at batch 64, 64 samples are one step, evaluated at its end only
        (["--target-acc", "0.9", "--stop-at-target", "--samples", "64"], "1 step at batch 64 is"),
        (["--target-acc", "0.9", "--stop-at-target", "--epochs", "1", "--evals-per-epoch", "1"],
         "evaluated only where the run ends"),
        # ~160 training images at batch 64: 128 samples are the whole pass, evaluated once a
        # pass, so only at the end (known once the data is read; nothing is written)
        (["--target-acc", "0.9", "--stop-at-target", "--samples", "128", "--evals-per-epoch",
          "1"], "training samples is evaluated only where the run ends"),
    ],
)  # fmt: skip
def test_a_target_the_run_can_never_reach_is_refused_before_any_work(
    flags, message, gray_folder, tmp_path, capsys
):
    out = tmp_path / "r"
    argv = ["train", "lenet5_mnist", "--data", str(gray_folder), "--batch-size", "64", *flags]
    assert exit_code([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()  # nothing written


def _can_stop(settings: TrainSettings, train_samples: int | None) -> bool:
    try:
        check_can_stop(settings, QUICK, train_samples)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("epochs", [None, 1, 2])
@pytest.mark.parametrize("samples", [None, 32, 33, 64, 640])
@pytest.mark.parametrize("evals", [1, 2])
def test_one_reachability_rule_before_and_after_the_data_is_read(epochs, samples, evals):
    """The CLI asks before reading the data (no split size) and refuses only a run that could
    stop early on no split; the run asks again with the split's size, exactly."""
    settings = TrainSettings(
        "lenet5_mnist", epochs=epochs, samples=samples, evals_per_epoch=evals,
        target_acc=0.9, stop_at_target=True,
    )  # fmt: skip
    sizes = (32, 100, 640, 6_400, 60_000)  # QUICK's batch is 32
    if not _can_stop(settings, None):
        assert not any(_can_stop(settings, n) for n in sizes)
    else:
        assert _can_stop(settings, 60_000)
    assert _can_stop(replace(settings, stop_at_target=False), 32)  # nothing to check
