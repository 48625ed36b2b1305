"""Training-time augmentation on a whole batch, as tensor operations (no per-image Python).

``"crop4_flip"`` is the standard CIFAR recipe (He et al. 2016, Sec. 4.2; torchvision's
``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip()``): each image is padded by 4 pixels
of black on every side, a window of its own size is cropped at a random offset, and it is
mirrored left-right with probability 1/2. Every image of a batch draws its own offset and flip.
``"crop2_flip"`` pads by 2 pixels, ``"flip"`` by none (mirroring alone): lighter augmentation,
for runs too short to fit the full one.

The batch is already normalised when it gets here (:mod:`data.batches` makes it), so "black" is
the normalised value of pixel 0 (``fill``), per channel: cropping and flipping commute with the
per-channel affine normalisation, so the result equals augmenting the uint8 image first.

Exact across processes: the draws of a step are made once for the *global* batch from a
generator every process seeds alike, and each rank keeps the draws of its own samples. Rank
``r`` of ``W`` holds the global batch's samples ``r, r + W, r + 2W, ...``
(:func:`data.batches.shard_order`), so it keeps ``draws[r::W]``; the same sample then gets the
same crop and flip however many processes train, and every generator advances alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .batches import RankShard

__all__ = [
    "AUGMENTS",
    "CROP_PAD",
    "PADS",
    "CropFlip",
    "check_augment",
    "draw_crop_flip",
    "crop_flip",
    "augment_batch",
]

AUGMENTS = ("none", "flip", "crop2_flip", "crop4_flip")
CROP_PAD = 4  # pixels of padding on every side: the crop's offset is 0..8 in each dimension
# Each augmentation's padding (crop offsets 0..2 * pad); every one draws a flip per image.
PADS = {"flip": 0, "crop2_flip": 2, "crop4_flip": CROP_PAD}


def check_augment(name: str) -> str:
    """``name`` if it is one of :data:`AUGMENTS`, else a one-line ``ValueError``."""
    if name not in AUGMENTS:
        raise ValueError(f"unknown augmentation {name!r}; use one of {', '.join(AUGMENTS)}")
    return name


@dataclass(frozen=True)
class CropFlip:
    """The draws of ``crop4_flip`` for ``N`` images, each an ``[N]`` CPU tensor."""

    top: torch.Tensor  # int64 in [0, 2 * pad]: the crop's first row in the padded image
    left: torch.Tensor  # int64 in [0, 2 * pad]: its first column
    flip: torch.Tensor  # bool: mirrored left-right after cropping
    pad: int = CROP_PAD

    def __len__(self) -> int:
        return int(self.top.shape[0])

    def for_rank(self, shard: RankShard | None) -> CropFlip:
        """The draws of rank ``r`` of ``W``'s samples of the global batch: ``[r::W]``."""
        if shard is None:
            return self
        rank, world = shard
        picked = slice(rank, None, world)
        return CropFlip(self.top[picked], self.left[picked], self.flip[picked], self.pad)


def draw_crop_flip(n: int, generator: torch.Generator, pad: int = CROP_PAD) -> CropFlip:
    """Draw offsets and flips for ``n`` images from ``generator`` (always the same three draws
    in the same order, so generators seeded alike stay alike)."""
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    return CropFlip(offsets[0], offsets[1], flip, pad)


def crop_flip(x: torch.Tensor, draws: CropFlip, fill: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Pad ``x`` ``[B, C, H, W]`` by ``draws.pad`` with ``fill`` (a number, or per channel
    ``[1, C or 1, 1, 1]``), crop each image at its offset, flip those drawn: a new contiguous
    tensor of ``x``'s shape.

    One gather for the whole batch: output pixel ``(i, j)`` of image ``b`` is source pixel
    ``(top_b - pad + i, left_b - pad + j')``, ``j' = W - 1 - j`` where ``b`` is flipped, else
    ``j``; a source outside the image is ``fill``. The pixels are gathered as rows of ``C``
    values (channels last) with one extra row holding ``fill``, so the index is per pixel, not
    per element, and no padded copy of the batch is made.
    """
    if x.ndim != 4:
        raise ValueError(f"crop_flip takes a batch [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if len(draws) != b:
        raise ValueError(f"{len(draws)} crop/flip draws for a batch of {b} images")
    p, dev, n = draws.pad, x.device, b * h * w
    table = torch.empty((n + 1, c), dtype=x.dtype, device=dev)
    table[:n].view(b, h, w, c).copy_(x.permute(0, 2, 3, 1))
    table[n] = torch.as_tensor(fill, dtype=x.dtype, device=dev).reshape(-1)  # 1 or C values
    rows = draws.top.to(dev)[:, None] - p + torch.arange(h, device=dev)  # [B, H]
    j = torch.arange(w, device=dev)
    cols = draws.left.to(dev)[:, None] - p + torch.where(draws.flip.to(dev)[:, None], w - 1 - j, j)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    source = (torch.arange(b, device=dev)[:, None, None] * h + rows[:, :, None]) * w
    source = torch.where(inside, source + cols[:, None, :], n)  # [B, H, W]; n: the fill row
    out = table.index_select(0, source.reshape(-1)).view(b, h, w, c).permute(0, 3, 1, 2)
    return out.contiguous()


def augment_batch(
    x: torch.Tensor,
    name: str,
    generator: torch.Generator,
    *,
    shard: RankShard | None = None,
    fill: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Augment this process's part ``x`` of a training step's global batch.

    ``"none"`` returns ``x`` and draws nothing. The others draw for the global batch
    (``len(x) × W`` images under ``shard = (r, W)``) and applies this rank's draws, ``[r::W]``:
    every rank must call it once a step with the same generator state and an equal share.
    """
    if check_augment(name) == "none":
        return x
    world = 1 if shard is None else shard[1]
    draws = draw_crop_flip(len(x) * world, generator, PADS[name]).for_rank(shard)
    return crop_flip(x, draws, fill)
