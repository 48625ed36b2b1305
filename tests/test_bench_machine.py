"""The machine description: which peaks are measured (bf16 only where it is native, on CPU and
CUDA), each over repeats with its spread, and CUDA's TF32 settings in meta.json and the rows.
Nothing here times anything: the measuring functions are replaced by fakes that record what they
were asked for, and the repeats are timed by a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, register_test_models

from bench.measure import machine
from bench.measure.machine import cuda_tf32, describe, row_tf32
from bench.measure.rows import base_row
from bench.measure.timing import TimerSettings
from bench.schema import read_jsonl
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


# What the fake measurements give per repeat: fp32 matmul's are the three runs and two
# more; min 331, median 388, max 429.
MATMUL_RATES = [388.0, 331.0, 429.0, 350.0, 400.0]
CONV_RATES = [200.0]
TRIAD_RATES = [20.0, 25.0, 22.0]


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """The (kind, device, dtype) of every peak describe() measures; each fake returns at once,
    with as many repeats as asked for, from :data:`MATMUL_RATES` / :data:`CONV_RATES`."""
    calls: list[Call] = []

    def fake(kind: str, rates: list[float]) -> Callable[..., list[float]]:
        def measure(
            device: object = "cpu", dtype: torch.dtype = torch.float32, **kw: object
        ) -> list[float]:
            calls.append((kind, torch.device(device).type, dtype))
            repeats = kw.get("repeats", machine.PEAK_REPEATS)
            assert isinstance(repeats, int)
            return [rates[i % len(rates)] for i in range(repeats)]

        return measure

    monkeypatch.setattr(machine, "matmul_rates", fake("matmul", MATMUL_RATES))
    monkeypatch.setattr(machine, "conv3x3_rates", fake("conv3x3", CONV_RATES))
    monkeypatch.setattr(machine, "triad_rates", fake("triad", TRIAD_RATES))
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
        "fp32_matmul": 429.0,
        "fp32_conv3x3": 200.0,
        "bf16_matmul": 429.0,
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
    assert found.peak_gflops == {"fp32_matmul": 429.0, "fp32_conv3x3": 200.0}
    assert all(dtype == torch.float32 for kind, _, dtype in measured if kind != "triad")
    assert set(found.peak_gflops_skipped) == {"bf16_matmul", "bf16_conv3x3"}
    assert all("no native bf16" in why for why in found.peak_gflops_skipped.values())


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_cuda_peaks_and_tf32_settings_are_described(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch, precision: SetPrecision, gpu_bf16: bool
) -> None:
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2",))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # torch's check says yes either way (it counts emulation): the capability decides.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    capability = (8, 0) if gpu_bf16 else (7, 5)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(machine, "gpu_name", lambda: "fake GPU")
    precision("ieee", "tf32")
    found = describe(("cpu", "cuda"), threads=1)
    cuda_keys = {k for k in found.peak_gflops if k.startswith("cuda_")}
    bf16 = {"cuda_bf16_matmul", "cuda_bf16_conv3x3"}
    assert cuda_keys == {"cuda_fp32_matmul", "cuda_fp32_conv3x3"} | (bf16 if gpu_bf16 else set())
    assert ("conv3x3", "cuda", torch.bfloat16) in measured if gpu_bf16 else True
    skipped = set(found.peak_gflops_skipped)
    assert skipped == {"bf16_matmul", "bf16_conv3x3"} | (set() if gpu_bf16 else bf16)
    assert gpu_bf16 or "emulated" in found.peak_gflops_skipped["cuda_bf16_matmul"]
    assert set(found.peak_gflops_spread) == set(found.peak_gflops)
    assert found.cuda_tf32 == {"matmul": False, "cudnn_conv": True}


def test_peaks_are_not_measured_when_not_asked(measured: list[Call]) -> None:
    found = describe(("cpu",), threads=1, measure_peak=False)
    assert measured == [] and found.peak_gflops == {} and found.peak_gflops_skipped == {}
    assert found.peak_gflops_spread == {}
    assert found.peak_bandwidth_gbs == {} and found.peak_bandwidth_gbs_spread == {}


# --- the memory roof ---------------------------------------------------------------------------


def test_the_memory_roof_is_measured_for_both_element_sizes_with_its_spread(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without native bf16 too: moving bf16 bytes needs no bf16 arithmetic.
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2",))
    found = describe(("cpu",), threads=1, repeats=3)
    assert ("triad", "cpu", torch.float32) in measured
    assert ("triad", "cpu", torch.bfloat16) in measured
    assert found.peak_bandwidth_gbs == {"fp32_triad": 25.0, "bf16_triad": 25.0}
    spread = {"min": 20.0, "median": 22.0, "max": 25.0, "repeats": 3}
    assert found.peak_bandwidth_gbs_spread == {"fp32_triad": spread, "bf16_triad": spread}


@pytest.mark.parametrize("dtype, element_size", [(torch.float32, 4), (torch.bfloat16, 2)])
def test_the_triad_counts_two_reads_and_one_write_by_the_injected_clock(
    dtype: torch.dtype, element_size: int
) -> None:
    # 8 MiB arrays: 8 * 2**20 / element_size elements; a triad reads a and b and writes c
    # (STREAM: write-allocate not counted): 3 * 8 MiB = 25,165,824 bytes whatever the dtype.
    elements = 8 * 2**20 // element_size
    assert machine.triad_bytes(elements, element_size) == 3 * 8 * 2**20 == 25_165_824
    clock = FakeClock(tick=0.0625)  # every timed call lasts 0.0625 s
    found = machine.triad_rates("cpu", dtype, seconds=1.0, repeats=4, clock=clock, mib=8)
    assert found == [pytest.approx(25_165_824 / 0.0625 / 1e9)] * 4  # 0.403 GB/s


def test_the_triad_arrays_shrink_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 MiB available: three arrays may take 25 MiB, so 128 MiB halves down to 8 MiB.
    monkeypatch.setattr(machine, "_available_bytes", lambda: 100 * 2**20)
    clock = FakeClock(tick=0.0625)
    (rate,) = machine.triad_rates("cpu", torch.float32, seconds=0.1, repeats=1, clock=clock)
    assert rate == pytest.approx(3 * 8 * 2**20 / 0.0625 / 1e9)


# --- peaks over repeats -----------------------------------------------------------------------


def test_each_peak_is_the_best_of_its_repeats_and_its_spread_is_kept(
    measured: list[Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.measure.machine.cpu_flags", lambda: ("avx2",))
    found = describe(("cpu",), threads=1)
    # MATMUL_RATES sorted: 331, 350, 388, 400, 429.
    assert found.peak_gflops == {"fp32_matmul": 429.0, "fp32_conv3x3": 200.0}
    assert found.peak_gflops_spread == {
        "fp32_matmul": {"min": 331.0, "median": 388.0, "max": 429.0, "repeats": 5},
        "fp32_conv3x3": {"min": 200.0, "median": 200.0, "max": 200.0, "repeats": 5},
    }
    # Three repeats: 388, 331, 429; the median of an even count is the middle two's mean.
    three = describe(("cpu",), threads=1, repeats=3)
    assert three.peak_gflops_spread["fp32_matmul"] == {
        "min": 331.0, "median": 388.0, "max": 429.0, "repeats": 3,
    }  # fmt: skip
    assert machine.peak_spread([331.0, 429.0, 388.0, 400.0]) == {
        "min": 331.0, "median": 394.0, "max": 429.0, "repeats": 4,
    }  # fmt: skip
    assert machine.peak_spread([100.04, 100.16]) == {  # rounded to 0.1, as the peaks are
        "min": 100.0, "median": 100.1, "max": 100.2, "repeats": 2,
    }  # fmt: skip
    with pytest.raises(ValueError):
        machine.peak_spread([])


class FakeClock:
    """A clock that moves only when a fake call takes its time (``tick`` per reading else)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick, self.readings = 0.0, tick, 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick
        return self.now

    def calls(self, durations: list[float]) -> Callable[[], float]:
        """A fake ``once``: each call takes the next duration, moving the clock by it."""
        left = iter(durations)

        def once() -> float:
            duration = next(left)
            self.now += duration
            return duration

        return once


