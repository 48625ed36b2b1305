"""The machine description: which peaks are measured (bf16 only where it is native) and CUDA's
TF32 settings in meta.json and the rows. Nothing here times anything: the measuring functions
are replaced by fakes that record what they were asked for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, register_test_models

from bench.measure import machine
from bench.measure.machine import cuda_tf32, describe, row_tf32
from bench.measure.timing import TimerSettings
from bench.schema import base_row, read_jsonl
from bench.sweep.loop import run_plan
from bench.sweep.plan import RunPlan

Call = tuple[str, str, torch.dtype]
SetPrecision = Callable[[str, str], None]


@pytest.fixture
def precision() -> Iterator[SetPrecision]:
    """Sets the fp32 precision ("ieee" or "tf32") of CUDA matmuls and cuDNN convolutions for one
    test, through torch's fp32_precision API (monkeypatch cannot restore these attributes)."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    try:
        legacy: tuple[bool, bool] | None = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the fp32_precision API was used before this test
        legacy = None

    def set_precision(matmul_precision: str, conv_precision: str) -> None:
        matmul.fp32_precision = matmul_precision
        conv.fp32_precision = conv_precision

    yield set_precision
    set_precision(*saved)
    if legacy is not None:  # leave torch's allow_tf32 getters readable, as they were
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """The (kind, device, dtype) of every peak describe() measures; each fake returns at once."""
    calls: list[Call] = []

    def matmul(device: object = "cpu", dtype: torch.dtype = torch.float32, **_: object) -> float:
        calls.append(("matmul", torch.device(device).type, dtype))
        return 100.0

    def conv(device: object = "cpu", dtype: torch.dtype = torch.float32, **_: object) -> float:
        calls.append(("conv3x3", torch.device(device).type, dtype))
        return 200.0

    monkeypatch.setattr(machine, "matmul_gflops", matmul)
    monkeypatch.setattr(machine, "conv3x3_gflops", conv)
    monkeypatch.setattr(machine, "git_commit", lambda: "test")
    return calls


def test_bf16_peaks_are_measured_where_bf16_is_native(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "bench.measure.machine.cpu_flags", lambda: ("avx2", "avx512f", "avx512_bf16")
    )
    found = describe(("cpu",), threads=1)
    assert found.peak_gflops == {
        "fp32_matmul": 100.0,
        "fp32_conv3x3": 200.0,
        "bf16_matmul": 100.0,
        "bf16_conv3x3": 200.0,
    }
    assert ("conv3x3", "cpu", torch.bfloat16) in measured
    assert found.peak_gflops_skipped == {}
    assert found.cuda_tf32 is None  # no CUDA in the run


