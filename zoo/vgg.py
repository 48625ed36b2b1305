"""VGG: K. Simonyan, A. Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015. Configurations D (VGG-16) and E (VGG-19).

* ``vgg16``, ``vgg19``: the paper's networks at 3x224x224, state-dict compatible with
  ``torchvision.models.vgg16`` / ``vgg19`` (which keep an adaptive 7x7 average pool, an identity
  at 224x224).
* ``vgg16_cifar``, ``vgg19_cifar``: the CIFAR VGG the field uses (batch norm after each conv,
  five pools take 32x32 to 1x1x512, one Linear(512, classes)).
* ``vgg16_mnist``, ``vgg19_mnist``: the same on 1x28x28, pools with ceil_mode.

Depths are rows of ``CFGS`` keyed by the paper's column letter; variants are rows of
``VARIANTS`` (config, classes, paper facts), each registered under its name; one class,
:class:`VGG`, reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from zoo.paper_layers import SequentialStyle, sequential_names
from zoo.registry import PaperFacts, Variant, register_variants

__all__ = ["CFGS", "VGGConfig", "VARIANTS", "VGG", "paper_layer_names"]

SIMONYAN_2015 = (
    "Simonyan, Zisserman. Very deep convolutional networks for large-scale image recognition. "
    "ICLR 2015"
)
CIFAR_VGG = (
    "Simonyan & Zisserman 2015 as the field adapts it to CIFAR-10 (batch norm, one linear layer)"
)

# Table 1 of the paper: output channels of each 3x3 conv, "M" a 2x2/2 max-pool.
CFGS: dict[str, list[int | str]] = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}  # fmt: skip


@dataclass(frozen=True)
class VGGConfig:
    column: str  # "D" or "E"
    in_channels: int
    input_size: int  # square input, pixels
    batch_norm: bool
    hidden: tuple[int, ...]  # hidden fully connected widths; () = one linear layer
    adaptive_pool: int | None  # torchvision's AdaptiveAvgPool2d side; None = none
    ceil_mode: bool = False  # round pooled sizes up (28 -> 14 -> 7 -> 4 -> 2 -> 1)

    @property
    def final_size(self) -> int:
        if self.adaptive_pool is not None:
            return self.adaptive_pool
        size = self.input_size
        for _ in range(CFGS[self.column].count("M")):
            size = -(-size // 2) if self.ceil_mode else size // 2
        return size


def _imagenet(column: str) -> VGGConfig:
    return VGGConfig(column, 3, 224, batch_norm=False, hidden=(4096, 4096), adaptive_pool=7)


def _small(column: str, in_channels: int, size: int) -> VGGConfig:
    return VGGConfig(
        column, in_channels, size, batch_norm=True, hidden=(), adaptive_pool=None, ceil_mode=True
    )


class VGG(nn.Module):
    """Stacks of 3x3 convolutions and 2x2 pools (``features``), then ``classifier``; submodule
    names follow torchvision's so its state dict loads into ``vgg16``/``vgg19``."""

    def __init__(self, config: VGGConfig, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for v in CFGS[config.column]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=config.ceil_mode))
                continue
            assert isinstance(v, int)
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)
        side = config.final_size
        pool = config.adaptive_pool
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool)) if pool else nn.Identity()
        head: list[nn.Module] = []
        width = channels * side * side  # 25088 at 224x224, 512 for the small inputs
        for hidden in config.hidden:
            head += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(p=dropout)]
            width = hidden
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init (He et al. 2015 for convs), which trains these depths from scratch;
        # the paper instead initialised the deep nets from the shallower configuration A.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


VARIANTS: dict[str, Variant[VGGConfig]] = {
    "vgg16": Variant(
        _imagenet("D"),
        num_classes=1000,
        summary="VGG-16, configuration D: 13 3x3 convs, 3 fully connected layers",
        paper=PaperFacts(
            citation=SIMONYAN_2015,
            params=138_357_544,
            macs=15.47e9,
            top1_error=0.256,
            top5_error=0.081,
            reported_on="ILSVRC-2012 val, single scale",
            notes="Table 2 rounds to 138 M parameters; 15.35 G of the MACs are in the convs",
        ),
        notes="VGG-16 (configuration D) on 3x224x224.",
        torchvision_weights="VGG16_Weights",
    ),
    "vgg19": Variant(
        _imagenet("E"),
        num_classes=1000,
        summary="VGG-19, configuration E: 16 3x3 convs, 3 fully connected layers",
        paper=PaperFacts(
            citation=SIMONYAN_2015,
            params=143_667_240,
            macs=19.63e9,
            top1_error=0.255,
            top5_error=0.080,
            reported_on="ILSVRC-2012 val, single scale",
            notes="Table 2 rounds to 144 M parameters; 19.51 G of the MACs are in the convs",
        ),
        notes="VGG-19 (configuration E) on 3x224x224.",
        torchvision_weights="VGG19_Weights",
    ),
    "vgg16_cifar": Variant(
        _small("D", 3, 32),
        num_classes=10,
        summary="CIFAR VGG-16: batch norm, five pools to 1x1x512, Linear(512, 10)",
        paper=PaperFacts(
            citation=CIFAR_VGG,
            params=14_728_266,
            macs=313.8e6,
            test_accuracy=0.9264,
            reported_on="CIFAR-10 test set, with that recipe's augmentation",
        ),
        notes=(
            "VGG-16's convolutions with batch norm on 3x32x32; five pools leave 1x1x512, read by "
            "one linear layer (the 4096-wide "
            "layers would hold 90% of the weights for a 512-number input)."
        ),
    ),
    "vgg19_cifar": Variant(
        _small("E", 3, 32),
        num_classes=10,
        summary="CIFAR VGG-19: batch norm, five pools to 1x1x512, Linear(512, 10)",
        paper=PaperFacts(citation=CIFAR_VGG, params=20_040_522),
        notes="VGG-19's convolutions with batch norm on 3x32x32, as ``vgg16_cifar``.",
    ),
    "vgg16_mnist": Variant(
        _small("D", 1, 28),
        num_classes=10,
        summary="VGG-16 on 1x28x28: batch norm, ceil-mode pools 28-14-7-4-2-1, Linear(512, 10)",
        notes=(
            "VGG-16 as ``vgg16_cifar`` on 1x28x28. Five floor-mode pools would take 28 to 0; "
            "ceil_mode keeps all five blocks (28 -> 14 -> 7 -> 4 -> 2 -> 1), so each block still "
            "halves the map as in the paper."
        ),
    ),
    "vgg19_mnist": Variant(
        _small("E", 1, 28),
        num_classes=10,
        summary="VGG-19 on 1x28x28: batch norm, ceil-mode pools 28-14-7-4-2-1, Linear(512, 10)",
        notes="VGG-19 as ``vgg19_cifar`` on 1x28x28, with ceil-mode pools as ``vgg16_mnist``.",
    ),
}


def paper_layer_names(layers: Sequence[tuple[str, str]]) -> list[str]:
    """Simonyan and Zisserman's blocks as Caffe names them: conv1_1 … conv5_4, pool1 … pool5,
    fc6 … fc8 (one Linear alone, the CIFAR head, is fc); BN and ReLU are parts of their conv."""
    return sequential_names(layers, SequentialStyle(blocks=True))


register_variants("vgg", VGG, VARIANTS, paper_layer_names)
