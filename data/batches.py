"""The fast path: a whole split kept as one uint8 tensor, batches made by indexing.

This is the lab's own batch loop (section 4: ``train_data[it*bs:(it+1)*bs]``, a new permutation
each epoch) on tensors: no per-sample ``__getitem__``, no collate, and the float conversion,
padding and normalisation done once per batch. Each call to :meth:`TensorSplit.batches` is one
epoch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .normalise import Normalisation, prepare_batch

__all__ = [
    "Split", "Epoch", "TensorSplit", "RankShard", "epoch_order", "shard_order", "spread"
]  # fmt: skip

Batch = tuple[torch.Tensor, torch.Tensor]
RankShard = tuple[int, int]  # (rank, world size): this process's part of each epoch
_GROUP_BYTES = 4 * 2**20  # float32 output bytes normalised at once (measured best: 2-4 MiB)


@dataclass(frozen=True)
class Epoch:
    """What one call to :meth:`Split.batches` asks for, checked, with ``limit`` applied."""

    n: int  # samples the epoch covers
    batch_size: int
    shuffle: bool
    seed_or_generator: int | torch.Generator | None
    drop_last: bool
    device: torch.device | str | None
    shard: RankShard | None
    # The split's samples the epoch's ``n`` stand for (``spread``); None: all of the split's
    subset: torch.Tensor | None = None

    def samples(self, order: torch.Tensor) -> torch.Tensor:
        """The split's indices of the epoch's positions ``order`` (positions ``< n``)."""
        return order if self.subset is None else self.subset[order]


class Split(ABC):
    """What the training loop sees of a split, whichever way it is stored."""

    def __init__(
        self,
        *,
        class_names: Sequence[str],
        input_shape: tuple[int, int, int],
        normalisation: Normalisation,
    ) -> None:
        self.class_names = tuple(class_names)
        self.input_shape: tuple[int, int, int] = tuple(input_shape)  # type: ignore[assignment]
        self.normalisation = normalisation

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``class_names``)."""
        return len(self.class_names)

    @property
    def ready_batches(self) -> int:
        """Batches an epoch may hold ready before its first is asked for (a DataLoader's
        prefetch); a rate of feeding is timed after them."""
        return 0

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed_or_generator: int | torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        limit: int | None = None,
        shard: RankShard | None = None,
    ) -> Iterator[Batch]:
        """Yield one epoch of ``(x float32 [B, C, H, W], y int64 [B])``.

        ``limit``: the epoch covers ``limit`` samples only, spread evenly over the split
        (:func:`spread`: an image folder's split is sorted by class, so its first samples would
        be one class). ``shard``: this process's part of the epoch (:func:`shard_order`).
        """
        _check_batch_size(batch_size)
        n = len(self) if limit is None else min(limit, len(self))
        subset = spread(len(self), n) if n < len(self) else None
        yield from self._epoch(
            Epoch(n, batch_size, shuffle, seed_or_generator, drop_last, device, shard, subset)
        )

    @abstractmethod
    def _epoch(self, epoch: Epoch) -> Iterator[Batch]:
        """The batches of ``epoch``, made the way this split stores its samples."""


def spread(total: int, n: int) -> torch.Tensor:
    """``n`` of ``total`` indices spread evenly, in order: ``floor(i × total / n)`` for ``i <
    n``. A split stored class by class gives each class its share (within one sample), with no
    random draw to seed."""
    if not 0 < n <= total:
        raise ValueError(f"cannot spread {n} samples over {total}")
    return torch.div(torch.arange(n) * total, n, rounding_mode="floor")


def epoch_order(
    n: int, shuffle: bool, seed_or_generator: int | torch.Generator | None
) -> torch.Tensor:
    """The sample order of one epoch: ``arange(n)``, or a permutation.

    An ``int`` seed gives that seed's permutation (pass ``seed + epoch`` for a new order each
    epoch); a ``torch.Generator`` advances, so one generator gives a new order every epoch;
    ``None`` uses torch's global RNG.
    """
    if not shuffle:
        return torch.arange(n)
    if isinstance(seed_or_generator, int):
        generator = torch.Generator().manual_seed(seed_or_generator)
    else:
        generator = seed_or_generator
    return torch.randperm(n, generator=generator)


def shard_order(
    order: torch.Tensor, shard: RankShard | None, batch_size: int, drop_last: bool
) -> torch.Tensor:
    """Rank ``r`` of ``W``'s part of an epoch order: ``order[r::W]``, DistributedSampler's split.

    With ``drop_last`` the order is first cut to a multiple of ``W × batch_size``, so every rank
    makes the same number of full batches and global batch ``k`` (rank batches ``k`` of all ranks
    together) holds exactly the samples of one process's batch ``k`` at ``W × batch_size``.
    Without it nothing is padded or repeated (ranks differ by at most one sample): evaluation
    counts each sample once.
    """
    if shard is None:
        return order
    rank, world = shard
    if not (isinstance(world, int) and isinstance(rank, int) and 0 <= rank < world):
        raise ValueError(f"shard must be (rank, world size) with 0 <= rank < world, got {shard}")
    if drop_last:
        order = order[: len(order) - len(order) % (world * batch_size)]
    return order[rank::world]


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


