"""One training loop for every zoo model: time-to-accuracy and accuracy-at-budget.

What differs per model is its recipe (``bench.training.recipes``). Timing follows DAWNBench: the
wall clock of training, data loading included (batches are made inside the timed loop), evaluation
excluded; time-to-accuracy is that clock at the first evaluation at or above the target.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import zoo
from bench.events import EpochFinished, EpochStarted, Listener, StepsDone, silent
from bench.measure.workload import autocast_context, cold_compile_cache
from bench.training.distributed import ONE_PROCESS, World
from bench.training.recipes import Recipe, lr_factor, recipe_for, resolve_dtype
from bench.training.sdlm import HESSIAN_SAMPLES, SDLM
from data.augment import augment_batch, check_augment
from data.idx import sha256_of_file
from zoo.lenet import LeNet5

if TYPE_CHECKING:
    from data.batches import Split
    from data.splits import Splits

__all__ = [
    "TrainSettings",
    "EvalPoint",
    "TrainOutcome",
    "train",
    "length_steps",
    "eval_interval",
    "evaluations",
    "check_can_stop",
    "MAX_EVALS",
    "STOPPED_BY",
    "check_batch_fits",
    "Scores",
    "evaluate",
    "evaluate_scores",
    "TOP5_MIN_CLASSES",
    "save_weights",
    "load_weights",
    "EVAL_DTYPES",
]

log = logging.getLogger(__name__)

TRAIN_DTYPES = ("auto", "fp32", "bf16_autocast")
# At most this many evaluations in a run, however many passes its length makes over a small
# data set (a 3,000-image folder trained on 60,000 samples makes 20 passes).
MAX_EVALS = 20
MIN_EVALS = 4  # and at least this many in a run shorter than a pass
# Why a run ended (a row's ``stopped_by``): its length in samples or epochs ran out, its budget
# of seconds did, or it reached its target (with ``stop_at_target``).
STOPPED_BY = ("length", "budget", "target")
# SDLM's per-sample updates are drawn from the data this many at a time (one pass over MNIST
# is 600 draws); the run's batch, its steps and its schedule stay per sample.
SDLM_DRAW = 100
# What an evaluation may run in (``TrainSettings.eval_dtype``); by default a run is evaluated in
# the dtype it trained in, and rows name it (``eval_dtype``). Trained in bf16 autocast, ResNet-34,
# VGG-16 and AlexNet on MNIST scored within one test image of their fp32 evaluation here, in
# half the time (ResNet-34: 58 s against 126 s for the 10,000 images).
EVAL_DTYPES = ("fp32", "bf16_autocast")
# Top-5 accuracy is scored where there are more classes than five (on five or fewer it is 1).
TOP5_MIN_CLASSES = 6


@dataclass(frozen=True)
class TrainSettings:
    """One training run. ``None`` fields take the recipe's value."""

    model: str
    data: str = "mnist"
    epochs: int | None = None  # the length in passes over the training split
    samples: int | None = None  # the length in samples seen
    target_acc: float | None = None  # fraction in (0, 1]
    # Seconds of training: the length (the schedule runs over it) unless epochs or samples are
    # given, where it only caps the run.
    budget_s: float | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str | None = None
    batch_size: int | None = None
    num_classes: int | None = None
    evals_per_epoch: int = 2  # evaluations per pass over the training split (at most MAX_EVALS)
    stop_at_target: bool = False  # stop at the first evaluation at or above the target
    # Evaluate during training on N test samples only, spread evenly over the split
    # (data.batches.spread; None: all), for models whose full evaluation costs more than their
    # training. The final accuracy and the target are always judged on the whole test split: a
    # subset at or above the target only decides when to evaluate the whole one. Each
    # evaluation says how many samples it scored.
    eval_limit: int | None = None
    recipe: str | None = None  # an ALTERNATIVE_RECIPES name; None: the model's own recipe
    eval_dtype: str | None = None  # one of EVAL_DTYPES; None: the dtype the run trains in
    augment: str | None = None  # one of data.augment.AUGMENTS; None: the recipe's

    def full(self) -> TrainSettings:
        """This run as ``--full`` trains it: its recipe's whole length (the literature's where
        one is given), with the augmentation the recipe keeps for that length (its
        ``full_augment``) unless one is asked."""
        recipe = recipe_for(self.model, self.recipe)
        return replace(
            self,
            samples=recipe.full_length(),
            augment=self.augment or recipe.full_augment,
        )

    def evaluation_dtype(self, training_dtype: str) -> str:
        """The dtype this run is evaluated in, given the (resolved) dtype it trains in."""
        return self.eval_dtype or training_dtype

    def __post_init__(self) -> None:
        recipe = recipe_for(self.model, self.recipe)  # an unknown model or recipe fails here
        if recipe.optimizer == "sdlm" and self.batch_size not in (None, 1):
            raise ValueError(
                f"{self.model}'s SDLM updates per sample: drop --batch-size {self.batch_size}, "
                "or train minibatches with --recipe lenet5_sgd"
            )
        if self.target_acc is not None and not 0.0 < self.target_acc <= 1.0:
            raise ValueError(
                f"--target-acc must be a fraction in (0, 1], got {self.target_acc}: "
                "write 99% as 0.99"
            )
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"--budget-s must be positive, got {self.budget_s}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"--samples must be at least 1, got {self.samples}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.dtype is not None and self.dtype not in TRAIN_DTYPES:
            raise ValueError(
                f"training dtype must be one of {', '.join(TRAIN_DTYPES)}, got {self.dtype!r} "
                "(bf16 weights need fp32 master weights to train; use bf16_autocast)"
            )
        if self.eval_dtype is not None and self.eval_dtype not in EVAL_DTYPES:
            raise ValueError(
                f"--eval-dtype must be one of {', '.join(EVAL_DTYPES)}, got {self.eval_dtype!r}"
            )
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"--eval-limit must be at least 1, got {self.eval_limit}")
        if self.seed < 0:
            raise ValueError(f"--seed must be 0 or more, got {self.seed}")
        if self.evals_per_epoch < 1:
            raise ValueError(f"--evals-per-epoch must be at least 1, got {self.evals_per_epoch}")
        if self.augment is not None:
            check_augment(self.augment)


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training (a line of the per-epoch log)."""

    epoch: float  # passes over the training split so far
    wall_s: float  # training wall clock so far, evaluation excluded
    train_loss: float  # mean loss since the previous evaluation
    test_accuracy: float
    samples_per_s: float  # training samples per second since the previous evaluation
    test_samples: int  # how many test samples ``test_accuracy`` is on (the whole split or not)


@dataclass
class TrainOutcome:
    accuracy: float  # at the end of training, on the whole test split
    time_to_target_s: float | None  # None if the target was never reached (or not set)
    train_s: float
    epochs: float
    samples_seen: int  # over every process
    stopped_by: str  # one of STOPPED_BY
    history: list[EvalPoint] = field(default_factory=list)
    model: nn.Module | None = None
    compile_s: float | None = None  # SDLM: compiling its step (cold), before the clock started
    top5: float | None = None  # at the end, on the whole test split; None: 5 classes or fewer
    per_class: tuple[float | None, ...] = ()  # at the end, top-1 of each class (Scores')
    # Of train_s, the seconds the loop waited for its next batch (this process's): indexing a
    # decoded tensor, or a DataLoader's decoding where streamed, and the copy to the device
    data_wait_s: float = 0.0
    # Images a second this process's training data path fed on its own, before training
    # (:func:`feed_rate`); None where the split held too few batches to time
    data_fed_per_s: float | None = None


def _clock(device: torch.device | str, sync: bool = True) -> float:
    """The training clock's reading: with ``sync``, on CUDA after the queued steps have run, so
    their time is on the clock and not in the evaluation that follows. Between evaluations the
    loop reads it without ``sync``: waiting after every step would take away the overlap of the
    host's next step with the device's work, which a user's loop has."""
    device = torch.device(device)
    if sync and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _optimizer(
    model: nn.Module, recipe: Recipe, batch_size: int, world: World
) -> torch.optim.Optimizer | SDLM:
    if recipe.optimizer == "sdlm":
        if not isinstance(model, LeNet5) or world.distributed:
            raise ValueError(
                "the sdlm optimizer (per-sample updates) trains lenet5 in one process only: "
                "use another recipe for this model or run without torchrun"
            )
        if batch_size != 1:
            raise ValueError(f"sdlm updates per sample: --batch-size 1, not {batch_size}")
        return SDLM(model)
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


