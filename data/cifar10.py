"""Provision CIFAR-10 into ``<data root>/cifar10``, recording which copy it is.

Sources (``../shared/DATA.md``):

* torchvision's own download of the official ``cifar-10-python.tar.gz`` (needs the internet):
  ``torchvision.datasets.utils.download_url`` with torchvision's published MD5, then as below.
* ``--from PATH``: the official python archive; an extracted ``cifar-10-batches-py/`` (or the
  torchvision root holding it); or an image-folder copy, ``train/<class>/<image>`` and
  ``test/<class>/<image>`` (``val/`` read as ``test/``), as a tree or a tarball.

The official python batches are pickles. They are unpickled only after their MD5s match
torchvision's published ones (the archive's, or each batch file's), and then by an unpickler
that admits only numpy's array constructors (:func:`data.mnist.restricted_loads`). They are
stored as four IDX files of uint8 (``[N, 3, 32, 32]`` images, ``[N]`` labels), so that loading
them is a read, not a decode. An image-folder copy is stored as its files, decoded once by
:mod:`data.imagefolder` into its uint8 tensor cache.

Every copy is built in a temporary folder beside the final one and renamed into place with its
record, ``copy.json``, last: a killed fetch leaves no ``cifar10/``, or the previous one. The
record names the copy (official, or an image-folder copy with the SHA-256 of its archive or of
its files) for result rows (:func:`cifar10_copy`), and holds the digest of every stored file: a
second fetch that finds them intact does nothing; a partial or corrupt copy is re-made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from torchvision.datasets import CIFAR10 as _TORCHVISION_CIFAR10
from tqdm import tqdm

from .errors import (
    ChecksumError,
    DataError,
    DownloadError,
    ImageFolderError,
    MissingDataError,
    UnsafePickleError,
)
from .idx import md5_of_file, read_idx, sha256_of_file, write_idx
from .imagefolder import IMAGE_EXTENSIONS, Tree, check_same_classes, scan_tree
from .mnist import restricted_loads
from .root import data_root

__all__ = [
    "CLASSES",
    "URL",
    "ARCHIVE",
    "BATCHES_DIR",
    "OFFICIAL_MD5",
    "KNOWN_COPIES",
    "RECORD",
    "IDX_FILES",
    "Cifar10Copy",
    "cifar10_dir",
    "cifar10_copy",
    "describe_cifar10",
    "provision_cifar10",
    "stored_trees",
    "stored_files",
    "stat_digest",
    "check_unchanged",
    "read_official",
]

log = logging.getLogger(__name__)

# torchvision's own facts about the official archive: the URL, the MD5s it checks.
URL: str = _TORCHVISION_CIFAR10.url
ARCHIVE: str = _TORCHVISION_CIFAR10.filename  # cifar-10-python.tar.gz
BATCHES_DIR: str = _TORCHVISION_CIFAR10.base_folder  # cifar-10-batches-py
TRAIN_BATCHES: tuple[str, ...] = tuple(name for name, _ in _TORCHVISION_CIFAR10.train_list)
TEST_BATCHES: tuple[str, ...] = tuple(name for name, _ in _TORCHVISION_CIFAR10.test_list)
META: str = _TORCHVISION_CIFAR10.meta["filename"]  # batches.meta
OFFICIAL_MD5: dict[str, str] = {
    ARCHIVE: _TORCHVISION_CIFAR10.tgz_md5,
    **dict(_TORCHVISION_CIFAR10.train_list),
    **dict(_TORCHVISION_CIFAR10.test_list),
    META: _TORCHVISION_CIFAR10.meta["md5"],
}
# The official label order (batches.meta's label_names), which is also sorted order: an image
# folder's sorted class folders give the same label numbers.
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
OFFICIAL_SIZES = {"train": 50_000, "test": 10_000}
# Copies whose archive we know, by SHA-256: a row then says what the copy is, not only its hash.
KNOWN_COPIES: dict[str, str] = {
    "3022f9fb17037334e5887995cfc2558435f731f5d6fe7263e287d1c177f28814": (
        "the official splits re-encoded as JPEG quality 75"
    ),
}
RECORD = "copy.json"
RECORD_FORMAT = 1
# The official batches, as stored: (split, what) -> file name.
IDX_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx4-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "test-images-idx4-ubyte",
    ("test", "labels"): "test-labels-idx1-ubyte",
}
_SPLIT_NAMES = {"train": "train", "test": "test", "val": "test"}  # an image folder's val/ is test
FETCH = "python -m data fetch cifar10"

Kind = Literal["official", "imagefolder"]


@dataclass(frozen=True)
class Cifar10Copy:
    """The copy of CIFAR-10 in a data root, as its record (``copy.json``) says."""

    directory: Path
    kind: Kind  # "official": the python batches, stored as IDX; "imagefolder": image files
    source: str  # where it came from: "torchvision download <url>", or the path given
    source_sha256: str | None  # the archive it came from, where it came from one file
    md5s: str | None  # official: "torchvision" (checked against torchvision's MD5s), or "custom"
    train: int  # images in each split
    test: int
    content_sha256: str  # over every stored file: its path and its SHA-256
    stat_sha256: str  # over every stored file: its path, size and modification time
    fresh: bool = False  # made by this call (provision_cifar10), not found in place

    def describe(self) -> str:
        """One line naming the copy, for result rows and the report."""
        if self.kind == "official":
            checked = (
                "MD5s as torchvision publishes"
                if self.md5s == "torchvision"
                else "MD5s checked against custom values, not the official ones"
            )
            text = f"official CIFAR-10 python batches ({checked})"
        else:
            name = Path(self.source).name
            if self.source_sha256 is not None:
                known = KNOWN_COPIES.get(self.source_sha256)
                text = f"CIFAR-10 image-folder copy {name}, sha256 {self.source_sha256}"
                text += f" ({known})" if known else ""
            else:
                text = f"CIFAR-10 image-folder copy, files' sha256 {self.content_sha256}"
        if (self.train, self.test) != (OFFICIAL_SIZES["train"], OFFICIAL_SIZES["test"]):
            text += f"; {self.train:,} train and {self.test:,} test images, not 50,000 and 10,000"
        return text

    def record(self) -> dict[str, Any]:
        """What ``copy.json`` holds."""
        return {
            "format": RECORD_FORMAT,
            "dataset": "cifar10",
            "kind": self.kind,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "md5s": self.md5s,
            "train": self.train,
            "test": self.test,
            "content_sha256": self.content_sha256,
            "stat_sha256": self.stat_sha256,
            "description": self.describe(),
        }


def cifar10_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where CIFAR-10 is provisioned: ``<data root>/cifar10``."""
    return data_root(root) / "cifar10"


