"""Load and provision data sets: MNIST (offline, byte-exact), the lab's readers, any ImageFolder.

Nothing here knows a model beyond the input shape ``(C, H, W)`` it is asked for. The training
loop calls :func:`load`; the bench calls :func:`provision_mnist`; users run
``python -m data fetch mnist [--root DIR]``.
"""

from __future__ import annotations

from . import errors
from .batches import Split, TensorSplit
from .errors import *  # noqa: F403  (every error, listed once in errors.__all__)
from .idx import read_idx, read_idx_pair, write_idx
from .imagefolder import IMAGE_EXTENSIONS, StreamingSplit, load_imagefolder
from .lab import DatasetMNIST, get_MNIST_test, get_MNIST_train
from .mnist import is_provisioned, mnist_dir, provision_mnist
from .normalise import MNIST_MEAN, MNIST_STD, Normalisation
from .root import data_root
from .splits import Splits, load, load_mnist

__all__ = [
    "load",
    "load_mnist",
    "load_imagefolder",
    "IMAGE_EXTENSIONS",
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
    *errors.__all__,
]
