"""Counting: parameters, MACs (fvcore), FLOPs (FlopCounterMode) and tensor bytes, per layer.

Conventions, per sample, forward pass:

- ``macs_fvcore``: fvcore's ``FlopCountAnalysis`` total, which despite its name counts
  multiply-accumulates: conv, linear/matmul, and also batch norm (in eval mode 2 per element
  with an affine scale and shift, 1 without: fvcore's ``batchnorm_flop_jit``; ResNet-34's
  3.671 G are 3.664 G of convolutions and fc, 7.5 M of batch norm and 25 k of pooling),
  adaptive average pooling (1 per input element) and upsampling. It counts nothing for max
  pooling, additions, ReLU and other elementwise ops: those are listed, with how often the
  forward pass calls each, as :attr:`Counts.skipped_ops` (the rows' ``uncounted_ops``,
  :func:`uncounted_ops_text`). fvcore skips two of our layers entirely or in part, so they
  are counted by our own module handles (:data:`MODULE_HANDLES`), which replace fvcore's
  count for that module:

  - ``nn.LocalResponseNorm`` (AlexNet): ``size`` MACs per output
    element, the window's sum of squares; the scale, power and division are elementwise like
    ReLU, and not counted. fvcore sees only elementwise ops and a pad here and counts 0.
  - ``RBFOutput`` (LeNet-5's fixed Euclidean RBF layer): classes × features MACs, the
    paper's 840 connections (84 × 10), whatever arithmetic the module uses to get there.

- ``flops``: ``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per MAC of conv and
  matmul only (no BN, no pooling, no LRN), so ``flops`` is not exactly ``2 × macs_fvcore``.
- ``train_flops`` (:func:`count_step_flops`): the same counter over one whole training
  step, backward included: each conv/matmul costs its forward FLOPs again for the weight
  gradient and again for the input gradient, except where autograd computes no input
  gradient (the first layer: the batch needs none). Not 3 × ``flops``.
- Activation bytes (:attr:`Counts.activation_bytes`, :attr:`LayerInfo.activation_bytes`):
  the bytes of every tensor the forward pass (eval mode, no autograd) creates, each storage
  once: an in-place op (``ReLU(inplace=True)``) or a view (``flatten``) creates none, a
  module called twice creates tensors at each call, and an op outside any submodule (a
  residual ``out + identity``) counts for the module whose ``forward`` runs it.
- Bytes moved by a layer (:func:`layer_bytes`) and its arithmetic intensity
  (:func:`layer_intensity`): the elements of its inputs and outputs (per sample, over its
  calls: :attr:`LayerInfo.input_elements`, :attr:`LayerInfo.output_elements`) times the batch,
  plus its own parameters once per batch (weights are read once however many samples use
  them; buffers such as batch norm's running statistics are left out), each read or written
  once at one element size: no cache reuse, no re-reads, no write-allocate (STREAM's
  convention, as the measured memory roof's). Intensity is forward FLOPs (2 × MACs) over
  those bytes, so it grows with the batch where the weights dominate the bytes (fc layers)
  and hardly where the activations do (batch norm, ReLU).

fvcore traces the model with ``torch.jit.trace``; this works with torch 2.14. Importing
``fvcore.nn`` calls the deprecated ``torch.jit.script`` (a ``FutureWarning``); the import
here silences exactly that message.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "LayerInfo",
    "Counts",
    "MODULE_HANDLES",
    "count_params",
    "count_macs_fvcore",
    "count_flops",
    "count_step_flops",
    "activation_elements_per_sample",
    "uncounted_ops_text",
    "layer_breakdown",
    "layer_bytes",
    "layer_intensity",
    "with_paper_names",
    "paper_layer_groups",
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


# Ops in fvcore's ignore list that compute (not views, copies or constants).
FVCORE_IGNORED_ARITHMETIC = frozenset(
    {"aten::relu", "aten::relu_", "aten::clamp", "aten::clamp_", "aten::max", "aten::floor",
     "aten::floor_divide", "aten::remainder"}
)  # fmt: skip

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
    # Bytes of the tensors its calls create for one sample (children excluded, each storage
    # once: 0 for an in-place ReLU), summed over its calls.
    activation_bytes: int
    calls: int = 1  # how often the forward pass calls it (ResNet's BasicBlock.relu: 2)
    # The paper's name of the layer this module is part of (LeNet-5's "C3" for each of
    # c3.groups.0..2); the module path where no map is given.
    paper_layer: str = ""
    # Elements of the tensors its calls take and return, one sample, summed over its calls
    # (an in-place ReLU reads and writes its tensor: both count); see layer_bytes.
    input_elements: int = 0
    output_elements: int = 0

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
    # Ops fvcore counts as no work (pooling, elementwise, LRN's parts): op -> calls.
    skipped_ops: dict[str, int]
    layers: tuple[LayerInfo, ...]
    largest_tensor_bytes: int = 0  # the largest tensor the forward pass creates, one sample
    # Elements of every tensor the forward pass creates for one sample (the rows'
    # activation_elements; see activation_elements_per_sample).
    activation_elements: int = 0
    # Bytes of the integer tensors among them (max-pool's int64 indices), one sample: part of
    # activation_bytes, but the same size whatever dtype the model computes in.
    index_bytes: int = 0

    @property
    def activation_bytes(self) -> int:
        """Bytes of every tensor the forward pass creates for one sample (fp32), each storage
        once: the sum of the layers' ``activation_bytes``."""
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def largest_activation_bytes(self) -> int:
        """The largest single tensor the forward pass creates for one sample (fp32)."""
        return self.largest_tensor_bytes


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
    # fvcore ignores these silently (its _IGNORED_OPS); made "unsupported", they are listed
    # with the other ops it counts as no work. Its MACs do not change.
    analysis._ignored_ops -= FVCORE_IGNORED_ARITHMETIC
    by_module = {name: int(value) for name, value in analysis.by_module().items()}
    skipped = {op: int(n) for op, n in analysis.unsupported_ops().items()}
    return by_module, skipped


