"""The loop: rows measured and written, failures as error rows, resume, Ctrl-C, max batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, TinyNet, card, register_test_models

import zoo
from bench.events import Event, ModelFinished, ModelStarted, RowDone
from bench.measure.timing import TimerSettings
from bench.schema import ROW_COLUMNS, read_jsonl
from bench.sweep.loop import find_max_batch, plan_rows, run_plan
from bench.sweep.plan import RunPlan
from zoo.registry import _REGISTRY

FAST = TimerSettings(warmup=1, min_steps=2, min_time_s=0.0)


def plan(models: tuple[str, ...], **overrides: object) -> RunPlan:
    settings: dict[str, object] = dict(
        batch_sizes=(2,), threads=1, timer=FAST, large_timer=FAST, devices=("cpu",)
    )
    settings.update(overrides)
    return RunPlan(models=models, **settings)  # type: ignore[arg-type]


def test_rows_are_measured_and_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("tiny_net",)), tmp_path, machine=FAKE_MACHINE)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("infer", 2), ("train", 2)]
    for row in rows:
        assert list(row) == list(ROW_COLUMNS)
        assert row["error"] is None
        assert row["steps_timed"] == 2
        assert row["step_ms_median"] > 0
        assert row["step_ms_p10"] is None and row["step_ms_p90"] is None  # 2 steps: no spread
        assert row["samples_per_s"] == pytest.approx(2 / (row["step_ms_median"] / 1e3))
        assert row["peak_mem_mib"] > 0 and row["peak_mem_method"] == "cpu_vmhwm"
        assert row["input_shape"] == "3x8x8" and row["threads"] == 1
    infer, train = rows
    assert infer["activations_mib"] == 0.0
    assert train["activations_mib"] > 0
    assert train["grads_mib"] == train["optimizer_mib"] == pytest.approx(train["weights_mib"])
    # Training step: forward, weight gradients, and the input gradient of the fc only (the
    # conv is the first layer): conv 3→4 3x3 on 8x8 = 6,912 MACs, fc 4→3 = 12.
    assert infer["train_flops"] is None
    assert train["train_flops"] == 2 * (6_912 + 12) * 2 + 2 * 12
    # achieved GFLOP/s: FLOPs per sample of the step × batch / median step time
    assert train["achieved_gflops"] == pytest.approx(
        train["train_flops"] * 2 / (train["step_ms_median"] / 1e3) / 1e9
    )
    assert infer["achieved_gflops"] == pytest.approx(
        infer["flops"] * 2 / (infer["step_ms_median"] / 1e3) / 1e9
    )
    layers = read_jsonl(tmp_path / "layers.jsonl")
    assert [layer["layer"] for layer in layers] == ["conv", "relu", "pool", "fc"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["interrupted"] is False and meta["threads"] == 1
    assert meta["plan"]["models"] == ["tiny_net"]
    assert (tmp_path / "results.csv").exists()


def test_a_model_that_raises_becomes_an_error_row_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("broken_net", "tiny_net"), modes=("infer",)), tmp_path, machine=FAKE_MACHINE)
    broken, tiny = read_jsonl(tmp_path / "results.jsonl")
    assert broken["model"] == "broken_net"
    assert broken["error"] == "RuntimeError: this model always fails"  # its first line
    assert broken["step_ms_median"] is None and broken["samples_per_s"] is None
    assert "\n" not in broken["error"]
    assert tiny["error"] is None and tiny["step_ms_median"] > 0
    # The row keeps one line; the run's errors.log keeps the whole traceback, under the row's
    # settings (and the counting's, which failed first).
    log = (tmp_path / "errors.log").read_text()
    assert " broken_net counting\n" in log
    row_entry = log.split(" broken_net cpu fp32 contiguous infer")[1]
    assert "Traceback (most recent call last)" in row_entry
    assert "RuntimeError: this model always fails\nsecond line" in row_entry
    assert "tiny_net" not in log


def test_the_loop_tells_its_listener_each_model_and_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    heard: list[Event] = []
    run_plan(plan(("tiny_net",), modes=("infer",)), tmp_path, machine=FAKE_MACHINE)
    run_plan(plan(("tiny_net",)), tmp_path, machine=FAKE_MACHINE, resume=True, listen=heard.append)
    started, skipped, done, finished = heard
    assert started == ModelStarted("tiny_net", 2)
    assert isinstance(skipped, RowDone) and skipped.skipped and skipped.row["mode"] == "infer"
    assert isinstance(done, RowDone) and not done.skipped
    written = read_jsonl(tmp_path / "results.jsonl")[1]
    assert done.row["mode"] == "train" and done.row["step_ms_median"] == written["step_ms_median"]
    assert finished == ModelFinished("tiny_net")


def test_an_impossible_cpu_batch_is_refused_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    built: list[int] = []

    def counting_builder(num_classes: int = 3) -> TinyNet:
        built.append(1)
        return TinyNet(num_classes)

    monkeypatch.setitem(_REGISTRY, "tiny_net", card("tiny_net", counting_builder))  # type: ignore[arg-type]
    huge = 10**9  # 3×8×8 fp32 inputs alone: 768 GB
    run_plan(
        plan(("tiny_net",), batch_sizes=(huge,), modes=("infer",)), tmp_path, machine=FAKE_MACHINE
    )
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    assert row["batch_size"] == huge
    assert row["error"].startswith("refused: estimated peak")
    assert row["peak_mem_mib"] is None and row["step_ms_median"] is None


def test_resume_skips_rows_already_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(("tiny_net",), modes=("infer",)), tmp_path, machine=FAKE_MACHINE)
    run_plan(plan(("tiny_net",)), tmp_path, machine=FAKE_MACHINE, resume=True)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [r["mode"] for r in rows] == ["infer", "train"]  # infer was not measured again
    assert len(read_jsonl(tmp_path / "layers.jsonl")) == 4  # layers written once


def test_ctrl_c_keeps_every_finished_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_models(monkeypatch)

    class InterruptedNet(TinyNet):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # counting (3 forwards) and the infer row run; the first training step is "Ctrl-C"
            if torch.is_grad_enabled() and self.training:
                raise KeyboardInterrupt
            return super().forward(x)

    monkeypatch.setitem(_REGISTRY, "tiny_net", card("tiny_net", InterruptedNet))
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan(("tiny_net",)), tmp_path, machine=FAKE_MACHINE)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [r["mode"] for r in rows] == ["infer"]
    assert rows[0]["error"] is None
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["interrupted"] is True and meta["finished"] is not None
    assert (tmp_path / "results.csv").read_text().count("\n") == 2  # header + the one row


def test_default_plan_batches_depend_on_input_size(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_models(monkeypatch)
    short = RunPlan.short(("tiny_net", "vgg16"), threads=1)
    small = {(s.mode, s.batch_size) for s in plan_rows(short, "tiny_net")}
    large = {(s.mode, s.batch_size) for s in plan_rows(short, "vgg16")}
    assert small == {("infer", 1), ("infer", 32), ("train", 32)}
    assert large == {("infer", 1), ("train", 1)}
    assert short.timer_for((3, 224, 224)) == short.large_timer


def test_max_batch_doubles_then_bisects() -> None:
    tried: list[int] = []

    def fits(batch: int) -> bool:
        tried.append(batch)
        return batch <= 100

    assert find_max_batch(fits) == 100
    assert tried[:8] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert find_max_batch(lambda b: False) == 0
    assert find_max_batch(lambda b: True, limit=64) == 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_rows_use_the_allocator_and_find_the_max_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    cuda_plan = plan(("tiny_net",), devices=("cuda",), dtypes=("fp32", "bf16"), max_batch=True)
    monkeypatch.setattr("bench.sweep.loop.MAX_BATCH_LIMIT", 256)
    run_plan(cuda_plan, tmp_path, machine=FAKE_MACHINE)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert all(r["device"] == "cuda" for r in rows)
    measured = [r for r in rows if r["error"] is None]
    assert measured and all(r["peak_mem_method"] == "cuda_allocator" for r in measured)
    maxed = [r for r in rows if r["max_batch"] is not None]
    assert maxed and all(r["max_batch"] == r["batch_size"] == 256 for r in maxed if not r["error"])


def test_a_dtype_the_device_cannot_run_is_an_error_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2",))
    run_plan(
        plan(("tiny_net",), dtypes=("bf16", "fp32"), modes=("infer",)), tmp_path,
        machine=FAKE_MACHINE,
    )  # fmt: skip
    bf16, fp32 = read_jsonl(tmp_path / "results.jsonl")
    assert bf16["dtype"] == "bf16" and bf16["error"].startswith("RuntimeError: this CPU has no")
    assert fp32["error"] is None


def test_lenet5s_timed_training_step_uses_the_map_criterion_it_trains_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo import losses
    from zoo.lenet import map_loss

    scored: list[str] = []

    def spy(name: str):
        real = losses.LOSSES[name]

        def loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            scored.append(name)
            return real(scores, target)

        return loss

    for name in ("map", "cross_entropy"):
        monkeypatch.setitem(losses.LOSSES, name, spy(name))
    run_plan(plan(("lenet5",), modes=("train",)), tmp_path, machine=FAKE_MACHINE)
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    assert row["error"] is None
    assert scored and set(scored) == {"map"}  # every step, warm-up and timed, scored by MAP
    # The step's returned loss is the MAP criterion of the model's scores before its update.
    from bench.measure.workload import make_workload

    model = zoo.get_model("lenet5")
    work = make_workload(
        model, input_shape=(1, 32, 32), num_classes=10, batch_size=4, device="cpu",
        dtype="fp32", memory_format="contiguous", mode="train", loss=map_loss,
    )  # fmt: skip
    with torch.no_grad():
        expected = map_loss(model(work.inputs), work.targets)
    torch.testing.assert_close(work.train(), expected)