@dataclass(frozen=True)
class Scores:
    """What one evaluation pass measured."""

    top1: float  # fraction of samples whose highest score is their class
    top5: float | None  # ... whose class is among the five highest; None: not scored
    samples: int  # how many samples were scored (over every process)
    # top-1 of each class, by class index; None for a class without a sample scored
    per_class: tuple[float | None, ...] = ()


def evaluate_scores(
    model: nn.Module,
    split: Split,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    channels_last: bool = False,
    batch_size: int = 1000,
    limit: int | None = None,
    world: World = ONE_PROCESS,
    top5: bool | None = None,
) -> Scores:
    """Top-1 and top-5 accuracy of ``model`` on ``split`` in one pass: every sample, or the
    first ``limit``. Under several processes each rank scores its own part (no sample twice,
    none padded in) and the counts are summed, so every rank returns the same exact scores.

    ``top5``: None scores it where the split has more than five classes (else it is None);
    True asks for it, and on five classes or fewer is a one-line ``ValueError``.
    """
    classes = split.num_classes
    if top5 and classes < TOP5_MIN_CLASSES:
        raise ValueError(
            f"top-5 accuracy needs more than 5 classes, the data has {classes}: every sample "
            "would count as a hit; drop the top-5 request"
        )
    with_top5 = classes >= TOP5_MIN_CLASSES if top5 is None else top5
    was_training = model.training
    model.eval()
    correct = correct5 = total = 0
    hits = torch.zeros(classes, dtype=torch.int64)
    seen = torch.zeros(classes, dtype=torch.int64)
    with torch.inference_mode(), autocast_context(dtype, torch.device(device)):
        for x, y in split.batches(batch_size, device=device, limit=limit, shard=world.rank_shard):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            scores = model(x)
            right = scores.argmax(1) == y
            correct += right.sum().item()
            labels = y.cpu()
            seen += torch.bincount(labels, minlength=classes)[:classes]
            hits += torch.bincount(labels[right.cpu()], minlength=classes)[:classes]
            if with_top5:
                best5 = scores.topk(min(5, scores.shape[1]), dim=1).indices
                correct5 += (best5 == y[:, None]).any(1).sum().item()
            total += y.numel()
    model.train(was_training)
    summed = world.sum(correct, correct5, total, *hits.tolist(), *seen.tolist())
    correct, correct5, total = summed[:3]
    by_class = zip(summed[3 : 3 + classes], summed[3 + classes :])
    return Scores(
        top1=correct / total,
        top5=correct5 / total if with_top5 else None,
        samples=int(total),
        per_class=tuple(h / n if n else None for h, n in by_class),
    )


