"""ReLU then 2x2 max-pooling as one CPU kernel, for the training loop's channels_last maps.

torch's channels_last max-pool vectorises over channels, so the modern LeNet-5's 6-channel maps
run its scalar path: the first ReLU and pool, forward and backward with the zero fill, took about
a fifth of ``lenet5_mnist``'s training step here (bf16 autocast, batch 128). The kernel below
(C, built by the machine's C compiler for its own CPU at first use, loaded with ctypes) does both
in one pass and the backward in another, and gives the same outputs and gradients as ``nn.ReLU``
followed by ``nn.MaxPool2d(2)``: the first maximum in the window's row-major order takes the
gradient, as in torch. A map holding a NaN, a layout or dtype the kernel does not take, or a
machine without a compiler gets torch's own modules; :func:`fuse` swaps them in only on the
training loop's copy of a model (the zoo and the harness keep torch's).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "COMPILER_ENV",
    "SWITCH_ENV",
    "FEW_CHANNELS",
    "Kernel",
    "kernel",
    "ReluMaxPool2d",
    "fusable",
    "applies",
    "fuse",
]

log = logging.getLogger(__name__)

COMPILER_ENV = "CC"  # the compiler to build with (default: gcc, then cc)
SWITCH_ENV = "CNN_ZOO_RELU_POOL_KERNEL"  # "0": torch's modules everywhere, as without a compiler
# torch's channels_last pool vectorises over channels, 8 floats to an AVX2 vector (16 with
# AVX-512), and loops over fewer one by one; with more, torch's kernel was as fast or faster
# here (bf16, batch 128, forward and backward: 16 channels of 10x10 0.36 ms against the kernel's
# 0.58, 32 of 28x28 5.0 against 5.5), so only maps of fewer channels take the kernel.
FEW_CHANNELS = 8

# Bit patterns throughout: bf16 as uint16_t, fp32 as uint32_t; values are compared as floats
# and written back bit for bit (a maximum is one of its inputs). Comparisons are plain ``>``
# with selects and masks rather than branches: on random data a branch on which of four values
# wins is mispredicted about half the time (3.8 ms against 0.6 ms for the forward, here).
_SOURCE = r"""
#include <stdint.h>
#include <string.h>

static inline float load_bf16(const uint16_t *p) {
    uint32_t bits = (uint32_t)*p << 16; float f; memcpy(&f, &bits, 4); return f;
}
static inline void store_bf16(uint16_t *p, float f) {
    uint32_t bits; memcpy(&bits, &f, 4); *p = (uint16_t)(bits >> 16);
}
static inline float load_f32(const uint32_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline void store_f32(uint32_t *p, float f) { memcpy(p, &f, 4); }

int has_nan_bf16(const uint16_t *x, int64_t count) {
    int any = 0;
    for (int64_t i = 0; i < count; ++i) any |= (x[i] & 0x7fffu) > 0x7f80u;
    return any;
}
int has_nan_f32(const uint32_t *x, int64_t count) {
    int any = 0;
    for (int64_t i = 0; i < count; ++i) any |= (x[i] & 0x7fffffffu) > 0x7f800000u;
    return any;
}

/* x: n x h x w x c (channels last, h and w even); out: n x h/2 x w/2 x c; pick: which of the
   window's four (0-3, row-major) took the maximum, 4 where the ReLU zeroed it. */
#define DEFINE(NAME, T)                                                                   \
static inline void fwd_##NAME(const T *x, T *out, uint8_t *pick, int64_t n, int64_t h,  \
                               int64_t w, int64_t c) {                                     \
    const int64_t oh = h / 2, ow = w / 2;                                                 \
    for (int64_t b = 0; b < n; ++b)                                                        \
        for (int64_t i = 0; i < oh; ++i) {                                                \
            const T *r0 = x + (b * h + 2 * i) * w * c, *r1 = r0 + w * c;                   \
            T *o = out + (b * oh + i) * ow * c;                                           \
            uint8_t *p = pick + (b * oh + i) * ow * c;                                    \
            for (int64_t j = 0; j < ow; ++j)                                              \
                for (int64_t k = 0; k < c; ++k) {                                         \
                    const int64_t left = 2 * j * c + k, right = left + c;                 \
                    const float fa = load_##NAME(r0 + left), fb = load_##NAME(r0 + right); \
                    const float fc = load_##NAME(r1 + left), fd = load_##NAME(r1 + right); \
                    const int top = fb > fa, bottom = fd > fc;                            \
                    const float h0 = top ? fb : fa, h1 = bottom ? fd : fc;                \
                    const int lower = h1 > h0;                                            \
                    const float m = lower ? h1 : h0;                                      \
                    const int on = m > 0;                                                 \
                    const int at = top + lower * (2 + bottom - top);                      \
                    store_##NAME(o + j * c + k, on ? m : 0.0f);                           \
                    p[j * c + k] = (uint8_t)(at + (1 - on) * (4 - at));                   \
                }                                                                         \
        }                                                                                 \
}                                                                                         \
static inline void bwd_##NAME(const T *g, const uint8_t *pick, T *gx, int64_t n, int64_t h, \
                               int64_t w, int64_t c) {                                     \
    const int64_t oh = h / 2, ow = w / 2;                                                 \
    for (int64_t b = 0; b < n; ++b)                                                        \
        for (int64_t i = 0; i < oh; ++i) {                                                \
            T *r0 = gx + (b * h + 2 * i) * w * c, *r1 = r0 + w * c;                        \
            const T *go = g + (b * oh + i) * ow * c;                                      \
            const uint8_t *p = pick + (b * oh + i) * ow * c;                              \
            for (int64_t j = 0; j < ow; ++j)                                              \
                for (int64_t k = 0; k < c; ++k) {                                         \
                    const T v = go[j * c + k];                                            \
                    const uint8_t at = p[j * c + k];                                      \
                    const int64_t left = 2 * j * c + k, right = left + c;                 \
                    r0[left] = v & (T) - (T)(at == 0);                                    \
                    r0[right] = v & (T) - (T)(at == 1);                                   \
                    r1[left] = v & (T) - (T)(at == 2);                                    \
                    r1[right] = v & (T) - (T)(at == 3);                                   \
                }                                                                         \
        }                                                                                 \
}

