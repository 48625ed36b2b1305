"""Errors raised by :mod:`data`: each message is one line naming the problem and the fix.

Every error is a :class:`DataError`, itself a :class:`ValueError`, so callers that only know the
standard exceptions still catch them; the CLI turns each into ``error: <message>`` and exit 2.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "MissingDataError",
    "IdxFormatError",
    "ChecksumError",
    "UnsafePickleError",
    "ImageFolderError",
    "DownloadError",
]


class DataError(ValueError):
    """A data set problem the user can fix; the message is one line: problem, then fix."""

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it after "error: " and logs stay greppable.
        super().__init__(" ".join(message.split()))


class MissingDataError(DataError, FileNotFoundError):
    """A data root, directory or file that should exist does not."""


class IdxFormatError(DataError):
    """An IDX file whose header or length is not what the format (or its pair) requires."""


class ChecksumError(DataError):
    """A file whose SHA-256 or MD5 differs from the published one."""


class UnsafePickleError(DataError):
    """A pickle that references anything beyond what numpy arrays need, or holds the wrong data."""


class ImageFolderError(DataError):
    """An ImageFolder tree that torchvision's layout rules (or ours) do not accept."""


class DownloadError(DataError):
    """A download that failed: the message says what was tried and the offline alternative."""
