"""Memory: what the model holds, what a training step saves, and a step's measured peak.

- Weights, gradients and optimizer state: the bytes of the tensors themselves.
- Activations saved for backward: measured during a real training step with
  ``torch.autograd.graph.saved_tensors_hooks``, counting each storage once and leaving out
  the parameters and buffers and the copies cast from them (autograd saves weights too, and
  under autocast the bf16 copy of each weight, but they are not activations).
- Peak memory of one step:
  - CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the caching
    allocator's high-water mark of tensor bytes, weights and inputs included).
  - CPU: the bytes the model's tensors hold when the step starts (weights, buffers, gradients,
    optimizer state, the batch) plus the measured rise of the process's resident set during
    the step. The rise is the kernel's high-water mark ``VmHWM`` (reset through
    ``/proc/self/clear_refs``), after ``malloc_trim(0)`` has handed glibc's free pages back,
    so memory reused from earlier steps is counted when it is touched again. It includes
    oneDNN scratch space and anything else the step allocates, not only tensors. Where
    ``clear_refs`` cannot be written, a thread samples ``VmRSS`` every millisecond instead
    (a lower bound: a spike shorter than that can be missed); ``PeakMemory.method`` says which.
- CPU refusal: :func:`estimate_peak_bytes` from the layer outputs of one sample, checked
  against ``MemAvailable`` before a batch runs, so the kernel's OOM killer never gets there.
  The row keeps it as ``peak_mem_estimate_mib``, beside the measured ``peak_mem_mib``.
- The analytical estimate (:func:`estimate_train_bytes`, the row's ``mem_estimate_mib``):
  what torchinfo's "estimated total size" adds up for training, not a guard: weights,
  gradients, optimizer state, the batch, and every layer output of the forward pass kept for
  backward. The measured peak exceeds it where autograd saves what no layer outputs (the
  inputs of in-place ops, a ReLU's mask, autocast's bf16 copies of the weights), where the
  allocator keeps freed blocks (slack), and where the CPU's oneDNN kernels take scratch space
  and reordered copies of the weights; it falls below it where a layer output is freed before
  backward (a view, an in-place op's input not saved).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "MIB",
    "ModelBytes",
    "PeakMemory",
    "model_bytes",
    "optimizer_bytes",
    "saved_activation_bytes",
    "peak_cpu",
    "peak_cuda",
    "mem_available_bytes",
    "estimate_peak_bytes",
    "estimate_train_bytes",
    "MemoryRefused",
    "check_fits_cpu",
]

MIB = 2**20
# Fraction of MemAvailable a CPU batch may plan to use: the estimate is rough and others share
# the machine.
CPU_MEMORY_HEADROOM = 0.7
# What a step allocates besides tensors (oneDNN primitives, autograd's graph, Python objects):
# a LeNet-5 training step's whole rise on CPU, activations included, measured 0.7-1.5 MiB.
STEP_OVERHEAD_BYTES = 4 * MIB


@dataclass(frozen=True)
class ModelBytes:
    """Bytes of a model's own tensors: parameters (all, and trainable) and buffers."""

    params: int  # every parameter
    trainable: int  # parameters with requires_grad: the size of the gradients
    buffers: int  # BN running stats, fixed RBF prototypes, ...

    @property
    def weights(self) -> int:
        return self.params + self.buffers


@dataclass(frozen=True)
class PeakMemory:
    """A step's peak memory and how it was measured (``cuda_allocator``, ``cpu_vmhwm``,
    ``cpu_rss_sampled``)."""

    peak_bytes: int
    method: str


def model_bytes(model: nn.Module) -> ModelBytes:
    """Bytes of parameters, trainable parameters and buffers, in their current dtype."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return ModelBytes(params=params, trainable=trainable, buffers=buffers)


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (momentum buffers, Adam moments, ...)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def saved_activation_bytes(model: nn.Module, step: Callable[[], object]) -> int:
    """Bytes of activations autograd saves for backward during one call of ``step`` (a
    training step).

    Each storage is counted once (views and tensors saved twice share one), at its full size.
    Left out: parameters and buffers, and copies cast from them (``aten._to_copy`` of a
    parameter, a buffer or such a copy: autocast saves the bf16 copy of each weight it casts,
    a weight, not an activation).
    """
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    casts = _WeightCasts(own)
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if not casts.holds_weights(storage):
            pointer = storage.data_ptr()
            seen[pointer] = max(seen.get(pointer, 0), storage.nbytes())
        return tensor  # keep autograd's own behaviour: we only look

    with casts, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(seen.values())


class _WeightCasts(TorchDispatchMode):
    """Records the storages of ``aten._to_copy`` results whose input's storage is a
    parameter's or buffer's (``own``: their data pointers) or another such copy's.

    It keeps weak references only, so the copies are freed when the step frees them (the peak
    is not changed), and a weak reference keeps its storage's identity from being reused, so a
    new activation at a freed copy's address is not mistaken for it.
    """

    def __init__(self, own: set[int]) -> None:
        super().__init__()
        self._own = own
        self._copies: set[StorageWeakRef] = set()

    def holds_weights(self, storage: torch.UntypedStorage) -> bool:
        return storage.data_ptr() in self._own or StorageWeakRef(storage) in self._copies

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: object,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and self.holds_weights(
            args[0].untyped_storage()
        ):
            self._copies.add(StorageWeakRef(out.untyped_storage()))
        return out


def resident_tensor_bytes(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, *batch: torch.Tensor
) -> int:
    """Bytes held by the model, its gradients, its optimizer state and the batch right now."""
    held = model_bytes(model).weights
    held += sum(
        p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None
    )
    if optimizer is not None:
        held += optimizer_bytes(optimizer)
    held += sum(t.numel() * t.element_size() for t in batch)
    return held


def peak_cuda(step: Callable[[], object], device: torch.device | str = "cuda") -> PeakMemory:
    """Peak allocated CUDA memory during one call of ``step``."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return PeakMemory(torch.cuda.max_memory_allocated(device), "cuda_allocator")


