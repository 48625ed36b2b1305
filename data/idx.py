"""Read and write IDX files (the format MNIST is published in), validating what the lab skipped.

Format (Y. LeCun, http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a
type code (0x08 = unsigned byte, the only one MNIST uses), the number of dimensions, then one
4-byte count per dimension; the data follow, row-major. MNIST images have magic 2051
(0x00000803: uint8, 3 dims: count, 28, 28); labels have magic 2049 (0x00000801: uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from .errors import IdxFormatError, MissingDataError

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "read_idx",
    "read_idx_pair",
    "idx_bytes",
    "write_idx",
    "md5_of_file",
    "sha256_of_file",
]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_UBYTE = 0x08
_KIND_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}


def _open(path: Path) -> BinaryIO:
    # Official downloads are gzipped; torchvision keeps both forms.
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_header(
    head: bytes, path: Path, kind: Literal["images", "labels"] | None
) -> tuple[int, ...]:
    if len(head) < 4:
        raise IdxFormatError(
            f"{path} is {len(head)} bytes, too short for an IDX header; re-fetch it"
        )
    zero, dtype, ndim = struct.unpack(">HBB", head[:4])
    magic = struct.unpack(">I", head[:4])[0]
    if zero != 0 or dtype != _UBYTE or ndim == 0:
        expected = f" (expected {_KIND_MAGIC[kind]} for {kind})" if kind else ""
        raise IdxFormatError(
            f"{path} has magic number {magic}, not an unsigned-byte IDX file{expected}; "
            f"check that the path names an MNIST IDX file (gunzip it if it is gzipped without .gz)"
        )
    if kind is not None and magic != _KIND_MAGIC[kind]:
        raise IdxFormatError(
            f"{path} has magic number {magic}, expected {_KIND_MAGIC[kind]} for {kind}; "
            f"images and labels files may be swapped"
        )
    need = 4 + 4 * ndim
    if len(head) < need:
        raise IdxFormatError(
            f"{path} is truncated inside its header ({len(head)} of {need} bytes); re-fetch it"
        )
    return struct.unpack(f">{ndim}I", head[4:need])


def idx_bytes(
    data: bytes | bytearray,
    *,
    path: str | os.PathLike[str] = "<bytes>",
    kind: Literal["images", "labels"] | None = None,
) -> np.ndarray:
    """Parse a whole IDX file held in memory; the array is a view of ``data``."""
    path = Path(path)
    dims = _parse_header(data[: 4 + 4 * 255], path, kind)
    offset = 4 + 4 * len(dims)
    _check_length(path, len(data), offset, dims)
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _check_length(path: Path, size: int, offset: int, dims: tuple[int, ...]) -> None:
    expected = offset + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        shape = "x".join(str(d) for d in dims)
        raise IdxFormatError(
            f"{path} is {what}: {size} bytes, header says {shape} = {expected} bytes; "
            f"delete it and fetch again (python -m data fetch mnist)"
        )


def read_idx(
    path: str | os.PathLike[str], *, kind: Literal["images", "labels"] | None = None
) -> np.ndarray:
    """Read one IDX file (``.gz`` is gunzipped) into a uint8 array shaped as its header says.

    ``kind`` checks the magic number (2051 images, 2049 labels). The file length must equal the
    header plus the product of its dimensions: a truncated or padded file is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"IDX file {path} does not exist; provision MNIST with: python -m data fetch mnist"
        )
    if path.suffix == ".gz":
        with _open(path) as f:
            # bytearray: a writable buffer, so torch.from_numpy on the result does not warn.
            return idx_bytes(bytearray(f.read()), path=path, kind=kind)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * 255)
        dims = _parse_header(head, path, kind)
        offset = 4 + 4 * len(dims)
        _check_length(path, size, offset, dims)
        f.seek(offset)
        # Binary read with numpy (the lab opened these in text mode with latin-1).
        data = np.fromfile(f, dtype=np.uint8)
    return data.reshape(dims)


def read_idx_pair(
    images: str | os.PathLike[str], labels: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file; their counts must agree.

    Returns ``images`` uint8 ``[N, H, W]`` and ``labels`` uint8 ``[N]``.
    """
    x = read_idx(images, kind="images")
    y = read_idx(labels, kind="labels")
    if x.shape[0] != y.shape[0]:
        raise IdxFormatError(
            f"count mismatch: {images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} "
            "labels; "
            f"the two files come from different splits, fetch them again"
        )
    return x, y


def header_for(array: np.ndarray) -> bytes:
    """The IDX header of a uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(
            f"IDX writing supports uint8 only, got {array.dtype}; convert with .astype(np.uint8)"
        )
    return struct.pack(">HBB", 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> str:
    """Write ``array`` (uint8) as an IDX file at ``path`` and return the file's MD5 (hex)."""
    path = Path(path)
    md5 = hashlib.md5()
    head = header_for(array)
    body = np.ascontiguousarray(array).tobytes()
    with open(path, "wb") as f:
        for part in (head, body):
            f.write(part)
            md5.update(part)
    return md5.hexdigest()


def md5_of_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """MD5 (hex) of a file's bytes, read in chunks."""
    return _digest_of_file(hashlib.md5(), path, chunk)


def sha256_of_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    return _digest_of_file(hashlib.sha256(), path, chunk)


def _digest_of_file(h: Any, path: str | os.PathLike[str], chunk: int) -> str:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
