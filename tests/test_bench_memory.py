"""Memory: tensor bytes, activations saved for backward, measured peaks, the CPU refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import memory


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
    assert infer1 == 1000 + 10 + 2 * 40
    assert infer8 == 1000 + 8 * (10 + 2 * 40)
    assert train8 == 1000 + 2 * 800 + 8 * (10 + 2 * 100)


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
