"""One entry point for training loops: ``load(name_or_path, input_shape=...)`` → :class:`Splits`.

``"mnist"`` and ``"cifar10"`` name provisioned data sets (``python -m data fetch NAME``); any
other name is an ImageFolder path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cifar10
from .batches import Split, TensorSplit
from .idx import read_idx_pair
from .imagefolder import (
    DEFAULT_CACHE_LIMIT_BYTES,
    BadFiles,
    _Layout,
    _load_layout,
    _stats_from_tensor,
    load_imagefolder,
)
from .mnist import FILES, is_provisioned, mnist_dir, provision_mnist
from .normalise import MNIST_MEAN, MNIST_STD, Normalisation
from .root import data_root

__all__ = ["Splits", "load", "load_mnist", "load_cifar10", "MNIST_SOURCE"]

log = logging.getLogger(__name__)

MNIST_CLASSES = tuple(str(d) for d in range(10))
# What a row says of the MNIST it trained on: load_mnist reads only files whose MD5s match.
MNIST_SOURCE = "official MNIST IDX files (MD5s match)"


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
    # Which copy of a provisioned data set this is, in one line (None: an ImageFolder path,
    # named by its path). CIFAR-10: official, or an image-folder copy with its SHA-256.
    source: str | None = None

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

    shape = tuple(input_shape)
    return Splits("mnist", split("train"), split("test"), shape, norm, MNIST_SOURCE)  # type: ignore[arg-type]


def load_cifar10(
    *,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    normalisation: str = "meanstd",
    root: str | os.PathLike[str] | None = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
    num_workers: int | None = None,
    bad_files: BadFiles = "error",
) -> Splits:
    """CIFAR-10 from ``<data root>/cifar10`` (``python -m data fetch cifar10`` provisions it;
    a one-line ``MissingDataError`` names that command where it has not).

    The official copy's IDX files are read as they are (uint8, no decoding); an image-folder
    copy is decoded once into :mod:`data.imagefolder`'s tensor cache, keyed by every file's
    size and modification time, and read from it afterwards. Either way the files are first
    checked against the copy's record (the same sizes and times, else the same contents), so
    the ``source`` a row names is the copy used. ``meanstd`` statistics: the train split's.
    """
    directory = cifar10.cifar10_dir(root)
    copy = cifar10.cifar10_copy(root)
    if copy.kind == "official":
        copy = cifar10.check_unchanged(copy)
        arrays = {split: cifar10.read_official(directory, split) for split in ("train", "test")}
        train_images = torch.from_numpy(arrays["train"][0])
        mean, std = _stats_from_tensor(train_images) if normalisation == "meanstd" else ((), ())
        norm = Normalisation.make(normalisation, mean, std)
        train, test = (
            TensorSplit(
                torch.from_numpy(images),
                torch.from_numpy(labels.astype("int64")),
                class_names=cifar10.CLASSES,
                input_shape=input_shape,
                normalisation=norm,
            )
            for images, labels in arrays.values()
        )
    else:
        trees = cifar10.stored_trees(directory)  # scanned once: the check and the cache share it
        copy = cifar10.check_unchanged(copy, trees)
        train, test = _load_layout(
            directory,
            _Layout(trees),
            input_shape=input_shape,
            normalisation=normalisation,
            seed=0,
            cache_dir=data_root(root) / "cache",
            cache_limit_bytes=cache_limit_bytes,
            num_workers=num_workers,
            bad_files=bad_files,
        )
        norm = train.normalisation
    return Splits("cifar10", train, test, tuple(input_shape), norm, copy.describe())  # type: ignore[arg-type]


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
    """Load ``"mnist"`` (provisioned on demand), ``"cifar10"`` (provisioned by ``python -m data
    fetch cifar10``) or an ImageFolder path, shaped to ``input_shape``.

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
    if str(name_or_path).lower() == "cifar10":
        return load_cifar10(
            input_shape=input_shape,
            normalisation=normalisation,
            root=root,
            cache_limit_bytes=cache_limit_bytes,
            num_workers=num_workers,
            bad_files=bad_files,
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