DEFINE(bf16, uint16_t)
DEFINE(f32, uint32_t)

/* LeNet's six C1 maps, the zoo's one channel count below FEW_CHANNELS, as a constant: about
   1.6x (forward) and 2.7x (backward) the loops with c unknown, here. Every count as its own
   constant made gcc -O3 take 5.6 s instead of 1.2. */
#define CHANNELS(CALL) switch (c) { case 6: CALL(6); return; default: CALL(c); }
#define EXPORT(NAME, T)                                                                   \
void forward_##NAME(const T *x, T *out, uint8_t *pick, int64_t n, int64_t h, int64_t w,  \
                    int64_t c) {                                                          \
    CHANNELS(FWD_##NAME)                                                                  \
}                                                                                         \
void backward_##NAME(const T *g, const uint8_t *pick, T *gx, int64_t n, int64_t h,       \
                     int64_t w, int64_t c) {                                              \
    CHANNELS(BWD_##NAME)                                                                  \
}
#define FWD_bf16(C) fwd_bf16(x, out, pick, n, h, w, C)
#define BWD_bf16(C) bwd_bf16(g, pick, gx, n, h, w, C)
#define FWD_f32(C) fwd_f32(x, out, pick, n, h, w, C)
#define BWD_f32(C) bwd_f32(g, pick, gx, n, h, w, C)
EXPORT(bf16, uint16_t)
EXPORT(f32, uint32_t)
"""
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}


@dataclass(frozen=True)
class Kernel:
    """The built kernel (``lib`` None where it could not be built: ``reason`` says why)."""

    lib: ctypes.CDLL | None
    reason: str = ""

    def has_nan(self, x: torch.Tensor) -> bool:
        return bool(getattr(self.lib, "has_nan_" + _SUFFIX[x.dtype])(x.data_ptr(), x.numel()))

    def call(self, name: str, dtype: torch.dtype, *args: int) -> None:
        getattr(self.lib, f"{name}_{_SUFFIX[dtype]}")(*args)


_built: Kernel | None = None


def _compilers() -> list[str]:
    chosen = os.environ.get(COMPILER_ENV)
    return [chosen] if chosen else ["gcc", "cc"]


def _build() -> Kernel:
    if os.environ.get(SWITCH_ENV, "1") == "0":
        return Kernel(None, f"turned off by {SWITCH_ENV}=0")
    compiler = next((c for c in _compilers() if shutil.which(c)), None)
    if compiler is None:
        return Kernel(None, f"no C compiler found ({', '.join(_compilers())})")
    folder = tempfile.mkdtemp(prefix="cnn-zoo-bench-relu-pool-")  # private (0700), removed below
    try:
        source, library = os.path.join(folder, "relu_pool.c"), os.path.join(folder, "relu_pool.so")
        with open(source, "w") as f:
            f.write(_SOURCE)
        command = [compiler, "-O3", "-march=native", "-std=c99", "-shared", "-fPIC", source]
        done = subprocess.run([*command, "-o", library], capture_output=True, text=True)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            return Kernel(None, f"{compiler} failed: {first}")
        lib = ctypes.CDLL(library)  # mapped: the file can go
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for suffix in _SUFFIX.values():
        getattr(lib, "has_nan_" + suffix).argtypes = [ctypes.c_void_p, ctypes.c_int64]
        getattr(lib, "has_nan_" + suffix).restype = ctypes.c_int
        for name in ("forward_", "backward_"):
            function = getattr(lib, name + suffix)
            function.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4
            function.restype = None
    return Kernel(lib)


def kernel() -> Kernel:
    """The kernel, built once a process (about a second with gcc here)."""
    global _built
    if _built is None:
        _built = _build()
        if _built.lib is None:
            log.info("ReLU + max-pool kernel unavailable (%s): torch's modules run", _built.reason)
    return _built


class _ReluMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, memory_format=torch.channels_last)
        pick = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)
        kernel().call("forward", x.dtype, x.data_ptr(), out.data_ptr(), pick.data_ptr(), n, h, w, c)
        ctx.save_for_backward(pick)
        ctx.shape = (n, c, h, w)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (pick,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = torch.empty((n, c, h, w), dtype=grad.dtype, memory_format=torch.channels_last)
        kernel().call(
            "backward", grad.dtype, grad.data_ptr(), pick.data_ptr(), grad_x.data_ptr(), n, h, w, c
        )
        return grad_x


class ReluMaxPool2d(nn.Module):
    """``nn.ReLU`` then ``nn.MaxPool2d(2)``: the kernel where it takes the input (a CPU
    channels_last fp32 or bf16 map of even height and width, no NaN), torch's modules else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        built = kernel()
        if (
            built.lib is None
            or x.device.type != "cpu"
            or x.dtype not in _SUFFIX
            or x.dim() != 4
            or x.shape[2] % 2
            or x.shape[3] % 2
            or not x.is_contiguous(memory_format=torch.channels_last)
            or built.has_nan(x)
        ):
            return F.max_pool2d(F.relu(x), 2)
        return _ReluMaxPool.apply(x)


def _is_pool_2x2(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.MaxPool2d)
        and module.kernel_size in (2, (2, 2))
        and module.stride in (2, (2, 2))
        and module.padding in (0, (0, 0))
        and module.dilation in (1, (1, 1))
        and not module.ceil_mode
        and not module.return_indices
    )