class TensorSplit(Split):
    """A split held as uint8 ``images [N, C, h, w]`` and int64 ``labels [N]``.

    Batches come out as float32 ``[B, *input_shape]``, normalised, and int64 ``[B]``, on
    ``device`` (the stored tensors are copied there once and kept).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        class_names: Sequence[str],
        input_shape: tuple[int, int, int],
        normalisation: Normalisation,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must be [N] with N = {images.shape[0]}, got {tuple(labels.shape)}"
            )
        super().__init__(
            class_names=class_names, input_shape=input_shape, normalisation=normalisation
        )
        self.images = images
        self.labels = labels.to(torch.int64)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._buffers: dict[tuple[torch.device, int], _GroupBuffers] = {}  # kept across epochs

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"TensorSplit(n={len(self)}, stored={tuple(self.images.shape[1:])}, "
            f"input_shape={self.input_shape}, "
            f"classes={self.num_classes}, normalisation={self.normalisation.name})"
        )

    def _tensors(self, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
        dev = torch.device(device) if device is not None else self.images.device
        if dev == self.images.device:
            return self.images, self.labels
        if dev not in self._on_device:
            # uint8 on the device: MNIST train is 47 MB; converted to float one batch at a time.
            self._on_device[dev] = (self.images.to(dev), self.labels.to(dev))
        return self._on_device[dev]

    def _epoch(self, epoch: Epoch) -> Iterator[Batch]:
        images, labels = self._tensors(epoch.device)
        batch_size, drop_last = epoch.batch_size, epoch.drop_last
        order = epoch.samples(epoch_order(epoch.n, epoch.shuffle, epoch.seed_or_generator))
        order = shard_order(order, epoch.shard, batch_size, drop_last).to(images.device)
        # else the first samples in order: slice, do not copy
        gather = epoch.shuffle or epoch.shard is not None or epoch.subset is not None
        n = len(order)
        stop = n - n % batch_size if drop_last else n
        # Several batches are gathered and normalised by one set of kernels, then handed out as
        # views: per-op overhead is paid once per group (MNIST: 10 batches of 128, 4 MB).
        group = batch_size * max(
            1, min(16, _GROUP_BYTES // (4 * batch_size * math.prod(self.input_shape)))
        )
        order = order[:stop]
        # index_select, not images[idx]: the same gather, several times faster on CPU.
        all_y = labels.index_select(0, order) if gather else labels[:stop]
        batch_y = all_y.split(batch_size)
        if (images.device, group) not in self._buffers:
            self._buffers[images.device, group] = _GroupBuffers(images, group, self.input_shape)
        buffers = self._buffers[images.device, group]
        for start in range(0, stop, group):
            end = min(start + group, stop)
            if gather:
                idx = order[start:end]
                x = torch.index_select(images, 0, idx, out=buffers.gathered(len(idx)))
            else:
                x = images[start:end]
            x = prepare_batch(x, self.input_shape, self.normalisation, out=buffers.output(x))
            # split: the batch views in one call (slicing them one by one costs more per epoch)
            first = start // batch_size
            yield from zip(
                x.split(batch_size), batch_y[first : first + math.ceil(len(x) / batch_size)]
            )


def _storage_users(tensor: torch.Tensor) -> int | None:
    """Tensors (and storage objects) sharing ``tensor``'s memory, this call's own one included."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)  # not public: None if it goes
    return None if use_count is None else int(use_count(tensor.untyped_storage()._cdata))


class _GroupBuffers:
    """Memory reused from group to group on CPU: the gathered uint8 images, and float outputs
    that the consumer no longer holds any batch of.

    Fresh memory costs a page fault per 4 KiB the first time it is written: for MNIST-sized
    batches that was most of an epoch's time. A float buffer is handed out again only when no
    tensor outside this class shares its memory, so a consumer that keeps its batches (a list,
    a ``torch.cat``) never sees them overwritten; it simply gets fresh memory each time.
    """

    POOL = 2

    def __init__(self, images: torch.Tensor, group: int, input_shape: tuple[int, int, int]) -> None:
        self.reuse = images.device.type == "cpu" and _storage_users(images) is not None
        self.group = group
        self.stored_shape = tuple(images.shape[1:])
        self.input_shape = input_shape
        self._gathered: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] = []

    def gathered(self, n: int) -> torch.Tensor | None:
        if not self.reuse:
            return None
        if self._gathered is None:
            self._gathered = torch.empty((self.group, *self.stored_shape), dtype=torch.uint8)
        return self._gathered[:n]

    def output(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.reuse or tuple(x.shape[1:]) != self.input_shape:
            return None
        for buffer in self._outputs:
            if _storage_users(buffer) == 2:  # this list's reference and the call's own
                return buffer[: len(x)]
        if len(self._outputs) < self.POOL:
            self._outputs.append(torch.empty((self.group, *self.input_shape)))
            return self._outputs[-1][: len(x)]
        return None
