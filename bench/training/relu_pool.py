"""A convolution, ReLU and 2x2 max-pool as one block of CPU kernels, for the training loop's
channels_last maps of few channels.

The forward is torch's convolution, then ReLU and pooling in one pass of a C kernel: torch's
channels_last pool vectorises over channels, so the modern LeNet-5's 6-channel maps ran its
scalar path (with the backward's zero fill, about a fifth of ``lenet5_mnist``'s training step
here, bf16 autocast, batch 128). The kernel's outputs are torch's to the bit, and it notes which
of each window's four values took the maximum (the first in row-major order on ties, as torch).
The backward (a second kernel) starts from those picks: only one conv output in four can get a
gradient, so the weights' and the input's gradients are sums over the kept pooled outputs,
accumulated in fp32, where torch's convolution backward runs dense over all of them (lenet5's
second conv, 6 -> 16 channels: 1.55 ms for the input's gradient alone, bf16, batch 128).
Both kernels are C, built by the machine's compiler for its own CPU at first use and loaded with
ctypes. A layout, dtype or size they do not take, a NaN in the conv's output, or a machine
without a compiler gets torch's modules; :func:`fuse` swaps the block in only on the training
loop's copy of a model (the zoo and the harness keep torch's).
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
    "MAX_ROW",
    "MAX_CHANNELS",
    "Kernel",
    "kernel",
    "ConvReluPool2d",
    "fusable",
    "applies",
    "fuse",
]

log = logging.getLogger(__name__)

COMPILER_ENV = "CC"  # the compiler to build with (default: gcc, then cc)
SWITCH_ENV = "CNN_ZOO_RELU_POOL_KERNEL"  # "0": torch's modules everywhere, as without a compiler
# The backward keeps a k x in_channels row of a conv's weights in at most four 8-float vectors
# (with 5x5 kernels, 1 and 6 input channels: rows of 5 and 30); and only convs of at most 16
# output channels, as measured. Here (bf16 autocast, batch 128): lenet5_mnist's loop with both
# its convs fused against conv1 only, 1.18x (9 paired runs); lab_cnn's conv1 (1 -> 32, a row of
# 5) fused, its loop 0.91x (5 pairs, before the ReLU+pool pass was vectorised); a 32 -> 64 conv
# (a row of 160) alone, 50 ms against 23.
MAX_ROW = 32
MAX_CHANNELS = 16

# Bit patterns throughout: bf16 as uint16_t, fp32 as uint32_t; values are compared as floats
# and written back bit for bit (a maximum is one of its inputs). Comparisons are plain ``>``
# with selects and masks rather than branches: on random data a branch on which of four values
# wins is mispredicted about half the time (3.8 ms against 0.6 ms for the forward, here).
_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float load_bf16(const uint16_t *p) {
    uint32_t bits = (uint32_t)*p << 16; float f; memcpy(&f, &bits, 4); return f;
}
static inline void store_bf16(uint16_t *p, float f) {  /* f is a bf16 value: exact */
    uint32_t bits; memcpy(&bits, &f, 4); *p = (uint16_t)(bits >> 16);
}
static inline void round_bf16(uint16_t *p, float f) {  /* to nearest, ties to even, as torch */
    uint32_t bits; memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) { *p = (uint16_t)((bits >> 16) | 0x40u); return; }
    *p = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
static inline float load_f32(const uint32_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline void store_f32(uint32_t *p, float f) { memcpy(p, &f, 4); }
#define round_f32 store_f32

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

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(32)));
typedef uint16_t vh __attribute__((vector_size(16)));
static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 vload_f32(const uint32_t *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline v8 vload_bf16(const uint16_t *p) {
    vh h; memcpy(&h, p, sizeof h);
    return (v8)(__builtin_convertvector(h, vu) << 16);
}
static inline v8 blend(vi mask, v8 yes, v8 no) {
    return (v8)(((vi)yes & mask) | ((vi)no & ~mask));
}

/* ReLU and pool. x: n x h x w x c (channels last, h and w even); out: n x h/2 x w/2 x c;
   pick: which of the window's four (0-3, row-major) took the maximum, 4 where the ReLU zeroed
   it. A row pair is compared 8 values at a time against the values c further on (each pixel
   with its right-hand neighbour; half the results, those of right-hand pixels, are not used),
   then the window's results are copied out: about 2x the window-by-window loop (0.32 against
   0.67 ms for 128x6x28x28 bf16, 0.15 against 0.34 for 128x16x10x10), the same bits. The vector
   loads read up to c + 7 values past a row pair, so the last one of the batch goes window by
   window. The maps of lenet5's two convs (6 and 16 channels) as constants. */
#define POOL(NAME, T)                                                                     \
static inline void windows_##NAME(const T *r0, const T *r1, T *o, uint8_t *p, int64_t ow, \
                                  int64_t c) {                                            \
    for (int64_t j = 0; j < ow; ++j)                                                      \
        for (int64_t k = 0; k < c; ++k) {                                                 \
            const int64_t left = 2 * j * c + k, right = left + c;                         \
            const float fa = load_##NAME(r0 + left), fb = load_##NAME(r0 + right);       \
            const float fc = load_##NAME(r1 + left), fd = load_##NAME(r1 + right);       \
            const int top = fb > fa, bottom = fd > fc;                                    \
            const float h0 = top ? fb : fa, h1 = bottom ? fd : fc;                        \
            const int lower = h1 > h0;                                                    \
            const float m = lower ? h1 : h0;                                              \
            const int on = m > 0;                                                         \
            const int at = top + lower * (2 + bottom - top);                              \
            store_##NAME(o + j * c + k, on ? m : 0.0f);                                   \
            p[j * c + k] = (uint8_t)(at + (1 - on) * (4 - at));                           \
        }                                                                                 \
}                                                                                         \
static inline void pool_##NAME(const T *x, T *out, uint8_t *pick, int64_t n, int64_t h,  \
                               int64_t w, const int64_t c) {                               \
    const int64_t oh = h / 2, ow = w / 2, row = w * c;                                    \
    float kept[row + 8];                                                                  \
    uint8_t code[row + 8];                                                                \
    for (int64_t b = 0; b < n; ++b)                                                        \
        for (int64_t i = 0; i < oh; ++i) {                                                \
            const T *r0 = x + (b * h + 2 * i) * row, *r1 = r0 + row;                       \
            T *o = out + (b * oh + i) * ow * c;                                           \
            uint8_t *p = pick + (b * oh + i) * ow * c;                                    \
            if (b == n - 1 && i == oh - 1) {                                              \
                windows_##NAME(r0, r1, o, p, ow, c);                                      \
                continue;                                                                 \
            }                                                                             \
            for (int64_t t = 0; t < row; t += 8) {                                        \
                const v8 fa = vload_##NAME(r0 + t), fb = vload_##NAME(r0 + t + c);        \
                const v8 fc = vload_##NAME(r1 + t), fd = vload_##NAME(r1 + t + c);        \
                const vi top = fb > fa, bottom = fd > fc; /* -1 where true */             \
                const v8 h0 = blend(top, fb, fa), h1 = blend(bottom, fd, fc);            \
                const vi lower = h1 > h0;                                                 \
                const v8 m = blend(lower, h1, h0);                                        \
                const vi on = m > (v8){0};                                                \
                const vi at = -top + -lower * (2 - bottom + top);                         \
                const vi which = (at & on) | (4 & ~on);                                   \
                st(kept + t, (v8)((vi)m & on));                                           \
                for (int q = 0; q < 8; ++q) code[t + q] = (uint8_t)which[q];              \
            }                                                                             \
            for (int64_t j = 0; j < ow; ++j)                                              \
                for (int64_t k = 0; k < c; ++k) {                                         \
                    store_##NAME(o + j * c + k, kept[2 * j * c + k]);                     \
                    p[j * c + k] = code[2 * j * c + k];                                   \
                }                                                                         \
        }                                                                                 \
}                                                                                         \
void forward_##NAME(const T *x, T *out, uint8_t *pick, int64_t n, int64_t h, int64_t w,  \
                    int64_t c) {                                                          \
    if (c == 6) pool_##NAME(x, out, pick, n, h, w, 6);                                    \
    else if (c == 16) pool_##NAME(x, out, pick, n, h, w, 16);                             \
    else pool_##NAME(x, out, pick, n, h, w, c);                                           \
}
POOL(bf16, uint16_t)
POOL(f32, uint32_t)

/* The conv's backward for one image, from the picks: only the conv outputs that took a kept
   maximum have a gradient g. gw: for each output channel o, its accumulators in registers over
   the image's kept outputs, gw[o] += g * the input patch. gx: for each conv output (y, x) that
   took some channels' maxima, the sum over them of g * w[o] in registers, added once to its
   patch in one of four partial maps (one per place in the 2x2 window, so patches added one
   after another never overlap in a map; the maps are summed at the end). A patch's rows are
   8 * vecs floats (k * ci rounded up to whole vectors): the extra lanes read the next pixel's
   inputs into gw lanes never read, and add g * 0 (the weights' padding) into slack of gx. */
static inline void image(const float *restrict xp, const float *restrict g,
                         const uint8_t *restrict pick, float *restrict part,
                         const float *restrict wr, float *restrict gwacc,
                         float *restrict gbacc, int32_t *restrict list, int64_t wp,
                         int64_t co, int64_t ph, int64_t pw, int64_t cells, int wants_gx,
                         const int64_t k, const int64_t ci, const int64_t vecs) {
    const int64_t line = wp * ci, span = 8 * vecs, pooled = ph * pw;
    for (int64_t o = 0; o < co; ++o) {
        int64_t kept = 0;  /* the kept pooled outputs, listed without a branch */
        for (int64_t i = 0, cell = 0; i < ph; ++i)
            for (int64_t j = 0; j < pw; ++j, ++cell) {
                const int at = pick[cell * co + o];
                list[kept] = (int32_t)cell;
                list[pooled + kept] = (int32_t)(((2 * i + (at >> 1)) * wp + 2 * j + (at & 1)) * ci);
                kept += at != 4;
            }
        v8 acc[k * vecs];
        for (int64_t q = 0; q < k * vecs; ++q) acc[q] = ld(gwacc + o * k * span + 8 * q);
        float bias = 0;
        for (int64_t e = 0; e < kept; ++e) {
            const float gv = g[list[e] * co + o];
            const float *restrict src = xp + list[pooled + e];
            bias += gv;
            for (int64_t ky = 0; ky < k; ++ky)
                for (int64_t v = 0; v < vecs; ++v)
                    acc[ky * vecs + v] += gv * ld(src + ky * line + 8 * v);
        }
        for (int64_t q = 0; q < k * vecs; ++q) st(gwacc + o * k * span + 8 * q, acc[q]);
        gbacc[o] += bias;
    }
    if (!wants_gx) return;
    memset(part, 0, 4 * cells * sizeof(float));
    int32_t *took = list;  /* per place in the window: the channels whose maximum it holds */
    for (int64_t i = 0, cell = 0; i < ph; ++i)
        for (int64_t j = 0; j < pw; ++j, ++cell) {
            int64_t count[5] = {0, 0, 0, 0, 0};
            for (int64_t o = 0; o < co; ++o) {
                const int at = pick[cell * co + o];
                took[at * co + count[at]++] = (int32_t)o;
            }
            for (int at = 0; at < 4; ++at) {
                if (!count[at]) continue;
                v8 acc[k * vecs];
                for (int64_t q = 0; q < k * vecs; ++q) acc[q] = (v8){0};
                for (int64_t e = 0; e < count[at]; ++e) {
                    const int64_t o = took[at * co + e];
                    const float gv = g[cell * co + o];
                    const float *restrict wo = wr + o * k * span;
                    for (int64_t q = 0; q < k * vecs; ++q) acc[q] += gv * ld(wo + 8 * q);
                }
                float *restrict dst = part + at * cells +
                                      ((2 * i + (at >> 1)) * wp + 2 * j + (at & 1)) * ci;
                for (int64_t ky = 0; ky < k; ++ky)
                    for (int64_t v = 0; v < vecs; ++v) {
                        float *p = dst + ky * line + 8 * v;
                        st(p, ld(p) + acc[ky * vecs + v]);
                    }
            }
        }
}

/* x: n x h x w x ci (channels last); wt: co x ci x k x k; g, pick: n x ph x pw x co, the pooled
   maps; gx (NULL where not wanted): as x; gw: as wt; gb: co. Stride 1, zero padding pad. The
   patch shapes of lenet5's convolutions as constants (5x5 over 1 and 6 channels). Returns 0, or
   -1 where memory ran out (nothing written). */
#define CONV(NAME, T)                                                                      \
int conv_backward_##NAME(const T *x, const T *wt, const T *g, const uint8_t *pick, T *gx,   \
                         T *gw, T *gb, int64_t n, int64_t h, int64_t w, int64_t ci,         \
                         int64_t co, int64_t k, int64_t pad) {                              \
    const int64_t hp = h + 2 * pad, wp = w + 2 * pad, ph = (hp - k + 1) / 2,               \
                  pw = (wp - k + 1) / 2, vecs = (k * ci + 7) / 8, span = 8 * vecs,           \
                  cells = hp * wp * ci + span, taps = co * k * span, pooled = ph * pw * co;  \
    float *xp = calloc(cells, sizeof(float)), *part = malloc(4 * cells * sizeof(float));    \
    float *wr = calloc(taps, sizeof(float)), *gwacc = calloc(taps, sizeof(float));          \
    float *gbacc = calloc(co, sizeof(float)), *gf = malloc(pooled * sizeof(float));         \
    int32_t *list = malloc((2 * pooled + 5 * co) * sizeof(int32_t));                       \
    int status = xp && part && wr && gwacc && gbacc && gf && list ? 0 : -1;                 \
    if (status == 0) {                                                                       \
        for (int64_t o = 0; o < co; ++o)                                                     \
            for (int64_t c = 0; c < ci; ++c)                                                 \
                for (int64_t q = 0; q < k * k; ++q)                                          \
                    wr[(o * k + q / k) * span + (q % k) * ci + c] =                          \
                        load_##NAME(wt + (o * ci + c) * k * k + q);                          \
        for (int64_t b = 0; b < n; ++b) {                                                    \
            const T *xb = x + b * h * w * ci;                                                \
            for (int64_t y = 0; y < h; ++y)                                                  \
                for (int64_t t = 0; t < w * ci; ++t)                                         \
                    xp[((y + pad) * wp + pad) * ci + t] = load_##NAME(xb + y * w * ci + t); \
            for (int64_t t = 0; t < pooled; ++t) gf[t] = load_##NAME(g + b * pooled + t);   \
            const uint8_t *pb = pick + b * pooled;                                           \
            if (k == 5 && ci == 1)                                                           \
                image(xp, gf, pb, part, wr, gwacc, gbacc, list, wp, co, ph, pw, cells,       \
                      gx != 0, 5, 1, 1);                                                     \
            else if (k == 5 && ci == 6)                                                      \
                image(xp, gf, pb, part, wr, gwacc, gbacc, list, wp, co, ph, pw, cells,       \
                      gx != 0, 5, 6, 4);                                                     \
            else                                                                             \
                image(xp, gf, pb, part, wr, gwacc, gbacc, list, wp, co, ph, pw, cells,       \
                      gx != 0, k, ci, vecs);                                                 \
            if (gx) {                                                                        \
                T *gxb = gx + b * h * w * ci;                                                \
                for (int64_t y = 0; y < h; ++y)                                              \
                    for (int64_t t = 0; t < w * ci; ++t) {                                   \
                        const int64_t q = ((y + pad) * wp + pad) * ci + t;                   \
                        round_##NAME(gxb + y * w * ci + t, (part[q] + part[cells + q]) +     \
                                     (part[2 * cells + q] + part[3 * cells + q]));           \
                    }                                                                        \
            }                                                                                \
        }                                                                                    \
        for (int64_t o = 0; o < co; ++o) {                                                   \
            round_##NAME(gb + o, gbacc[o]);                                                  \
            for (int64_t c = 0; c < ci; ++c)                                                 \
                for (int64_t q = 0; q < k * k; ++q)                                          \
                    round_##NAME(gw + (o * ci + c) * k * k + q,                              \
                                 gwacc[(o * k + q / k) * span + (q % k) * ci + c]);          \
        }                                                                                    \
    }                                                                                        \
    free(xp); free(part); free(wr); free(gwacc); free(gbacc); free(gf); free(list);         \
    return status;                                                                           \
}
CONV(bf16, uint16_t)
CONV(f32, uint32_t)
"""
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}