def uncounted_ops_text(skipped_ops: dict[str, int]) -> str:
    """``skipped_ops`` as the rows' ``uncounted_ops``: ``"max_pool2d×2, relu×4"``.

    Sorted by name; ``aten::`` dropped and an in-place op merged with its out-of-place
    form (``relu_`` is ``relu``); ``""`` when fvcore skipped nothing.
    """
    merged: Counter[str] = Counter()
    for op, calls in skipped_ops.items():
        name = op.removeprefix("aten::")
        if name.endswith("_") and not name.endswith("__"):
            name = name[:-1]
        merged[name] += calls
    return ", ".join(f"{name}×{calls}" for name, calls in sorted(merged.items()))


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass with ``FlopCounterMode`` (2 per MAC of conv/matmul)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


def _conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    **kwargs: Any,
) -> int:
    # Each gradient asked for (input, weight) makes every product of the forward convolution
    # once more; the bias gradient is a sum, not counted (as the forward bias is not).
    # torch 2.14's own formula counts a grouped convolution's weight gradient `groups` times
    # over (pytorch/pytorch#183405): AlexNet's conv2/4/5, LeNet-5's C3.
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * grad_out_shape[0] * math.prod(spatial) * math.prod(w_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_step_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step``, backward included (``FlopCounterMode``: conv and matmul).

    For a training step this counts what autograd actually computes: no input gradient for
    the first layer, none for frozen weights. Runs ``step`` once, for real (an optimizer step
    updates the weights).
    """
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step()
    return int(counter.get_total_flops())


@dataclass
class _Call:
    order: int  # when its first call returned
    module: nn.Module
    output_shape: tuple[int, ...]  # of its first call
    handle_macs: int | None  # summed over its calls
    calls: int = 1
    inputs: int = 0  # elements of the tensors it took, summed over its calls
    outputs: int = 0  # elements of the tensors it returned, summed over its calls


def _elements(value: Any) -> int:
    return sum(leaf.numel() for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor))


# The layer name of the model's own forward code, outside any submodule (LeNet-5's squash).
TOP_LEVEL = "(top level)"


class _CreatedTensors(TorchDispatchMode):
    """Records each new storage an op returns, with the module whose own code ran the op.

    Views and in-place ops return a storage already seen, so they add nothing.
    """

    def __init__(self, known: list[torch.Tensor], stack: list[str]) -> None:
        super().__init__()
        self.seen = {tensor.untyped_storage().data_ptr() for tensor in known}
        self.alive: list[torch.Tensor] = []  # held, so no freed address is handed out again
        self.created: list[tuple[str, int]] = []  # (module path, bytes), in creation order
        self.elements = 0  # of every created floating-point tensor: the activations' values
        # Bytes of created tensors that are not values (max-pool's int64 indices, masks): they
        # keep their size whatever the dtype the model computes in.
        self.index_bytes = 0
        self.stack = stack

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor):
                continue
            storage = leaf.untyped_storage()
            if storage.nbytes() and storage.data_ptr() not in self.seen:
                self.seen.add(storage.data_ptr())
                self.alive.append(leaf)
                self.created.append((self.stack[-1] if self.stack else "", storage.nbytes()))
                if leaf.is_floating_point() or leaf.is_complex():
                    self.elements += storage.nbytes() // leaf.element_size()
                else:
                    self.index_bytes += storage.nbytes()
        return out


def activation_elements_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Elements the eval forward pass writes for one sample (the rows' ``activation_elements``,
    :attr:`Counts.activation_elements`): each storage once, so a view or an in-place op writes
    none and a module called twice writes at each call; a batch of two's beyond a batch of
    one, so a tensor that does not grow with the batch counts nothing. Values only: max-pool's
    int64 indices are not activations (they are in the byte counts, :attr:`Counts.index_bytes`).
    timm's ``infer_macts`` (fvcore's ActivationCountAnalysis) counts the outputs of conv, matmul
    and similar ops only; this counts every op's."""
    was_training = model.training
    model.eval()
    try:
        return _record_per_sample(model, torch.zeros((1, *input_shape))).elements
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class _Recorded:
    """What a forward pass created: every call of each module, the (module path, bytes) of
    every tensor created, in order, the elements of the floating-point ones, and the bytes of
    the others (indices)."""

    calls: dict[str, _Call]
    created: list[tuple[str, int]]
    elements: int
    index_bytes: int


def _record_calls(model: nn.Module, example: torch.Tensor) -> _Recorded:
    """One forward pass with hooks on every module: what it created (:class:`_Recorded`)."""
    calls: dict[str, _Call] = {}
    stack: list[str] = []
    hooks = []

    def make_pre_hook(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def pre_hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            stack.append(name)

        return pre_hook

    def make_hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            stack.pop()
            handle = MODULE_HANDLES.get(type(module).__name__)
            macs = handle(module, inputs, output) if handle is not None else None
            call = calls.get(name)
            if call is not None:
                call.calls += 1
                if macs is not None:
                    call.handle_macs = (call.handle_macs or 0) + macs
                call.inputs += _elements(inputs)
                call.outputs += _elements(output)
                return
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            calls[name] = _Call(
                len(calls), module, shape, macs, inputs=_elements(inputs), outputs=_elements(output)
            )

        return hook

    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(make_pre_hook(name)))
        hooks.append(module.register_forward_hook(make_hook(name)))
    recorder = _CreatedTensors([example, *model.parameters(), *model.buffers()], stack)
    try:
        with torch.no_grad(), recorder:
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return _Recorded(calls, recorder.created, recorder.elements, recorder.index_bytes)


def _record_per_sample(model: nn.Module, example: torch.Tensor) -> _Recorded:
    """:func:`_record_calls` at ``example``'s batch, with each created tensor's bytes and all
    their elements for one sample: what doubling the batch adds, over the batch (a tensor that
    does not grow with the batch, such as LeNet-5's |w|², counts 0)."""
    batch = int(example.shape[0])
    one = _record_calls(model, example)
    two = _record_calls(model, torch.cat([example, example]))
    first, second = one.created, two.created
    if [owner for owner, _ in first] == [owner for owner, _ in second]:
        created = [(owner, (b2 - b1) // batch) for (owner, b1), (_, b2) in zip(first, second)]
    else:  # a pass whose tensors depend on the batch size: share of the doubled batch
        created = [(owner, b2 // (2 * batch)) for owner, b2 in second]
    # Inputs and outputs per sample likewise: what the doubled batch adds, over the batch.
    for name, call in one.calls.items():
        doubled = two.calls.get(name)
        if doubled is not None:
            call.inputs = (doubled.inputs - call.inputs) // batch
            call.outputs = (doubled.outputs - call.outputs) // batch
    return _Recorded(
        one.calls,
        created,
        (two.elements - one.elements) // batch,
        (two.index_bytes - one.index_bytes) // batch,
    )


def layer_breakdown(
    model: nn.Module, example: torch.Tensor, by_module: dict[str, int]
) -> tuple[LayerInfo, ...]:
    """Per-layer rows: leaf modules, plus any module with its own MACs, parameters, handle
    or created tensors (:data:`TOP_LEVEL` for the model's own ``forward`` code).

    ``by_module`` is fvcore's per-module count (children included); a module's own MACs are
    its count minus its direct children's, or its handle's count where one applies.
    """
    recorded = _record_per_sample(model, example)
    return _layers_from_calls(model, recorded.calls, by_module, recorded.created)


def _layers_from_calls(
    model: nn.Module,
    calls: dict[str, _Call],
    by_module: dict[str, int],
    created: list[tuple[str, int]],
) -> tuple[LayerInfo, ...]:
    children = {
        name: [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        for name, module in model.named_modules()
    }
    own_bytes: Counter[str] = Counter()
    for owner, nbytes in created:
        own_bytes[owner] += nbytes
    rows: list[LayerInfo] = []
    for name, call in sorted(calls.items(), key=lambda item: item[1].order):
        if call.handle_macs is not None:
            own_macs = call.handle_macs
        else:
            own_macs = by_module.get(name, 0) - sum(by_module.get(c, 0) for c in children[name])
        own_params = sum(p.numel() for p in call.module.parameters(recurse=False))
        is_leaf = not children[name]
        has_own = own_macs or own_params or own_bytes[name] or call.handle_macs is not None
        if not (has_own or (is_leaf and name)):
            continue
        rows.append(
            LayerInfo(
                index=len(rows),
                layer=name or TOP_LEVEL,
                type=type(call.module).__name__,
                output_shape=call.output_shape,
                params=own_params,
                macs=int(own_macs),
                activation_bytes=own_bytes[name],
                calls=call.calls,
                input_elements=call.inputs,
                output_elements=call.outputs,
            )
        )
    return tuple(rows)


def layer_bytes(layer: LayerInfo, batch: int, element_size: int = 4) -> int:
    """Bytes ``layer``'s forward pass moves for ``batch`` samples at ``element_size`` bytes an
    element: inputs and outputs of every sample, its own parameters once (see the module's
    docstring for the convention)."""
    elements = batch * (layer.input_elements + layer.output_elements) + layer.params
    return elements * element_size


def layer_intensity(layer: LayerInfo, batch: int, element_size: int = 4) -> float | None:
    """Arithmetic intensity (FLOP/byte) of ``layer``'s forward pass at ``batch``: 2 × MACs
    × batch over :func:`layer_bytes`; None for a layer that moves no bytes. It depends on the
    batch (weights are read once per batch), so it is computed, not a column of layers.jsonl."""
    moved = layer_bytes(layer, batch, element_size)
    return 2 * layer.macs * batch / moved if moved else None


def with_paper_names(
    layers: Sequence[LayerInfo],
    paper_names: Callable[[Sequence[tuple[str, str]]], list[str]] | None,
) -> tuple[LayerInfo, ...]:
    """``layers`` with ``paper_layer`` set by ``paper_names`` (the module path without one)."""
    rows = [(layer.layer, layer.type) for layer in layers]
    names = paper_names(rows) if paper_names is not None else [path for path, _ in rows]
    return tuple(
        replace(layer, paper_layer=name) for layer, name in zip(layers, names, strict=True)
    )


def paper_layer_groups(layers: Sequence[LayerInfo]) -> list[tuple[str, list[LayerInfo]]]:
    """``layers`` grouped by paper layer, in forward order: ``(paper name, its parts)``; a
    name that comes back after another (a model's own code between layers) starts a new
    group."""
    groups: list[tuple[str, list[LayerInfo]]] = []
    for layer in layers:
        name = layer.paper_layer or layer.layer
        if groups and groups[-1][0] == name:
            groups[-1][1].append(layer)
        else:
            groups.append((name, [layer]))
    return groups


def count_model(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    paper_names: Callable[[Sequence[tuple[str, str]]], list[str]] | None = None,
) -> Counts:
    """Every count of ``model`` for one sample of ``input_shape``, on CPU in fp32 eval mode.

    ``paper_names`` (a model card's, see ``zoo.paper_layers``) names each layer's paper layer.
    """
    model = model.eval()
    example = torch.randn(1, *input_shape)
    trainable, total = count_params(model)
    by_module, skipped = count_macs_fvcore(model, example)
    recorded = _record_per_sample(model, example)
    calls, created = recorded.calls, recorded.created
    macs = by_module.get("", 0)
    by_handles = 0
    handled_ops: Counter[str] = Counter()
    for name, call in calls.items():
        if call.handle_macs is None:
            continue
        # Replace fvcore's count of this module (and its children) with our handle's.
        macs += call.handle_macs - by_module.get(name, 0)
        by_handles += call.handle_macs
        handled_ops[type(call.module).__name__] += call.calls
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
        layers=with_paper_names(_layers_from_calls(model, calls, by_module, created), paper_names),
        largest_tensor_bytes=max((nbytes for _, nbytes in created), default=0),
        activation_elements=recorded.elements,
        index_bytes=recorded.index_bytes,
    )
