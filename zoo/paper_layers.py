"""The papers' names for a model's layers: each family maps its module paths to them.

A namer takes a model's layers in forward order, ``(module path, module type)`` each, and
returns one paper name per layer. Several modules may share a name: the paper's one layer
(LeNet-5's C3 is three grouped convolutions, AlexNet's conv1 is a convolution, its ReLU, its
normalisation and its pooling); the module paths are that layer's parts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["PaperNamer", "SequentialStyle", "sequential_names", "by_prefix"]

# (module path, module type) in forward order -> one paper name per layer
PaperNamer = Callable[[Sequence[tuple[str, str]]], list[str]]

_CONV = ("Conv1d", "Conv2d", "Conv3d")
_POOL = re.compile(r"(Max|Avg|AdaptiveAvg|AdaptiveMax)Pool\dd$")


@dataclass(frozen=True)
class SequentialStyle:
    """How a feature stack and a classifier of plain layers are named.

    ``blocks``: convolutions are ``conv{block}_{i}`` and each pooling closes a block (VGG);
    otherwise ``conv{k}`` and pooling joins the convolution before it (AlexNet).
    ``names``: a fixed list of paper names of the parametric layers and the poolings, in order
    (LeNet-5's C1 S2 C3 S4 C5 F6 OUTPUT), used when the model has exactly that many.
    """

    blocks: bool = False
    names: tuple[str, ...] = ()
    fc_start: int | None = None  # the first Linear's number; None: on from the convolutions


def _is_pool(kind: str) -> bool:
    return bool(_POOL.match(kind))


def _fixed_names(layers: Sequence[tuple[str, str]], names: tuple[str, ...]) -> list[str] | None:
    """Name each convolution, pooling and Linear by ``names`` in order, the rest after the
    named layer before them; None where the counts differ."""
    anchors = [i for i, (_, kind) in enumerate(layers) if kind in _CONV or kind == "Linear"]
    anchors += [
        i for i, (_, kind) in enumerate(layers) if _is_pool(kind) and "Adaptive" not in kind
    ]
    anchors.sort()
    if len(anchors) != len(names):
        return None
    given = dict(zip(anchors, names))
    out: list[str] = []
    for i, (path, _) in enumerate(layers):
        out.append(given.get(i, out[-1] if out else path))
    return out


def sequential_names(layers: Sequence[tuple[str, str]], style: SequentialStyle) -> list[str]:
    """Paper names of a ``features`` + ``classifier`` network, Caffe's way: ``conv1`` (or
    ``conv1_1``), its ReLU, norm and BN as its parts; ``pool{block}`` in block style; the
    Linear layers ``fc{n}`` numbered on from the last block (one Linear alone is ``fc``); a
    Dropout belongs to the layer before it, or to the first Linear when none was before it."""
    if style.names:
        fixed = _fixed_names(layers, style.names)
        if fixed is not None:
            return fixed
    linears = sum(kind == "Linear" for _, kind in layers)
    block, conv_in_block, convs, fcs = 1, 0, 0, 0
    out: list[str] = []
    current = ""
    for i, (path, kind) in enumerate(layers):
        if kind in _CONV:
            conv_in_block += 1
            convs += 1
            current = f"conv{block}_{conv_in_block}" if style.blocks else f"conv{convs}"
        elif _is_pool(kind) and style.blocks and "Adaptive" not in kind:
            current = f"pool{block}"
            block, conv_in_block = block + 1, 0
        elif kind == "Linear" or (kind == "Dropout" and not fcs and _linear_follows(layers, i)):
            if kind == "Linear":
                fcs += 1
            start = style.fc_start or (block - 1 if style.blocks else convs) + 1
            current = "fc" if linears == 1 else f"fc{start + fcs - (kind == 'Linear')}"
        out.append(current or path)
    return out


def _linear_follows(layers: Sequence[tuple[str, str]], i: int) -> bool:
    """Whether the next parametric layer after ``i`` is a Linear."""
    for _, kind in layers[i + 1 :]:
        if kind in _CONV:
            return False
        if kind == "Linear":
            return True
    return False


def by_prefix(layers: Sequence[tuple[str, str]], prefixes: Sequence[tuple[str, str]]) -> list[str]:
    """Name each layer by the first ``(path prefix, paper name)`` whose prefix is the path or
    an ancestor of it; the rest (a model's own ``forward`` code) keep their paths."""
    out = []
    for path, _ in layers:
        name = path
        for prefix, paper in prefixes:
            if path == prefix or path.startswith(prefix + "."):
                name = paper
                break
        out.append(name)
    return out
