"""Counting: parameters, MACs (fvcore) and FLOPs (FlopCounterMode), whole model and per layer.

Conventions, per sample, forward pass:

- ``macs_fvcore``: fvcore's ``FlopCountAnalysis`` total, which despite its name counts
  multiply-accumulates: conv, linear/matmul, and also batch norm (1 per element in eval
  mode), adaptive average pooling and upsampling. It skips elementwise ops and max pooling.
  fvcore skips two of our layers entirely or in part, so they are counted by our own
  module handles (:data:`MODULE_HANDLES`), which replace fvcore's count for that module:

  - ``nn.LocalResponseNorm`` (AlexNet): ``size`` MACs per output element, the window's sum
    of squares; the scale, power and division are elementwise like ReLU, and not counted.
    fvcore sees only ``pow/avg_pool3d/mul/add/div`` here and counts 0.
  - ``RBFOutput`` (LeNet-5's fixed Euclidean RBF layer): classes × features MACs, the
    paper's 840 connections (84 × 10), whatever arithmetic the module uses to get there.

- ``flops``: ``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per MAC of conv and
  matmul only (no BN, no pooling, no LRN), so ``flops`` is not exactly ``2 × macs_fvcore``.

fvcore traces the model with ``torch.jit.trace``; this works with torch 2.14. Importing
``fvcore.nn`` calls the deprecated ``torch.jit.script`` (a ``FutureWarning``); the import
here silences exactly that message.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "LayerInfo",
    "Counts",
    "MODULE_HANDLES",
    "count_params",
    "count_macs_fvcore",
    "count_flops",
    "layer_breakdown",
    "count_model",
]

log = logging.getLogger(__name__)

# A module handle: (module, input tensors, output) of one call -> MACs of that call.
ModuleHandle = Callable[[nn.Module, tuple[Any, ...], Any], int]


def _lrn_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    # Each output element sums `size` squares across neighbouring channels.
    assert isinstance(module, nn.LocalResponseNorm)
    return int(output.numel()) * int(module.size)


def _rbf_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    # y_i = sum_j (x_j - w_ij)^2: one MAC per (prototype, feature) pair and sample.
    prototypes = module.get_buffer("prototypes")  # (classes, features)
    batch = int(inputs[0].shape[0])
    return batch * int(prototypes.numel())


# Keyed by class name, so zoo/ needs no import from here (RBFOutput lives in zoo/lenet.py).
MODULE_HANDLES: dict[str, ModuleHandle] = {
    "LocalResponseNorm": _lrn_macs,
    "RBFOutput": _rbf_macs,
}


@dataclass(frozen=True)
class LayerInfo:
    """One row of the per-layer breakdown (one sample, fp32)."""

    index: int  # order of the layer's first call in the forward pass
    layer: str  # module path, e.g. "features.0"
    type: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # the module's own parameters (not its children's)
    macs: int  # the module's own MACs (fvcore, or our handle), children excluded
    activation_bytes: int  # bytes of its output for one sample

    @property
    def activation_mib(self) -> float:
        return self.activation_bytes / 2**20


@dataclass(frozen=True)
class Counts:
    """Counts of one model at its declared input shape, per sample."""

    params: int  # trainable
    params_total: int  # trainable + frozen
    macs_fvcore: int  # fvcore + our handles
    macs_by_handles: int  # the part of macs_fvcore our module handles contributed
    flops: int  # FlopCounterMode
    skipped_ops: dict[str, int]  # ops fvcore skipped (elementwise, pooling, LRN's parts)
    layers: tuple[LayerInfo, ...]

    @property
    def activation_bytes(self) -> int:
        """Sum of every layer's output for one sample (fp32)."""
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def largest_activation_bytes(self) -> int:
        return max((layer.activation_bytes for layer in self.layers), default=0)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; buffers (e.g. fixed prototypes) are not parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _flop_count_analysis() -> Any:
    with warnings.catch_warnings():
        # fvcore/nn/focal_loss.py scripts two functions at import time.
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
        )
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis


