"""LeNet-5 trained as published: stochastic diagonal Levenberg-Marquardt (SDLM).

LeCun, Bottou, Bengio, Haffner 1998, Sec. II.D and App. C. Each parameter k takes per-sample
steps ``eta / (mu + h_kk)`` along its gradient, mu = 0.02, where h_kk is a Gauss-Newton estimate
of the diagonal second derivative of the loss, averaged over 500 training samples before each
pass and held fixed during it. h is back-propagated like a gradient with every factor squared:
weights, inputs and the squashing function's derivative; a shared weight sums its connections.

The network is computed here by hand (convolutions as unfold + matrix products, C3 as a dense
6→16 convolution whose 900 unconnected weights are zero and never step), so one code path gives
the loss, the gradient (``square=False``) and the second derivatives (``square=True``), and a
per-sample step is a few dozen small operations. Tests check it against the zoo's ``LeNet5``
under autograd, and each layer's second derivatives against an exact Jacobian or Hessian.

Where the network ends and the criterion begins: the RBF layer has no trainable parameter, so
the curvature back-propagation starts from the exact diagonal Hessian of the MAP criterion with
respect to F6's outputs (positive: a variance plus twice the rubbish class's probability).
The eta schedule the recipe gives (``bench.training.recipes``, scaled there, with why) is the
only other input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.lenet import C3_TABLE, LeNet5

log = logging.getLogger(__name__)

__all__ = [
    "MU",
    "HESSIAN_SAMPLES",
    "PARAM_NAMES",
    "Activations",
    "from_model",
    "to_model",
    "c3_mask",
    "forward",
    "Criterion",
    "criterion",
    "curvature",
    "squash_back",
    "dense_back",
    "conv_back",
    "subsample_back",
    "backprop",
    "diag_hessian",
    "step_sizes",
    "sdlm_step",
    "SDLM",
]

MU = 0.02  # App. C: keeps the step bounded (at most eta / mu) where the curvature is small
HESSIAN_SAMPLES = 500  # App. C: h_kk re-estimated on 500 training samples before each pass
# The per-sample steps run on one thread whatever the process has (a row's ``threads``): one
# sample's kernels are too small to share, 1.3x faster than two here.
STEP_THREADS = 1
A, S = 1.7159, 2.0 / 3.0  # the squashing function f(a) = A tanh(S a)
# The trainer's parameters, in this order: C1, S2, C3 (dense, masked), S4, C5, F6.
PARAM_NAMES = ("w1", "b1", "s2w", "s2b", "w3", "b3", "s4w", "s4b", "w5", "b5", "w6", "b6")

Params = Sequence[torch.Tensor]


def c3_mask(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """(16, 150): 1 where C3 map i reads S2 map j (Table I), for each of the 25 kernel taps."""
    mask = torch.zeros(16, 6, 25, dtype=dtype, device=device)
    for i, row in enumerate(C3_TABLE):
        mask[i, list(row)] = 1.0
    return mask.reshape(16, 150)


def _c3_groups(model: LeNet5) -> list[tuple[torch.nn.Conv2d, list[int]]]:
    """C3's grouped convolutions, each with the C3 maps it computes (those of its fan-in)."""
    groups = []
    for conv in model.c3.groups:
        fan_in = conv.in_channels // conv.groups
        groups.append((conv, [i for i, row in enumerate(C3_TABLE) if len(row) == fan_in]))
    return groups


def from_model(model: LeNet5) -> list[torch.Tensor]:
    """The trainer's copy of ``model``'s parameters (PARAM_NAMES order)."""
    like = model.c1.weight
    dense = torch.zeros(16, 6, 5, 5, dtype=like.dtype, device=like.device)
    bias3 = torch.zeros(16, dtype=like.dtype, device=like.device)
    for conv, maps in _c3_groups(model):
        for k, i in enumerate(maps):
            dense[i, list(C3_TABLE[i])] = conv.weight[k].detach()
            bias3[i] = conv.bias[k].detach()
    weights = (
        model.c1.weight.reshape(6, 25),
        model.c1.bias,
        model.s2.weight,
        model.s2.bias,
        dense.reshape(16, 150),
        bias3,
        model.s4.weight,
        model.s4.bias,
        model.c5.weight.reshape(120, 400),
        model.c5.bias,
        model.f6.weight,
        model.f6.bias,
    )
    return [w.detach().clone().contiguous() for w in weights]


