"""Per-layer time of a training or inference step, at the papers' layer names (``bench layers
--times``, ``bench run --layer-times``).

Module hooks time each layer of the per-layer breakdown (:mod:`bench.measure.counting`):
forward pre/post hooks and full backward pre/post hooks read ``time.perf_counter`` (CUDA
synchronised at each), and each stretch between two readings is charged to one module, so a
layer's time is its own, its children's excluded, and nothing is counted twice:

- forward: to the innermost hooked module running (a container's own code, such as LeNet-5's
  ``c3`` joining its groups, to the container);
- backward: to the innermost module whose backward has begun and not ended; with none, to the
  module whose backward began last. Autograd ends a module's backward hook once the gradient of
  its input is computed; where no input needs one (the first layer, the whole model) it fires
  both hooks at once, and the weight gradient that follows is that module's own work.

The modules' times are summed by paper layer (LeNet-5's ``c3.groups.0..2`` and ``c3`` are one
``C3``). What no layer holds (loss, its backward before the model's, zero_grad, the optimizer,
the hooks' own cost) is the step's rest. The hooks cost time and full backward hooks forbid an
in-place op on a hooked module's output, so the timed copy's in-place ReLUs write a new tensor,
and the steps with hooks are separate from the steps without (taken in turn), which give the
step's own clock: the second method, against which the layers' sum is held. In inference only
the forward hooks are set, and in-place ReLUs stay.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.measure.counting import TOP_LEVEL, LayerInfo, layer_bytes
from bench.measure.machine import synchronised_timer
from bench.measure.workload import autocast_context, make_workload

__all__ = ["LayerTime", "ModuleTime", "LayerTimes", "time_layers", "ELEMENT_SIZES"]

Clock = Callable[[], float]

# Bytes an element of the activations and weights take, by the rows' dtype setting (autocast
# computes conv/matmul in bf16).
ELEMENT_SIZES = {"fp32": 4, "bf16_autocast": 2, "bf16": 2}


class _Rates:
    """What a layer's or a module's forward MACs, bytes and seconds give."""

    forward_s: float
    macs: int  # forward, per sample
    bytes: int  # forward, at the batch and element size (counting.layer_bytes)

    def intensity(self, batch: int) -> float | None:
        """Forward FLOP/byte: 2 × MACs × batch over the bytes moved."""
        return 2 * self.macs * batch / self.bytes if self.bytes else None

    def forward_gflops(self, batch: int) -> float | None:
        """Forward GFLOP/s achieved (2 × MACs × batch over the forward time)."""
        return 2 * self.macs * batch / self.forward_s / 1e9 if self.forward_s > 0 else None


@dataclass(frozen=True)
class LayerTime(_Rates):
    """One paper layer in one step: medians over the hooked steps, its modules summed."""

    name: str  # the paper's layer name (the module path where the family has none)
    forward_s: float
    backward_s: float
    macs: int
    bytes: int


@dataclass(frozen=True)
class ModuleTime(_Rates):
    """One module of the breakdown in one step (its own time, children excluded): medians."""

    path: str  # the module path (counting.TOP_LEVEL for the model's own forward code)
    paper_layer: str  # the paper layer that holds it
    type: str  # the module's class name
    forward_s: float
    backward_s: float  # 0 in inference
    macs: int
    bytes: int


@dataclass(frozen=True)
class LayerTimes:
    """Per-layer times of one model's step, and the step's own clock."""

    layers: tuple[LayerTime, ...]  # by paper layer, the modules of each summed
    modules: tuple[ModuleTime, ...]  # each module of the breakdown, in forward order
    batch_size: int
    mode: str  # "train" (forward and backward) or "infer" (forward)
    step_s: float  # median step without hooks: the second method
    hooked_step_s: float  # median step with hooks
    steps: int  # timed steps of each kind

    @property
    def layers_s(self) -> float:
        """Forward and backward of every layer, summed."""
        return sum(layer.forward_s + layer.backward_s for layer in self.layers)

    @property
    def share_of_step(self) -> float:
        """The layers' sum over the step's own median (1.0: they account for all of it)."""
        return self.layers_s / self.step_s


class _Timer:
    """Charges each stretch between two hook readings to one module path (module docstring)."""

    def __init__(self, device: torch.device, clock: Clock) -> None:
        self.device, self.clock = device, clock
        self.forward: dict[str, float] = {}
        self.backward: dict[str, float] = {}
        self.stack: list[str] = []
        self.last: str | None = None  # whose backward began last
        self.mark = 0.0

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock()

    def charge(self, times: dict[str, float], owner: str | None) -> None:
        now = self.now()
        if owner is not None:
            times[owner] = times.get(owner, 0.0) + now - self.mark
        self.mark = now

    def start(self) -> None:
        self.stack.clear()
        self.last = None
        self.mark = self.now()

    def forward_enter(self, name: str) -> None:
        self.charge(self.forward, self.stack[-1] if self.stack else None)
        self.stack.append(name)

    def forward_exit(self, name: str) -> None:
        self.charge(self.forward, name)
        self._pop(name)

    def backward_enter(self, name: str) -> None:
        self.charge(self.backward, self.stack[-1] if self.stack else self.last)
        self.stack.append(name)
        self.last = name

    def backward_exit(self, name: str) -> None:
        self.charge(self.backward, name)
        self._pop(name)

    def backward_end(self) -> None:
        """After ``backward()`` returns: the rest is the last begun module's (its weights)."""
        self.charge(self.backward, self.stack[-1] if self.stack else self.last)
        self.stack.clear()

    def _pop(self, name: str) -> None:
        if name in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(name) :]