def test_each_window_keeps_its_best_call_by_the_clock() -> None:
    clock = FakeClock()
    # 4 s in two windows of 2 s, ending at 2 and 4 from the start. The first's calls end at
    # 0.75, 1.25, 2.25 -> its best is 0.5; the second's at 3.75, 4.0 -> 0.25 (its overrun
    # past 2 came out of the second window, so the whole took 4 s, as one window did).
    once = clock.calls([0.75, 0.5, 1.0, 1.5, 0.25, 99.0])
    assert machine.best_of_windows(once, seconds=4.0, repeats=2, clock=clock) == [0.5, 0.25]
    assert clock.now == 4.0  # the sixth call was never made
    # A call longer than its window still counts: every window makes one, even when the
    # calls before have used its time up.
    clock = FakeClock()
    assert machine.best_of_windows(clock.calls([5.0, 3.0]), 1.0, 2, clock) == [5.0, 3.0]
    with pytest.raises(ValueError, match="at least 1"):
        machine.best_of_windows(clock.calls([1.0]), 1.0, 0, clock)


@pytest.mark.parametrize(
    "rates, flops",
    [
        (machine.matmul_rates, 2 * 256**3),  # one product takes 0.0625 s: n stays 256
        (machine.conv3x3_rates, 2 * 1 * 128 * 128 * 9 * 28 * 28),  # a call: batch stays 1
    ],
)
def test_the_peak_functions_time_each_repeat_by_the_injected_clock(
    rates: Callable[..., list[float]], flops: int
) -> None:
    # Each reading moves the clock 1/16 s, so every timed call lasts 0.0625 s (two readings
    # apart): each repeat's rate is flops / 0.0625 s, whatever the machine does.
    clock = FakeClock(tick=0.0625)
    found = rates("cpu", torch.float32, seconds=1.0, repeats=4, clock=clock)
    assert found == [pytest.approx(flops / 0.0625 / 1e9)] * 4