@torch.no_grad()
def to_model(params: Params, model: LeNet5) -> None:
    """Write the trainer's parameters back into ``model`` (C3 into its grouped convolutions)."""
    w1, b1, s2w, s2b, w3, b3, s4w, s4b, w5, b5, w6, b6 = params
    model.c1.weight.copy_(w1.reshape(model.c1.weight.shape))
    model.c1.bias.copy_(b1)
    model.s2.weight.copy_(s2w)
    model.s2.bias.copy_(s2b)
    dense = w3.reshape(16, 6, 5, 5)
    for conv, maps in _c3_groups(model):
        for k, i in enumerate(maps):
            conv.weight[k].copy_(dense[i, list(C3_TABLE[i])])
            conv.bias[k].copy_(b3[i])
    model.s4.weight.copy_(s4w)
    model.s4.bias.copy_(s4b)
    model.c5.weight.copy_(w5.reshape(model.c5.weight.shape))
    model.c5.bias.copy_(b5)
    model.f6.weight.copy_(w6)
    model.f6.bias.copy_(b6)


@dataclass(frozen=True)
class Activations:
    """What the backward passes read: each layer's input (patches for convolutions) and
    squashed output, per sample of the batch."""

    p1: torch.Tensor  # (B, 25, 784): C1's input patches
    x1: torch.Tensor  # (B, 6, 28, 28): f(C1)
    s2: torch.Tensor  # (B, 6, 14, 14): the sums of S2's 2x2 blocks
    x2: torch.Tensor  # (B, 6, 14, 14): f(S2)
    p3: torch.Tensor  # (B, 150, 100): C3's input patches
    x3: torch.Tensor  # (B, 16, 10, 10): f(C3)
    s4: torch.Tensor  # (B, 16, 5, 5)
    x4: torch.Tensor  # (B, 400): f(S4), C5's input
    x5: torch.Tensor  # (B, 120): f(C5)
    x6: torch.Tensor  # (B, 84): f(F6), the RBF layer's input


def _squash(a: torch.Tensor) -> torch.Tensor:
    return A * torch.tanh(S * a)


def _squash_slope(x: torch.Tensor) -> torch.Tensor:
    """f'(a) from f(a) = x: A S (1 - tanh^2) = (S / A)(A^2 - x^2)."""
    return (S / A) * (A * A - x * x)


def _block_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of each 2x2 block: (B, C, H, W) -> (B, C, H/2, W/2)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).sum((3, 5))


def _spread(g: torch.Tensor) -> torch.Tensor:
    """Back through a 2x2 block sum: each of the four inputs gets its block's value."""
    return g.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def forward(params: Params, x: torch.Tensor) -> Activations:
    """LeNet-5 (the zoo's ``lenet5``) on ``x`` (B, 1, 32, 32), keeping what backprop reads."""
    w1, b1, s2w, s2b, w3, b3, s4w, s4b, w5, b5, w6, b6 = params
    batch = x.shape[0]
    p1 = F.unfold(x, 5)  # (B, 25, 784)
    x1 = _squash(torch.matmul(w1, p1) + b1[:, None]).reshape(batch, 6, 28, 28)
    s2 = _block_sum(x1)
    x2 = _squash(s2 * s2w[:, None, None] + s2b[:, None, None])
    p3 = F.unfold(x2, 5)  # (B, 150, 100)
    x3 = _squash(torch.matmul(w3, p3) + b3[:, None]).reshape(batch, 16, 10, 10)
    s4 = _block_sum(x3)
    x4 = _squash(s4 * s4w[:, None, None] + s4b[:, None, None]).reshape(batch, 400)
    x5 = _squash(torch.addmm(b5, x4, w5.t()))
    x6 = _squash(torch.addmm(b6, x5, w6.t()))
    return Activations(p1, x1, s2, x2, p3, x3, s4, x4, x5, x6)


@dataclass(frozen=True)
class Criterion:
    """The RBF layer and the MAP criterion (Sec. II.C) on F6's outputs x6, per sample."""

    loss: torch.Tensor  # (B,): E = y_D + log(e^-j + sum_i e^-y_i)
    grad: torch.Tensor  # (B, 84): dE/dx6
    scores: torch.Tensor  # (B, classes): -y, as the zoo's LeNet5 returns them
    diff: torch.Tensor  # (B, classes, 84): d_i = x6 - w_i
    p: torch.Tensor  # (B, classes + 1): the softmax over (-y, -j), the rubbish class last


def criterion(
    x6: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor, j: float = 1.0
) -> Criterion:
    """The loss and dE/dx6 = 2 sum_i (δ_iD - p_i) d_i of LeNet-5's output on ``x6`` (B, 84)."""
    diff = x6[:, None, :] - prototypes[None]
    penalties = diff.pow(2).sum(2)  # y_i
    logits = torch.cat([-penalties, penalties.new_full((len(x6), 1), -j)], dim=1)
    p = torch.softmax(logits, dim=1)
    loss = penalties.gather(1, y[:, None])[:, 0] + torch.logsumexp(logits, dim=1)
    dy = F.one_hot(y, len(prototypes)).to(x6.dtype) - p[:, :-1]  # dE/dy_i
    grad = 2 * torch.einsum("bc,bcf->bf", dy, diff)
    return Criterion(loss, grad, -penalties, diff, p)