@dataclass(frozen=True)
class Kernel:
    """The built kernels (``lib`` None where they could not be built: ``reason`` says why)."""

    lib: ctypes.CDLL | None
    reason: str = ""

    def has_nan(self, x: torch.Tensor) -> bool:
        return bool(getattr(self.lib, "has_nan_" + _SUFFIX[x.dtype])(x.data_ptr(), x.numel()))

    def call(self, name: str, dtype: torch.dtype, *args: int | None) -> int | None:
        return getattr(self.lib, f"{name}_{_SUFFIX[dtype]}")(*args)


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
        # gnu99: C99 with GCC's vector types; and it lets the compiler fuse multiply-adds
        command = [compiler, "-O3", "-march=native", "-std=gnu99", "-shared", "-fPIC", source]
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
        getattr(lib, "forward_" + suffix).argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4
        getattr(lib, "forward_" + suffix).restype = None
        backward = getattr(lib, "conv_backward_" + suffix)
        backward.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 7
        backward.restype = ctypes.c_int
    return Kernel(lib)


def kernel() -> Kernel:
    """The kernels, built once a process (about a second with gcc here)."""
    global _built
    if _built is None:
        _built = _build()
        if _built.lib is None:
            log.info(
                "conv + ReLU + max-pool kernels unavailable (%s): torch's modules run",
                _built.reason,
            )
    return _built


