"""Memory: tensor bytes, activations saved for backward, measured peaks, the CPU refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, register_test_models
from torch import nn

from bench.measure import memory
from bench.measure.timing import TimerSettings
from bench.measure.workload import make_workload
from bench.report.document import Table
from bench.report.formatting import fmt_num
from bench.report.runs import load_run
from bench.report.sections import measured_blocks
from bench.schema import read_jsonl
from bench.sweep.loop import run_plan
from bench.sweep.plan import RunPlan

CUDA = torch.cuda.is_available()


def test_model_bytes_counts_params_trainable_and_buffers() -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))
    model[0].bias.requires_grad_(False)
    sizes = memory.model_bytes(model)
    assert sizes.params == 4 * (8 * 4 + 4 + 4 + 4)
    assert sizes.trainable == sizes.params - 4 * 4
    assert sizes.buffers == 4 * 4 * 2 + 8  # running mean/var (fp32) + num_batches_tracked (int64)
    assert memory.model_bytes(model.to(torch.bfloat16)).params == 2 * (8 * 4 + 4 + 4 + 4)


def test_optimizer_bytes_is_one_momentum_buffer_per_parameter_for_sgd() -> None:
    model = nn.Linear(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert memory.optimizer_bytes(optimizer) == 0  # state appears at the first step
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    assert memory.optimizer_bytes(optimizer) == 4 * (8 * 4 + 4)


def test_saved_activations_are_measured_without_the_weights() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(5, 8)
    saved = memory.saved_activation_bytes(model, lambda: model(x).sum().backward())
    # first linear saves its input (5×8); ReLU saves its output (5×16), which the second
    # linear saves again (one storage, counted once); weights are left out.
    assert saved == 4 * 5 * (8 + 16)


def test_saved_activations_scale_with_the_batch() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    for batch in (1, 3):
        x = torch.randn(batch, 3, 8, 8)
        saved = memory.saved_activation_bytes(model, lambda x=x: model(x).sum().backward())
        assert saved == 4 * batch * 8 * 8 * (3 + 4)


def test_cpu_peak_sees_a_big_temporary_allocation() -> None:
    size = 64 * memory.MIB

    def step() -> None:
        scratch = torch.ones(size // 4)  # written, so its pages are resident
        del scratch

    peak = memory.peak_cpu(step, resident_bytes=1000)
    assert peak.method in ("cpu_vmhwm", "cpu_rss_sampled")
    assert peak.peak_bytes >= 1000 + 0.9 * size
    assert peak.peak_bytes < 1000 + 4 * size


def test_estimate_grows_with_batch_and_training() -> None:
    common = dict(
        weight_bytes=1000, trainable_bytes=800, activation_bytes_per_sample=100,
        largest_activation_per_sample=40, input_bytes_per_sample=10,
    )  # fmt: skip
    infer1 = memory.estimate_peak_bytes(batch_size=1, mode="infer", **common)
    infer8 = memory.estimate_peak_bytes(batch_size=8, mode="infer", **common)
    train8 = memory.estimate_peak_bytes(batch_size=8, mode="train", **common)
    overhead = memory.STEP_OVERHEAD_BYTES
    # weights, weight-sized scratch (1 × inference, 3 × training), gradients and momentum
    assert infer1 == 1000 + 1000 + overhead + 10 + 2 * 40
    assert infer8 == 1000 + 1000 + overhead + 8 * (10 + 2 * 40)
    assert train8 == 1000 + 3 * 1000 + 2 * 800 + overhead + 8 * (10 + 2 * 100)


def test_cpu_refusal_is_a_one_line_error() -> None:
    memory.check_fits_cpu(100, available_bytes=1000)
    with pytest.raises(memory.MemoryRefused, match="exceeds") as refused:
        memory.check_fits_cpu(10**12, available_bytes=10**9)
    assert "\n" not in str(refused.value)


def test_mem_available_is_read() -> None:
    assert memory.mem_available_bytes() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_peak_includes_a_temporary_allocation() -> None:
    size = 64 * memory.MIB
    peak = memory.peak_cuda(lambda: torch.empty(size, dtype=torch.uint8, device="cuda"))
    assert peak.method == "cuda_allocator"
    assert peak.peak_bytes >= size


class ConvLinear(nn.Module):
    """conv 3→16 (k×k, same padding) → ReLU → flatten → linear 1024→10, for 3×8×8 inputs.

    At batch 2 its weights (the linear's 10 240 alone) outweigh what a training step saves.
    """

    def __init__(self, num_classes: int = 10, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, kernel, padding=kernel // 2)
        self.fc = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def expected_saved_bytes(batch: int, classes: int, element: int) -> int:
    """What a cross-entropy training step of ConvLinear saves for backward, by hand.

    ``element`` is the bytes of the conv's input and the ReLU's output: 4 in fp32, 2 under
    bf16 autocast (which casts the input to bf16 for the conv; ReLU runs on the bf16 output).
    """
    conv_input = batch * 3 * 8 * 8 * element  # the conv saves its input (and its weight)
    relu_output = batch * 16 * 8 * 8 * element  # ReLU saves its output; the linear its view
    # cross_entropy runs in fp32 (autocast casts the logits up): log_softmax's fp32 output,
    # saved by log_softmax and nll_loss (one storage), the int64 targets and nll_loss's
    # 0-dim fp32 total_weight.
    loss = batch * classes * 4 + batch * 8 + 4
    return conv_input + relu_output + loss


@pytest.mark.parametrize("kernel", [3, 7])
@pytest.mark.parametrize("dtype, element", [("fp32", 4), ("bf16_autocast", 2)])
@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))],
)
def test_saved_activations_leave_out_autocasts_weight_copies(
    monkeypatch: pytest.MonkeyPatch, device: str, kernel: int, dtype: str, element: int
) -> None:
    # bf16 autocast runs (slowly) on any CPU; the harness refuses it without native bf16.
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx512_bf16",))
    work = make_workload(
        ConvLinear(kernel=kernel), input_shape=(3, 8, 8), num_classes=10, batch_size=2,
        device=device, dtype=dtype, memory_format="contiguous", mode="train",
    )  # fmt: skip
    weights = memory.model_bytes(work.model).params
    expected = expected_saved_bytes(batch=2, classes=10, element=element)
    assert weights // 2 > expected  # even the bf16 copies of the weights outweigh the activations
    saved = memory.saved_activation_bytes(work.model, work.train)
    # The same for both kernel sizes: the count does not grow with the weights.
    assert saved == expected


def test_the_cpu_guards_estimate_is_written_beside_the_measured_peak_and_covers_it(
    tmp_path: Path,
) -> None:
    # Three shapes: a tiny LeNet, a CNN whose weights are mostly one big linear layer, and a
    # deep residual network with batch norm.
    models = ("lenet5_modern", "lab_cnn", "resnet34_cifar")
    timer = TimerSettings(warmup=1, min_steps=1, min_time_s=0.0)
    plan = RunPlan(
        models=models, batch_sizes=(4,), modes=("train",), threads=1, timer=timer,
        large_timer=timer, devices=("cpu",),
    )  # fmt: skip
    run_plan(plan, tmp_path, machine=FAKE_MACHINE)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [row["model"] for row in rows] == list(models)
    for row in rows:
        assert row["error"] is None
        assert row["peak_mem_method"] in ("cpu_vmhwm", "cpu_rss_sampled")
        estimate, peak = row["peak_mem_estimate_mib"], row["peak_mem_mib"]
        # The guard must not let through a batch that needs more than it planned for, nor be
        # so loose that it refuses batches that would fit (10 ×; measured 1.6-3.5 × here).
        assert peak <= estimate <= 10 * peak, row["model"]
    # The report's table of rows shows both, named apart.
    run = load_run(tmp_path)
    shown = next(b for b in measured_blocks(run.results, run.metas) if isinstance(b, Table))
    measured_at = shown.headers.index("measured peak MiB")
    estimated_at = shown.headers.index("estimated peak MiB")
    shown_rows = {cells[0]: cells for cells in shown.rows}
    assert len(shown_rows) == len(rows)
    for row in rows:
        cells = shown_rows[row["model"]]
        assert cells[measured_at] == fmt_num(row["peak_mem_mib"])
        assert cells[estimated_at] == fmt_num(row["peak_mem_estimate_mib"])


def test_a_bf16_models_estimate_does_not_depend_on_the_rows_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bf16 runs (slowly) on any CPU; the harness refuses it without native bf16.
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx512_bf16",))
    register_test_models(monkeypatch)
    timer = TimerSettings(warmup=0, min_steps=1, min_time_s=0.0)

    def train_estimate(modes: tuple[str, ...], out: Path) -> float:
        plan = RunPlan(
            models=("tiny_net",), dtypes=("bf16",), modes=modes, batch_sizes=(2,), threads=1,
            timer=timer, large_timer=timer, devices=("cpu",),
        )  # fmt: skip
        run_plan(plan, out, machine=FAKE_MACHINE)
        (train,) = [r for r in read_jsonl(out / "results.jsonl") if r["mode"] == "train"]
        return train["peak_mem_estimate_mib"]

    # The infer row casts the model to bf16 in place; the train row after it reuses that model.
    after_infer = train_estimate(("infer", "train"), tmp_path / "both")
    alone = train_estimate(("train",), tmp_path / "alone")
    assert after_infer == alone
