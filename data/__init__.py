"""Load and provision data sets: MNIST (offline, byte-exact), the lab's readers, any ImageFolder.

Nothing here knows a model beyond the input shape ``(C, H, W)`` it is asked for. The training
loop calls :func:`load`; the bench calls :func:`provision_mnist`; users run
``python -m data fetch mnist [--root DIR]``.
"""

from __future__ import annotations

from .batches import Split, TensorSplit
from .errors import (
    ChecksumError,
    DataError,
    DownloadError,
    IdxFormatError,
    ImageFolderError,
    MissingDataError,
    UnsafePickleError,
)
from .idx import read_idx, read_idx_pair, write_idx
from .imagefolder import StreamingSplit, load_imagefolder
from .lab import DatasetMNIST, get_MNIST_test, get_MNIST_train
from .mnist import is_provisioned, mnist_dir, provision_mnist
from .normalise import MNIST_MEAN, MNIST_STD, Normalisation
from .root import data_root
from .splits import Splits, load, load_mnist

__all__ = [
    "load",
    "load_mnist",
    "load_imagefolder",
    "Splits",
    "Split",
    "TensorSplit",
    "StreamingSplit",
    "Normalisation",
    "MNIST_MEAN",
    "MNIST_STD",
    "provision_mnist",
    "is_provisioned",
    "mnist_dir",
    "data_root",
    "read_idx",
    "read_idx_pair",
    "write_idx",
    "get_MNIST_train",
    "get_MNIST_test",
    "DatasetMNIST",
    "DataError",
    "MissingDataError",
    "IdxFormatError",
    "ChecksumError",
    "UnsafePickleError",
    "ImageFolderError",
    "DownloadError",
]