def _torch_block(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int
) -> torch.Tensor:
    return F.max_pool2d(F.relu(F.conv2d(x, weight, bias, padding=padding)), 2)


class _ConvReluPool(torch.autograd.Function):
    """Inputs already in the dtype the block computes in (autocast's casts happen outside)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):  # type: ignore[override]
        with torch.autocast("cpu", enabled=False):
            conv = F.conv2d(x, weight, bias, padding=padding)
        conv = conv.contiguous(memory_format=torch.channels_last)
        ctx.padding = padding
        built = kernel()
        if built.has_nan(conv):  # torch's pool (NaN wins there) and, in the backward, torch's
            ctx.save_for_backward(x, weight, bias)
            ctx.picks = False
            return F.max_pool2d(F.relu(conv), 2)
        n, c, h, w = conv.shape
        out = torch.empty(
            (n, c, h // 2, w // 2), dtype=conv.dtype, memory_format=torch.channels_last
        )
        pick = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)
        built.call(
            "forward", conv.dtype, conv.data_ptr(), out.data_ptr(), pick.data_ptr(), n, h, w, c
        )
        ctx.save_for_backward(x, weight.contiguous(), bias, pick)
        ctx.picks = True
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if not ctx.picks:
            x, weight, bias = ctx.saved_tensors
            with torch.enable_grad(), torch.autocast("cpu", enabled=False):
                leaves = [
                    t.detach().requires_grad_(need) if t is not None else None
                    for t, need in zip((x, weight, bias), ctx.needs_input_grad)
                ]
                out = _torch_block(*leaves, ctx.padding)
                wanted = [t for t in leaves if t is not None and t.requires_grad]
                grads = iter(torch.autograd.grad(out, wanted, grad))
            return (
                *(next(grads) if t is not None and t.requires_grad else None for t in leaves),
                None,
            )
        x, weight, bias, pick = ctx.saved_tensors
        n, ci, h, w = x.shape
        co, _, k, _ = weight.shape
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = (
            torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last)
            if ctx.needs_input_grad[0]
            else None
        )
        grad_w = torch.empty(weight.shape, dtype=weight.dtype)
        grad_b = torch.empty(co, dtype=weight.dtype)
        status = kernel().call(
            "conv_backward", x.dtype, x.data_ptr(), weight.data_ptr(), grad.data_ptr(),
            pick.data_ptr(), None if grad_x is None else grad_x.data_ptr(), grad_w.data_ptr(),
            grad_b.data_ptr(), n, h, w, ci, co, k, ctx.padding,
        )  # fmt: skip
        if status != 0:
            raise MemoryError("the conv + ReLU + max-pool backward kernel ran out of memory")
        return grad_x, grad_w, grad_b if bias is not None else None, None


class ConvReluPool2d(nn.Conv2d):
    """``nn.Conv2d`` then ``nn.ReLU`` then ``nn.MaxPool2d(2)``, with the convolution's own
    parameters: the kernels where they take the input (a CPU channels_last map, fp32 or bf16
    autocast, an even conv output), torch's modules else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if autocast else x.dtype
        padding = self.padding[0]
        if (
            kernel().lib is None
            or x.device.type != "cpu"
            or dtype not in _SUFFIX
            or x.dim() != 4
            or (x.shape[2] + 2 * padding - self.kernel_size[0] + 1) % 2
            or (x.shape[3] + 2 * padding - self.kernel_size[0] + 1) % 2
            or not x.is_contiguous(memory_format=torch.channels_last)
        ):
            return F.max_pool2d(F.relu(super().forward(x)), 2)
        bias = None if self.bias is None else self.bias.to(dtype)
        return _ConvReluPool.apply(x.to(dtype), self.weight.to(dtype), bias, padding)


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