def count_macs_fvcore(
    model: nn.Module, example: torch.Tensor
) -> tuple[dict[str, int], dict[str, int]]:
    """fvcore's MACs by module path (``""`` is the whole model) and the ops it skipped."""
    analysis = (
        _flop_count_analysis()(model, (example,))
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
    )
    by_module = {name: int(value) for name, value in analysis.by_module().items()}
    skipped = {op: int(n) for op, n in analysis.unsupported_ops().items()}
    return by_module, skipped


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass with ``FlopCounterMode`` (2 per MAC of conv/matmul)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


@dataclass
class _Call:
    order: int
    module: nn.Module
    output_shape: tuple[int, ...]
    output_bytes: int
    handle_macs: int | None


def _record_calls(model: nn.Module, example: torch.Tensor) -> dict[str, _Call]:
    """Run one forward pass with hooks on every module; first call of each module."""
    calls: dict[str, _Call] = {}
    hooks = []

    def make_hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if name in calls:
                return
            handle = MODULE_HANDLES.get(type(module).__name__)
            if isinstance(output, torch.Tensor):
                shape = tuple(output.shape[1:])
                nbytes = output.numel() * output.element_size() // max(1, output.shape[0])
            else:
                shape, nbytes = (), 0
            calls[name] = _Call(
                len(calls),
                module,
                shape,
                int(nbytes),
                handle(module, inputs, output) if handle is not None else None,
            )

        return hook

    for name, module in model.named_modules():
        hooks.append(module.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def layer_breakdown(
    model: nn.Module, example: torch.Tensor, by_module: dict[str, int]
) -> tuple[LayerInfo, ...]:
    """Per-layer rows: leaf modules, plus any module with its own MACs, parameters or handle.

    ``by_module`` is fvcore's per-module count (children included); a module's own MACs are
    its count minus its direct children's, or its handle's count where one applies.
    """
    return _layers_from_calls(model, _record_calls(model, example), by_module)


def _layers_from_calls(
    model: nn.Module, calls: dict[str, _Call], by_module: dict[str, int]
) -> tuple[LayerInfo, ...]:
    children = {
        name: [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        for name, module in model.named_modules()
    }
    rows: list[LayerInfo] = []
    for name, call in sorted(calls.items(), key=lambda item: item[1].order):
        if name == "":
            continue
        if call.handle_macs is not None:
            own_macs = call.handle_macs
        else:
            own_macs = by_module.get(name, 0) - sum(by_module.get(c, 0) for c in children[name])
        own_params = sum(p.numel() for p in call.module.parameters(recurse=False))
        is_leaf = not children[name]
        if not (is_leaf or own_macs or own_params or call.handle_macs is not None):
            continue
        rows.append(
            LayerInfo(
                index=len(rows),
                layer=name,
                type=type(call.module).__name__,
                output_shape=call.output_shape,
                params=own_params,
                macs=int(own_macs),
                activation_bytes=call.output_bytes,
            )
        )
    return tuple(rows)


def count_model(model: nn.Module, input_shape: tuple[int, int, int]) -> Counts:
    """Every count of ``model`` for one sample of ``input_shape``, on CPU in fp32 eval mode."""
    model = model.eval()
    example = torch.randn(1, *input_shape)
    trainable, total = count_params(model)
    by_module, skipped = count_macs_fvcore(model, example)
    calls = _record_calls(model, example)
    macs = by_module.get("", 0)
    by_handles = 0
    handled_ops: Counter[str] = Counter()
    for name, call in calls.items():
        if call.handle_macs is None:
            continue
        # Replace fvcore's count of this module (and its children) with our handle's.
        macs += call.handle_macs - by_module.get(name, 0)
        by_handles += call.handle_macs
        handled_ops[type(call.module).__name__] += 1
    if handled_ops:
        log.debug("counted by our module handles: %s", dict(handled_ops))
    if skipped:
        log.debug("fvcore skipped ops (elementwise/pooling, not counted): %s", skipped)
    return Counts(
        params=trainable,
        params_total=total,
        macs_fvcore=int(macs),
        macs_by_handles=int(by_handles),
        flops=count_flops(model, example),
        skipped_ops=skipped,
        layers=_layers_from_calls(model, calls, by_module),
    )
