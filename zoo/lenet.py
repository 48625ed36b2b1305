"""LeNet-5 and its descendants.

* ``lenet5``: LeNet-5 as published. Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based
  learning applied to document recognition", Proc. IEEE 86(11), 1998, Sec. II.B and App. A:
  C3's partial connection table, trainable subsampling, the squashing function
  f(a) = 1.7159·tanh(2a/3) and an output of ten Euclidean RBF units with fixed ±1 prototypes.
* The "LeNet-5" of modern tutorials (ReLU, max-pool, full C3, linear output) and the lab's
  conv-pool-conv-pool-fc-fc network are one class, :class:`ConvPoolNet`, read from a table of rows.

Variants are rows of ``VARIANTS`` (config, classes, paper facts), each registered under its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.paper_layers import SequentialStyle, by_prefix, sequential_names
from zoo.registry import PaperFacts, Variant, register_variants

__all__ = [
    "C3_TABLE",
    "DIGIT_BITMAPS",
    "LeNet5",
    "ConvPoolNet",
    "map_loss",
    "ConvPoolConfig",
    "LeNet5Input",
    "VARIANTS",
    "LENET5_LAYERS",
    "paper_layer_names",
]

LECUN_1998 = (
    "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. "
    "Proc. IEEE 86(11), 1998"
)

# Table I of the paper: the S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# The RBF prototypes: stylised 7x12 bitmaps of the digits ('#' = +1, '.' = -1), in the spirit of
# the paper's Fig. 3 (the exact pixels are not published as data; any distinct ±1 codes work).
_BITMAP_ROWS = """
..###.. ...#... ..###.. .#####. .....#. ####### ..####. ####### .#####. .#####.
.#...#. ..##... .#...#. #.....# ....##. #...... .#..... ......# #.....# #.....#
#.....# .#.#... #.....# ......# ...#.#. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# .....#. ..#..#. #...... #...... .....#. #.....# #.....#
#.....# ...#... .....#. ...##.. .#...#. ######. ######. ....#.. .#####. #.....#
#.....# ...#... ....#.. .....#. #....#. ......# #.....# ....#.. #.....# .######
#.....# ...#... ...#... ......# ####### ......# #.....# ...#... #.....# ......#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ...#... #.....# ......#
#.....# ...#... .#..... ......# .....#. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... #...... #.....# .....#. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. ....### .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""
# DIGIT_BITMAPS[d] is digit d's 12 rows of 7, joined by spaces.
DIGIT_BITMAPS: tuple[str, ...] = tuple(
    " ".join(line.split()[d] for line in _BITMAP_ROWS.split("\n") if line) for d in range(10)
)


def _bitmap(rows: str) -> list[float]:
    cells = rows.replace(" ", "")
    return [1.0 if c == "#" else -1.0 for c in cells]


def squash(a: torch.Tensor) -> torch.Tensor:
    """The paper's squashing function f(a) = A·tanh(S·a), A = 1.7159, S = 2/3 (App. A)."""
    return 1.7159 * torch.tanh(a * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block, times one trainable coefficient per map, plus a bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(x, 2) * 4.0  # the sum of the 2x2 inputs
        return total * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: each output map sees only the input maps its row of ``table`` names.

    Maps reading the same number of inputs form one grouped convolution over the gathered input
    channels, so the weights are exactly the table's connections (no masked zeros) and MAC
    counters see the true cost.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        self.groups = nn.ModuleList()
        order: list[int] = []
        for fan_in in sorted({len(row) for row in table}):
            maps = [i for i, row in enumerate(table) if len(row) == fan_in]
            gather = torch.tensor([c for i in maps for c in table[i]])
            conv = nn.Conv2d(len(gather), len(maps), kernel_size, groups=len(maps))
            conv.register_buffer("gather", gather, persistent=False)
            self.groups.append(conv)
            order += maps
        # Outputs come out grouped by fan-in; this puts them back in the table's order.
        self.register_buffer("order", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x.index_select(1, conv.gather)) for conv in self.groups]
        return torch.cat(outs, dim=1).index_select(1, self.order)