# --- native bf16 on CUDA -------------------------------------------------------------------


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Callable[[tuple[int, int]], list[object]]:
    """A CUDA device of the given compute capability, which torch's own bf16 check (counting
    emulation) always calls bf16-capable; returns the devices whose capability was asked."""
    asked: list[object] = []

    def install(capability: tuple[int, int]) -> list[object]:
        def get_capability(device: object = None) -> tuple[int, int]:
            asked.append(device)
            return capability

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", get_capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "fake GPU")
        monkeypatch.setattr(torch.version, "hip", None)
        return asked

    return install


@pytest.mark.parametrize(
    "capability, native",
    [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True), ((9, 0), True)],
)
def test_cuda_bf16_is_native_from_compute_capability_8(
    fake_cuda: Callable[[tuple[int, int]], list[object]], capability: tuple[int, int], native: bool
) -> None:
    asked = fake_cuda(capability)  # V100 7.0, T4 7.5: torch says yes, by emulation
    assert machine.native_bf16("cuda") is native
    assert machine.native_bf16("cuda:1") is native
    assert asked == [torch.device("cuda"), torch.device("cuda:1")]  # that device, not current


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True)])
def test_what_asks_the_detector_follows_the_capability(
    fake_cuda: Callable[[tuple[int, int]], list[object]], capability: tuple[int, int], native: bool
) -> None:
    from bench.measure.workload import check_dtype
    from bench.training.recipes import resolve_dtype

    fake_cuda(capability)
    assert resolve_dtype("auto", "cuda") == ("bf16_autocast" if native else "fp32")
    if native:
        check_dtype("bf16_autocast", torch.device("cuda"))
    else:  # a bf16 row on an emulating GPU is an error row, not an emulated number
        with pytest.raises(RuntimeError, match="fake GPU"):
            check_dtype("bf16_autocast", torch.device("cuda"))
    check_dtype("fp32", torch.device("cuda"))


def test_no_cuda_means_no_cuda_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: object, **__: object) -> object:
        raise AssertionError("asked without CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", never)
    monkeypatch.setattr(torch.cuda, "get_device_capability", never)
    assert machine.native_bf16("cuda") is False


def test_rocm_asks_torch_without_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []

    def supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return not including_emulation  # only the answer without emulation says yes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert machine.native_bf16("cuda") is True and asked == [False]


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


SPREAD = {"min": 0.5, "median": 0.8, "max": 1.0, "repeats": 5}


def test_meta_json_records_tf32_the_skipped_peaks_and_the_spreads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    described = machine.Machine(
        **{
            **FAKE_MACHINE.__dict__,
            "cuda_tf32": {"matmul": False, "cudnn_conv": True},
            "peak_gflops_skipped": {"bf16_matmul": "no native bf16 on this CPU"},
            "peak_gflops_spread": {"fp32_matmul": SPREAD},
            "peak_bandwidth_gbs": {"fp32_triad": 1.0, "bf16_triad": 1.0},
            "peak_bandwidth_gbs_spread": {"fp32_triad": SPREAD, "bf16_triad": SPREAD},
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
    assert meta["peak_gflops_spread"] == {"fp32_matmul": SPREAD}
    assert meta["sessions"][0]["peak_gflops_spread"] == {"fp32_matmul": SPREAD}
    assert meta["peak_bandwidth_gbs"] == {"fp32_triad": 1.0, "bf16_triad": 1.0}
    assert meta["sessions"][0]["peak_bandwidth_gbs_spread"]["bf16_triad"] == SPREAD
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    assert row["tf32"] is None  # a CPU row


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_bf16_conv_peak_runs_on_cuda() -> None:
    assert machine.conv3x3_gflops("cuda", torch.bfloat16, seconds=0.05) > 0


def test_the_conv_peak_is_measured_on_this_machine() -> None:
    assert machine.conv3x3_gflops("cpu", seconds=0.05) > 0