def curvature(out: Criterion) -> torch.Tensor:
    """The exact diagonal of d2E/dx6^2 (B, 84): 2 p_rubbish + 4 (sum_i p_i d_i^2 -
    (sum_i p_i d_i)^2), a variance plus a positive term, so never negative."""
    p = out.p[:, :-1]
    mean = torch.einsum("bc,bcf->bf", p, out.diff)
    spread = torch.einsum("bc,bcf->bf", p, out.diff * out.diff) - mean * mean
    return 2 * out.p[:, -1:] + 4 * spread


def _power(t: torch.Tensor, square: bool) -> torch.Tensor:
    return t * t if square else t


def squash_back(top: torch.Tensor, out: torch.Tensor, square: bool = False) -> torch.Tensor:
    """Back through x = f(a), given x (``out``): top * f'(a), or top * f'(a)^2 (f'' dropped)."""
    return top * _power(_squash_slope(out), square)


def dense_back(
    top: torch.Tensor, weight: torch.Tensor, inputs: torch.Tensor, square: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Back through a = x W^T + b (F6; C5, whose 5x5 kernel covers its whole input): the
    derivatives for x (B, in), W and b, the last two summed over the batch."""
    return (
        torch.matmul(top, _power(weight, square)),
        torch.matmul(top.t(), _power(inputs, square)),
        top.sum(0),
    )


def conv_back(
    top: torch.Tensor,
    weight: torch.Tensor,
    patches: torch.Tensor,
    size: int,
    square: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Back through a 5x5 convolution a = W unfold(x) + b (C1; C3 with its unconnected
    weights zero): ``top`` (B, out, P) to x (B, in, size, size), W (out, in*25) and b."""
    grad_x = F.fold(torch.matmul(_power(weight, square).t(), top), (size, size), 5)
    grad_w = torch.matmul(top, _power(patches, square).transpose(1, 2)).sum(0)
    return grad_x, grad_w, top.sum((0, 2))


def subsample_back(
    top: torch.Tensor, coefficient: torch.Tensor, sums: torch.Tensor, square: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Back through S2/S4, a = c * (sum of the 2x2 block) + b: ``top`` (B, C, h, w) to the
    inputs (B, C, 2h, 2w), c and b. The coefficient has one connection per unit, from the
    block's sum; each input reaches its unit through c."""
    grad_x = _spread(top * _power(coefficient, square)[:, None, None])
    grad_c = (top * _power(sums, square)).sum((0, 2, 3))
    return grad_x, grad_c, top.sum((0, 2, 3))


def backprop(
    params: Params, acts: Activations, top: torch.Tensor, square: bool = False
) -> list[torch.Tensor]:
    """Back-propagate ``top`` (B, 84), a derivative with respect to F6's outputs, to every
    parameter (PARAM_NAMES order), summed over the batch.

    ``square=False``: first derivatives (the chain rule). ``square=True``: the diagonal
    Gauss-Newton second derivatives of App. C, where every factor of the chain rule is squared
    (weights, layer inputs, f'), a shared weight sums its connections and f'' is dropped.
    """
    w1, _, s2w, _, w3, _, s4w, _, w5, _, w6, _ = params
    batch = top.shape[0]
    g6 = squash_back(top, acts.x6, square)
    g_x5, g_w6, g_b6 = dense_back(g6, w6, acts.x5, square)
    g5 = squash_back(g_x5, acts.x5, square)
    g_x4, g_w5, g_b5 = dense_back(g5, w5, acts.x4, square)
    g4 = squash_back(g_x4, acts.x4, square).reshape(batch, 16, 5, 5)
    g_x3, g_s4w, g_s4b = subsample_back(g4, s4w, acts.s4, square)
    g3 = squash_back(g_x3, acts.x3, square).reshape(batch, 16, 100)
    g_x2, g_w3, g_b3 = conv_back(g3, w3, acts.p3, 14, square)
    g2 = squash_back(g_x2, acts.x2, square)
    g_x1, g_s2w, g_s2b = subsample_back(g2, s2w, acts.s2, square)
    g1 = squash_back(g_x1, acts.x1, square).reshape(batch, 6, 784)
    _, g_w1, g_b1 = conv_back(g1, w1, acts.p1, 32, square)  # the image's derivative is unused
    return [g_w1, g_b1, g_s2w, g_s2b, g_w3, g_b3, g_s4w, g_s4b, g_w5, g_b5, g_w6, g_b6]


def diag_hessian(
    params: Params, x: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor
) -> list[torch.Tensor]:
    """h_kk for every parameter (PARAM_NAMES order): the per-sample diagonal Gauss-Newton
    second derivatives averaged over the samples ``x``, ``y`` (the paper's 500)."""
    acts = forward(params, x)
    top = curvature(criterion(acts.x6, y, prototypes))
    return [h / len(x) for h in backprop(params, acts, top, square=True)]


def step_sizes(hessian: Sequence[torch.Tensor], mu: float = MU) -> list[torch.Tensor]:
    """Each parameter's step per unit of eta, 1 / (mu + h_kk); zero for C3's unconnected
    weights, which therefore stay zero."""
    sizes = [1.0 / (mu + h) for h in hessian]
    w3 = PARAM_NAMES.index("w3")
    sizes[w3] = sizes[w3] * c3_mask(sizes[w3].dtype, sizes[w3].device)
    return sizes


def sdlm_step(
    params: list[torch.Tensor],
    sizes: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eta: torch.Tensor,
    prototypes: torch.Tensor,
) -> torch.Tensor:
    """One SDLM update on one sample ``x`` (1, 1, 32, 32), in place: every parameter moves by
    -eta * size * gradient. Returns the sample's loss before the update. ``eta`` is a tensor
    so that a compiled step serves every pass of the schedule."""
    acts = forward(params, x)
    out = criterion(acts.x6, y, prototypes)
    grads = backprop(params, acts, out.grad)
    torch._foreach_mul_(grads, sizes)
    torch._foreach_mul_(grads, -eta)
    torch._foreach_add_(params, grads)
    return out.loss


class SDLM:
    """Per-sample SDLM training of one ``LeNet5``: the trainer's copy of its parameters, the
    step sizes of the current pass, and the step, compiled by ``torch.compile`` where that
    works (about 4x the eager step on a 2-core CPU; docs/lenet5-sdlm.md)."""

    def __init__(self, model: LeNet5, compile_step: bool = True) -> None:
        self.params = from_model(model)
        like = self.params[0]
        self.prototypes = model.output.prototypes.detach().to(like.dtype)
        self.sizes: list[torch.Tensor] | None = None
        self._eta = torch.zeros((), dtype=like.dtype, device=like.device)
        self._step: Callable[..., torch.Tensor] = sdlm_step
        if compile_step:
            self._step = torch.compile(sdlm_step, fullgraph=True, dynamic=False)
        self.compiled = compile_step

    def warm_up(self) -> float:
        """Compile the step on copies of the parameters (a blank sample, eta 0), so that
        compiling is off the training clock; the seconds it took."""
        started = time.perf_counter()
        params = [p.clone() for p in self.params]
        sizes = [torch.zeros_like(p) for p in params]
        x = params[0].new_zeros(1, 1, 32, 32)
        y = torch.zeros(1, dtype=torch.long, device=x.device)
        saved, self.params, self.sizes = (self.params, self.sizes), params, sizes
        try:
            self.steps(x, y, 0.0)
        finally:
            self.params, self.sizes = saved
        return time.perf_counter() - started

    def estimate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set the step sizes from h_kk averaged over ``x``, ``y`` (before each pass)."""
        with torch.no_grad():
            self.sizes = step_sizes(diag_hessian(self.params, x, y, self.prototypes))

    @torch.no_grad()
    def steps(self, x: torch.Tensor, y: torch.Tensor, eta: float) -> torch.Tensor:
        """One update per sample of ``x`` (K, 1, 32, 32), in order; the K losses."""
        if self.sizes is None:
            raise RuntimeError("SDLM.estimate must run before the first pass's steps")
        self._eta.fill_(eta)
        threads = torch.get_num_threads()
        torch.set_num_threads(STEP_THREADS)
        try:
            losses = [self._one(x[k : k + 1], y[k : k + 1]) for k in range(len(x))]
        finally:
            torch.set_num_threads(threads)
        return torch.cat(losses)

    def _one(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        args = (self.params, self.sizes, x, y, self._eta, self.prototypes)
        try:
            return self._step(*args)
        except Exception as error:  # no C++ compiler, an inductor failure: the same step eager
            if not self.compiled:
                raise
            log.warning("torch.compile failed (%s); SDLM steps run eagerly", error)
            self._step, self.compiled = sdlm_step, False
            return self._step(*args)

    def write_back(self, model: LeNet5) -> None:
        """Copy the trained parameters into ``model`` (before an evaluation, at the end)."""
        to_model(self.params, model)
