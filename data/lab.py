"""The lab's MNIST readers and its ``DatasetMNIST`` exercise, kept with the lab's names.

Lab 3 ("Convolutional Neural Networks", sections 3 and 4.1) reads the IDX files by skipping the
16/8-byte headers in text mode; these read them through :func:`data.idx.read_idx`, which
validates magic, dimensions and length. Values are as the lab has them: float32 pixels 0..255
(the lab divides by 255 in its training loop) and int64 labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .idx import read_idx_pair
from .mnist import find_split_files, mnist_dir

__all__ = ["get_MNIST_train", "get_MNIST_test", "DatasetMNIST"]


def _lab_split(split: str, path: str | os.PathLike[str] | None) -> tuple[np.ndarray, np.ndarray]:
    directory = Path(path) if path is not None else mnist_dir()
    images, labels = find_split_files(directory, split)  # type: ignore[arg-type]
    x, y = read_idx_pair(images, labels)
    # (N, 28, 28) -> (N, 1, 28, 28), float32 0..255 and int64, as the lab returns them.
    return x.reshape(-1, 1, *x.shape[1:]).astype(np.float32), y.astype(np.int64)


def get_MNIST_train(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802
    """The lab's reader: MNIST train as ``(float32 [60000, 1, 28, 28] in 0..255, int64 [60000])``.

    ``path`` is the directory holding the IDX files (official or lab spelling, maybe ``.gz``);
    by default the provisioned ``<data root>/mnist``.
    """
    return _lab_split("train", path)


def get_MNIST_test(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802
    """The lab's reader: MNIST test as ``(float32 [10000, 1, 28, 28] in 0..255, int64 [10000])``."""
    return _lab_split("test", path)


class DatasetMNIST(Dataset):  # type: ignore[type-arg]
    """The lab's exercise 4.1: a per-sample ``Dataset`` over an IDX images/labels pair.

    ``ds[i]`` returns ``{'date': float32 [1, 28, 28], 'etichete': int64 scalar}``; ``i`` may be
    an int, a 0-d tensor, or a list / 1-d tensor of indices (then ``date`` is ``[B, 1, 28, 28]``).
    Built for teaching and ``DataLoader`` users; :class:`data.batches.TensorSplit` is the fast path.
    """

    def __init__(
        self, cale_catre_date: str | os.PathLike[str], cale_catre_etichete: str | os.PathLike[str]
    ) -> None:
        x, y = read_idx_pair(cale_catre_date, cale_catre_etichete)
        # Whole file in memory, once (the lab's hint: load everything in the constructor).
        self.date = torch.from_numpy(x.reshape(-1, 1, *x.shape[1:]).astype(np.float32))
        self.etichete = torch.from_numpy(y.astype(np.int64))

    def __len__(self) -> int:
        return int(self.etichete.shape[0])

    def __getitem__(self, idx: Any) -> dict[str, torch.Tensor]:
        if torch.is_tensor(idx):
            idx = idx.tolist()
        return {"date": self.date[idx], "etichete": self.etichete[idx]}