def _pairs(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Each ``nn.ReLU`` in a Sequential between a convolution of fewer than FEW_CHANNELS
    output channels and a 2x2, stride-2 max-pool."""
    found = []
    for sequence in model.modules():
        if isinstance(sequence, nn.Sequential):
            layers = list(sequence)
            found += [
                (sequence, i)
                for i in range(1, len(layers) - 1)
                if isinstance(layers[i - 1], nn.Conv2d)
                and layers[i - 1].out_channels < FEW_CHANNELS
                and type(layers[i]) is nn.ReLU
                and _is_pool_2x2(layers[i + 1])
            ]
    return found


def fusable(model: nn.Module) -> int:
    """How many ReLU + 2x2 max-pool pairs :func:`fuse` would replace in ``model``."""
    return len(_pairs(model)) if kernel().lib is not None else 0


def applies(model: nn.Module, device: str | torch.device, channels_last: bool) -> bool:
    """Whether :func:`fuse` would change ``model`` trained on ``device`` in that layout."""
    return torch.device(device).type == "cpu" and channels_last and fusable(model) > 0


def fuse(model: nn.Module) -> int:
    """Replace, in place, each ReLU + 2x2 max-pool pair by the kernel (the ReLU's slot becomes
    ``nn.Identity``, so layer indices and the state dict keep their names); how many. None is
    replaced where the kernel could not be built."""
    if kernel().lib is None:
        return 0
    pairs = _pairs(model)
    for sequence, i in pairs:
        sequence[i] = nn.Identity()
        sequence[i + 1] = ReluMaxPool2d()
    return len(pairs)