def evaluate(
    model: nn.Module,
    split: Split,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    channels_last: bool = False,
    batch_size: int = 1000,
    limit: int | None = None,
    world: World = ONE_PROCESS,
) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (a fraction): :func:`evaluate_scores`'s, without
    top-5."""
    return evaluate_scores(
        model,
        split,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        batch_size=batch_size,
        limit=limit,
        world=world,
        top5=False,
    ).top1


def train(
    settings: TrainSettings,
    splits: Splits,
    recipe: Recipe,
    *,
    on_eval: Callable[[EvalPoint], None] | None = None,
    listen: Listener = silent,
    world: World = ONE_PROCESS,
) -> TrainOutcome:
    """Train ``settings.model`` on ``splits`` with ``recipe``; evaluate ``evals_per_epoch`` times
    a pass. ``on_eval`` sees each evaluation as it happens (the caller writes it down);
    ``listen`` hears of each epoch and step (:mod:`bench.events`; rank 0 only).

    Under several processes (``world``, :mod:`bench.training.distributed`) the batch is the global
    one: each rank trains on ``batch / world_size`` samples of every step, DDP averages the
    gradients, and every decision (learning rate, budget, evaluation, stop) uses values all ranks
    share.
    """
    run = _prepare(settings, splits, recipe, world)
    fed_per_s = feed_rate(run, splits.train)
    tally = _Tally(loss_sum=torch.zeros((), device=run.device))
    listen = listen if world.is_main else silent
    if world.is_main:
        card = zoo.get_card(settings.model)
        recipe_text = recipe.describe(loss=card.loss)
        log.info("training %s (%s) with %s", card.name, card.input_shape, recipe_text)
    epoch = 0
    while tally.stopped_by is None:
        steps = run.steps_per_epoch  # this pass's, where the length ends in it
        if run.total_steps is not None:
            steps = min(steps, run.total_steps - tally.step)
        listen(EpochStarted(settings.model, epoch + 1, run.epochs, steps))
        _train_epoch(run, splits, tally, on_eval, listen)
        listen(EpochFinished(settings.model, epoch + 1))
        epoch += 1
    history = tally.history
    if tally.last_whole:
        final, top5, per_class = history[-1].test_accuracy, tally.last_top5, tally.last_per_class
    else:
        scores = _evaluate(run, splits, True)
        final, top5, per_class = scores.top1, scores.top5, scores.per_class
    return TrainOutcome(
        accuracy=final,
        top5=top5,
        per_class=per_class,
        time_to_target_s=tally.time_to_target,
        train_s=tally.train_s,
        epochs=tally.step / run.steps_per_epoch,
        samples_seen=tally.step * run.batch_size,
        stopped_by=tally.stopped_by,
        history=history,
        model=run.net,
        compile_s=run.compile_s,
        data_wait_s=tally.data_wait_s,
        data_fed_per_s=fed_per_s,
    )


@dataclass
class _Run:
    """What a training run holds fixed: the model, its optimizer and the run's sizes."""

    settings: TrainSettings
    recipe: Recipe
    world: World
    device: str
    dtype: str  # the training dtype
    net: nn.Module
    model: nn.Module  # ``net`` in DDP under several processes, ``net`` itself otherwise
    optimizer: torch.optim.Optimizer | SDLM  # SDLM: LeNet-5's per-sample updates
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int  # the global batch
    local_batch: int
    total_steps: int | None  # the length in steps; None where the budget is the length
    epochs: int  # passes the length makes, rounded up (0 where the budget is the length)
    steps_per_epoch: int
    eval_every: int  # steps between evaluations (where the budget is the length: seconds / steps)
    # One generator for the run: a new order every epoch, the same orders for the same seed.
    generator: torch.Generator
    augment: str  # data.augment's name of the augmentation each training batch gets
    # Its own generator, seeded from the run's seed: the draws are the same on every rank and
    # for the same seed, and the sample order is the same with augmentation as without.
    augment_generator: torch.Generator
    fill: torch.Tensor  # the normalised value of pixel 0 (black), per channel: the padding
    compile_s: float | None = None  # SDLM's step compiled before training (off the clock)

    @property
    def sdlm(self) -> SDLM | None:
        """The per-sample SDLM trainer, where the recipe's optimizer is SDLM."""
        return self.optimizer if isinstance(self.optimizer, SDLM) else None

    @property
    def draw(self) -> int:
        """Samples drawn from the data at a time: the local batch, or SDLM_DRAW samples of
        per-sample updates."""
        return SDLM_DRAW if self.sdlm is not None else self.local_batch


