"""The machine a run measured on: CPU, GPU, threads, versions, commit, measured peaks."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.measure.memory import mem_available_bytes

__all__ = [
    "Machine",
    "cpu_model",
    "cpu_flags",
    "native_bf16",
    "NATIVE_BF16_FLAGS",
    "gpu_name",
    "git_commit",
    "load_average",
    "matmul_gflops",
    "matmul_rates",
    "conv3x3_gflops",
    "conv3x3_rates",
    "best_of_windows",
    "synchronised_timer",
    "peak_spread",
    "triad_rates",
    "triad_bytes",
    "PEAK_REPEATS",
    "PEAK_SECONDS",
    "cuda_tf32",
    "row_tf32",
    "describe",
]

# The flags that decide which kernels a CPU can run for our dtypes.
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_bf16",
    "amx_tile",
    "amx_int8",
)
# CPU flags with native bf16 arithmetic; without them torch emulates bf16 (a 512×512 matmul
# ran at 0.8 GFLOP/s on the lab's AVX2-only VM, against ~30-160 GFLOP/s in fp32).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REPO_ROOT = Path(__file__).resolve().parent.parent
FLAGS_OVERRIDE = "CNN_ZOO_CPU_FLAGS"
# Each peak is the best of PEAK_REPEATS windows that share PEAK_SECONDS (after finding the
# size): one best-of-0.5 s window drifted by up to 41% from run to run here (fp32 matmul
# 331 / 388 / 429 GFLOP/s), and its spread is recorded beside it.
PEAK_REPEATS = 5
PEAK_SECONDS = 0.5
# The memory roof: a STREAM-style triad over arrays of TRIAD_MIB each (three of them), well
# beyond a CPU's last-level cache (tens of MiB, 105 MB on a Sapphire Rapids), so the arrays
# stream from memory; halved while three would take more than a quarter of the memory
# available. A GPU's arrays take TRIAD_MIB_CUDA (an H100's L2 is 50 MB). Each element size gets
# TRIAD_SECONDS (of PEAK_REPEATS windows): both together added about 1.2 s here, filling the
# arrays included.
TRIAD_MIB = 128
TRIAD_MIB_CUDA = 512
TRIAD_MIN_MIB = 8
TRIAD_SECONDS = 0.2
# Native bf16 on NVIDIA GPUs: tensor-core bf16 from Ampere (compute capability 8.0) on.
NATIVE_BF16_CUDA_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Machine:
    """What ``meta.json`` records about where a run measured."""

    cpu_model: str
    cpu_flags: tuple[str, ...]
    gpu: str | None
    threads: int
    torch_version: str
    torchvision_version: str
    git_commit: str
    hostname: str
    peak_gflops: dict[str, float]
    # Per key of peak_gflops, the GFLOP/s of its repeats: {"min", "median", "max", "repeats"}
    # (:func:`peak_spread`); empty when the peaks were not measured.
    peak_gflops_spread: dict[str, dict[str, float]] = field(default_factory=dict)
    # Peaks left unmeasured, with the reason (bf16 where it would only be emulated).
    peak_gflops_skipped: dict[str, str] = field(default_factory=dict)
    # :func:`cuda_tf32` when CUDA is measured, else None.
    cuda_tf32: dict[str, bool] | None = None
    # The memory roof (:func:`triad_rates`), GB/s: {"fp32_triad", "bf16_triad"} (and "cuda_"
    # ones), and its spread over the repeats; empty when not measured.
    peak_bandwidth_gbs: dict[str, float] = field(default_factory=dict)
    peak_bandwidth_gbs_spread: dict[str, dict[str, float]] = field(default_factory=dict)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or ``platform.processor()`` elsewhere."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> tuple[str, ...]:
    """The relevant SIMD/matrix flags the CPU reports (avx2, avx512f, avx512_bf16, amx_*).

    ``CNN_ZOO_CPU_FLAGS`` (comma-separated, e.g. ``avx2,fma``) stands in for the CPU's own
    flags: the test suite runs the other machine's branches with it
    (``CNN_ZOO_CPU_FLAGS=avx2,fma nox -s tests`` behaves as on an AVX2-only CPU).
    """
    forced = os.environ.get(FLAGS_OVERRIDE)
    if forced is not None:
        given = {flag.strip() for flag in forced.split(",")}
        return tuple(flag for flag in RELEVANT_FLAGS if flag in given)
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return tuple(flag for flag in RELEVANT_FLAGS if flag in present)
    return ()


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` has native bf16 arithmetic: the one detector of the harness and the
    training loop.

    CPU: ``avx512_bf16`` or ``amx_bf16`` among the CPU's flags. oneDNN's own check
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) says yes on any AVX-512 CPU, where bf16 is
    emulated, so it is not asked. CUDA: compute capability 8.0 or more (Ampere on) of that
    device. ``torch.cuda.is_bf16_supported()`` is not asked: it defaults to
    ``including_emulation=True`` and says yes on a T4 or V100 (7.5, 7.0), where bf16 is
    emulated; it also answers for the current device, not ``device``. ROCm: torch's own
    answer without emulation.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        capability = tuple(torch.cuda.get_device_capability(device))
        return capability >= NATIVE_BF16_CUDA_CAPABILITY
    return bool(set(NATIVE_BF16_FLAGS) & set(cpu_flags()))


def load_average() -> float | None:
    """The 1-minute load average (``/proc/loadavg``): runnable threads, ours included.

    Above the number of cores, other work competes for them; with several torch threads a
    step then waits at every parallel region for a descheduled thread (on the lab's shared
    2-core machine a LeNet forward took 6 ms on one thread and 184 ms on two under load).
    """
    try:
        return float(Path("/proc/loadavg").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def gpu_name() -> str | None:
    """The first CUDA device's name, or ``None`` without one."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cuda_tf32() -> dict[str, bool]:
    """Whether CUDA may run fp32 work as TF32: ``matmul`` (cuBLAS: matmul, linear layers) and
    ``cudnn_conv`` (cuDNN convolutions). torch's defaults are no and yes. Only GPUs with TF32
    (Ampere and later) act on it. Reads settings only: no GPU needed.
    """
    backends = torch.backends
    return {
        "matmul": _tf32_allowed(
            lambda: backends.cuda.matmul.allow_tf32,
            (backends.cuda.matmul, backends.cudnn, backends),
        ),
        "cudnn_conv": _tf32_allowed(
            lambda: backends.cudnn.allow_tf32, (backends.cudnn.conv, backends.cudnn, backends)
        ),
    }