def _read_record(directory: Path) -> Cifar10Copy | None:
    """The copy its record describes; None where there is no readable record."""
    try:
        saved = json.loads((directory / RECORD).read_text())
        if saved.get("format") != RECORD_FORMAT or saved.get("dataset") != "cifar10":
            return None
        return Cifar10Copy(
            directory=directory,
            kind=saved["kind"],
            source=saved["source"],
            source_sha256=saved["source_sha256"],
            md5s=saved["md5s"],
            train=int(saved["train"]),
            test=int(saved["test"]),
            content_sha256=saved["content_sha256"],
            stat_sha256=saved["stat_sha256"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(copy: Cifar10Copy) -> None:
    partial = copy.directory / f".{RECORD}.partial-{os.getpid()}"
    partial.write_text(json.dumps(copy.record(), indent=2) + "\n")
    os.replace(partial, copy.directory / RECORD)


def _not_provisioned(directory: Path) -> MissingDataError:
    return MissingDataError(
        f"CIFAR-10 is not provisioned in {directory}; run: {FETCH} (torchvision's download, "
        f"needs the internet) or {FETCH} --from PATH (the official cifar-10-python.tar.gz, "
        "cifar-10-batches-py/, or an image-folder copy, a tree or a tarball)"
    )


def cifar10_copy(root: str | os.PathLike[str] | None = None) -> Cifar10Copy:
    """The provisioned copy of CIFAR-10, as recorded (nothing is re-hashed here: a fetch checks
    every file, a load checks sizes and modification times). ``MissingDataError`` if none."""
    directory = cifar10_dir(root)
    copy = _read_record(directory)
    if copy is None:
        raise _not_provisioned(directory)
    return copy


def describe_cifar10(root: str | os.PathLike[str] | None = None) -> str:
    """One line naming the provisioned copy of CIFAR-10 (see :meth:`Cifar10Copy.describe`)."""
    return cifar10_copy(root).describe()


# ---- the stored files and their digests --------------------------------------------------------


def stored_trees(directory: Path) -> tuple[Tree, Tree]:
    """An image-folder copy's ``train/`` and ``test/`` trees, scanned; the same class folders
    in both, and they are CIFAR-10's ten (a one-line error otherwise)."""
    train, test = (scan_tree(directory / split) for split in ("train", "test"))
    _check_classes(train, test, str(directory))
    return train, test


def _check_classes(train: Tree, test: Tree, where: str) -> None:
    """The same class folders in both splits, and CIFAR-10's ten; ``where`` names the copy (its
    archive, or its folder) in the one-line error."""
    check_same_classes(train, test, f"train/ and {test.root.name}/ of {where}")
    if train.classes != CLASSES:
        raise ImageFolderError(
            f"{where} has class folders {', '.join(train.classes)}; CIFAR-10's are "
            f"{', '.join(CLASSES)}: for another data set pass its folder as --data PATH"
        )


def stored_files(directory: Path, kind: Kind) -> list[Path]:
    """Every file a copy of ``kind`` stores, in a fixed order."""
    if kind == "official":
        return [directory / name for name in IDX_FILES.values()]
    return [path for tree in stored_trees(directory) for path, _ in tree.samples]


def stat_digest(directory: Path, kind: Kind, trees: Iterable[Tree] | None = None) -> str:
    """SHA-256 over each stored file's path, size and modification time: a cheap check that
    nothing changed since the copy was made or last verified. An image-folder copy's is made
    of its scanned trees' :attr:`~data.imagefolder.Tree.stat_digest` (given, or scanned here),
    which the decoded-tensor cache keys by too: one stat per file serves both."""
    if kind != "official":
        found = tuple(trees) if trees is not None else stored_trees(directory)
        return hashlib.sha256("\n".join(t.stat_digest for t in found).encode()).hexdigest()
    h = hashlib.sha256()
    for path in stored_files(directory, kind):
        st = path.stat()
        h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _content_digest(directory: Path, files: Iterable[Path]) -> str:
    """SHA-256 over each file's path (relative to ``directory``) and the SHA-256 of its bytes."""
    lines = []
    for path in files:
        lines.append(f"{path.relative_to(directory).as_posix()}\0{sha256_of_file(path)}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def _intact(directory: Path) -> Cifar10Copy | None:
    """The copy in ``directory`` if its record is there and every stored file's content matches
    it (re-hashed: ~1 s for 60,000 JPEGs); None otherwise, with the reason logged."""
    copy = _read_record(directory)
    if copy is None:
        if directory.exists():
            log.warning("CIFAR-10 in %s has no complete record (%s)", directory, RECORD)
        return None
    try:
        trees = stored_trees(directory) if copy.kind == "imagefolder" else None
        files = (
            [path for tree in trees for path, _ in tree.samples]
            if trees is not None
            else stored_files(directory, copy.kind)
        )
        content = _content_digest(directory, files)
    except (DataError, OSError) as exc:
        log.warning("CIFAR-10 in %s is incomplete (%s)", directory, exc)
        return None
    if content != copy.content_sha256:
        log.warning(
            "CIFAR-10 in %s is partial or corrupted: its files do not match %s", directory, RECORD
        )
        return None
    stats = stat_digest(directory, copy.kind, trees)
    if stats != copy.stat_sha256:  # same content, touched or copied: note the new times
        copy = replace(copy, stat_sha256=stats)
        _write_record(copy)
    return copy


def check_unchanged(copy: Cifar10Copy, trees: Iterable[Tree] | None = None) -> Cifar10Copy:
    """Refuse a copy whose files changed since it was made (so that rows never name a copy
    other than the one used). Sizes and times first (``trees``: an image-folder copy's, already
    scanned); where only those differ (a copy made with ``cp -r``), the contents decide, and
    the record takes the new times."""
    if stat_digest(copy.directory, copy.kind, trees) == copy.stat_sha256:
        return copy
    log.info(
        "CIFAR-10 in %s: file times changed since provisioning; checking contents", copy.directory
    )
    verified = _intact(copy.directory)
    if verified is None:
        raise DataError(
            f"CIFAR-10 in {copy.directory} changed since it was provisioned (its files no longer "
            f"match {RECORD}); re-make it: {FETCH} --force [--from PATH]"
        )
    return verified


# ---- provisioning ------------------------------------------------------------------------------


def provision_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    from_path: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    md5s: Mapping[str, str] = OFFICIAL_MD5,
    force: bool = False,
    progress: bool | None = None,
) -> Cifar10Copy:
    """Make sure ``<root>/cifar10`` holds a checked copy of CIFAR-10; return it.

    Without ``from_path``, torchvision's download of the official archive. An intact copy is
    kept (nothing is done: ``fresh`` is False) unless ``force``, or unless ``from_path`` names
    another source than the one it was made from (another archive, by SHA-256, or another
    folder). ``sha256``: the SHA-256 ``from_path`` (a file) must have. ``md5s`` defaults to
    torchvision's published MD5s of the archive and each batch file (tests inject others).
    """
    directory = cifar10_dir(root)
    show = sys.stderr.isatty() if progress is None else progress
    source = Path(from_path).expanduser() if from_path is not None else None
    if source is not None and not source.exists():
        raise MissingDataError(
            f"--from {source} does not exist; give the official {ARCHIVE}, a {BATCHES_DIR}/ "
            "folder, or an image-folder copy (a tree or a tarball)"
        )
    source_sha256 = sha256_of_file(source) if source is not None and source.is_file() else None
    if sha256 is not None:
        if source_sha256 is None:
            raise DataError(
                "--sha256 checks an archive: give --from the archive file, not a folder"
            )
        if source_sha256 != sha256.lower():
            raise ChecksumError(
                f"{source} has SHA-256 {source_sha256}, expected {sha256.lower()}; it is not "
                "the copy you meant: fetch it again"
            )
    if not force and directory.exists():
        current = _intact(directory)
        if current is not None and _same_source(current, source, source_sha256):
            log.debug(
                "CIFAR-10 already provisioned in %s (%s); nothing to do",
                directory,
                current.describe(),
            )
            return current
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    partial = directory.parent / f".cifar10.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        if source is None:
            copy = _from_torchvision(partial, md5s, show)
        else:
            copy = _import(source, source_sha256, partial, md5s, show)
        _write_record(copy)
        _swap_in(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    copy = replace(copy, directory=directory, fresh=True)
    log.debug("CIFAR-10 provisioned in %s: %s", directory, copy.describe())
    return copy


def _same_source(current: Cifar10Copy, source: Path | None, source_sha256: str | None) -> bool:
    """Whether a fetch from ``source`` would make the copy already there (None: any copy)."""
    if source is None:
        return True
    if source_sha256 is not None:
        return current.source_sha256 == source_sha256
    return current.source_sha256 is None and current.source == str(source.resolve())


def _remove_leftovers(directory: Path) -> None:
    """Folders a killed fetch left beside ``directory`` (never read: the record is last)."""
    for stale in directory.parent.glob(".cifar10.*-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _swap_in(partial: Path, directory: Path) -> None:
    """Replace ``directory`` by ``partial`` with renames: at any moment the final name holds
    the old complete copy, nothing, or the new complete copy."""
    old = directory.parent / f".cifar10.old-{os.getpid()}"
    if directory.exists():
        os.replace(directory, old)
    os.replace(partial, directory)
    shutil.rmtree(old, ignore_errors=True)


def _from_torchvision(partial: Path, md5s: Mapping[str, str], show: bool) -> Cifar10Copy:
    """torchvision's download of the official archive (its MD5 checked by torchvision), then
    imported as ``--from`` would import it; the archive is not kept."""
    from torchvision.datasets import utils as tv_utils

    download = partial / ".download"
    log.info("downloading %s with torchvision (163 MB)", URL)
    try:
        tv_utils.download_url(URL, str(download), filename=ARCHIVE, md5=md5s[ARCHIVE])
    except Exception as exc:  # URLError, HTTPError, OSError, RuntimeError (MD5 mismatch), ...
        first = (str(exc).splitlines() or [""])[0]
        raise DownloadError(
            f"torchvision's download of {URL} failed ({type(exc).__name__}: {first}); without "
            f"the internet get {ARCHIVE} or an image-folder copy elsewhere and run: {FETCH} "
            "--from PATH"
        ) from exc
    archive = download / ARCHIVE
    copy = _import(archive, sha256_of_file(archive), partial, md5s, show)
    shutil.rmtree(download, ignore_errors=True)
    return replace(copy, source=f"torchvision download {URL}")


def _import(
    source: Path, source_sha256: str | None, partial: Path, md5s: Mapping[str, str], show: bool
) -> Cifar10Copy:
    """Write the copy ``source`` holds into ``partial`` (its record not yet written)."""
    if source.is_file():
        return _import_archive(source, source_sha256, partial, md5s, show)
    batches = next(
        (d for d in (source, source / BATCHES_DIR) if (d / TRAIN_BATCHES[0]).is_file()), None
    )
    if batches is not None:
        blobs = {}
        for name in (*TRAIN_BATCHES, *TEST_BATCHES, META):
            path = batches / name
            if not path.is_file():
                raise MissingDataError(
                    f"{batches} has no {name}; an extracted {BATCHES_DIR}/ holds "
                    f"{', '.join((*TRAIN_BATCHES, *TEST_BATCHES, META))}"
                )
            blobs[name] = path.read_bytes()
            _check_md5(blobs[name], md5s[name], path)
        return _write_official(blobs, partial, str(source.resolve()), None, md5s, show)
    if (source / ARCHIVE).is_file():  # a torchvision root that kept only the archive
        archive = source / ARCHIVE
        return _import_archive(archive, sha256_of_file(archive), partial, md5s, show)
    if (source / "train").is_dir() and any((source / s).is_dir() for s in ("test", "val")):
        test_name = next(s for s in ("test", "val") if (source / s).is_dir())
        # Scanned and checked before anything is copied: a bad tree fails at once.
        train, test = scan_tree(source / "train"), scan_tree(source / test_name)
        _check_classes(train, test, str(source))
        _write_files(_tree_files({"train": train, "test": test}), partial, show)
        return _imagefolder_copy(partial, str(source.resolve()), None)
    raise MissingDataError(
        f"no CIFAR-10 in {source}: expected {ARCHIVE}, a {BATCHES_DIR}/ folder (data_batch_1..5, "
        "test_batch, batches.meta), or an image folder with train/<class>/ and test/<class>/"
    )


def _check_md5(blob: bytes, expected: str, what: Path | str) -> None:
    got = hashlib.md5(blob).hexdigest()
    if got != expected:
        raise ChecksumError(
            f"{what} has MD5 {got}, expected {expected} (torchvision's published MD5); it is "
            "not the official file, so it is not unpickled: download it again, or use an "
            "image-folder copy"
        )


def _import_archive(
    archive: Path, source_sha256: str | None, partial: Path, md5s: Mapping[str, str], show: bool
) -> Cifar10Copy:
    """A tarball: the official python archive (MD5 checked before any member is read), or an
    image-folder copy (its image members written out, nothing else)."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(
            f"{archive} is not a readable tar archive ({type(exc).__name__}); give the official "
            f"{ARCHIVE} or an image-folder copy as .tar/.tar.gz, or a folder"
        ) from exc
    with tar:
        try:
            first = tar.next()
            official = first is not None and _posix(first.name).parts[:1] == (BATCHES_DIR,)
            if official:
                md5 = md5_of_file(archive)
                if md5 != md5s[ARCHIVE]:
                    raise ChecksumError(
                        f"{archive} has MD5 {md5}, expected {md5s[ARCHIVE]} (torchvision's "
                        f"published MD5 of {ARCHIVE}); it is not the official archive, so it "
                        "is not unpickled: download it again"
                    )
                blobs = _batch_members(tar, first, archive)
                for name, blob in blobs.items():
                    _check_md5(blob, md5s[name], f"{archive}:{BATCHES_DIR}/{name}")
                return _write_official(
                    blobs, partial, str(archive.resolve()), source_sha256, md5s, show
                )
            _write_files(_image_members(tar, first, archive), partial, show)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(
                f"{archive} is truncated or corrupt ({type(exc).__name__}: {exc}); fetch it again"
            ) from exc
    return _imagefolder_copy(partial, str(archive.resolve()), source_sha256)


def _posix(name: str) -> PurePosixPath:
    return PurePosixPath(name)  # "./train/x" has the parts ("train", "x")


def _members(tar: tarfile.TarFile, first: tarfile.TarInfo | None) -> Iterator[tarfile.TarInfo]:
    """Every member of a tar read as a stream (a .tar.gz is decompressed once)."""
    member = first
    while member is not None:
        yield member
        member = tar.next()


def _batch_members(tar: tarfile.TarFile, first: tarfile.TarInfo, archive: Path) -> dict[str, bytes]:
    wanted = {*TRAIN_BATCHES, *TEST_BATCHES, META}
    blobs: dict[str, bytes] = {}
    for member in _members(tar, first):
        parts = _posix(member.name).parts
        if member.isfile() and len(parts) == 2 and parts[1] in wanted:
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file
            blobs[parts[1]] = handle.read()
    missing = sorted(wanted - set(blobs))
    if missing:
        raise MissingDataError(
            f"{archive} has no {BATCHES_DIR}/{missing[0]}; it is not the complete official "
            f"archive: download it again"
        )
    return blobs


def _safe_parts(parts: tuple[str, ...]) -> bool:
    """No absolute, parent, hidden or backslashed part: a member's path is rebuilt from these."""
    return all(p and not p.startswith(".") and "/" not in p and "\\" not in p for p in parts)


def _image_members(
    tar: tarfile.TarFile, first: tarfile.TarInfo | None, archive: Path
) -> Iterator[tuple[str, bytes]]:
    """``(split/class/name, bytes)`` of each image member ``[top/]split/class/name``; anything
    else (a README, folders) is skipped, and no member is written where its name says: the
    path is rebuilt from checked parts, so ``..`` or a link cannot escape the copy."""
    for member in _members(tar, first):
        parts = _posix(member.name).parts
        if not member.isfile() or not _safe_parts(parts):
            continue
        if len(parts) == 4:  # one top folder around the splits
            parts = parts[1:]
        if len(parts) != 3 or parts[0] not in _SPLIT_NAMES:
            continue
        split, name, filename = parts
        if not filename.lower().endswith(IMAGE_EXTENSIONS):
            raise ImageFolderError(
                f"{archive} holds {member.name}, not an image; an image-folder copy holds only "
                "images under train/<class>/ and test/<class>/"
            )
        handle = tar.extractfile(member)
        assert handle is not None
        yield f"{_SPLIT_NAMES[split]}/{name}/{filename}", handle.read()


def _tree_files(trees: Mapping[str, Tree]) -> Iterator[tuple[str, bytes]]:
    """``(split/class/name, bytes)`` of each image of an image-folder tree's splits, scanned
    (a non-image file was refused by :func:`data.imagefolder.scan_tree`, hidden ones skipped)."""
    for split, tree in trees.items():
        for path, label in tree.samples:
            relative = path.relative_to(tree.root)
            if len(relative.parts) != 2:
                raise ImageFolderError(
                    f"{path} is in a sub-folder of its class folder; a CIFAR-10 copy holds "
                    f"{split}/<class>/<image> only"
                )
            yield f"{split}/{tree.classes[label]}/{relative.name}", path.read_bytes()


def _write_files(files: Iterable[tuple[str, bytes]], partial: Path, show: bool) -> None:
    with tqdm(
        desc="writing CIFAR-10 images", unit="file", file=sys.stderr, disable=not show
    ) as bar:
        for relative, blob in files:
            path = partial / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            bar.update(1)


def _imagefolder_copy(partial: Path, source: str, source_sha256: str | None) -> Cifar10Copy:
    """Check the image folder written into ``partial`` and describe it."""
    if not (partial / "train").is_dir() or not (partial / "test").is_dir():
        raise ImageFolderError(
            f"{source} holds no train/<class>/<image> and test/<class>/<image> images; an "
            "image-folder copy of CIFAR-10 needs both splits"
        )
    train, test = (scan_tree(partial / split) for split in ("train", "test"))
    _check_classes(train, test, source)
    files = [path for tree in (train, test) for path, _ in tree.samples]
    return Cifar10Copy(
        directory=partial,
        kind="imagefolder",
        source=source,
        source_sha256=source_sha256,
        md5s=None,
        train=len(train.samples),
        test=len(test.samples),
        content_sha256=_content_digest(partial, files),
        stat_sha256=stat_digest(partial, "imagefolder", (train, test)),
    )


def _batch_arrays(blob: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One python batch (MD5 already checked) → uint8 images ``[N, 3, 32, 32]``, labels ``[N]``."""
    what = f"CIFAR-10 batch {name}"
    obj = restricted_loads(blob, what=what, expected="an official CIFAR-10 python batch")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in dict(obj).items()}
    data, labels = entry.get("data"), entry.get("labels")
    if not (isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 3 * 32 * 32):
        raise UnsafePickleError(f"{what} holds no data array [N, 3072]; it is not a CIFAR batch")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise UnsafePickleError(f"{what} holds labels that do not fit its images (0..9, one each)")
    # Each row is 1024 red, 1024 green then 1024 blue values, row-major: already C, H, W.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def _write_official(
    blobs: Mapping[str, bytes],
    partial: Path,
    source: str,
    source_sha256: str | None,
    md5s: Mapping[str, str],
    show: bool,
) -> Cifar10Copy:
    """The python batches (MD5s checked) → four IDX files in ``partial``."""
    meta = restricted_loads(blobs[META], what=f"CIFAR-10 {META}", expected="the official meta")
    names = dict(meta).get("label_names") if isinstance(meta, dict) else None
    if tuple(names or ()) != CLASSES:
        raise UnsafePickleError(
            f"CIFAR-10 {META} names classes {names}, not CIFAR-10's {', '.join(CLASSES)}"
        )
    counts = {}
    with tqdm(total=4, desc="writing CIFAR-10 IDX", file=sys.stderr, disable=not show) as bar:
        for split, batches in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
            parts = [_batch_arrays(blobs[name], name) for name in batches]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            write_idx(partial / IDX_FILES[(split, "images")], images)
            write_idx(partial / IDX_FILES[(split, "labels")], labels)
            counts[split] = len(labels)
            bar.update(2)
    files = [partial / name for name in IDX_FILES.values()]
    return Cifar10Copy(
        directory=partial,
        kind="official",
        source=source,
        source_sha256=source_sha256,
        md5s="torchvision" if dict(md5s) == OFFICIAL_MD5 else "custom",
        train=counts["train"],
        test=counts["test"],
        content_sha256=_content_digest(partial, files),
        stat_sha256=stat_digest(partial, "official"),
    )


def read_official(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A stored official split: uint8 images ``[N, 3, 32, 32]`` and labels ``[N]``."""
    images = read_idx(directory / IDX_FILES[(split, "images")])
    labels = read_idx(directory / IDX_FILES[(split, "labels")], kind="labels")
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
        raise DataError(
            f"CIFAR-10 {split} files in {directory} do not hold [N, 3, 32, 32] images and N "
            f"labels; re-make them: {FETCH} --force [--from PATH]"
        )
    return images, labels