@dataclass
class _Tally:
    """What a training run counts as it goes."""

    loss_sum: torch.Tensor  # on the device: read at evaluations only
    loss_count: int = 0
    samples_since: int = 0  # since the previous evaluation, over every rank
    step: int = 0
    train_s: float = 0.0  # the training clock: evaluation time is not on it
    data_wait_s: float = 0.0  # of train_s, waiting for the next batch
    clock_at_last_eval: float = 0.0
    time_to_target: float | None = None
    stopped_by: str | None = None  # set when the run ends
    last_whole: bool = False  # the last evaluation was on the whole test split
    last_top5: float | None = None  # the last evaluation's top-5 accuracy (None: not scored)
    last_per_class: tuple[float | None, ...] = ()  # the last evaluation's, by class
    history: list[EvalPoint] = field(default_factory=list)


def check_batch_fits(batch_size: int, samples: int) -> None:
    """Refuse a batch larger than the training split (no whole batch to train on)."""
    if batch_size > samples:
        raise ValueError(
            f"batch size {batch_size} exceeds the {samples} training samples: "
            "pass a smaller --batch-size"
        )


def _prepare(settings: TrainSettings, splits: Splits, recipe: Recipe, world: World) -> _Run:
    device = world.device(settings.device)
    batch_size = settings.batch_size or recipe.batch_size
    local_batch = world.local_batch(batch_size)
    check_batch_fits(batch_size, len(splits.train))
    torch.manual_seed(settings.seed)
    num_classes = settings.num_classes or splits.num_classes
    net = zoo.get_model(settings.model, num_classes=num_classes).to(device)
    if recipe.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    steps_per_epoch = len(splits.train) // batch_size  # the last short batch is dropped
    total_steps = length_steps(settings, recipe, steps_per_epoch)
    optimizer = _optimizer(net, recipe, batch_size, world)
    compile_s = None
    if isinstance(optimizer, SDLM):
        with cold_compile_cache():
            compile_s = optimizer.warm_up()
    fill, _ = splits.train.normalisation.affine_for_uint8(torch.device(device))
    return _Run(
        compile_s=compile_s,
        settings=settings,
        recipe=recipe,
        world=world,
        device=device,
        dtype=resolve_dtype(settings.dtype or recipe.dtype, device),
        net=net,
        model=world.wrap(net, device),
        optimizer=optimizer,
        criterion=zoo.criterion(settings.model, recipe.label_smoothing),
        batch_size=batch_size,
        local_batch=local_batch,
        total_steps=total_steps,
        epochs=math.ceil(total_steps / steps_per_epoch) if total_steps else 0,
        steps_per_epoch=steps_per_epoch,
        eval_every=eval_interval(settings, total_steps, steps_per_epoch),
        generator=torch.Generator().manual_seed(settings.seed),
        augment=check_augment(settings.augment or recipe.augment),
        augment_generator=torch.Generator().manual_seed(augment_seed(settings.seed)),
        fill=fill,
    )


