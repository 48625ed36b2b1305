"""Any ImageFolder tree, checked, converted to a model's input, cached when small.

Layout, as ``torchvision.datasets.ImageFolder`` reads it: ``root/<class>/<image>`` (images may
sit in sub-folders of a class folder; class order is sorted folder names). Either ``root`` holds
a ``train/`` and a ``val/`` (or ``test/``) tree with the same classes, or ``root`` is one tree,
split per class by a seeded ``val_fraction``.

Decoding: PIL opens each file, converts it to the model's channels (``"L"`` or ``"RGB"``) and
fits it to the model's height and width (pad when at most ``PAD_AT_MOST`` pixels smaller, else
resize, as :mod:`data.normalise` does for MNIST). Trees whose decoded size (images × C × H × W
bytes) is at most ``cache_limit_bytes`` are decoded once, kept as one uint8 tensor (the fast
path) and saved under ``<data root>/cache/imagefolder/`` so later runs skip decoding; larger trees
stream through a ``DataLoader`` with worker processes. A cache file is keyed by every file's path,
class, size and modification time (a changed tree gets another key, never the stale tensor) and
checked when read (shape, count, labels): a torn or foreign one is decoded again.

Bad files: hidden files (``.DS_Store``) are ignored. A file without an image extension, or one
PIL cannot decode, is an error naming the file with ``bad_files="error"`` (the default), or is
skipped with a logged warning naming it with ``bad_files="skip"``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.datasets.folder import IMG_EXTENSIONS

from .batches import Batch, Epoch, Split, TensorSplit, shard_order
from .errors import ImageFolderError, MissingDataError
from .normalise import PAD_AT_MOST, Normalisation, prepare_batch

__all__ = [
    "IMAGE_EXTENSIONS",
    "check_same_classes",
    "BadFiles",
    "DEFAULT_CACHE_LIMIT_BYTES",
    "default_workers",
    "Tree",
    "scan_tree",
    "decode_image",
    "StreamingSplit",
    "load_imagefolder",
]

log = logging.getLogger(__name__)

# What counts as an image: torchvision's list (".jpg", ".png", ...), so ImageFolder agrees.
IMAGE_EXTENSIONS: tuple[str, ...] = IMG_EXTENSIONS

BadFiles = Literal["error", "skip"]
DEFAULT_CACHE_LIMIT_BYTES = 512 * 2**20  # decoded uint8 bytes: 60,000 × 3×32×32 is 177 MiB
STATS_SAMPLE = 2000  # images a streamed tree's mean/std are estimated from (seeded sample)
_PAIR_NAMES = (("train", "val"), ("train", "test"))
SKIP_HINT = "skip such files (--skip-bad-files; bad_files='skip' from Python)"


@dataclass(frozen=True)
class Tree:
    """A scanned ``root/<class>/<image>`` tree: sorted class names and (path, class index)."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    @functools.cached_property
    def stat_digest(self) -> str:
        """SHA-256 of every sample's path (relative to the root), class, size and modification
        time: what the decoded-tensor cache is keyed by, so that a changed, added or removed
        file gives another key. Computed once per scan (a stat per file: 60,000 cost ~0.4 s)."""
        h = hashlib.sha256()
        for path, label in self.samples:
            st = path.stat()
            h.update(
                f"{path.relative_to(self.root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
            )
        return h.hexdigest()