def _tf32_allowed(legacy: Callable[[], bool], scopes: tuple[Any, ...]) -> bool:
    try:
        return bool(legacy())
    except RuntimeError:
        # Once the fp32_precision API was used, torch refuses to read allow_tf32. Then the
        # narrowest scope (op, CUDA, all backends) whose fp32_precision is set decides.
        for scope in scopes:
            precision = scope.fp32_precision
            if precision != "none":
                return precision == "tf32"
        return False


def row_tf32(device: str, dtype: str) -> bool | None:
    """A row's ``tf32``: on a CUDA fp32 row, whether TF32 was allowed for its matmuls or its
    convolutions (:func:`cuda_tf32` says which); None on CPU rows and bf16 rows, whose
    convolutions and matmuls do not run in fp32."""
    if torch.device(device).type != "cuda" or dtype != "fp32":
        return None
    return any(cuda_tf32().values())


def git_commit() -> str:
    """``HEAD``'s hash, with ``-dirty`` if tracked files changed; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


Clock = Callable[[], float]


def best_of_windows(
    once: Callable[[], float],
    seconds: float,
    repeats: int = PEAK_REPEATS,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """The shortest duration ``once()`` returned in each of ``repeats`` consecutive windows of
    ``seconds / repeats`` each, by ``clock``: one best per repeat, in order.

    The windows end at fixed times from the start (window k at ``(k + 1) * seconds /
    repeats``), so a call running past one window's end shortens the next, and the whole
    takes ``seconds`` plus at most one call, as one window did; every window makes at least
    one call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    window = seconds / repeats
    start = clock()
    bests = []
    for k in range(repeats):
        deadline = start + (k + 1) * window
        best = once()
        while clock() < deadline:
            best = min(best, once())
        bests.append(best)
    return bests


def peak_spread(rates: Sequence[float]) -> dict[str, float]:
    """``{"min", "median", "max", "repeats"}`` of a peak's repeats (GFLOP/s, rounded to 0.1 as
    the peaks are): what ``meta.json``'s ``peak_gflops_spread`` records per peak."""
    if not rates:
        raise ValueError("a peak needs at least one repeat")
    return {
        "min": round(min(rates), 1),
        "median": round(statistics.median(rates), 1),
        "max": round(max(rates), 1),
        "repeats": len(rates),
    }


