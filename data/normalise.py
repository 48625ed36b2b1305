"""Turn uint8 image batches into a model's input: channels, size, then normalisation.

Everything here runs on a batch (cheap), never on the stored split, so one stored copy of the
data serves every model. Order: ``x / 255`` → channels → pad or resize → normalise.

* ``"meanstd"``: ``(x - mean) / std`` per channel. MNIST uses the customary 0.1307 / 0.3081
  (mean and std of the 60,000 training images' pixels / 255); an ImageFolder uses the mean and
  std of its own training split (computed once, cached: see :mod:`data.imagefolder`).
* ``"lenet5_paper"``: LeCun et al. 1998, section II.B: input pixels are normalised so that the
  background (white) is -0.1 and the foreground (black) 1.175, making the mean input roughly 0
  and the variance roughly 1. MNIST's background is pixel 0 and its ink 255, so
  ``x / 255 * 1.275 - 0.1``.

Size: an image at most :data:`PAD_AT_MOST` pixels smaller than the input in each dimension is
padded with background, centred (the paper's 32×32 input holds MNIST's 28×28 field, padded);
any other size is resized (bilinear, antialiased).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "LENET5_BACKGROUND",
    "LENET5_FOREGROUND",
    "PAD_AT_MOST",
    "NormalisationName",
    "Normalisation",
    "to_channels",
    "fit_size",
    "prepare_batch",
]

MNIST_MEAN = 0.1307  # mean of MNIST train pixels / 255
MNIST_STD = 0.3081  # std of MNIST train pixels / 255
LENET5_BACKGROUND = -0.1  # LeCun et al. 1998, II.B
LENET5_FOREGROUND = 1.175
PAD_AT_MOST = 4  # pixels per dimension: 28 -> 32 pads (LeNet-5), 28 -> 224 resizes

NormalisationName = Literal["meanstd", "lenet5_paper"]
# ITU-R 601-2 luma, the weights PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Normalisation:
    """An affine map ``(x - mean) / std`` per channel, on pixels scaled to [0, 1]."""

    name: NormalisationName
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def make(cls, name: str, mean: Sequence[float], std: Sequence[float]) -> Normalisation:
        """``"meanstd"`` with the given statistics, or ``"lenet5_paper"`` (statistics ignored)."""
        if name == "meanstd":
            return cls("meanstd", tuple(float(m) for m in mean), tuple(float(s) for s in std))
        if name == "lenet5_paper":
            # x * (fg - bg) + bg  ==  (x - mean) / std  with  mean = -bg/(fg-bg), std = 1/(fg-bg).
            scale = LENET5_FOREGROUND - LENET5_BACKGROUND
            return cls("lenet5_paper", (-LENET5_BACKGROUND / scale,), (1.0 / scale,))
        raise ValueError(f"unknown normalisation {name!r}; use 'meanstd' or 'lenet5_paper'")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise float ``x`` ``[B, C, H, W]`` in [0, 1]; one-channel stats broadcast to C."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        if mean.shape[1] not in (1, x.shape[1]):
            raise ValueError(
                f"normalisation has {mean.shape[1]} channels, the batch has {x.shape[1]}"
            )
        return (x - mean) / std

    def affine_for_uint8(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bias, scale)``, each float32 ``[1, C, 1, 1]``: ``bias + pixel * scale`` normalises."""
        return _affine(self.mean, self.std, device)


@functools.lru_cache(maxsize=64)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # (p / 255 - m) / s  ==  -m / s + p * (1 / (255 s)); made once per device, not per batch.
    m = torch.tensor(mean, dtype=torch.float64)
    sd = torch.tensor(std, dtype=torch.float64)
    bias = (-m / sd).to(torch.float32).view(1, -1, 1, 1).to(device)
    scale = (1.0 / (255.0 * sd)).to(torch.float32).view(1, -1, 1, 1).to(device)
    return bias, scale


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert float ``[B, C, H, W]`` to ``channels``: 1 → 3 repeats, 3 → 1 takes luma."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    raise ValueError(
        f"cannot convert {c}-channel images to {channels} channels; use 1- or 3-channel inputs"
    )


def fit_size(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (centred, with 0 = background) or resize float ``[B, C, h, w]`` to
    ``[B, C, height, width]``."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    dh, dw = height - h, width - w
    if 0 <= dh <= PAD_AT_MOST and 0 <= dw <= PAD_AT_MOST:
        return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    return F.interpolate(
        x, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


def prepare_batch(
    x: torch.Tensor,
    input_shape: tuple[int, int, int],
    normalisation: Normalisation,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 ``[B, c, h, w]`` → float32 ``[B, *input_shape]``, normalised.

    ``out``, a float32 tensor of ``x``'s shape, is written in place of a new tensor where the
    conversion is one copy (same channels and size); otherwise it is ignored.
    """
    channels, height, width = input_shape
    h, w = x.shape[-2:]
    dh, dw = height - h, width - w
    if (dh, dw) != (0, 0) and 0 <= dh <= PAD_AT_MOST and 0 <= dw <= PAD_AT_MOST:
        # Pad the uint8 batch: pixel 0 is the background (-0.1 under lenet5_paper).
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        dh = dw = 0
    stats = len(normalisation.mean)
    if (dh, dw) == (0, 0) and x.shape[1] in (1, channels) and stats in (1, channels):
        # Common case, one fused kernel: uint8 -> float32, scaled and shifted; broadcasting over
        # the channel axis also turns one stored channel into three.
        bias, scale = normalisation.affine_for_uint8(x.device)
        if stats == 1:
            # A vectorised uint8 -> float32 copy, then one in-place pass with a 0-d bias and a
            # scalar alpha: several times faster than a mixed-dtype or [1,1,1,1]-broadcast op.
            if out is not None and out.shape == x.shape and out.dtype == torch.float32:
                out.copy_(x)
            else:
                out = x.to(torch.float32)
            torch.add(bias.view(()), out, alpha=float(scale), out=out)
        else:
            out = torch.addcmul(bias, x, scale)
        assert out is not None
        return out if out.shape[1] == channels else out.expand(-1, channels, -1, -1).contiguous()
    out = x.to(torch.float32).div_(255.0)
    out = fit_size(to_channels(out, channels), height, width)
    return normalisation.apply(out).contiguous()
