"""Step callables: dtype and memory format conventions, training updates, unsupported dtypes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from conftest import TinyNet

from bench.measure.workload import check_dtype, make_workload

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend the CPU has avx512_bf16, so bf16 paths run on any machine (tiny model)."""
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx512_bf16",))
    yield


def workload(device: str, dtype: str, memory_format: str = "contiguous", mode: str = "infer"):
    return make_workload(
        TinyNet(), input_shape=(3, 8, 8), num_classes=3, batch_size=2, device=device,
        dtype=dtype, memory_format=memory_format, mode=mode,
    )  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype, weights, output",
    [
        ("fp32", torch.float32, torch.float32),
        ("bf16_autocast", torch.float32, torch.bfloat16),  # weights stay fp32, math in bf16
        ("bf16", torch.bfloat16, torch.bfloat16),  # cast once
    ],
)
def test_dtype_conventions(
    native_bf16: None, device: str, dtype: str, weights: torch.dtype, output: torch.dtype
) -> None:
    work = workload(device, dtype)
    assert work.model.conv.weight.dtype == weights
    assert work.inputs.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)
    assert work.infer().dtype == output
    assert not work.model.training


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_places_weights_and_inputs(device: str) -> None:
    work = workload(device, "fp32", memory_format="channels_last")
    assert work.inputs.is_contiguous(memory_format=torch.channels_last)
    assert work.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert work.infer().shape == (2, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16_autocast", "bf16"])
def test_a_training_step_updates_the_weights(native_bf16: None, device: str, dtype: str) -> None:
    torch.manual_seed(0)
    work = workload(device, dtype, mode="train")
    before = [p.detach().clone() for p in work.model.parameters()]
    loss = work.train()
    assert work.model.training and loss.ndim == 0
    # Some weights may not move in pure bf16 (an update below bf16's resolution is lost, the
    # reason mixed precision keeps fp32 masters), but the step must change the model.
    after = [p.detach() for p in work.model.parameters()]
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    assert work.optimizer is not None and len(work.optimizer.state) > 0  # momentum buffers


def test_infer_step_records_no_graph() -> None:
    out = workload("cpu", "fp32").infer()
    assert out.is_inference() and out.grad_fn is None


def test_bf16_without_native_support_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2", "fma"))
    check_dtype("fp32", torch.device("cpu"))
    for dtype in ("bf16", "bf16_autocast"):
        with pytest.raises(RuntimeError, match="no native bf16"):
            check_dtype(dtype, torch.device("cpu"))


def test_tiny_net_runs() -> None:
    assert TinyNet()(torch.randn(2, 3, 8, 8)).shape == (2, 3)