def synchronised_timer(
    device: torch.device, clock: Clock
) -> Callable[[Callable[[], object]], float]:
    """Seconds one call of ``work`` takes on ``device`` by ``clock`` (CUDA synchronised)."""

    def timed(work: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clock() - start

    return timed


def matmul_rates(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seconds: float = PEAK_SECONDS,
    repeats: int = PEAK_REPEATS,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Matmul throughput (GFLOP/s) of square products, once per repeat: the best product of
    each of ``repeats`` windows sharing ``seconds`` (:func:`best_of_windows`).

    The size doubles from 256 until one product takes 50 ms (or n reaches 2048 on CPU, 8192
    on CUDA), so a dtype without fast kernels (bf16 on a CPU without avx512_bf16 runs at
    ~1 GFLOP/s) costs a fraction of a second, not minutes; the size is found once, before the
    windows.
    """
    device = torch.device(device)
    largest = 8192 if device.type == "cuda" else 2048
    timed = synchronised_timer(device, clock)

    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        product = partial(torch.matmul, a, b)
        timed(product)  # warm-up: thread pool, kernel selection
        if timed(product) >= 0.05 or n >= largest:
            break
        n *= 2
    bests = best_of_windows(partial(timed, product), seconds, repeats, clock)
    return [2 * n**3 / best / 1e9 for best in bests]


def matmul_gflops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seconds: float = 0.5
) -> float:
    """Measured matmul throughput (GFLOP/s): the practical peak, as one window of ``seconds``
    (:func:`matmul_rates` with one repeat)."""
    return max(matmul_rates(device, dtype, seconds, repeats=1))


def conv3x3_rates(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seconds: float = PEAK_SECONDS,
    repeats: int = PEAK_REPEATS,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Throughput (GFLOP/s) of a channels_last 3×3 convolution in ``dtype``, 128 → 128
    channels on 28×28 (a VGG/ResNet middle layer), forward only, once per repeat: the best
    call of each of ``repeats`` windows sharing ``seconds`` (:func:`best_of_windows`).

    Convolution kernels (oneDNN, cuDNN) can outrun the BLAS matmul on the same machine (on an
    AMD CPU the matmul library may not use its best code path), so a conv network's rate is
    judged against the faster of the two. The batch doubles from 1 until a call takes 50 ms
    (or reaches 64), once, before the windows.
    """
    device = torch.device(device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device, dtype)
    conv = conv.to(memory_format=torch.channels_last)
    timed = synchronised_timer(device, clock)

    batch = 1
    with torch.inference_mode():
        while True:
            x = torch.randn(batch, 128, 28, 28, device=device).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            call = partial(conv, x)
            timed(call)  # warm-up: kernel selection
            if timed(call) >= 0.05 or batch >= 64:
                break
            batch *= 2
        bests = best_of_windows(partial(timed, call), seconds, repeats, clock)
    return [2 * batch * 128 * 128 * 9 * 28 * 28 / best / 1e9 for best in bests]


def conv3x3_gflops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seconds: float = 0.5
) -> float:
    """Measured 3×3 convolution throughput (GFLOP/s) as one window of ``seconds``
    (:func:`conv3x3_rates` with one repeat)."""
    return max(conv3x3_rates(device, dtype, seconds, repeats=1))


def triad_bytes(elements: int, element_size: int) -> int:
    """Bytes one triad ``c = a + s * b`` over ``elements`` moves: two arrays read and one
    written, STREAM's convention: the write-allocate read of ``c``'s cache lines (which a CPU
    without non-temporal stores also performs) is not counted, so the roof is a lower bound
    of what the memory bus carried."""
    return 3 * elements * element_size


def _available_bytes() -> int | None:
    """MemAvailable (:func:`bench.measure.memory.mem_available_bytes`), or None where it
    cannot be read (no ``/proc/meminfo``, or no such line)."""
    try:
        return mem_available_bytes()
    except (OSError, RuntimeError, ValueError, IndexError):
        return None


def triad_rates(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seconds: float = TRIAD_SECONDS,
    repeats: int = PEAK_REPEATS,
    clock: Clock = time.perf_counter,
    mib: int | None = None,
) -> list[float]:
    """Memory bandwidth (GB/s, 1e9 bytes/s) of a triad ``c = a + s * b``
    (``torch.add(a, b, alpha=s, out=c)``) over three arrays of ``mib`` MiB of ``dtype``, once
    per repeat: the best call of each of ``repeats`` windows sharing ``seconds``
    (:func:`best_of_windows`), bytes by :func:`triad_bytes` (write-allocate not counted).

    ``mib`` defaults to :data:`TRIAD_MIB` (:data:`TRIAD_MIB_CUDA` on CUDA). On CPU the arrays
    shrink (halving, not below :data:`TRIAD_MIN_MIB`) while the three would
    take more than a quarter of MemAvailable.
    """
    device = torch.device(device)
    if mib is None:
        mib = TRIAD_MIB_CUDA if device.type == "cuda" else TRIAD_MIB
    if device.type == "cpu":
        available = _available_bytes()
        while available is not None and 3 * mib * 2**20 > available // 4 and mib > TRIAD_MIN_MIB:
            mib //= 2
    elements = mib * 2**20 // torch.empty((), dtype=dtype).element_size()
    a = torch.ones(elements, dtype=dtype, device=device)
    b = torch.ones(elements, dtype=dtype, device=device)
    c = torch.empty(elements, dtype=dtype, device=device)
    timed = synchronised_timer(device, clock)
    call = partial(torch.add, a, b, alpha=3.0, out=c)
    timed(call)  # warm-up: first touch of c's pages, the thread pool
    bests = best_of_windows(partial(timed, call), seconds, repeats, clock)
    moved = triad_bytes(elements, a.element_size())
    return [moved / best / 1e9 for best in bests]


def describe(
    devices: tuple[str, ...],
    threads: int,
    measure_peak: bool = True,
    repeats: int = PEAK_REPEATS,
) -> Machine:
    """Everything ``meta.json`` needs; measures the peaks (about 2-4 s) when asked.

    Keys of ``peak_gflops``: ``fp32_matmul`` / ``fp32_conv3x3`` / ``bf16_matmul`` /
    ``bf16_conv3x3`` for the CPU, and the same with a ``cuda_`` prefix when CUDA is measured.
    Each is measured as ``repeats`` windows sharing :data:`PEAK_SECONDS` (about as long as the
    single window before); the peak is the best repeat, its spread (:func:`peak_spread`) goes
    to ``peak_gflops_spread``. The best, not the median: a roof is the most the machine was
    seen to do, and a row measured in a quiet moment would otherwise pass 100% of a median
    taken in a busy one; the spread says how far from that roof a busier moment fell.
    The bf16 peaks are measured only where bf16 is native (:func:`native_bf16`); emulated bf16
    would cost seconds for a number no row is judged by. ``peak_gflops_skipped`` names the
    peaks left out and why. The memory roof (:func:`triad_rates`, about 0.6 s) goes to
    ``peak_bandwidth_gbs`` as ``fp32_triad`` / ``bf16_triad`` (elements of 4 and 2 bytes;
    bf16 is measured everywhere: moving bytes needs no bf16 arithmetic), best of the repeats,
    and its spread to ``peak_bandwidth_gbs_spread``.
    """
    import torchvision

    cuda = "cuda" in devices and torch.cuda.is_available()
    peaks: dict[str, float] = {}
    spreads: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}

    bandwidth: dict[str, float] = {}
    bandwidth_spreads: dict[str, dict[str, float]] = {}

    def measure(key: str, rates: list[float]) -> None:
        spreads[key] = peak_spread(rates)
        peaks[key] = spreads[key]["max"]

    if measure_peak:
        targets = [("cpu", "")] + ([("cuda", "cuda_")] if cuda else [])
        for device, prefix in targets:
            for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                keys = (f"{prefix}{precision}_matmul", f"{prefix}{precision}_conv3x3")
                if precision == "bf16" and not native_bf16(device):
                    reason = (
                        "no native bf16 on this CPU (no avx512_bf16/amx_bf16): emulated, "
                        "not measured"
                        if device == "cpu"
                        else "no native bf16 on this GPU (compute capability below 8.0): "
                        "emulated, not measured"
                    )
                    skipped.update(dict.fromkeys(keys, reason))
                    continue
                measure(keys[0], matmul_rates(device, dtype, repeats=repeats))
                measure(keys[1], conv3x3_rates(device, dtype, repeats=repeats))
            for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                key = f"{prefix}{precision}_triad"
                bandwidth_spreads[key] = peak_spread(triad_rates(device, dtype, repeats=repeats))
                bandwidth[key] = bandwidth_spreads[key]["max"]
    return Machine(
        cpu_model=cpu_model(),
        cpu_flags=cpu_flags(),
        gpu=gpu_name(),
        threads=threads,
        torch_version=torch.__version__,
        torchvision_version=torchvision.__version__,
        git_commit=git_commit(),
        hostname=socket.gethostname(),
        peak_gflops=peaks,
        peak_gflops_spread=spreads,
        peak_gflops_skipped=skipped,
        cuda_tf32=cuda_tf32() if cuda else None,
        peak_bandwidth_gbs=bandwidth,
        peak_bandwidth_gbs_spread=bandwidth_spreads,
    )