# The data path's rate is timed on at most this many images, or for at most this long.
FEED_PROBE_IMAGES = 4096
FEED_PROBE_S = 2.0


def feed_rate(run: _Run, split: Split) -> float | None:
    """Images a second ``split`` feeds this process with no model to train: batches drawn as the
    training loop draws them (a streamed split decoded by its workers, a cached one indexed from
    its tensor, then copied to the device) and augmented as the run augments them.

    Off the training clock, before it starts, with generators of its own (the run's draws are
    untouched). Timed from the first batch past those an epoch may hold ready
    (:attr:`~data.batches.Split.ready_batches`: worker start-up and prefetch are not a rate), on
    up to FEED_PROBE_IMAGES images or FEED_PROBE_S seconds; None where fewer than two batches
    follow them.
    """
    shard = run.world.rank_shard
    order, draws = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    batches = split.batches(
        run.draw, shuffle=True, seed_or_generator=order, device=run.device, shard=shard
    )
    skip, fed, timed, started = split.ready_batches, 0, 0, 0.0
    try:
        for i, (x, _) in enumerate(batches):
            x = augment_batch(x, run.augment, draws, shard=shard, fill=run.fill)
            if torch.device(run.device).type == "cuda":
                torch.cuda.synchronize(run.device)  # the copy and augmentation are done
            now = time.perf_counter()  # not _clock: the training clock's readings stay its own
            if i == skip:
                started = now
            elif i > skip:
                fed, timed = fed + len(x), timed + 1
                if fed >= FEED_PROBE_IMAGES or now - started >= FEED_PROBE_S:
                    break
    finally:
        batches.close()  # a DataLoader's workers stop here
    return fed / (now - started) if timed >= 2 and now > started else None