def test_bf16_peaks_are_skipped_and_said_so_without_native_bf16(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    # AVX-512 without avx512_bf16: oneDNN runs bf16 there, emulated.
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2", "fma", "avx512f"))
    found = describe(("cpu",), threads=1)
    assert found.peak_gflops == {"fp32_matmul": 100.0, "fp32_conv3x3": 200.0}
    assert all(dtype == torch.float32 for _, _, dtype in measured)
    assert set(found.peak_gflops_skipped) == {"bf16_matmul", "bf16_conv3x3"}
    assert all("no native bf16" in why for why in found.peak_gflops_skipped.values())


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_cuda_peaks_and_tf32_settings_are_described(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch, precision: SetPrecision, gpu_bf16: bool
) -> None:
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2",))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    monkeypatch.setattr(machine, "gpu_name", lambda: "fake GPU")
    precision("ieee", "tf32")
    found = describe(("cpu", "cuda"), threads=1)
    cuda_keys = {k for k in found.peak_gflops if k.startswith("cuda_")}
    bf16 = {"cuda_bf16_matmul", "cuda_bf16_conv3x3"}
    assert cuda_keys == {"cuda_fp32_matmul", "cuda_fp32_conv3x3"} | (bf16 if gpu_bf16 else set())
    assert ("conv3x3", "cuda", torch.bfloat16) in measured if gpu_bf16 else True
    skipped = set(found.peak_gflops_skipped)
    assert skipped == {"bf16_matmul", "bf16_conv3x3"} | (set() if gpu_bf16 else bf16)
    assert found.cuda_tf32 == {"matmul": False, "cudnn_conv": True}


def test_peaks_are_not_measured_when_not_asked(measured: list[Call]) -> None:
    found = describe(("cpu",), threads=1, measure_peak=False)
    assert measured == [] and found.peak_gflops == {} and found.peak_gflops_skipped == {}


# --- TF32 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "matmul, conv, expected",
    [
        ("ieee", "ieee", {"matmul": False, "cudnn_conv": False}),
        ("ieee", "tf32", {"matmul": False, "cudnn_conv": True}),
        ("tf32", "ieee", {"matmul": True, "cudnn_conv": False}),
        ("tf32", "tf32", {"matmul": True, "cudnn_conv": True}),
    ],
)
def test_tf32_settings_are_read_from_torch(
    precision: SetPrecision, matmul: str, conv: str, expected: dict[str, bool]
) -> None:
    precision(matmul, conv)  # after this, torch's allow_tf32 getters may refuse to answer
    assert cuda_tf32() == expected
    assert row_tf32("cuda", "fp32") is any(expected.values())


@pytest.mark.parametrize("matmul, conv", [(False, False), (False, True), (True, False)])
def test_tf32_settings_set_by_the_legacy_flags(
    precision: SetPrecision, matmul: bool, conv: bool
) -> None:
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = conv
    assert cuda_tf32() == {"matmul": matmul, "cudnn_conv": conv}


def test_the_tf32_column_is_null_off_cuda_fp32(precision: SetPrecision) -> None:
    precision("ieee", "tf32")
    for dtype in ("fp32", "bf16_autocast", "bf16"):
        assert row_tf32("cpu", dtype) is None
    assert row_tf32("cuda", "bf16") is None and row_tf32("cuda", "bf16_autocast") is None
    assert row_tf32("cuda:1", "fp32") is True


@pytest.mark.parametrize("conv", ["ieee", "tf32"])
def test_a_cuda_fp32_row_says_whether_tf32_was_allowed(precision: SetPrecision, conv: str) -> None:
    precision("ieee", conv)

    def row(device: str) -> dict[str, object]:
        return base_row(
            "lenet5", device, "fp32", "contiguous", "infer", 1,
            threads=1, counts=None, machine=FAKE_MACHINE,
        )  # fmt: skip

    assert row("cuda")["tf32"] is (conv == "tf32")
    assert row("cpu")["tf32"] is None


def test_meta_json_records_tf32_and_the_skipped_peaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    described = machine.Machine(
        **{
            **FAKE_MACHINE.__dict__,
            "cuda_tf32": {"matmul": False, "cudnn_conv": True},
            "peak_gflops_skipped": {"bf16_matmul": "no native bf16 on this CPU"},
        }
    )
    fast = TimerSettings(warmup=0, min_steps=1, min_time_s=0.0)
    plan = RunPlan(
        models=("tiny_net",), batch_sizes=(2,), threads=1, timer=fast, large_timer=fast,
        modes=("infer",), devices=("cpu",),
    )  # fmt: skip
    run_plan(plan, tmp_path, machine=described)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["cuda_tf32"] == {"matmul": False, "cudnn_conv": True}
    assert meta["peak_gflops_skipped"] == {"bf16_matmul": "no native bf16 on this CPU"}
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    assert row["tf32"] is None  # a CPU row


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_bf16_conv_peak_runs_on_cuda() -> None:
    assert machine.conv3x3_gflops("cuda", torch.bfloat16, seconds=0.05) > 0


def test_the_conv_peak_is_measured_on_this_machine() -> None:
    assert machine.conv3x3_gflops("cpu", seconds=0.05) > 0
