"""The machine a run measured on: CPU, GPU, threads, versions, commit, measured peaks."""

from __future__ import annotations

import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "Machine",
    "cpu_model",
    "cpu_flags",
    "gpu_name",
    "git_commit",
    "load_average",
    "matmul_gflops",
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
REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """The relevant SIMD/matrix flags the CPU reports (avx2, avx512f, avx512_bf16, amx_*)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return tuple(flag for flag in RELEVANT_FLAGS if flag in present)
    return ()


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


def matmul_gflops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seconds: float = 0.5
) -> float:
    """Measured matmul throughput (GFLOP/s) of square products: the practical peak.

    The size doubles from 256 until one product takes 50 ms (or n reaches 2048 on CPU, 8192
    on CUDA), so a dtype without fast kernels (bf16 on a CPU without avx512_bf16 runs at
    ~1 GFLOP/s) costs a fraction of a second, not minutes; then the best of the repetitions
    within ``seconds``.
    """
    device = torch.device(device)
    largest = 8192 if device.type == "cuda" else 2048

    def once(a: torch.Tensor, b: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        once(a, b)  # warm-up: thread pool, kernel selection
        best = once(a, b)
        if best >= 0.05 or n >= largest:
            break
        n *= 2
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = min(best, once(a, b))
    return 2 * n**3 / best / 1e9


def conv3x3_gflops(device: torch.device | str = "cpu", seconds: float = 0.5) -> float:
    """Measured fp32 throughput (GFLOP/s) of a channels_last 3×3 convolution, 128 → 128
    channels on 28×28 (a VGG/ResNet middle layer), forward only.

    Convolution kernels (oneDNN, cuDNN) can outrun the BLAS matmul on the same machine (on an
    AMD CPU the matmul library may not use its best code path), so a conv network's rate is
    judged against the faster of the two. The batch doubles from 1 until a call takes 50 ms
    (or reaches 64), then the best call within ``seconds``.
    """
    device = torch.device(device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device)
    conv = conv.to(memory_format=torch.channels_last)

    def once(x: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        conv(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    batch = 1
    with torch.inference_mode():
        while True:
            x = torch.randn(batch, 128, 28, 28, device=device)
            x = x.contiguous(memory_format=torch.channels_last)
            once(x)  # warm-up: kernel selection
            best = once(x)
            if best >= 0.05 or batch >= 64:
                break
            batch *= 2
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            best = min(best, once(x))
    return 2 * batch * 128 * 128 * 9 * 28 * 28 / best / 1e9


def describe(devices: tuple[str, ...], threads: int, measure_peak: bool = True) -> Machine:
    """Everything ``meta.json`` needs; measures the peaks (about 2-3 s) when asked.

    Keys of ``peak_gflops``: ``fp32_matmul`` / ``fp32_conv3x3`` / ``bf16_matmul`` for the CPU,
    and the same with a ``cuda_`` prefix when CUDA is measured.
    """
    import torchvision

    peaks: dict[str, float] = {}
    if measure_peak:
        peaks["fp32_matmul"] = round(matmul_gflops("cpu", torch.float32), 1)
        peaks["fp32_conv3x3"] = round(conv3x3_gflops("cpu"), 1)
        peaks["bf16_matmul"] = round(matmul_gflops("cpu", torch.bfloat16), 1)
        if "cuda" in devices and torch.cuda.is_available():
            peaks["cuda_fp32_matmul"] = round(matmul_gflops("cuda", torch.float32), 1)
            peaks["cuda_fp32_conv3x3"] = round(conv3x3_gflops("cuda"), 1)
            if torch.cuda.is_bf16_supported():
                peaks["cuda_bf16_matmul"] = round(matmul_gflops("cuda", torch.bfloat16), 1)
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
    )