def scan_tree(root: str | os.PathLike[str], *, bad_files: BadFiles = "error") -> Tree:
    """Scan ``root/<class>/<image>``; refuse a missing root, no classes, an empty class or a
    non-image."""
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(
            f"ImageFolder root {root} does not exist or is not a directory; pass the folder "
            "holding one folder per class"
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ImageFolderError(
            f"ImageFolder root {root} has no class folders; expected {root}/<class>/<image>.png"
        )
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                if not filename.lower().endswith(IMAGE_EXTENSIONS):
                    _bad_file(path, "has no image extension", bad_files)
                    continue
                samples.append((path, index))
                found += 1
        if found == 0:
            raise ImageFolderError(
                f"class folder {root / name} holds no images; add images to it or remove the folder"
            )
    return Tree(root, tuple(classes), tuple(samples))


def _bad_file(path: Path, why: str, bad_files: BadFiles) -> None:
    if bad_files == "skip":
        log.warning("skipping %s: %s", path, why)
        return
    raise ImageFolderError(f"{path} {why}; remove it, or {SKIP_HINT}")


def decode_image(path: str | os.PathLike[str], input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Decode one image to uint8 ``[C, H, W]`` with the model's channels and size."""
    channels, height, width = input_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(
            f"ImageFolder images convert to 1 or 3 channels, the model asks for {channels}"
        )
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            w, h = img.size
            if 0 <= height - h <= PAD_AT_MOST and 0 <= width - w <= PAD_AT_MOST:
                canvas = Image.new(mode, (width, height))  # black background, centred as for MNIST
                canvas.paste(img, ((width - w) // 2, (height - h) // 2))
                img = canvas
            elif (w, h) != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            array = np.array(img, dtype=np.uint8)  # a writable copy for torch
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageFolderError(
            f"{path} is not a readable image ({type(exc).__name__}); remove it, or {SKIP_HINT}"
        ) from exc
    if array.ndim == 2:
        array = array[None]  # (H, W) -> (1, H, W)
    else:
        array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(array))


class _Files(Dataset):  # type: ignore[type-arg]
    """Per-file decoding for DataLoader workers; a skipped bad file yields ``None``."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        input_shape: tuple[int, int, int],
        bad_files: BadFiles,
    ) -> None:
        self.samples = samples
        self.input_shape = input_shape
        self.bad_files = bad_files

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | None:
        path, label = self.samples[i]
        try:
            return decode_image(path, self.input_shape), label, i
        except ImageFolderError:
            if self.bad_files == "skip":
                log.warning("skipping %s: not a readable image", path)
                return None
            raise


def _collate(
    items: list[tuple[torch.Tensor, int, int] | None],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kept = [it for it in items if it is not None]
    if not kept:
        return (
            torch.empty(0, dtype=torch.uint8),
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, dtype=torch.int64),
        )
    return (
        torch.stack([it[0] for it in kept]),
        torch.tensor([it[1] for it in kept], dtype=torch.int64),
        torch.tensor([it[2] for it in kept], dtype=torch.int64),
    )


_PREFETCH = 2  # batches each DataLoader worker makes ahead (DataLoader's default)


def _loader(
    files: _Files,
    order: Sequence[int],
    batch_size: int,
    num_workers: int,
    drop_last: bool = False,
    pin: bool = False,
) -> DataLoader:  # type: ignore[type-arg]
    return DataLoader(
        files,
        batch_size=batch_size,
        sampler=order,
        num_workers=num_workers,
        collate_fn=_collate,
        drop_last=drop_last,
        pin_memory=pin,
        prefetch_factor=_PREFETCH if num_workers else None,
    )


@contextlib.contextmanager
def _worker_errors() -> Iterator[None]:
    """Re-raise a worker's ImageFolderError with its own one-line message, not the traceback."""
    try:
        yield
    except ImageFolderError as exc:
        message = str(exc)
        if "ImageFolderError: " in message:
            raise ImageFolderError(message.rsplit("ImageFolderError: ", 1)[-1]) from None
        raise


def default_workers() -> int:
    """DataLoader worker processes where none are asked for: cores - 1, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class StreamingSplit(Split):
    """A large split decoded per epoch by ``num_workers`` worker processes (``0``: in-process)."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        *,
        class_names: Sequence[str],
        input_shape: tuple[int, int, int],
        normalisation: Normalisation,
        num_workers: int | None = None,
        bad_files: BadFiles = "error",
    ) -> None:
        super().__init__(
            class_names=class_names, input_shape=input_shape, normalisation=normalisation
        )
        self.samples = tuple(samples)
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.bad_files = bad_files

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ready_batches(self) -> int:
        return _PREFETCH * self.num_workers

    def __repr__(self) -> str:
        return (
            f"StreamingSplit(n={len(self)}, input_shape={self.input_shape}, "
            f"classes={self.num_classes}, workers={self.num_workers})"
        )

    def _epoch(self, epoch: Epoch) -> Iterator[Batch]:
        """Decode the epoch as it goes.

        A shuffled epoch is drawn by torch's ``DistributedSampler`` (one replica unless
        ``shard`` says otherwise), seeded from ``seed_or_generator``, so ``W`` ranks at batch
        ``B`` see the global batches one process sees at ``W × B``. An epoch in fixed order is
        split by :func:`~data.batches.shard_order` instead: DistributedSampler would pad it with
        repeated samples, and an evaluation must count each sample once.
        """
        dev = torch.device(epoch.device) if epoch.device is not None else torch.device("cpu")
        batch_size, drop_last = epoch.batch_size, epoch.drop_last
        if epoch.shuffle:
            rank, world = epoch.shard if epoch.shard is not None else (0, 1)
            sampler = DistributedSampler(
                range(epoch.n),  # type: ignore[arg-type]
                num_replicas=world,
                rank=rank,
                shuffle=True,
                seed=_epoch_seed(epoch.seed_or_generator),
                drop_last=drop_last,
            )
            order: list[int] = epoch.samples(
                torch.tensor(list(sampler), dtype=torch.int64)
            ).tolist()
        else:
            order = shard_order(
                epoch.samples(torch.arange(epoch.n)), epoch.shard, batch_size, drop_last
            ).tolist()
        files = _Files(self.samples, self.input_shape, self.bad_files)
        loader = _loader(
            files, order, batch_size, self.num_workers, drop_last, pin=dev.type == "cuda"
        )
        with _worker_errors():
            for x, y, _ in loader:
                if len(y):
                    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                    yield prepare_batch(x, self.input_shape, self.normalisation), y


def _epoch_seed(seed_or_generator: int | torch.Generator | None) -> int:
    """An epoch's sampler seed: an ``int`` as given; else drawn (a generator advances)."""
    if isinstance(seed_or_generator, int):
        return seed_or_generator
    return int(torch.randint(2**62, (), generator=seed_or_generator))


# ---- layout: train/ + val/, or one tree split by a seeded fraction ---------------------------


def _find_pair(root: Path) -> tuple[Path, Path] | None:
    for train, val in _PAIR_NAMES:
        if (root / train).is_dir() and (root / val).is_dir():
            return root / train, root / val
    return None


def _split_tree(tree: Tree, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Per class, a seeded permutation; the first round(fraction × n) go to val (at least 1)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"val_fraction must be in (0, 1), got {val_fraction}; or give {tree.root} train/ and "
            "val/ folders"
        )
    labels = np.array([label for _, label in tree.samples])
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for c, name in enumerate(tree.classes):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            raise ImageFolderError(
                f"class folder {tree.root / name} holds {len(members)} image; a train/val split "
                "needs at least 2 per class"
            )
        members = members[rng.permutation(len(members))]
        k = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(members[:k].tolist())
        train.extend(members[k:].tolist())
    return sorted(train), sorted(val)


def _tree_key(trees: Sequence[Tree], input_shape: tuple[int, int, int]) -> str:
    h = hashlib.sha256(json.dumps(list(input_shape)).encode())
    for tree in trees:
        h.update(str(tree.root.resolve()).encode())
        h.update(tree.stat_digest.encode())
    return h.hexdigest()[:20]


def _decode_all(
    samples: Sequence[tuple[Path, int]],
    input_shape: tuple[int, int, int],
    bad_files: BadFiles,
    num_workers: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode every file once: uint8 ``[N, C, H, W]``, labels, and the kept sample indices."""
    workers = (
        0 if len(samples) < 2000 else (default_workers() if num_workers is None else num_workers)
    )
    with _worker_errors():
        parts = list(
            _loader(_Files(samples, input_shape, bad_files), range(len(samples)), 256, workers)
        )
    kept = [p for p in parts if len(p[1])]
    if not kept:
        return (
            torch.empty(0, *input_shape, dtype=torch.uint8),
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, dtype=torch.int64),
        )
    return (
        torch.cat([p[0] for p in kept]),
        torch.cat([p[1] for p in kept]),
        torch.cat([p[2] for p in kept]),
    )


def _cached_decode(
    tree: Tree,
    input_shape: tuple[int, int, int],
    bad_files: BadFiles,
    cache_dir: Path | None,
    num_workers: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    path = (
        cache_dir / f"{_tree_key([tree], input_shape)}-{bad_files}.pt"
        if cache_dir is not None
        else None
    )
    if path is not None and path.is_file():
        cached = _read_cache(path, tree, input_shape, bad_files)
        if cached is not None:
            log.info("ImageFolder %s: decoded tensor loaded from cache %s", tree.root, path)
            return cached
    log.info(
        "ImageFolder %s: decoding %d images once to %s",
        tree.root,
        len(tree.samples),
        "x".join(map(str, input_shape)),
    )
    images, labels, index = _decode_all(tree.samples, input_shape, bad_files, num_workers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        torch.save({"images": images, "labels": labels, "index": index}, partial)
        os.replace(partial, path)
    return images, labels, index


def _read_cache(
    path: Path, tree: Tree, input_shape: tuple[int, int, int], bad_files: BadFiles
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """A cache file's tensors, checked against the tree it is keyed by; None (and a warning) if
    it is unreadable or does not fit, so that it is decoded again and rewritten."""
    n = len(tree.samples)
    try:
        # weights_only: a cache file is loaded as plain tensors, never as arbitrary pickled code.
        blob = torch.load(path, weights_only=True)
        images, labels, index = blob["images"], blob["labels"], blob["index"]
        kept = images.shape[0]
        fits = (
            images.dtype == torch.uint8
            and tuple(images.shape[1:]) == tuple(input_shape)
            and labels.shape == (kept,)
            and index.shape == (kept,)
            and (kept == n if bad_files == "error" else kept <= n)
            and (kept == 0 or (0 <= int(index.min()) and int(index.max()) < n))
        )
        if fits and kept:
            expected = torch.tensor([label for _, label in tree.samples])[index]
            fits = torch.equal(labels, expected)
    except Exception as exc:  # a torn or foreign file: any failure means "decode again"
        log.warning("ImageFolder cache %s is unreadable (%s); decoding again", path, exc)
        return None
    if not fits:
        log.warning("ImageFolder cache %s does not match %s; decoding again", path, tree.root)
        return None
    return images, labels, index


def _stats_from_tensor(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[N, C, H, W]`` pixels / 255.

    From each channel's histogram of the 256 pixel values, exactly (float64 over 256 bins): ten
    times faster than summing the pixels as floats (CIFAR-10's train split: 0.2 s, not 2 s)."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum().clamp_min(1.0)
        mean = (counts * values).sum() / total
        var = (counts * (values - mean).square()).sum() / total
        means.append(float(mean) / 255.0)
        stds.append(max(float(var.sqrt()), 255.0 * 1e-6) / 255.0)
    return tuple(means), tuple(stds)


def _stats_streamed(
    samples: Sequence[tuple[Path, int]],
    input_shape: tuple[int, int, int],
    bad_files: BadFiles,
    seed: int,
    cache_dir: Path | None,
    key: str,
    num_workers: int | None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    path = cache_dir / f"{key}-stats.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        saved = json.loads(path.read_text())
        return tuple(saved["mean"]), tuple(saved["std"])
    rng = np.random.default_rng(seed)
    pick = sorted(
        rng.choice(len(samples), size=min(STATS_SAMPLE, len(samples)), replace=False).tolist()
    )
    images, _, _ = _decode_all([samples[i] for i in pick], input_shape, bad_files, num_workers)
    mean, std = _stats_from_tensor(images)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean": mean, "std": std, "images": len(pick)}))
    return mean, std


def load_imagefolder(
    root: str | os.PathLike[str],
    *,
    input_shape: tuple[int, int, int],
    normalisation: str = "meanstd",
    val_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
    num_workers: int | None = None,
    bad_files: BadFiles = "error",
) -> tuple[TensorSplit | StreamingSplit, TensorSplit | StreamingSplit]:
    """Load an ImageFolder as ``(train, val)`` splits shaped to ``input_shape``.

    ``meanstd`` statistics come from the train split (all of it when cached, a seeded sample of
    ``STATS_SAMPLE`` images when streamed) and are logged. ``cache_dir=None`` keeps the decoded
    tensor in memory only.
    """
    root = Path(root)
    if bad_files not in ("error", "skip"):
        raise ValueError(f"bad_files must be 'error' or 'skip', got {bad_files!r}")
    layout = _layout(root, bad_files, val_fraction, seed)
    return _load_layout(
        root,
        layout,
        input_shape=input_shape,
        normalisation=normalisation,
        seed=seed,
        cache_dir=cache_dir,
        cache_limit_bytes=cache_limit_bytes,
        num_workers=num_workers,
        bad_files=bad_files,
    )


def _load_layout(
    root: Path,
    layout: _Layout,
    *,
    input_shape: tuple[int, int, int],
    normalisation: str,
    seed: int,
    cache_dir: str | os.PathLike[str] | None,
    cache_limit_bytes: int,
    num_workers: int | None,
    bad_files: BadFiles,
) -> tuple[TensorSplit | StreamingSplit, TensorSplit | StreamingSplit]:
    """:func:`load_imagefolder` once the root is scanned (``data.splits.load_cifar10`` checks
    the scanned trees against the provisioned copy's record first, then comes here)."""
    decode = _Decoding(
        input_shape,
        bad_files,
        Path(cache_dir) / "imagefolder" if cache_dir is not None else None,
        num_workers,
    )
    decoded_bytes = layout.n_total * int(np.prod(input_shape))
    if decoded_bytes <= cache_limit_bytes:
        return _load_cached(root, layout, decode, normalisation)
    log.info(
        "ImageFolder %s: %d images decode to %.0f MiB > cache limit %.0f MiB; streaming",
        root,
        layout.n_total,
        decoded_bytes / 2**20,
        cache_limit_bytes / 2**20,
    )
    return _load_streamed(root, layout, decode, normalisation, seed)


@dataclass(frozen=True)
class _Decoding:
    """How a tree's files become uint8 tensors: the shape, bad-file rule, cache and workers."""

    input_shape: tuple[int, int, int]
    bad_files: BadFiles
    cache: Path | None  # <cache_dir>/imagefolder, or None: in memory only
    num_workers: int | None


@dataclass(frozen=True)
class _Layout:
    """A root's samples: a ``train/`` and a ``val/`` tree, or one tree and a seeded split."""

    trees: tuple[Tree, ...]  # (train, val), or the one tree
    train_idx: list[int] | None = None  # one tree: the sample indices of each split
    val_idx: list[int] | None = None
    split_key: str = ""  # one tree: the split's part of the statistics' cache key

    @property
    def paired(self) -> bool:
        return len(self.trees) == 2

    @property
    def classes(self) -> tuple[str, ...]:
        return self.trees[0].classes

    @property
    def n_total(self) -> int:
        return sum(len(t.samples) for t in self.trees)

    def samples(self) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
        """The (path, class) samples of train and of val."""
        if self.paired:
            return list(self.trees[0].samples), list(self.trees[1].samples)
        assert self.train_idx is not None and self.val_idx is not None
        samples = self.trees[0].samples
        return [samples[i] for i in self.train_idx], [samples[i] for i in self.val_idx]


def _layout(root: Path, bad_files: BadFiles, val_fraction: float, seed: int) -> _Layout:
    """Scan ``root``: its ``train/`` + ``val/`` (or ``test/``) trees, else the one tree, split."""
    pair = _find_pair(root) if root.is_dir() else None
    if pair is None:
        tree = scan_tree(root, bad_files=bad_files)
        _check_classes(tree)
        train_idx, val_idx = _split_tree(tree, val_fraction, seed)
        return _Layout((tree,), train_idx, val_idx, f"-split{val_fraction}-{seed}")
    train_tree, val_tree = (scan_tree(p, bad_files=bad_files) for p in pair)
    check_same_classes(train_tree, val_tree, f"{pair[0]} and {pair[1]}")
    _check_classes(train_tree)
    return _Layout((train_tree, val_tree))


def _load_cached(
    root: Path, layout: _Layout, decode: _Decoding, normalisation: str
) -> tuple[TensorSplit, TensorSplit]:
    """Small trees: decode every file once (or read the saved tensor), split by indexing."""
    decoded = [
        _cached_decode(t, decode.input_shape, decode.bad_files, decode.cache, decode.num_workers)
        for t in layout.trees
    ]
    if layout.paired:
        (tx, ty, _), (vx, vy, _) = decoded
    else:
        images, labels, index = decoded[0]
        is_val = torch.zeros(len(layout.trees[0].samples), dtype=torch.bool)
        is_val[layout.val_idx] = True
        keep_val = is_val[index]  # the kept samples (bad files skipped) that go to val
        tx, ty = images[~keep_val], labels[~keep_val]
        vx, vy = images[keep_val], labels[keep_val]
    mean, std = _stats_from_tensor(tx) if normalisation == "meanstd" else ((), ())
    norm = Normalisation.make(normalisation, mean, std)
    _log_stats(root, norm)
    return tuple(  # type: ignore[return-value]
        TensorSplit(
            x, y, class_names=layout.classes, input_shape=decode.input_shape, normalisation=norm
        )
        for x, y in ((tx, ty), (vx, vy))
    )


def _load_streamed(
    root: Path, layout: _Layout, decode: _Decoding, normalisation: str, seed: int
) -> tuple[StreamingSplit, StreamingSplit]:
    """Large trees: decode per epoch in worker processes; statistics from a seeded sample."""
    train_samples, val_samples = layout.samples()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if normalisation == "meanstd":
        key = _tree_key(layout.trees, decode.input_shape) + layout.split_key
        mean, std = _stats_streamed(
            train_samples,
            decode.input_shape,
            decode.bad_files,
            seed,
            decode.cache,
            key,
            decode.num_workers,
        )
    norm = Normalisation.make(normalisation, mean, std)
    _log_stats(root, norm)
    return tuple(  # type: ignore[return-value]
        StreamingSplit(
            samples,
            class_names=layout.classes,
            input_shape=decode.input_shape,
            normalisation=norm,
            num_workers=decode.num_workers,
            bad_files=decode.bad_files,
        )
        for samples in (train_samples, val_samples)
    )


def check_same_classes(first: Tree, second: Tree, between: str) -> None:
    """Refuse two splits whose class folders differ (a class index would name different classes
    in each); ``between`` names the two in the one-line error."""
    if first.classes == second.classes:
        return
    only_first = sorted(set(first.classes) - set(second.classes))
    only_second = sorted(set(second.classes) - set(first.classes))
    raise ImageFolderError(
        f"class folders differ between {between}: only in {first.root.name}/: "
        f"{only_first or 'none'}, only in {second.root.name}/: {only_second or 'none'}; make both "
        "hold the same class folders"
    )


def _check_classes(tree: Tree) -> None:
    if len(tree.classes) < 2:
        raise ImageFolderError(
            f"ImageFolder {tree.root} has one class folder ({tree.classes[0]}); classification "
            f"needs at least 2 classes: add a folder per class under {tree.root}"
        )


def _log_stats(root: Path, norm: Normalisation) -> None:
    log.info("ImageFolder %s: normalisation %s, mean %s, std %s", root, norm.name,
             [round(m, 4) for m in norm.mean], [round(s, 4) for s in norm.std])  # fmt: skip
