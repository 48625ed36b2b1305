"""Load and provision data sets: MNIST (offline, byte-exact), CIFAR-10 (official or an image-folder
copy, recorded), the lab's readers, any ImageFolder; batch augmentation for training.

Nothing here knows a model beyond the input shape ``(C, H, W)`` it is asked for. The training
loop calls :func:`load` and :func:`augment_batch`; the bench calls :func:`provision_mnist`;
users run ``python -m data fetch mnist|cifar10 [--root DIR] [--from PATH]``.
"""

from __future__ import annotations

from . import errors
from .augment import AUGMENTS, augment_batch, crop_flip, draw_crop_flip
from .batches import Split, TensorSplit
from .cifar10 import Cifar10Copy, cifar10_copy, cifar10_dir, describe_cifar10, provision_cifar10
from .errors import *  # noqa: F403  (every error, listed once in errors.__all__)
from .idx import read_idx, read_idx_pair, write_idx
from .imagefolder import IMAGE_EXTENSIONS, StreamingSplit, load_imagefolder
from .lab import DatasetMNIST, get_MNIST_test, get_MNIST_train
from .mnist import is_provisioned, mnist_dir, provision_mnist
from .normalise import MNIST_MEAN, MNIST_STD, Normalisation
from .root import data_root
from .splits import Splits, load, load_cifar10, load_mnist

__all__ = [
    "load",
    "load_mnist",
    "load_cifar10",
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
    "provision_cifar10",
    "cifar10_copy",
    "describe_cifar10",
    "cifar10_dir",
    "Cifar10Copy",
    "AUGMENTS",
    "augment_batch",
    "crop_flip",
    "draw_crop_flip",
    "data_root",
    "read_idx",
    "read_idx_pair",
    "write_idx",
    "get_MNIST_train",
    "get_MNIST_test",
    "DatasetMNIST",
    *errors.__all__,
]
