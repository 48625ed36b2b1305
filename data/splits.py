"""One entry point for training loops: ``load(name_or_path, input_shape=...)`` → :class:`Splits`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .batches import Split, TensorSplit
from .idx import read_idx_pair
from .imagefolder import DEFAULT_CACHE_LIMIT_BYTES, BadFiles, load_imagefolder
from .mnist import FILES, is_provisioned, mnist_dir, provision_mnist
from .normalise import MNIST_MEAN, MNIST_STD, Normalisation
from .root import data_root

__all__ = ["Splits", "load", "load_mnist"]

log = logging.getLogger(__name__)

MNIST_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class Splits:
    """A data set's two splits, shaped for one model input.

    ``test`` is MNIST's official test set, or an ImageFolder's ``val/`` (or held-out fraction).
    """

    name: str
    train: Split
    test: Split
    input_shape: tuple[int, int, int]
    normalisation: Normalisation

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.train.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, index = label."""
        return self.train.class_names


def load_mnist(
    *,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    normalisation: str = "meanstd",
    root: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Splits:
    """MNIST from ``<data root>/mnist`` (provisioned first if missing) as two fast-path splits."""
    if not is_provisioned(root):
        log.info(
            "MNIST is not provisioned in %s; fetching it now (python -m data fetch mnist)",
            mnist_dir(root),
        )
        provision_mnist(root, progress=progress)
    directory = mnist_dir(root)
    norm = Normalisation.make(normalisation, (MNIST_MEAN,), (MNIST_STD,))

    def split(name: str) -> TensorSplit:
        x, y = read_idx_pair(
            directory / FILES[(name, "images")], directory / FILES[(name, "labels")]
        )
        images = torch.from_numpy(x).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28), uint8
        return TensorSplit(
            images,
            torch.from_numpy(y.astype("int64")),
            class_names=MNIST_CLASSES,
            input_shape=input_shape,
            normalisation=norm,
        )

    return Splits("mnist", split("train"), split("test"), tuple(input_shape), norm)  # type: ignore[arg-type]


def load(
    name_or_path: str | os.PathLike[str],
    *,
    input_shape: tuple[int, int, int],
    normalisation: str = "meanstd",
    val_fraction: float = 0.2,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
    num_workers: int | None = None,
    bad_files: BadFiles = "error",
    progress: bool | None = None,
) -> Splits:
    """Load ``"mnist"`` (provisioned on demand) or an ImageFolder path, shaped to ``input_shape``.

    ``input_shape`` is the model's ``(C, H, W)``; ``normalisation`` is ``"meanstd"`` or
    ``"lenet5_paper"``. ``val_fraction`` and ``seed`` split a single ImageFolder tree (ignored
    for MNIST and for ``train/`` + ``val/`` trees). ``root`` is the data root (provisioned data
    and the ImageFolder cache). Each split's ``batches(...)`` yields ``(x float32 [B, C, H, W],
    y int64 [B])``.
    """
    input_shape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    Normalisation.make(normalisation, (0.0,), (1.0,))  # reject an unknown name before any work
    if str(name_or_path).lower() == "mnist":
        return load_mnist(
            input_shape=input_shape, normalisation=normalisation, root=root, progress=progress
        )
    path = Path(name_or_path)
    train, val = load_imagefolder(
        path,
        input_shape=input_shape,
        normalisation=normalisation,
        val_fraction=val_fraction,
        seed=seed,
        cache_dir=data_root(root) / "cache",
        cache_limit_bytes=cache_limit_bytes,
        num_workers=num_workers,
        bad_files=bad_files,
    )
    return Splits(path.name or str(path), train, val, input_shape, train.normalisation)
