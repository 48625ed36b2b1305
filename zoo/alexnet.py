"""AlexNet and its variants.

* ``alexnet``: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet classification with deep
  convolutional neural networks", NIPS 2012: 96/256/384/384/256 channels, conv2/4/5 split in two
  groups (the paper's two GPUs), local response normalisation after conv1 and conv2, dropout
  on the outputs of fc6 and fc7 (Sec. 4.2).
* ``alexnet_owt``: A. Krizhevsky, "One weird trick for parallelizing convolutional neural
  networks", arXiv:1404.5997, 2014, as torchvision builds it (64/192/384/256/256, no LRN, no
  groups, dropout on the inputs of fc6 and fc7); state-dict compatible with
  ``torchvision.models.alexnet``.
* ``alexnet_cifar``, ``alexnet_mnist``: the 2012 network adapted to small inputs, with the
  paper's initialisation; ``alexnet_cifar_kaiming``, ``alexnet_mnist_kaiming``: the same layers
  with He et al.'s 2015 initialisation, the variants that learn in a CPU run.

Variants are rows of ``VARIANTS`` (config, classes, paper facts), each registered under its
name; one class, :class:`AlexNet`, reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from zoo.paper_layers import SequentialStyle, sequential_names
from zoo.registry import PaperFacts, Variant, register_variants

__all__ = [
    "ConvSpec",
    "AlexNetConfig",
    "VARIANTS",
    "AlexNet",
    "paper_lrn",
    "paper_layer_names",
]

KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural "
    "networks. NIPS 2012"
)
KRIZHEVSKY_2014 = (
    "Krizhevsky. One weird trick for parallelizing convolutional neural networks. "
    "arXiv:1404.5997, 2014 (torchvision's alexnet)"
)


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of the feature extractor, with what follows it."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    lrn: bool = False  # local response normalisation after the ReLU
    pool: bool = False  # 3x3 stride-2 overlapping max-pool after that


@dataclass(frozen=True)
class AlexNetConfig:
    convs: tuple[ConvSpec, ...]
    in_channels: int
    input_size: int  # square input, pixels
    pooled_size: int  # side of the last feature map, which the classifier flattens
    hidden: int = 4096  # width of the two hidden fully connected layers
    adaptive_pool: bool = False  # torchvision's AdaptiveAvgPool2d((6, 6)) before the classifier
    # Where dropout acts: "outputs" of fc6 and fc7 (the 2012 paper, Sec. 4.2: "dropout in the
    # first two fully-connected layers"), or their "inputs" (torchvision's placement).
    dropout_on: str = "outputs"
    # "paper": N(0, 0.01) weights, biases of 1 (Sec. 5); "kaiming": He et al. 2015's N(0, 2 /
    # fan_in) for every weight and biases of 0, under which the small variants learn in seconds.
    init: str = "paper"


def paper_lrn() -> nn.LocalResponseNorm:
    """The paper's LRN (Sec. 3.3): k=2, n=5, alpha=1e-4, beta=0.75, as torch's own module.

    The paper divides by (k + alpha * sum a^2)^beta; PyTorch divides alpha by n, so it gets
    alpha = n * 1e-4 = 5e-4. (torch sums the window with ``avg_pool3d``, slow on CPU and run in
    fp32 under bf16 autocast; a faster equivalent would be a swapped module, and the suite
    measures the modules users run.)
    """
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


_PAPER_CONVS = (
    ConvSpec(96, 11, stride=4, lrn=True, pool=True),  # (B, 96, 55, 55) -> 27x27
    ConvSpec(256, 5, padding=2, groups=2, lrn=True, pool=True),  # (B, 256, 27, 27) -> 13x13
    ConvSpec(384, 3, padding=1),  # (B, 384, 13, 13)
    ConvSpec(384, 3, padding=1, groups=2),  # (B, 384, 13, 13)
    ConvSpec(256, 3, padding=1, groups=2, pool=True),  # (B, 256, 13, 13) -> 6x6
)


def _small_input(convs: tuple[ConvSpec, ...]) -> tuple[ConvSpec, ...]:
    """The paper's convs with conv1 made 5x5 stride 1 'same': an 11x11/4 conv would shrink a
    28-32 pixel image to 5-6 pixels before any other layer could see it."""
    return (ConvSpec(96, 5, padding=2, lrn=True, pool=True),) + convs[1:]


class AlexNet(nn.Module):
    """Five convolutions (``features``) and three fully connected layers (``classifier``),
    with torchvision's submodule names so its state dict loads into ``alexnet_owt``."""

    def __init__(self, config: AlexNetConfig, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = config.in_channels
        for spec in config.convs:
            layers += [
                nn.Conv2d(
                    in_channels,
                    spec.out_channels,
                    spec.kernel_size,
                    stride=spec.stride,
                    padding=spec.padding,
                    groups=spec.groups,
                ),
                nn.ReLU(inplace=True),
            ]
            if spec.lrn:
                layers.append(paper_lrn())
            if spec.pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            in_channels = spec.out_channels
        self.features = nn.Sequential(*layers)
        side = config.pooled_size
        self.avgpool = nn.AdaptiveAvgPool2d((side, side)) if config.adaptive_pool else nn.Identity()
        flat = in_channels * side * side  # 9216 for the ImageNet models
        hidden: list[nn.Module] = []
        for width_in in (flat, config.hidden):
            fc = [nn.Linear(width_in, config.hidden), nn.ReLU(inplace=True)]
            drop = [nn.Dropout(p=dropout)]
            hidden += drop + fc if config.dropout_on == "inputs" else fc + drop
        self.classifier = nn.Sequential(*hidden, nn.Linear(config.hidden, num_classes))
        if config.init == "kaiming":
            self._init_kaiming()
        elif config.init == "paper":
            self._init_weights()
        else:
            raise ValueError(f"AlexNet init must be 'paper' or 'kaiming', got {config.init!r}")

    def _init_kaiming(self) -> None:
        # He et al. 2015 (arXiv:1502.01852), Eq. 10: std sqrt(2 / fan_in) keeps the variance of
        # ReLU activations constant through the layers; N(0, 0.01) shrinks it at each layer, so
        # the paper's small variants start with vanishing signals and gradients.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _init_weights(self) -> None:
        # The paper's init: N(0, 0.01) weights; biases 1 in conv2, conv4, conv5 and the hidden
        # fc layers (to give ReLUs positive inputs early), 0 elsewhere.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for module in convs + linears:
            nn.init.normal_(module.weight, 0.0, 0.01)
            one = module in (convs[1], convs[3], convs[4], linears[0], linears[1])
            nn.init.constant_(module.bias, 1.0 if one else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# The small-input networks' layers: 32 -> conv1 32 -> pool 15 -> conv2 15 -> pool 7 -> conv3-5 7
# -> pool 3 (256x3x3 = 2304 features); 28 -> 28 -> 13 -> 13 -> 6 -> 6 -> 2 (256x2x2 = 1024).
_CIFAR_SIZED = AlexNetConfig(
    _small_input(_PAPER_CONVS), in_channels=3, input_size=32, pooled_size=3
)
_MNIST_SIZED = AlexNetConfig(
    _small_input(_PAPER_CONVS), in_channels=1, input_size=28, pooled_size=2
)

VARIANTS: dict[str, Variant[AlexNetConfig]] = {
    "alexnet": Variant(
        AlexNetConfig(_PAPER_CONVS, in_channels=3, input_size=227, pooled_size=6),
        num_classes=1000,
        summary=(
            "AlexNet 2012: 96/256/384/384/256, groups=2 on conv2/4/5, LRN after conv1 and conv2"
        ),
        paper=PaperFacts(
            citation=KRIZHEVSKY_2012,
            params=60_965_224,
            macs=0.724e9,
            top1_error=0.375,
            top5_error=0.170,
            reported_on="ILSVRC-2010 test set",
            notes="the paper says 60 million parameters; 62,378,344 without the two-GPU groups",
        ),
        notes="On 3x227x227, which gives the paper's 55x55 maps.",
    ),
    "alexnet_owt": Variant(
        AlexNetConfig(
            (
                ConvSpec(64, 11, stride=4, padding=2, pool=True),  # (B, 64, 55, 55) -> 27x27
                ConvSpec(192, 5, padding=2, pool=True),  # (B, 192, 27, 27) -> 13x13
                ConvSpec(384, 3, padding=1),
                ConvSpec(256, 3, padding=1),
                ConvSpec(256, 3, padding=1, pool=True),  # (B, 256, 13, 13) -> 6x6
            ),
            in_channels=3,
            input_size=224,
            pooled_size=6,
            adaptive_pool=True,
            dropout_on="inputs",
        ),
        num_classes=1000,
        summary="torchvision's 'one weird trick' AlexNet: 64/192/384/256/256, no LRN, no groups",
        paper=PaperFacts(
            citation=KRIZHEVSKY_2014, params=61_100_840, macs=0.714e9, reported_on="ImageNet"
        ),
        notes="torchvision's 2014 single-tower AlexNet; its state dict loads into it.",
        torchvision_weights="AlexNet_Weights",
    ),
    "alexnet_cifar": Variant(
        _CIFAR_SIZED,
        num_classes=10,
        summary="AlexNet 2012 on 3x32x32: conv1 5x5 stride 1, otherwise the paper's layers",
        notes=(
            "conv1 becomes 5x5 stride 1 padding 2 (an 11x11/4 conv would leave 6x6 maps after "
            "one layer); every other layer is the paper's, with its groups, LRN and three "
            "overlapping 3x3/2 pools (32 -> 15 -> 7 -> 3), so the classifier reads 256x3x3 = 2304 "
            "features into the paper's two 4096-wide hidden layers."
        ),
    ),
    "alexnet_cifar_kaiming": Variant(
        replace(_CIFAR_SIZED, init="kaiming"),
        num_classes=10,
        summary="alexnet_cifar with He et al.'s 2015 initialisation in place of the paper's",
        notes=(
            "The layers of ``alexnet_cifar``; every weight N(0, 2 / fan_in), every bias 0, as "
            "``alexnet_mnist_kaiming``: under the paper's N(0, 0.01) and biases of 1 "
            "``alexnet_cifar`` stayed at chance through an SGD recipe's warm-up on CIFAR-10 and, "
            "under Adam, learns far more slowly."
        ),
    ),
    "alexnet_mnist": Variant(
        _MNIST_SIZED,
        num_classes=10,
        summary="AlexNet 2012 on 1x28x28: conv1 5x5 stride 1, otherwise the paper's layers",
        notes=(
            "As ``alexnet_cifar`` with one input channel; the three 3x3/2 pools take "
            "28 -> 13 -> 6 -> 2, so the classifier reads 256x2x2 = 1024 features."
        ),
    ),
    "alexnet_mnist_kaiming": Variant(
        replace(_MNIST_SIZED, init="kaiming"),
        num_classes=10,
        summary="alexnet_mnist with He et al.'s 2015 initialisation in place of the paper's",
        notes=(
            "The layers of ``alexnet_mnist``; every weight N(0, 2 / fan_in) (He et al. 2015, "
            "kaiming normal), every bias 0, in place of the paper's N(0, 0.01) and biases of 1, "
            "under which this small network barely moves in a CPU minute (the paper trained "
            "for 90 passes of ImageNet)."
        ),
    ),
}


def paper_layer_names(layers: Sequence[tuple[str, str]]) -> list[str]:
    """Krizhevsky et al.'s conv1 … conv5, fc6 … fc8 (as Caffe names them); each ReLU, response
    normalisation and max-pool is a part of the layer it follows."""
    return sequential_names(layers, SequentialStyle())


register_variants("alexnet", AlexNet, VARIANTS, paper_layer_names)
