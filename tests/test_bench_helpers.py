"""Small models and a fake machine shared by the bench tests (imported by the other files)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from bench.measure.machine import Machine
from zoo.registry import _REGISTRY, ModelCard

FAKE_MACHINE = Machine(
    cpu_model="test cpu",
    cpu_flags=("avx2",),
    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    threads=1,
    torch_version=torch.__version__,
    torchvision_version="test",
    git_commit="test",
    hostname="test",
    peak_gflops={"fp32_matmul": 1.0, "bf16_matmul": 1.0},
)


class TinyNet(nn.Module):
    """conv 3→4 (3×3, pad 1) → ReLU → global average pool → linear 4→3, for 3×8×8 inputs."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # (B, 4, 8, 8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)  # (B, 4, 1, 1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class Broken(nn.Module):
    """Builds fine, raises in forward: a model error must become an error row."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model always fails\nsecond line")


def card(name: str, builder: type[nn.Module], shape: tuple[int, int, int] = (3, 8, 8)) -> ModelCard:
    return ModelCard(
        name=name, family="test", builder=builder, input_shape=shape, num_classes=3,
        summary=f"test model {name}",
    )  # fmt: skip


def register_test_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register tiny_net and broken_net in the zoo's registry for one test."""
    monkeypatch.setitem(_REGISTRY, "tiny_net", card("tiny_net", TinyNet))
    monkeypatch.setitem(_REGISTRY, "broken_net", card("broken_net", Broken))
    assert "tiny_net" in zoo.list_models("tiny*")


def test_tiny_net_runs() -> None:
    assert TinyNet()(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_the_conv_peak_is_measured_on_this_machine() -> None:
    from bench.measure.machine import conv3x3_gflops

    assert conv3x3_gflops("cpu", seconds=0.05) > 0
