"""One training loop for every zoo model: time-to-accuracy and accuracy-at-budget.

What differs per model is its recipe (``bench.training.recipes``). Timing follows DAWNBench: the
wall
clock of training, data loading included (batches are made inside the timed loop), evaluation
excluded; time-to-accuracy is that clock at the first evaluation at or above the target.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import zoo
from bench.training.distributed import ONE_PROCESS, World
from bench.training.recipes import Recipe, loss_fn, lr_factor, resolve_dtype

__all__ = [
    "TrainSettings",
    "EvalPoint",
    "TrainOutcome",
    "train",
    "evaluate",
    "save_weights",
    "load_weights",
    "EVAL_DTYPE",
]

log = logging.getLogger(__name__)

TRAIN_DTYPES = ("auto", "fp32", "bf16_autocast")
# Evaluations during training run in fp32 whatever the training dtype, so that accuracies
# compare across machines (``auto`` trains in bf16 only where the CPU has it natively).
EVAL_DTYPE = "fp32"


@dataclass(frozen=True)
class TrainSettings:
    """One training run. ``None`` fields take the recipe's value."""

    model: str
    data: str = "mnist"
    epochs: int | None = None
    target_acc: float | None = None  # fraction in (0, 1]
    budget_s: float | None = None  # stop training after this many seconds
    seed: int = 0
    device: str = "cpu"
    dtype: str | None = None
    batch_size: int | None = None
    num_classes: int | None = None
    evals_per_epoch: int = 2  # evaluations per pass over the training split
    stop_at_target: bool = False  # stop at the first evaluation at or above the target
    # Evaluate on the first N test samples only (None: all). For quick budgeted runs of models
    # whose full evaluation costs more than their training; rows say how many were used.
    eval_limit: int | None = None

    def __post_init__(self) -> None:
        zoo.get_card(self.model)
        if self.target_acc is not None and not 0.0 < self.target_acc <= 1.0:
            raise ValueError(
                f"--target-acc must be a fraction in (0, 1], got {self.target_acc}: "
                "write 99% as 0.99"
            )
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"--budget-s must be positive, got {self.budget_s}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.dtype is not None and self.dtype not in TRAIN_DTYPES:
            raise ValueError(
                f"training dtype must be one of {', '.join(TRAIN_DTYPES)}, got {self.dtype!r} "
                "(bf16 weights need fp32 master weights to train; use bf16_autocast)"
            )
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"--eval-limit must be at least 1, got {self.eval_limit}")
        if self.seed < 0:
            raise ValueError(f"--seed must be 0 or more, got {self.seed}")
        if self.evals_per_epoch < 1:
            raise ValueError(f"--evals-per-epoch must be at least 1, got {self.evals_per_epoch}")


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training (a line of the per-epoch log)."""

    epoch: float  # passes over the training split so far
    wall_s: float  # training wall clock so far, evaluation excluded
    train_loss: float  # mean loss since the previous evaluation
    test_accuracy: float
    samples_per_s: float  # training samples per second since the previous evaluation


@dataclass
class TrainOutcome:
    accuracy: float  # at the end of training
    time_to_target_s: float | None  # None if the target was never reached (or not set)
    train_s: float
    epochs: float
    history: list[EvalPoint] = field(default_factory=list)
    model: nn.Module | None = None


def _clock(device: torch.device | str) -> float:
    """The training clock's reading: on CUDA after the queued steps have run, so their time is
    on the clock and not in the evaluation that follows."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _autocast(device: str, dtype: str):
    if dtype == "bf16_autocast":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            nesterov=recipe.momentum > 0,
            weight_decay=recipe.weight_decay,
        )
    raise ValueError(f"unknown optimizer {recipe.optimizer!r} in the recipe")


