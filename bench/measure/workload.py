"""Step callables: one inference or one training step of a model on a fixed batch.

dtype conventions (the ``dtype`` column):

- ``fp32``: weights and inputs fp32.
- ``bf16_autocast``: weights stay fp32; forward (and loss) run under ``torch.autocast`` with
  bf16. Autocast re-casts the weights at every call, which is costly for big FC layers at small
  batches (AlexNet at batch 1 ran 3x slower than fp32 on the lab's CPU).
- ``bf16``: weights and inputs cast to bf16 once; training updates bf16 weights directly
  (pure-bf16 SGD, no fp32 master copy).

A training step is ``zero_grad`` → forward → the model's loss (its card's, ``zoo.criterion``:
cross-entropy; MAP for LeNet-5) → backward → SGD(momentum 0.9)
step, the papers' optimizer. Inputs are random: timing does not depend on their values.
``compile``: ``"none"`` runs the model eagerly; ``"default"`` or ``"max-autotune"`` runs it
through ``torch.compile`` with that mode (inductor), the optimizer step staying eager. Dynamo's
caches are reset first, so the first call compiles from scratch (inductor's on-disk caches
may still shorten it on a machine that compiled the same graph before).
``train_marked(mark)`` is the same step marking its phases for
:func:`bench.measure.timing.time_phased_steps`: ``forward`` (forward and loss), ``backward``,
``optimizer`` (``zero_grad`` and the SGD step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.measure import machine
from bench.measure.timing import Mark, no_mark

__all__ = [
    "TORCH_DTYPES",
    "Workload",
    "make_workload",
    "autocast_context",
    "check_dtype",
    "cold_compile_cache",
]

# The dtype of weights and inputs for each dtype setting.
TORCH_DTYPES = {"fp32": torch.float32, "bf16_autocast": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Workload:
    """A model placed on a device with one batch, and its step callables.

    ``infer()`` and ``train()`` each run one step; ``optimizer`` exists once ``train`` is built.
    ``train_marked(mark)`` is ``train()`` calling ``mark`` at the end of each phase.
    """

    model: nn.Module
    inputs: torch.Tensor  # (B, C, H, W)
    targets: torch.Tensor  # (B,)
    device: torch.device
    dtype: str
    optimizer: torch.optim.Optimizer | None
    infer: Callable[[], torch.Tensor]
    train: Callable[[], torch.Tensor]
    train_marked: Callable[[Mark], torch.Tensor]


def check_dtype(dtype: str, device: torch.device) -> None:
    """Raise a one-line ``RuntimeError`` if ``device`` cannot run ``dtype`` (natively)."""
    if dtype == "fp32":
        return
    if device.type == "cuda" and not machine.native_bf16(device):
        raise RuntimeError(
            f"{torch.cuda.get_device_name(device)} has no native bf16 (compute capability below "
            "8.0: torch would emulate it), so bf16 is not measured here"
        )
    if device.type == "cpu" and not machine.native_bf16(device):
        raise RuntimeError(
            "this CPU has no native bf16 (no avx512_bf16/amx_bf16): torch would emulate it "
            "at ~1% of fp32 speed, so bf16 is not measured here"
        )


@contextlib.contextmanager
def autocast_context(dtype: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` to bf16 for ``bf16_autocast``; nothing otherwise."""
    if dtype == "bf16_autocast":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def make_workload(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    dtype: str,
    memory_format: str,
    mode: str,
    seed: int = 0,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    compile: str = "none",
) -> Workload:
    """Place ``model`` and a random batch on ``device`` and build its step callables.

    ``mode`` is ``"infer"`` (model in eval mode) or ``"train"`` (train mode, SGD optimizer);
    ``loss`` is the training step's criterion (the model's, ``zoo.criterion``: LeNet-5 trains
    with MAP).
    The model is moved/cast in place, once. ``compile``: a ``torch.compile`` mode, or
    ``"none"``; compiling happens at the first call of a step.
    """
    device = torch.device(device)
    check_dtype(dtype, device)
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    model.to(device=device, dtype=TORCH_DTYPES[dtype], memory_format=fmt)
    inputs, targets = _random_batch(
        (batch_size, *input_shape), num_classes, seed, device, TORCH_DTYPES[dtype], fmt
    )
    model.train(mode == "train")
    # foreach=False: the per-parameter loop, the same on every device and dtype.
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=False)
        if mode == "train"
        else None
    )
    runner = _compiled(model, compile)

    def infer() -> torch.Tensor:
        with torch.inference_mode(), autocast_context(dtype, device):
            return runner(inputs)

    def train_marked(mark: Mark) -> torch.Tensor:
        assert optimizer is not None, "train step built without an optimizer"
        optimizer.zero_grad(set_to_none=True)
        mark("optimizer")
        with autocast_context(dtype, device):
            value = loss(runner(inputs), targets)
        mark("forward")
        value.backward()
        mark("backward")
        optimizer.step()
        mark("optimizer")
        return value.detach()

    def train() -> torch.Tensor:
        return train_marked(no_mark)

    return Workload(model, inputs, targets, device, dtype, optimizer, infer, train, train_marked)


def _random_batch(
    shape: tuple[int, ...],
    num_classes: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    fmt: torch.memory_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of ``shape`` and targets below ``num_classes``, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(shape, generator=generator)
    targets = torch.randint(0, num_classes, (shape[0],), generator=generator)
    inputs = inputs.to(device=device, dtype=dtype).contiguous(memory_format=fmt)
    return inputs, targets.to(device)


def _compiled(model: nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` itself (``"none"``) or ``torch.compile(model)`` with ``mode``."""
    if mode == "none":
        return model
    torch._dynamo.reset()  # compile from scratch: no cached graph, no recompile limit reached
    return torch.compile(model, mode=None if mode == "default" else mode)


@contextlib.contextmanager
def cold_compile_cache() -> Iterator[None]:
    """Compile as on a machine that never compiled this model: inductor's caches, on disk and in
    memory, are a fresh empty folder, removed afterwards. A warm cache (an earlier process
    compiled the same graphs) made lab_cnn's first call 1.4 s against 7.8 s cold: a figure that
    depended on what ran before is not a measurement of the model."""
    from torch._inductor.utils import fresh_cache  # torch's own, for its tests of the caches

    with fresh_cache():
        yield