def _takes(conv: nn.Module) -> bool:
    """A plain square convolution (stride 1, symmetric zero padding) of few channels."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and conv.padding[0] == conv.padding[1]
        and conv.kernel_size[0] * conv.in_channels <= MAX_ROW
        and conv.out_channels <= MAX_CHANNELS
    )


def _blocks(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Each convolution the kernels take that a Sequential follows with ``nn.ReLU`` and a 2x2,
    stride-2 max-pool."""
    found = []
    for sequence in model.modules():
        if isinstance(sequence, nn.Sequential):
            layers = list(sequence)
            found += [
                (sequence, i)
                for i in range(len(layers) - 2)
                if _takes(layers[i])
                and type(layers[i + 1]) is nn.ReLU
                and _is_pool_2x2(layers[i + 2])
            ]
    return found


def fusable(model: nn.Module) -> int:
    """How many conv + ReLU + 2x2 max-pool blocks :func:`fuse` would replace in ``model``."""
    return len(_blocks(model)) if kernel().lib is not None else 0


def applies(model: nn.Module, device: str | torch.device, channels_last: bool) -> bool:
    """Whether :func:`fuse` would change ``model`` trained on ``device`` in that layout."""
    return torch.device(device).type == "cpu" and channels_last and fusable(model) > 0


def fuse(model: nn.Module) -> int:
    """Replace, in place, each conv + ReLU + 2x2 max-pool block by :class:`ConvReluPool2d`
    holding the conv's own parameters (the ReLU's and the pool's slots become ``nn.Identity``,
    so layer indices and the state dict keep their names); how many. None is replaced where the
    kernels could not be built."""
    if kernel().lib is None:
        return 0
    blocks = _blocks(model)
    for sequence, i in blocks:
        conv = sequence[i]
        block = ConvReluPool2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
            bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        block.weight, block.bias = conv.weight, conv.bias
        block.train(conv.training)
        sequence[i], sequence[i + 1], sequence[i + 2] = block, nn.Identity(), nn.Identity()
    return len(blocks)