def evaluate(
    model: nn.Module,
    split,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    channels_last: bool = False,
    batch_size: int = 1000,
    limit: int | None = None,
    world: World = ONE_PROCESS,
) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (a fraction): every sample, or the first
    ``limit``. Under several processes each rank scores its own part (no sample twice, none
    padded in) and the counts are summed, so every rank returns the same exact accuracy."""
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.inference_mode(), _autocast(device, dtype):
        for x, y in split.batches(batch_size, device=device, limit=limit, shard=world.shard):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    model.train(was_training)
    correct, total = world.sum(correct, total)
    return correct / total


def train(
    settings: TrainSettings,
    splits,
    recipe: Recipe,
    *,
    on_eval: Callable[[EvalPoint], None] | None = None,
    progress: bool = True,
    world: World = ONE_PROCESS,
) -> TrainOutcome:
    """Train ``settings.model`` on ``splits`` with ``recipe``; evaluate ``evals_per_epoch`` times
    a pass. ``on_eval`` sees each evaluation as it happens (the caller writes it down).

    Under several processes (``world``, :mod:`bench.training.distributed`) the batch is the global
    one: each rank trains on ``batch / world_size`` samples of every step, DDP averages the
    gradients, and every decision (learning rate, budget, evaluation, stop) uses values all ranks
    share.
    """
    from tqdm import tqdm

    card = zoo.get_card(settings.model)
    device = world.device(settings.device)
    dtype = resolve_dtype(settings.dtype or recipe.dtype, device)
    batch_size = settings.batch_size or recipe.batch_size
    local_batch = world.local_batch(batch_size)
    epochs = settings.epochs or recipe.epochs
    if batch_size > len(splits.train):
        raise ValueError(
            f"batch size {batch_size} exceeds the {len(splits.train)} training samples: "
            "pass a smaller --batch-size"
        )
    torch.manual_seed(settings.seed)
    num_classes = settings.num_classes or splits.num_classes
    net = zoo.get_model(settings.model, num_classes=num_classes).to(device)
    if recipe.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    model = world.wrap(net, device)  # DDP under several processes; net itself otherwise
    optimizer = _optimizer(net, recipe)
    criterion = loss_fn(recipe)
    steps_per_epoch = len(splits.train) // batch_size  # the last short batch is dropped
    total_steps = steps_per_epoch * epochs
    eval_every = max(1, math.ceil(steps_per_epoch / settings.evals_per_epoch))
    generator = torch.Generator().manual_seed(settings.seed)
    evaluate_kw = dict(
        device=device,
        dtype=EVAL_DTYPE,
        channels_last=recipe.channels_last,
        limit=settings.eval_limit,
        world=world,
    )

    history: list[EvalPoint] = []
    time_to_target: float | None = None
    train_s = 0.0  # the training clock: evaluation time is not on it
    loss_sum = torch.zeros((), device=device)
    loss_count = samples_since = 0
    clock_at_last_eval = 0.0
    step = 0
    stop = False
    if world.is_main:
        log.info("training %s (%s) with %s", card.name, card.input_shape, recipe.describe())

    for epoch in range(epochs):
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"{settings.model} epoch {epoch + 1}/{epochs}",
            disable=not (progress and world.is_main),
            leave=False,
            unit="step",
        )
        started = _clock(device)
        # One generator for the run: a new order every epoch, the same orders for the same seed.
        for x, y in splits.train.batches(
            local_batch,
            shuffle=True,
            seed_or_generator=generator,
            drop_last=True,
            device=device,
            shard=world.shard,
        ):
            progress_frac = step / total_steps
            if settings.budget_s:
                progress_frac = max(progress_frac, train_s / settings.budget_s)
            factor = lr_factor(recipe, progress_frac, epoch)
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * factor
            if recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, dtype):
                loss = criterion(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            loss_count += 1
            samples_since += y.numel() * world.world_size
            step += 1
            now = _clock(device)
            train_s += now - started
            started = now
            bar.update(1)
            if step % 20 == 0:
                seen = train_s - clock_at_last_eval
                bar.set_postfix(
                    loss=f"{loss.item():.3f}", samples_s=f"{samples_since / max(seen, 1e-9):.0f}"
                )
            if settings.budget_s is not None:
                train_s = world.max(train_s)  # one clock: the same lr and stop on every rank
            out_of_time = settings.budget_s is not None and train_s >= settings.budget_s
            in_epoch = step - epoch * steps_per_epoch
            end_of_epoch = in_epoch == steps_per_epoch
            if in_epoch % eval_every == 0 or end_of_epoch or out_of_time:
                train_s = world.max(train_s)
                accuracy = evaluate(net, splits.test, **evaluate_kw)
                summed_loss, summed_count = world.sum(loss_sum.item(), loss_count)
                point = EvalPoint(
                    epoch=step / steps_per_epoch,
                    wall_s=train_s,
                    train_loss=summed_loss / max(summed_count, 1),
                    test_accuracy=accuracy,
                    samples_per_s=samples_since / max(train_s - clock_at_last_eval, 1e-9),
                )
                history.append(point)
                if on_eval is not None:
                    on_eval(point)
                reached = settings.target_acc is not None and accuracy >= settings.target_acc
                if reached and time_to_target is None:
                    time_to_target = train_s
                loss_sum.zero_()
                loss_count = samples_since = 0
                clock_at_last_eval = train_s
                started = _clock(device)  # the evaluation is off the clock
                stop = out_of_time or (reached and settings.stop_at_target)
                if stop:
                    break
        bar.close()
        if stop:
            break

    final = history[-1].test_accuracy if history else evaluate(net, splits.test, **evaluate_kw)
    return TrainOutcome(
        accuracy=final,
        time_to_target_s=time_to_target,
        train_s=train_s,
        epochs=step / steps_per_epoch,
        history=history,
        model=net,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: Path) -> Path:
    """Save ``model``'s state dict to ``path`` and its SHA-256 to ``path.sha256``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{_sha256(path)}  {path.name}\n")
    return sidecar


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict saved by :func:`save_weights`, after checking its SHA-256."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not sidecar.is_file():
        raise FileNotFoundError(
            f"{sidecar} is missing: weights are loaded only with their SHA-256 beside them"
        )
    expected = sidecar.read_text().split()[0]
    actual = _sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path} has SHA-256 {actual[:12]}…, its {sidecar.name} says {expected[:12]}…: "
            "the file is corrupt or was changed; retrain or restore it"
        )
    return torch.load(path, map_location="cpu", weights_only=True)
