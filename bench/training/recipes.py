"""Training recipes: what differs per model when one loop trains the whole zoo.

A recipe is data. Where the paper gives one (LeNet-5), it is the paper's, with any stand-in said
plainly in ``note``; elsewhere the settings used in its place are stated, with why. Every row
written by the training loop carries the recipe's ``describe()`` string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F

import zoo
from bench.measure import machine
from zoo.lenet import map_loss

__all__ = [
    "Recipe",
    "RECIPES",
    "LAB_RECIPE",
    "recipe_for",
    "lr_factor",
    "resolve_dtype",
    "LOSSES",
    "loss_fn",
]


@dataclass(frozen=True)
class Recipe:
    loss: str = "cross_entropy"  # or "map": LeNet-5's MAP criterion on its RBF scores
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adam"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"  # "onecycle": linear warm-up then linear decay to 0; "passes"
    warmup: float = 0.2  # fraction of training spent warming up (onecycle)
    # "passes": the learning rate of each pass over the data, then the last one for the rest.
    lr_passes: tuple[float, ...] = ()
    epochs: int = 1
    batch_size: int = 256
    normalisation: str = "meanstd"  # or "lenet5_paper": background -0.1, ink 1.175
    # "auto": bf16 autocast where the device has fast bf16 kernels (CUDA with bf16, a CPU with
    # avx512_bf16/AMX: about 1.8x the fp32 step there), else fp32 (a CPU with only AVX2 runs bf16
    # convolutions 7-30x slower than fp32).
    dtype: str = "auto"
    channels_last: bool = True  # +37-47% per step on this CPU for 3x3/5x5 convs
    note: str = ""  # where it departs from the paper, and why

    def describe(self) -> str:
        """One line for result rows: the settings that matter to a reader."""
        lr = (
            "passes " + "/".join(f"{v:g}" for v in self.lr_passes)
            if self.schedule == "passes"
            else f"{self.schedule} peak {self.lr:g}"
        )
        text = (
            f"{self.optimizer} lr {lr}, wd {self.weight_decay:g}, {self.loss}, batch "
            f"{self.batch_size}, {self.epochs} epoch(s), {self.dtype}"
            f"{', channels_last' if self.channels_last else ''}, {self.normalisation}"
        )
        return f"{text}; {self.note}" if self.note else text


# Settings used where a paper gives no small-input recipe: SGD with Nesterov momentum and a
# one-cycle schedule, which reaches 99% on MNIST in one epoch for these networks.
_MODERN = Recipe()  # SGD + Nesterov, one-cycle to peak 0.05, batch 256, one epoch
# The paper's learning rate eta for passes 1-2, 3-5, 6-8, 9-12, then the rest (Sec. II.D).
LENET5_ETAS = (5e-4,) * 2 + (2e-4,) * 3 + (1e-4,) * 3 + (5e-5,) * 4 + (1e-5,)
LENET5_SGD_SCALE = 5

RECIPES: dict[str, Recipe] = {
    # LeCun et al. 1998, Sec. II.C-D and App. C: 20 passes, eta 5e-4 x2, 2e-4 x3, 1e-4 x3,
    # 5e-5 x4, then 1e-5, per-sample updates with stochastic diagonal Levenberg-Marquardt (SDLM),
    # whose step for weight k is eta / (mu + h_kk). Plain SGD stands in, at LENET5_SGD_SCALE x eta
    # on minibatches of 16: a first-pass sweep here gave 93.1% at 1x, 97.4% at 5x, 96.9% at 20x,
    # and divergence at 50x (= eta / mu, SDLM's largest step).
    "lenet5": Recipe(
        loss="map",
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        schedule="passes",
        lr_passes=tuple(LENET5_SGD_SCALE * eta for eta in LENET5_ETAS),
        lr=LENET5_SGD_SCALE * LENET5_ETAS[0],
        epochs=20,
        batch_size=16,
        normalisation="lenet5_paper",
        dtype="fp32",
        channels_last=False,
        note=(
            f"plain SGD at {LENET5_SGD_SCALE}x the paper's eta on minibatches of 16 stands in "
            "for its per-sample stochastic diagonal Levenberg-Marquardt"
        ),
    ),
    # The lab's Adam and batch, with a one-cycle schedule (peak 2e-3) in place of its constant
    # 1e-3: 99% in one pass instead of two or three.
    "lab_cnn": replace(
        _MODERN,
        optimizer="adam",
        lr=2e-3,
        weight_decay=0.0,
        batch_size=128,
        note="the lab's Adam with a one-cycle schedule in place of its constant 1e-3",
    ),
    "lenet5_modern": replace(_MODERN, epochs=2, batch_size=64),
    "lenet5_mnist": replace(_MODERN, epochs=2, batch_size=64),
    "lenet5_cifar": replace(_MODERN, epochs=2, batch_size=64),
    "alexnet_mnist": replace(_MODERN, lr=0.02, note="AlexNet's dropout kept; peak lr lowered"),
    "alexnet_cifar": replace(_MODERN, lr=0.02, note="AlexNet's dropout kept; peak lr lowered"),
}

# The lab's own loop (shared/LAB.md), the baseline our benchmarks beat: Adam 1e-3, batch 128,
# fp32, inputs / 255, constant learning rate.
LAB_RECIPE = Recipe(
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    schedule="constant",
    epochs=3,
    batch_size=128,
    dtype="fp32",
    channels_last=False,
    note="the lab's loop: Adam 1e-3, batch 128, fp32",
)


def recipe_for(model: str) -> Recipe:
    """The recipe of ``model``: its own row, else the modern default (one-cycle SGD)."""
    zoo.get_card(model)  # an unknown name fails here, with the closest names
    return RECIPES.get(model, _MODERN)


def resolve_dtype(dtype: str, device: str) -> str:
    """``"auto"`` made concrete for ``device``: bf16 autocast where it has native bf16
    (:func:`bench.measure.machine.native_bf16`, the harness's detector too), else fp32."""
    if dtype != "auto":
        return dtype
    return "bf16_autocast" if machine.native_bf16(device) else "fp32"


# The criteria a recipe names: scores and targets -> the mean loss of the batch.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "map": map_loss,  # LeNet-5's MAP criterion on its RBF scores (Sec. II.C)
}


def loss_fn(recipe: Recipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The criterion ``recipe`` trains with (the harness's timed step uses it too)."""
    loss = LOSSES[recipe.loss]
    if recipe.label_smoothing:
        return partial(loss, label_smoothing=recipe.label_smoothing)
    return loss


def lr_factor(recipe: Recipe, progress: float, epoch: int) -> float:
    """The learning rate at ``progress`` (0..1 of the run) in ``epoch``, as a fraction of lr."""
    if recipe.schedule == "passes":
        passes = recipe.lr_passes
        return passes[min(epoch, len(passes) - 1)] / recipe.lr
    if recipe.schedule == "constant":
        return 1.0
    if progress < recipe.warmup:
        return max(progress / recipe.warmup, 1e-3)
    return max(1.0 - (progress - recipe.warmup) / (1.0 - recipe.warmup), 0.0)