def augment_seed(seed: int) -> int:
    """The augmentation generator's seed for a run's ``seed``: derived from it, but not it, so
    that the draws are not the sample order's random numbers over again."""
    digest = hashlib.sha256(f"cnn-zoo-bench augment {seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def eval_interval(settings: TrainSettings, total_steps: int | None, steps_per_epoch: int) -> int:
    """Steps between evaluations: ``evals_per_epoch`` a pass, at least MIN_EVALS in a run
    shorter than a pass, at most MAX_EVALS in a run."""
    per_epoch = math.ceil(steps_per_epoch / settings.evals_per_epoch)
    if total_steps and total_steps < steps_per_epoch:
        per_epoch = max(min(per_epoch, math.ceil(total_steps / MIN_EVALS)), 1)
    return max(per_epoch, math.ceil((total_steps or 0) / MAX_EVALS))


def evaluations(total_steps: int, every: int) -> int:
    """How many times a run of ``total_steps`` evaluated every ``every`` steps is evaluated: at
    each multiple of ``every`` before its end and where it ends, the last multiple left out
    where it falls under a quarter of ``every`` before the end (the final evaluation follows it
    within a few steps: lenet5_mnist's 704 steps, every 234, were evaluated at 702 and 704)."""
    multiples = (total_steps - 1) // every
    if multiples and _left_to_final(multiples * every, total_steps, every):
        multiples -= 1
    return multiples + 1


def _left_to_final(step: int, total_steps: int, every: int) -> bool:
    """Whether the evaluation due at ``step`` is left to the run's final one (see
    :func:`evaluations`)."""
    return step < total_steps and (total_steps - step) * 4 < every


def length_steps(settings: TrainSettings, recipe: Recipe, steps_per_epoch: int) -> int | None:
    """The run's length in optimizer steps: ``epochs`` passes, else ``samples`` (the settings',
    else, without a budget, the recipe's) rounded up to whole batches; None where the budget is
    the length."""
    batch = settings.batch_size or recipe.batch_size
    if settings.epochs is not None:
        return settings.epochs * steps_per_epoch
    if settings.samples is None and settings.budget_s is not None:
        return None
    return max(1, math.ceil((settings.samples or recipe.samples) / batch))


# A training split this large stands for one not read yet (:func:`check_can_stop`): a run that
# cannot stop early on it cannot on any split (its length is one step, or one pass evaluated
# once), and one that can may still not on a small split, which the run checks once it is read.
_UNREAD_SPLIT = 2**40


def check_can_stop(
    settings: TrainSettings, recipe: Recipe, train_samples: int | None = None
) -> None:
    """Refuse ``stop_at_target`` where the run could never stop before its length ends, in one
    line: no target (only MNIST has a default), or no evaluation before its last step
    (:func:`evaluations` of one). ``train_samples``: the training split's size; None before
    the data is read (the CLI's check), where only a run that could stop early on no split at
    all is refused."""
    if not settings.stop_at_target:
        return
    if settings.target_acc is None and settings.data.lower() != "mnist":
        raise ValueError(
            f"--stop-at-target needs a target on {settings.data}: give --target-acc, a fraction, "
            "e.g. 0.99 (only MNIST has a default)"
        )
    batch = settings.batch_size or recipe.batch_size
    per_epoch = max(1, (_UNREAD_SPLIT if train_samples is None else train_samples) // batch)
    steps = length_steps(settings, recipe, per_epoch)
    if steps is None or evaluations(steps, eval_interval(settings, steps, per_epoch)) > 1:
        return
    if settings.epochs is not None:
        passes = f"{settings.epochs} pass{'es' if settings.epochs != 1 else ''}"
        what = f"{passes} with --evals-per-epoch {settings.evals_per_epoch}"
    else:
        what = f"{steps} step{'s' if steps != 1 else ''} at batch {batch}"
    if train_samples is not None:
        what += f" on {train_samples:,} training samples"
    raise ValueError(
        f"--stop-at-target: a run of {what} is evaluated only where the run ends, so it cannot "
        "stop earlier; give a longer length or more --evals-per-epoch, or drop --stop-at-target"
    )


def _train_epoch(
    run: _Run,
    splits: Splits,
    tally: _Tally,
    on_eval: Callable[[EvalPoint], None] | None,
    listen: Listener,
) -> None:
    """One pass, or less where the run ends in it (``tally.stopped_by`` says why)."""
    budget_s = run.settings.budget_s
    started = _clock(run.device)
    if run.sdlm is not None:
        run.sdlm.estimate(*_hessian_samples(run, splits))
    # When the loop asked for its next batch: the host's clock, read apart from the training
    # clock (_clock) so that waiting for data adds no reading of it.
    asked = time.perf_counter()
    for x, y in splits.train.batches(
        run.draw,
        shuffle=True,
        seed_or_generator=run.generator,
        drop_last=run.sdlm is None,  # per-sample updates use every sample
        device=run.device,
        shard=run.world.rank_shard,
    ):
        tally.data_wait_s += time.perf_counter() - asked
        before = tally.step
        if run.sdlm is not None and run.total_steps is not None:  # a draw may pass the end
            x, y = x[: run.total_steps - tally.step], y[: run.total_steps - tally.step]
        # Drawn for the global batch and sliced to this rank's samples (data.augment): N
        # processes train on the augmented samples one process would. On the training clock.
        x = augment_batch(
            x, run.augment, run.augment_generator, shard=run.world.rank_shard, fill=run.fill
        )
        loss = _step(run, tally, x, y)
        now = _clock(run.device, sync=False)
        tally.train_s += now - started
        started = now
        _report_steps(tally, before, loss, listen)
        if budget_s is not None:
            tally.train_s = run.world.max(tally.train_s)  # one clock: same lr and stop everywhere
        out_of_time = budget_s is not None and tally.train_s >= budget_s
        if out_of_time and before == 0:
            raise ValueError(
                f"--budget-s {budget_s:g} ran out in the first training step, which took "
                f"{tally.train_s:.3g} s: nothing was trained to measure; give a longer budget"
            )
        done = run.total_steps is not None and tally.step >= run.total_steps
        if _eval_due(run, tally, before) or out_of_time or done:
            now = _clock(run.device)  # the steps still queued on a GPU finish on the clock
            tally.train_s += now - started
            reached = _evaluate_point(run, splits, tally, on_eval, whole=out_of_time or done)
            started = _clock(run.device)  # the evaluation is off the clock
            if reached and run.settings.stop_at_target:
                tally.stopped_by = "target"
            elif out_of_time or done:
                tally.stopped_by = "budget" if out_of_time and not done else "length"
            if tally.stopped_by is not None:
                return
        asked = time.perf_counter()


def _hessian_samples(run: _Run, splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """SDLM's HESSIAN_SAMPLES training samples for this pass's curvature estimate, drawn by the
    run's generator (a new draw every pass, the same draws for the same seed)."""
    size = min(HESSIAN_SAMPLES, len(splits.train))
    batches = splits.train.batches(
        size, shuffle=True, seed_or_generator=run.generator, device=run.device
    )
    return next(iter(batches))


def _eval_due(run: _Run, tally: _Tally, before: int) -> bool:
    """Whether an evaluation is due: every ``eval_every`` steps (the last draw went past a
    multiple) but one just before the end (:func:`evaluations`), or, where the budget is the
    length, every 1/MAX_EVALS of it."""
    if run.total_steps is None and run.settings.budget_s is not None:
        since = tally.train_s - tally.clock_at_last_eval
        return since >= run.settings.budget_s / MAX_EVALS
    if not _crossed(before, tally.step, run.eval_every):
        return False
    multiple = tally.step // run.eval_every * run.eval_every  # the one the draw went past
    return run.total_steps is None or not _left_to_final(multiple, run.total_steps, run.eval_every)


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether counting from ``before`` to ``after`` passed a multiple of ``every``."""
    return after // every > before // every


def _report_steps(tally: _Tally, before: int, loss: torch.Tensor, listen: Listener) -> None:
    """Steps done; every 20th step with the loss and the samples per second so far."""
    steps = tally.step - before
    if _crossed(before, tally.step, 20):
        seen = tally.train_s - tally.clock_at_last_eval
        rate = tally.samples_since / max(seen, 1e-9)
        listen(StepsDone(steps, loss=loss.item(), samples_per_s=rate))
    else:
        listen(StepsDone(steps))


def _progress(run: _Run, tally: _Tally) -> float:
    """How far into its length the run is (0..1): by steps, by the budget's seconds, or the
    further of the two where a budget caps a length."""
    budget_s = run.settings.budget_s
    progress = tally.step / run.total_steps if run.total_steps else 0.0
    if budget_s:
        progress = max(progress, tally.train_s / budget_s)
    return min(progress, 1.0)


def _step(run: _Run, tally: _Tally, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer step at the recipe's learning rate for where the run is (SDLM: one per
    sample of the draw); the mean loss."""
    recipe = run.recipe
    lr = recipe.lr * lr_factor(recipe, _progress(run, tally), tally.step * run.batch_size)
    if run.sdlm is not None:
        losses = run.sdlm.steps(x, y, lr)  # the rate of the draw's first sample for all
        loss, steps = losses.mean(), len(y)
    else:
        loss, steps = _batch_step(run, x, y, lr), 1
    tally.loss_sum += loss.detach() * steps
    tally.loss_count += steps
    tally.samples_since += y.numel() * run.world.world_size
    tally.step += steps
    return loss


def _batch_step(run: _Run, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
    """One step of a torch optimizer on the batch ``x``, ``y``; its loss."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    if run.recipe.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_context(run.dtype, torch.device(run.device)):
        loss = run.criterion(run.model(x).float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss


def _evaluate_point(
    run: _Run,
    splits: Splits,
    tally: _Tally,
    on_eval: Callable[[EvalPoint], None] | None,
    whole: bool = False,
) -> bool:
    """Evaluate (on the whole test split where ``whole``: the run's last point), record the
    point and start the next interval; True if the target is reached.

    A target is reached only on the whole split: the ``eval_limit`` test images spread over it
    are a sample, not the split (MNIST's first 250, the subset before it was spread, are easier
    than the rest), so a subset at or above the target is followed at once by the whole split,
    whose accuracy is the point's."""
    tally.train_s = run.world.max(tally.train_s)
    target = run.settings.target_acc
    scores = _evaluate(run, splits, whole)
    whole = scores.samples == len(splits.test)
    if not whole and target is not None and tally.time_to_target is None and scores.top1 >= target:
        scores = _evaluate(run, splits, whole=True)
        whole = True
    accuracy, samples = scores.top1, scores.samples
    tally.last_whole = whole
    tally.last_top5 = scores.top5
    tally.last_per_class = scores.per_class
    summed_loss, summed_count = run.world.sum(tally.loss_sum.item(), tally.loss_count)
    point = EvalPoint(
        epoch=tally.step / run.steps_per_epoch,
        wall_s=tally.train_s,
        train_loss=summed_loss / max(summed_count, 1),
        test_accuracy=accuracy,
        samples_per_s=tally.samples_since / max(tally.train_s - tally.clock_at_last_eval, 1e-9),
        test_samples=samples,
    )
    tally.history.append(point)
    if on_eval is not None:
        on_eval(point)
    reached = whole and target is not None and accuracy >= target
    if reached and tally.time_to_target is None:
        tally.time_to_target = tally.train_s
    tally.loss_sum.zero_()
    tally.loss_count = tally.samples_since = 0
    tally.clock_at_last_eval = tally.train_s
    return reached


def _evaluate(run: _Run, splits: Splits, whole: bool = False) -> Scores:
    """Top-1 (and, past five classes, top-5) accuracy on the test split, and how many samples
    they are on: the settings' ``eval_limit`` samples spread over the split during training,
    all of them where ``whole``."""
    if run.sdlm is not None:
        run.sdlm.write_back(run.net)
    limit = None if whole else run.settings.eval_limit
    return evaluate_scores(
        run.net,
        splits.test,
        device=run.device,
        dtype=run.settings.evaluation_dtype(run.dtype),
        channels_last=run.recipe.channels_last,
        limit=limit,
        world=run.world,
    )


def save_weights(model: nn.Module, path: Path) -> Path:
    """Save ``model``'s state dict to ``path`` and its SHA-256 to ``path.sha256``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{sha256_of_file(path)}  {path.name}\n")
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
    actual = sha256_of_file(path)
    if actual != expected:
        raise ValueError(
            f"{path} has SHA-256 {actual[:12]}…, its {sidecar.name} says {expected[:12]}…: "
            "the file is corrupt or was changed; retrain or restore it"
        )
    return torch.load(path, map_location="cpu", weights_only=True)