class RBFOutput(nn.Module):
    """Ten Euclidean RBF units with fixed prototypes: y_i = sum_j (x_j - w_ij)^2.

    Returns -y so that, as for every model of the zoo, the largest score is the prediction.
    The distance is computed as |x|^2 - 2 x.w + |w|^2: one matmul, which MAC counters see
    (84 x 10 = 840 connections, as the paper counts them).
    """

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes)  # (classes, 84), fixed: not a Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.prototypes.to(x.dtype)
        y = x.pow(2).sum(1, keepdim=True) - 2 * x @ w.t() + w.pow(2).sum(1)  # (B, classes)
        return -y


class LeNet5(nn.Module):
    """LeNet-5 as in LeCun et al. 1998: 1x32x32 → C1 → S2 → C3 → S4 → C5 → F6 → RBF.

    ``forward`` returns the negated RBF penalties; train it with :func:`map_loss`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        if num_classes > len(DIGIT_BITMAPS):
            raise ValueError(
                f"lenet5 has {len(DIGIT_BITMAPS)} fixed digit prototypes; got num_classes="
                f"{num_classes}: use lenet5_modern for other class counts"
            )
        self.c1 = nn.Conv2d(in_channels, 6, 5)  # (B, 6, 28, 28)
        self.s2 = Subsampling(6)  # (B, 6, 14, 14)
        self.c3 = PartialConv(C3_TABLE, 5)  # (B, 16, 10, 10)
        self.s4 = Subsampling(16)  # (B, 16, 5, 5)
        self.c5 = nn.Conv2d(16, 120, 5)  # (B, 120, 1, 1)
        self.f6 = nn.Linear(120, 84)
        bitmaps = torch.tensor([_bitmap(b) for b in DIGIT_BITMAPS[:num_classes]])
        self.output = RBFOutput(bitmaps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: uniform in ±2.4 / fan_in (App. C)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = 2.4 / fan_in
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.uniform_(module.bias, -bound, bound)
            elif isinstance(module, Subsampling):
                bound = 2.4 / 4  # four inputs per unit
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.uniform_(module.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = squash(self.s2(squash(self.c1(x))))
        x = squash(self.s4(squash(self.c3(x))))
        x = squash(self.c5(x)).flatten(1)  # (B, 120)
        x = squash(self.f6(x))  # (B, 84)
        return self.output(x)


def map_loss(scores: torch.Tensor, target: torch.Tensor, j: float = 1.0) -> torch.Tensor:
    """The paper's MAP criterion (Sec. II.C, eq. 9) on LeNet5's scores s = -y.

    E = mean[y_target + log(exp(-j) + sum_i exp(-y_i))], which is cross-entropy over the
    classes plus one "rubbish" class whose score is the constant -j.
    """
    rubbish = scores.new_full((scores.shape[0], 1), -j)
    return F.cross_entropy(torch.cat([scores, rubbish], dim=1), target)


@dataclass(frozen=True)
class ConvPoolConfig:
    """One row of the conv-pool-conv-pool-fc table."""

    in_channels: int
    input_size: int  # square input, pixels
    channels: tuple[int, int]  # the two 5x5 convolutions
    padding: tuple[int, int]  # of each convolution
    hidden: tuple[int, ...]  # widths of the hidden fully connected layers

    @property
    def flat_features(self) -> int:
        size = self.input_size
        for pad in self.padding:
            size = (size + 2 * pad - 4) // 2  # 5x5 conv, then 2x2 max-pool
        return self.channels[1] * size * size


class ConvPoolNet(nn.Module):
    """conv5x5-ReLU-maxpool x2, then fully connected layers with ReLU and a linear output."""

    def __init__(self, config: ConvPoolConfig, num_classes: int = 10) -> None:
        super().__init__()
        (c1, c2), (p1, p2) = config.channels, config.padding
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, c1, 5, padding=p1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=p2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        layers: list[nn.Module] = []
        width = config.flat_features
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))  # no activation: cross-entropy has softmax
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@dataclass(frozen=True)
class LeNet5Input:
    """LeNet-5's input as the paper fixes it: one 32x32 map (the 20x20 digit centred in it)."""

    in_channels: int = 1
    input_size: int = 32


def _build(config: LeNet5Input | ConvPoolConfig, num_classes: int) -> nn.Module:
    if isinstance(config, LeNet5Input):
        return LeNet5(num_classes=num_classes, in_channels=config.in_channels)
    return ConvPoolNet(config, num_classes=num_classes)