def _hook(model: nn.Module, paths: set[str], timer: _Timer, backward: bool) -> list[Any]:
    handles = []
    for path, module in model.named_modules():
        if path not in paths:
            continue
        handles += [
            module.register_forward_pre_hook(lambda m, i, p=path: timer.forward_enter(p)),
            module.register_forward_hook(lambda m, i, o, p=path: timer.forward_exit(p)),
        ]
        if backward:
            handles += [
                module.register_full_backward_pre_hook(
                    lambda m, g, p=path: timer.backward_enter(p)
                ),
                module.register_full_backward_hook(
                    lambda m, gi, go, p=path: timer.backward_exit(p)
                ),
            ]
    return handles


def time_layers(
    model: nn.Module,
    layers: tuple[LayerInfo, ...],
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    dtype: str = "fp32",
    memory_format: str = "contiguous",
    mode: str = "train",
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    warmup: int = 2,
    steps: int = 5,
    clock: Clock = time.perf_counter,
) -> LayerTimes:
    """Time of each module of ``layers`` (``count_model``'s, with paper names) in a step of
    ``model``: forward and backward in a training step (SGD, as the sweep's; ``mode="train"``),
    forward in inference (``mode="infer"``), and the step's median without hooks.

    ``warmup`` steps of each kind, then ``steps`` pairs, a step without hooks and one with, one
    after the other: a machine's load changing over the seconds this takes moves both alike.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}: give --steps 1 or more")
    if mode not in ("train", "infer"):
        raise ValueError(f"mode {mode!r}: give train or infer")
    train = mode == "train"
    device = torch.device(device)
    if train:
        for module in model.modules():
            if getattr(module, "inplace", False):  # full backward hooks forbid in-place outputs
                module.inplace = False
    work = make_workload(
        model,
        input_shape=input_shape,
        num_classes=num_classes,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        memory_format=memory_format,
        mode=mode,
        loss=loss,
    )
    step = work.train if train else work.infer
    timed = synchronised_timer(device, clock)

    def plain_step() -> float:
        return timed(step)

    # The breakdown's module paths; the model's own forward code is TOP_LEVEL's, path "".
    paper = {("" if layer.layer == TOP_LEVEL else layer.layer): layer for layer in layers}
    timer = _Timer(device, clock)

    def hooked_step() -> tuple[dict[str, float], dict[str, float], float]:
        timer.forward, timer.backward = {}, {}
        handles = _hook(work.model, set(paper) | {""}, timer, backward=train)
        try:
            timer.start()
            start = timer.mark
            if train:
                optimizer = work.optimizer
                assert optimizer is not None  # a train workload has one
                optimizer.zero_grad(set_to_none=True)
                with autocast_context(dtype, device):
                    value = loss(work.model(work.inputs), work.targets)
                timer.charge(timer.forward, None)  # the loss: the step's rest
                with warnings.catch_warnings():
                    # Expected where no input needs a gradient: handled by backward_end.
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    value.backward()
                timer.backward_end()
                optimizer.step()
            else:
                with torch.inference_mode(), autocast_context(dtype, device):
                    work.model(work.inputs)
            end = timer.now()
        finally:
            for handle in handles:
                handle.remove()
        return timer.forward, timer.backward, end - start

    for _ in range(warmup):
        plain_step()
        hooked_step()
    plain: list[float] = []
    per_step: list[tuple[dict[str, float], dict[str, float]]] = []
    hooked: list[float] = []
    for _ in range(steps):
        plain.append(plain_step())
        forward, backward, seconds = hooked_step()
        per_step.append((forward, backward))
        hooked.append(seconds)
    if train and work.optimizer is not None:
        work.optimizer.zero_grad(set_to_none=True)

    element_size = ELEMENT_SIZES[dtype]

    def median_of(times: int, paths: list[str]) -> float:
        return statistics.median(sum(s[times].get(p, 0.0) for p in paths) for s in per_step)

    modules = tuple(
        ModuleTime(
            path=layer.layer,
            paper_layer=layer.paper_layer or layer.layer,
            type=layer.type,
            forward_s=median_of(0, [path]),
            backward_s=median_of(1, [path]),
            macs=layer.macs,
            bytes=layer_bytes(layer, batch_size, element_size),
        )
        for path, layer in paper.items()
    )
    if "" not in paper:  # the model's own forward code, which created no tensor of its own
        own = ModuleTime(TOP_LEVEL, TOP_LEVEL, "", median_of(0, [""]), median_of(1, [""]), 0, 0)
        modules += (own,)
    names: dict[str, list[str]] = {}  # paper name -> its module paths, in forward order
    for path, layer in paper.items():
        names.setdefault(layer.paper_layer or layer.layer, []).append(path)
    if "" not in paper:
        names.setdefault(TOP_LEVEL, []).append("")
    rows = []
    for name, paths in names.items():
        parts = [paper[p] for p in paths if p in paper]
        rows.append(
            LayerTime(
                name=name,
                forward_s=median_of(0, paths),
                backward_s=median_of(1, paths),
                macs=sum(part.macs for part in parts),
                bytes=sum(layer_bytes(part, batch_size, element_size) for part in parts),
            )
        )
    return LayerTimes(
        layers=tuple(rows),
        modules=modules,
        batch_size=batch_size,
        mode=mode,
        step_s=statistics.median(plain),
        hooked_step_s=statistics.median(hooked),
        steps=steps,
    )
