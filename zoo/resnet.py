"""ResNet-34: K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition",
CVPR 2016, Table 1 (the 34-layer column).

* ``resnet34``: option B shortcuts (1x1 conv + BN projection where the shape changes),
  state-dict compatible with ``torchvision.models.resnet34``.
* ``resnet34_a``: option A shortcuts (identity, strided and zero-padded channels; no parameters).
* ``resnet34_cifar``, ``resnet34_mnist``: the field's small-input ResNet-34 (3x3 stride-1 stem,
  no max-pool, so the four stages work at the input size, 1/2, 1/4 and 1/8).

Variants are rows of ``VARIANTS`` (config, classes, paper facts), each registered under its
name; one class, :class:`ResNet`, reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.paper_layers import by_prefix
from zoo.registry import PaperFacts, Variant, register_variants

__all__ = ["ResNetConfig", "VARIANTS", "BasicBlock", "PadShortcut", "ResNet", "paper_layer_names"]

HE_2016 = "He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016"
CIFAR_RESNET = "He et al. 2016's ResNet-34 as the field adapts it to CIFAR-10 (3x3 stem, no pool)"


@dataclass(frozen=True)
class ResNetConfig:
    in_channels: int
    input_size: int  # square input, pixels
    stem: str  # "imagenet": 7x7/2 conv + 3x3/2 max-pool; "small": 3x3/1 conv, no pool
    shortcut: str  # "A" (zero-padded identity) or "B" (projection where the shape changes)
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)  # basic blocks per stage: ResNet-34


class PadShortcut(nn.Module):
    """Option A: the identity, subsampled by ``stride`` and zero-padded to ``out_channels``."""

    def __init__(self, stride: int, out_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the shortcut (Fig. 2 of the paper)."""

    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            if shortcut == "B":
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(channels),
                )
            else:
                self.downsample = PadShortcut(stride, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem, four stages of basic blocks (64/128/256/512 channels), global average pool, fc;
    submodule names follow torchvision's."""

    def __init__(self, config: ResNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        if config.shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {config.shortcut!r}")
        if config.stem == "imagenet":
            self.conv1 = nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(config.in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        channels = 64
        stages = []
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), config.layers)):
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(channels, width, stride if b == 0 else 1, config.shortcut))
                channels = width
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56) at 224
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 7, 7) at 224
        return self.fc(torch.flatten(self.avgpool(x), 1))


VARIANTS: dict[str, Variant[ResNetConfig]] = {
    "resnet34": Variant(
        ResNetConfig(3, 224, stem="imagenet", shortcut="B"),
        num_classes=1000,
        summary="ResNet-34 with option B (projection) shortcuts, as torchvision builds it",
        paper=PaperFacts(
            citation=HE_2016,
            params=21_797_672,
            macs=3.6e9,
            top1_error=0.2452,
            top5_error=0.0746,
            reported_on="ILSVRC-2012 val, 10-crop",
            notes=(
                "Table 1 gives 3.6 G FLOPs (multiply-adds); fvcore counts 3.671 G with batch norm"
            ),
        ),
        notes="On 3x224x224; torchvision's state dict loads into it.",
        torchvision_weights="ResNet34_Weights",
    ),
    "resnet34_a": Variant(
        ResNetConfig(3, 224, stem="imagenet", shortcut="A"),
        num_classes=1000,
        summary="ResNet-34 with option A (zero-padded identity) shortcuts",
        paper=PaperFacts(
            citation=HE_2016,
            params=21_623_848,
            macs=3.6e9,
            top1_error=0.2503,
            top5_error=0.0776,
            reported_on="ILSVRC-2012 val, 10-crop",
        ),
        notes="On 3x224x224; option A shortcuts have no projection parameters.",
    ),
    "resnet34_cifar": Variant(
        ResNetConfig(3, 32, stem="small", shortcut="B"),
        num_classes=10,
        summary="CIFAR ResNet-34: 3x3 stride-1 stem, no max-pool, stages at 32/16/8/4",
        paper=PaperFacts(citation=CIFAR_RESNET, params=21_282_122, macs=1.161e9),
        notes=(
            "The 7x7/2 stem and max-pool would leave 8x8 before stage 1, so the stem is one 3x3 "
            "stride-1 conv and the stages run at 32/16/8/4."
        ),
    ),
    "resnet34_mnist": Variant(
        ResNetConfig(1, 28, stem="small", shortcut="B"),
        num_classes=10,
        summary="ResNet-34 on 1x28x28: 3x3 stride-1 stem, no max-pool, stages at 28/14/7/4",
        notes="As ``resnet34_cifar`` with one input channel.",
    ),
}

# He et al. 2016, Table 1: conv1 (with its BN and ReLU), conv2_x (the 3x3 max-pool and the
# first stage's blocks) … conv5_x, and the last row's average pool and fc.
_RESNET_STAGES = (
    ("conv1", "conv1"), ("bn1", "conv1"), ("relu", "conv1"), ("maxpool", "conv2_x"),
    ("layer1", "conv2_x"), ("layer2", "conv3_x"), ("layer3", "conv4_x"), ("layer4", "conv5_x"),
    ("avgpool", "fc"), ("fc", "fc"),
)  # fmt: skip


def paper_layer_names(layers: Sequence[tuple[str, str]]) -> list[str]:
    """He et al.'s stages: conv1, conv2_x … conv5_x, fc; a block's modules are its parts."""
    return by_prefix(layers, _RESNET_STAGES)


register_variants("resnet", ResNet, VARIANTS, paper_layer_names)