_TUTORIAL_LENET = LECUN_1998 + " (as modern tutorials rebuild it)"

VARIANTS: dict[str, Variant[LeNet5Input | ConvPoolConfig]] = {
    "lenet5": Variant(
        LeNet5Input(),
        num_classes=10,
        summary=(
            "LeNet-5 as published: C3 table, trainable subsampling, scaled tanh, fixed RBF output"
        ),
        paper=PaperFacts(
            citation=LECUN_1998,
            params=60_000,
            macs=326_520,
            connections=340_908,
            test_accuracy=1 - 0.0095,
            reported_on="MNIST test set, 20 passes, no distortions",
            notes="MACs are the paper's weight multiplications including the 840 of the RBF layer",
        ),
        notes="Returns negated RBF penalties; train it with :func:`map_loss`.",
        loss="map",
    ),
    # The tutorial LeNet-5: 32x32 input as in the paper, so no padding.
    "lenet5_modern": Variant(
        ConvPoolConfig(1, 32, (6, 16), (0, 0), (120, 84)),
        num_classes=10,
        summary="the tutorial LeNet-5: ReLU, max-pool, full C3, linear output",
        paper=PaperFacts(
            citation=_TUTORIAL_LENET,
            params=61_706,
            macs=416_520,
            notes="not the paper's network: full C3, ReLU, max-pool, linear output",
        ),
    ),
    # MNIST at its own 28x28: conv1 pads by 2, which gives C1 the paper's 28x28 maps.
    "lenet5_mnist": Variant(
        ConvPoolConfig(1, 28, (6, 16), (2, 0), (120, 84)),
        num_classes=10,
        summary="the modern LeNet-5 on 1x28x28 MNIST: conv1 padding 2 keeps C1 at 28x28",
        paper=PaperFacts(
            citation=_TUTORIAL_LENET,
            params=61_706,
            macs=416_520,
            test_accuracy=0.990,
            reported_on="MNIST test set, typical for this network (99.0-99.2%)",
        ),
        notes="conv1 pads by 2, so every later map has its paper size.",
    ),
    # CIFAR: the same network on three input channels (32x32 needs no padding).
    "lenet5_cifar": Variant(
        ConvPoolConfig(3, 32, (6, 16), (0, 0), (120, 84)),
        num_classes=10,
        summary="the modern LeNet-5 on 3x32x32: conv1 reads three channels",
        notes=(
            "Differs from ``lenet5_modern`` only in conv1's three input channels (456 parameters "
            "instead of 156); 32x32 is LeNet's own input size, so no map changes size."
        ),
    ),
    # The lab's exercise: 'same' 5x5 convs of 32 and 64, fc 3136 -> 1024 -> 10.
    "lab_cnn": Variant(
        ConvPoolConfig(1, 28, (32, 64), (2, 2), (1024,)),
        num_classes=10,
        summary="the lab's exercise: conv5x5 32 + pool + conv5x5 64 + pool + fc 1024 + fc 10",
        paper=PaperFacts(
            citation="MLAV Lab 3, Exercise 1 (see shared/LAB.md)",
            params=3_274_634,
            test_accuracy=0.992,
            reported_on="MNIST test set, typical for this network (99.2-99.3%)",
        ),
    ),
}

# LeCun et al. 1998, Fig. 2: the paper's seven layers; C3's groups of grouped convolutions are
# one layer, and so are the tutorial network's ReLU and max-pool with the layer before them.
LENET5_LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT")
_LENET5_MODULES = tuple(zip(("c1", "s2", "c3", "s4", "c5", "f6", "output"), LENET5_LAYERS))


def paper_layer_names(layers: Sequence[tuple[str, str]]) -> list[str]:
    """LeNet-5's names (C1 … OUTPUT) for the paper's network and the tutorial one; the lab's
    network (two convolutions, two Linear layers) is conv1, conv2, fc1, fc2."""
    if any(path == "c1" for path, _ in layers):
        return by_prefix(layers, _LENET5_MODULES)
    return sequential_names(layers, SequentialStyle(names=LENET5_LAYERS, fc_start=1))


register_variants("lenet", _build, VARIANTS, paper_layer_names)