def peak_cpu(step: Callable[[], object], resident_bytes: int) -> PeakMemory:
    """Peak CPU memory of one call of ``step``: ``resident_bytes`` + measured rise of RSS."""
    _malloc_trim()
    if _reset_hwm():
        before = _status_kib("VmRSS")
        step()
        rise = max(0, _status_kib("VmHWM") - before) * 1024
        return PeakMemory(resident_bytes + rise, "cpu_vmhwm")
    before = _status_kib("VmRSS")
    sampler = _RssSampler()
    sampler.start()
    try:
        step()
    finally:
        peak = sampler.stop()
    return PeakMemory(resident_bytes + max(0, peak - before) * 1024, "cpu_rss_sampled")


def mem_available_bytes() -> int:
    """``MemAvailable`` from ``/proc/meminfo`` (the kernel's estimate of what can be allocated
    without swapping)."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def estimate_peak_bytes(
    *,
    weight_bytes: int,
    trainable_bytes: int,
    activation_bytes_per_sample: int,
    largest_activation_per_sample: int,
    input_bytes_per_sample: int,
    batch_size: int,
    mode: str,
    element_scale: float = 1.0,
) -> int:
    """A deliberately generous estimate of a step's peak, to refuse hopeless batches.

    ``activation_bytes_per_sample`` is the sum of every layer's output for one fp32 sample
    (from the per-layer breakdown), ``largest_activation_per_sample`` the largest one.
    Training keeps every output for backward and needs about as much again for their
    gradients (×2), plus gradients and momentum (2 × trainable). Inference holds at most a
    layer's input and output (2 × the largest). ``element_scale`` is 0.5 for bf16 tensors.
    Beyond the tensors it adds weight-sized scratch (training 3 × weights, inference 1 ×) and
    :data:`STEP_OVERHEAD_BYTES`. The scratch: oneDNN copies a layer's weights (and weight
    gradient) into its own layout at every call, gradients are reallocated while the allocator
    still holds the pages of the freed ones, autocast holds bf16 copies of the weights through
    backward. A CPU training step was measured up to about 2 × the weights above its tensors
    (``lab_cnn`` under bf16 autocast), an inference step up to about ½ ×.
    """
    per_sample = input_bytes_per_sample * element_scale
    if mode == "train":
        per_sample += 2 * activation_bytes_per_sample * element_scale
        fixed = weight_bytes + 2 * trainable_bytes + 3 * weight_bytes
    else:
        per_sample += 2 * largest_activation_per_sample * element_scale
        fixed = weight_bytes + weight_bytes
    return int(fixed + STEP_OVERHEAD_BYTES + per_sample * batch_size)


def estimate_train_bytes(
    *,
    model_bytes: ModelBytes,
    momentum_buffers: int,
    activation_bytes_per_sample: int,
    activation_scale: float,
    input_bytes_per_sample: int,
    batch_size: int,
    index_bytes_per_sample: int = 0,
) -> int:
    """torchinfo's way of estimating a training step's memory, analytically: weights and
    buffers, a gradient and ``momentum_buffers`` optimizer buffers per trainable parameter,
    the batch, and every tensor the forward pass creates (``activation_bytes_per_sample``,
    counted in fp32; ``activation_scale`` 0.5 where they are bf16) kept for backward. Of those,
    ``index_bytes_per_sample`` are integer tensors (max-pool's int64 indices), not scaled."""
    fixed = model_bytes.weights + (1 + momentum_buffers) * model_bytes.trainable
    values = activation_bytes_per_sample - index_bytes_per_sample
    per_sample = input_bytes_per_sample + values * activation_scale + index_bytes_per_sample
    return int(fixed + per_sample * batch_size)


class MemoryRefused(RuntimeError):
    """A CPU batch whose estimated peak does not fit in the memory available."""


def check_fits_cpu(estimate_bytes: int, available_bytes: int | None = None) -> None:
    """Raise :class:`MemoryRefused` if ``estimate_bytes`` exceeds the allowed share of
    ``MemAvailable``."""
    available = mem_available_bytes() if available_bytes is None else available_bytes
    allowed = int(available * CPU_MEMORY_HEADROOM)
    if estimate_bytes > allowed:
        raise MemoryRefused(
            f"refused: estimated peak {estimate_bytes / MIB:,.0f} MiB exceeds "
            f"{CPU_MEMORY_HEADROOM:.0%} of MemAvailable ({available / MIB:,.0f} MiB)"
        )


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} line")


def _reset_hwm() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


_LIBC: ctypes.CDLL | None = None


def _malloc_trim() -> None:
    """Give glibc's free heap pages back to the kernel, so reusing them shows in RSS."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return
        _LIBC = ctypes.CDLL(name)
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:  # glibc only; musl has none
        trim(0)


class _RssSampler:
    """Samples VmRSS in a thread every millisecond; ``stop`` returns the largest, in KiB."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._peak = _status_kib("VmRSS")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self._peak, _status_kib("VmRSS"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _status_kib("VmRSS"))
            time.sleep(1e-3)
