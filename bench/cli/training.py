"""``train``, ``eval`` and ``accuracy``: training runs, saved weights, the accuracy plan."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cli.options import (
    add_out,
    add_shard,
    add_threads,
    fraction,
    non_negative,
    non_negative_int,
    positive,
    resolve_shard,
    shard_out,
)
from bench.events import (
    EpochFinished,
    EpochStarted,
    Evaluated,
    Event,
    RunFinished,
    RunOverBudget,
    RunRateMeasured,
    RunSkipped,
    RunStarted,
    StepsDone,
)
from bench.schema import one_line

if TYPE_CHECKING:
    from bench.training.estimate import RateRow

__all__ = [
    "add_train_arguments",
    "run_train",
    "add_eval_arguments",
    "run_eval",
    "add_accuracy_arguments",
    "run_accuracy_plan",
    "TrainingListener",
]


# --- train ------------------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, dtype_help: str) -> None:
    """What ``train`` and ``eval`` share: the model, the data, the device and dtype."""
    parser.add_argument("model", help="a registered model name (see `python -m bench list`)")
    parser.add_argument(
        "--data",
        default="mnist",
        help="'mnist', 'cifar10' (python -m data fetch cifar10 provisions it) or an ImageFolder "
        "path",
    )
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="an ImageFolder's non-image or unreadable files are skipped (logged), not an error",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype", default=None, choices=["auto", "fp32", "bf16_autocast"], help=dtype_help
    )
    parser.add_argument(
        "--num-classes",
        type=positive(int),
        default=None,
        help="refuse data whose class count differs",
    )
    add_threads(parser, positive(int))


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench train``."""
    _add_common(
        parser,
        "training dtype; default: the recipe's ('auto': bf16 autocast where the CPU has native "
        "bf16); evaluations run in it too unless --eval-dtype says otherwise",
    )
    _add_recipe(parser)
    _add_run_length(parser)
    parser.add_argument("--no-save", action="store_true", help="do not save the weights")
    _add_loading(parser)
    from bench.training.distributed import BACKENDS

    parser.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="under torchrun: the process group's backend (default: gloo on cpu, nccl on cuda)",
    )
    add_out(parser, "results folder (default: results/<run-id>)")


def _add_recipe(parser: argparse.ArgumentParser) -> None:
    """Which recipe a run trains with, and ``--full``: its whole published length."""
    from bench.training.recipes import ALTERNATIVE_RECIPES

    parser.add_argument(
        "--recipe",
        default=None,
        choices=sorted(ALTERNATIVE_RECIPES),
        help="train with this recipe instead of the model's own (lenet5_sgd: plain SGD in "
        "place of LeNet-5's SDLM)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the recipe's whole length as published (LeNet-5: 20 passes; the CIFAR VGG and "
        "ResNet: the literature's 200 passes, a GPU-sized run); refuses --epochs, --samples and "
        "--budget-s",
    )
    from data.augment import AUGMENTS

    parser.add_argument(
        "--augment",
        default=None,
        choices=AUGMENTS,
        help="augmentation of each training batch (default: the recipe's; crop4_flip: 4-pixel "
        "padding, a random crop and a horizontal flip per image; crop2_flip: 2 pixels; flip: "
        "the flip alone); never on evaluation",
    )


def _add_run_length(parser: argparse.ArgumentParser) -> None:
    """How long a run trains and how often it is evaluated; its seeds and batch."""
    parser.add_argument(
        "--epochs",
        type=positive(int),
        default=None,
        help="the length in passes over the training split (default: the recipe's samples)",
    )
    parser.add_argument(
        "--samples",
        type=positive(int),
        default=None,
        metavar="N",
        help="the length in samples seen, rounded up to whole batches (default: the recipe's)",
    )
    parser.add_argument(
        "--target-acc",
        type=fraction,
        default=None,
        help="time-to-accuracy target, a fraction (default on MNIST: the recipe's, e.g. "
        "0.985 for lenet5_mnist, else 0.99)",
    )
    parser.add_argument(
        "--budget-s",
        type=positive(float),
        default=None,
        help="train for this many seconds, the schedule run over them (accuracy at budget); "
        "with --epochs or --samples, only a cap",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--seeds",
        type=positive(int),
        default=1,
        help="repeat with seeds seed..seed+N-1 and report mean ± std",
    )
    parser.add_argument("--batch-size", type=positive(int), default=None)
    parser.add_argument(
        "--evals-per-epoch",
        type=positive(int),
        default=2,
        help=(
            "evaluations a pass (default 2; at least 4 in a run under a pass, at most 20 in a "
            "run), and one where the run ends, in place of one due less than a quarter of the "
            "interval before the end"
        ),
    )
    parser.add_argument(
        "--eval-limit",
        type=positive(int),
        default=None,
        metavar="N",
        help=(
            "evaluate during training on N test samples spread evenly over the split (default: "
            "all; rows record N; the last evaluation uses all)"
        ),
    )
    parser.add_argument(
        "--stop-at-target",
        action="store_true",
        help="stop at the first evaluation at or above --target-acc",
    )
    add_eval_dtype(parser)


def add_eval_dtype(parser: argparse.ArgumentParser) -> None:
    """``--eval-dtype``, of ``train``, ``accuracy`` and ``all``."""
    from bench.training.loop import EVAL_DTYPES

    parser.add_argument(
        "--eval-dtype",
        default=None,
        choices=EVAL_DTYPES,
        help="evaluate in this dtype (default: the one the run trains in; rows say which)",
    )


def _add_loading(parser: argparse.ArgumentParser) -> None:
    """How an ImageFolder is loaded: cached as a tensor or streamed by workers."""
    parser.add_argument(
        "--cache-limit-mb",
        type=float,
        default=None,
        metavar="MB",
        help="an ImageFolder up to this many decoded MB is cached as a tensor, a larger one "
        "streams through DataLoader workers (default: 512; 0: always stream)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="DataLoader worker processes of a streamed ImageFolder (default: cores - 1, "
        "at most 4; 0: decode in the training process)",
    )


def _setup(args: argparse.Namespace) -> None:
    import torch

    import zoo

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available: use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo.get_card(args.model)


def run_train(args: argparse.Namespace) -> int:
    """Train a model on MNIST or an ImageFolder: time-to-accuracy and accuracy-at-budget."""
    from bench.sweep.loop import new_run_dir
    from bench.training import distributed
    from bench.training.distributed import World
    from bench.training.loop import check_can_stop
    from bench.training.recipes import recipe_for
    from bench.training.runs import run_accuracy

    _setup(args)
    _check_folder(args.out, "--out")
    base = _train_settings(args)
    recipe = recipe_for(args.model, args.recipe)
    check_can_stop(base, recipe)  # before any data is read; the run checks again once it is
    data_options = _data_options(args)
    launched = distributed.launched()
    # Refused before the process group forms: a bad batch must not leave the others waiting.
    World(world_size=launched[1] if launched else 1).local_batch(
        args.batch_size or recipe.batch_size
    )
    world = distributed.start(args.device, args.backend)
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for all
    try:
        out = args.out or new_run_dir()
        rows = [
            run_accuracy(
                replace(base, seed=seed),
                out,
                save=not args.no_save,
                listen=TrainingListener(),
                data_progress=True,
                world=world,
                data_options=data_options,
            ).row
            for seed in range(args.seed, args.seed + args.seeds)
        ]
        if world.is_main:
            _print_seeds_summary(rows)
            print(f"results in {out}", file=sys.stderr)
    finally:
        distributed.stop(world)
    return 0 if all(r["error"] is None for r in rows) else 1


def _train_settings(args: argparse.Namespace) -> Any:
    """``train``'s :class:`bench.training.loop.TrainSettings` (the first seed's): each of its
    fields is an option of ``train`` of the same name."""
    from dataclasses import fields

    from bench.training.loop import TrainSettings

    if args.full and (args.epochs or args.samples or args.budget_s):
        raise ValueError(
            "--full trains the recipe's whole length: drop --epochs, --samples and --budget-s"
        )
    settings = TrainSettings(
        **{field.name: getattr(args, field.name) for field in fields(TrainSettings)}
    )
    return settings.full() if args.full else settings


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """``data.load``'s loading options from ``train``'s flags (only those given)."""
    options: dict[str, Any] = {}
    if args.cache_limit_mb is not None:
        if args.cache_limit_mb < 0:
            raise ValueError(f"--cache-limit-mb must be 0 or more, got {args.cache_limit_mb:g}")
        options["cache_limit_bytes"] = int(args.cache_limit_mb * 2**20)
    if args.workers is not None:
        if args.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {args.workers}")
        options["num_workers"] = args.workers
    if args.skip_bad_files:
        options["bad_files"] = "skip"
    return options


def _check_folder(path: Path | None, what: str) -> None:
    """Refuse a results folder that is a file, before any work."""
    if path is not None and path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file: give a results folder (new or existing)")


class TrainingListener:
    """Renders training's events: a bar per epoch on stderr; a line per evaluation, per run
    and per run of a plan started or skipped on stdout."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        if isinstance(event, EpochStarted):
            of = f"/{event.epochs}" if event.epochs else ""  # 0: the budget is the length
            desc = f"{event.model} epoch {event.epoch}{of}"
            self._bar = tqdm(total=event.steps, desc=desc, leave=False, unit="step")
        elif isinstance(event, StepsDone) and self._bar is not None:
            self._bar.update(event.steps)
            if event.loss is not None and event.samples_per_s is not None:
                self._bar.set_postfix(
                    loss=f"{event.loss:.3f}", samples_s=f"{event.samples_per_s:.0f}"
                )
        elif isinstance(event, EpochFinished) and self._bar is not None:
            self._bar.close()
            self._bar = None
        elif isinstance(event, PlanLine):
            tqdm.write(_line(event), file=sys.stdout)
            sys.stdout.flush()


PlanLine = Evaluated | RunFinished | RunStarted | RunSkipped | RunOverBudget | RunRateMeasured


def _line(event: PlanLine) -> str:
    if isinstance(event, Evaluated):
        return (
            f"{event.model} seed {event.seed} epoch {event.epoch:5.2f}  "
            f"{event.wall_s:7.1f} s  loss {event.train_loss:.4f}  "
            f"test acc {event.test_accuracy:.4f} on {event.test_samples:,}  "
            f"{event.samples_per_s:,.0f} samples/s"
        )
    if isinstance(event, RunFinished):
        return _row_line(event.row, event.weights)
    if isinstance(event, RunSkipped):
        return f"[{event.index}/{event.total}] {event.model} seed {event.seed}: already measured"
    if isinstance(event, RunOverBudget):
        from bench.training.estimate import seconds_text

        return (
            f"[{event.index}/{event.total}] {event.model} seed {event.seed}: left out, "
            f"{event.predicted} predicted here, {seconds_text(event.left_s)} left of the job's "
            f"budget; `{event.command}` trains it"
        )
    if isinstance(event, RunRateMeasured):
        from bench.training.estimate import seconds_text

        return (
            f"[{event.index}/{event.total}] {event.model} seed {event.seed}: {event.predicted} "
            f"predicted, {seconds_text(event.left_s)} left of the job's budget, too near to "
            f"decide on: measuring its training rate at {event.row} first"
        )
    budget = f", budget {event.budget_s:g} s" if event.budget_s else ""
    what = f"{event.model} on {event.data}, {event.device} (seed {event.seed}{budget})"
    predicted = f"; {event.predicted}" if event.predicted else ""
    return f"[{event.index}/{event.total}] training {what}{predicted}"


def _row_line(row: dict[str, Any], weights: Path | None) -> str:
    """A training run's row in one line: its accuracy, time and target, or its error."""
    if row["error"]:
        return f"{row['model']} seed {row['seed']}: ERROR {row['error']}"
    ttt = row["time_to_target_s"]
    target = row["target_acc"]
    reached = (
        f"{target:.2%} reached at {ttt:.1f} s"
        if ttt is not None
        else (f"{target:.2%} not reached within its {_ended(row)}" if target else "no target")
    )
    procs = (
        f" on {row['world_size']} processes ({row['backend']}, global batch {row['global_batch']})"
        if (row.get("world_size") or 1) > 1
        else ""
    )
    top5 = f", top-5 {row['top5']:.4f}" if row.get("top5") is not None else ""
    return (
        f"{row['model']} seed {row['seed']}{procs}: test accuracy {row['accuracy']:.4f}{top5} "
        f"({row['test_samples']:,} images, {row['eval_dtype']}) after "
        f"{row['samples_seen']:,} samples ({row['epochs']:g} epochs), "
        f"{row['train_s']:.1f} s of training "
        f"({row['data_on_clock']} on the clock, evaluation excluded), stopped by its "
        f"{_ended(row)}; {reached}" + (f"; weights {weights}" if weights else "")
    )


def _ended(row: dict[str, Any]) -> str:
    """What ended a run, in words: its length, its budget or its target."""
    if row["stopped_by"] == "budget":
        return f"budget of {row['budget_s']:g} s"
    return str(row["stopped_by"])  # "length" or "target"


def _print_seeds_summary(rows: list[dict[str, Any]]) -> None:
    """Mean ± std over the seeds that trained, when there are two or more."""
    good = [r for r in rows if r["error"] is None]
    if len(good) < 2:
        return
    acc = [r["accuracy"] for r in good]
    line = f"{good[0]['model']} over {len(good)} seeds: accuracy {statistics.mean(acc):.4f} ± "
    line += f"{statistics.stdev(acc):.4f}"
    times = [r["time_to_target_s"] for r in good]
    if all(t is not None for t in times):
        line += f"; time to target {statistics.mean(times):.1f} ± {statistics.stdev(times):.1f} s"
    elif any(t is not None for t in times):
        line += f"; target reached by {sum(t is not None for t in times)} of {len(times)} seeds"
    print(line)


# --- eval -------------------------------------------------------------------------------------


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench eval``."""
    _add_common(parser, "evaluation dtype (default: fp32)")
    parser.add_argument(
        "--weights",
        required=True,
        metavar="FILE|torchvision[:NAME]",
        help="a .pt file saved by `bench train` (its .sha256 beside it), or torchvision's "
        "published ImageNet weights for alexnet_owt, vgg16, vgg19 or resnet34 (NAME: the "
        "weights enum's member, default DEFAULT), read from torch's hub cache and downloaded "
        "there where the network allows; --data is then an ImageNet-style folder",
    )
    add_out(parser, "also append the evaluation as an accuracy row to the results folder DIR")
    parser.add_argument(
        "--batch-size",
        type=positive(int),
        default=None,
        metavar="N",
        help="images a batch (default: 1000; 32 with torchvision's 224-pixel weights)",
    )
    _add_loading(parser)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate saved weights (their SHA-256 checked first) or torchvision's published ones on
    a test (or val) split: top-1, top-5 past five classes, each class's top-1."""
    from bench.training.pretrained import is_published

    _setup(args)
    published = is_published(args.weights)
    if args.batch_size is None:
        args.batch_size = 32 if published else 1000
    return _eval_published(args) if published else _eval_saved(args)


def _eval_saved(args: argparse.Namespace) -> int:
    import data
    import zoo
    from bench.training.loop import evaluate_scores, load_weights
    from bench.training.recipes import recipe_for, resolve_dtype
    from bench.training.runs import Evaluation, check_input_fits, data_shape, per_class_accuracy

    state = load_weights(Path(args.weights))  # checks the hash first; weights_only=True
    check_input_fits(args.model, data_shape(args.data))
    splits = data.load(
        args.data,
        input_shape=zoo.get_card(args.model).input_shape,
        normalisation=recipe_for(args.model).normalisation,
        **_data_options(args),
    )
    classes = args.num_classes or splits.num_classes
    if classes != splits.num_classes:
        raise ValueError(
            f"--num-classes {classes} but {args.data} has {splits.num_classes} classes: "
            "drop --num-classes or fix the data"
        )
    model = zoo.get_model(args.model, num_classes=classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{args.weights} does not fit {args.model}: {one_line(error)}") from None
    dtype = resolve_dtype(args.dtype or "fp32", args.device)
    scores = evaluate_scores(
        model.to(args.device), splits.test, device=args.device, dtype=dtype,
        batch_size=args.batch_size,
    )  # fmt: skip
    top5 = "" if scores.top5 is None else f", top-5 {scores.top5:.4f}"
    print(
        f"{args.model} on {args.data} ({scores.samples} test samples, {dtype}): "
        f"accuracy {scores.top1:.4f}{top5}"
    )
    per_class = per_class_accuracy(splits.test.class_names, scores.per_class)
    _print_weakest(per_class)
    if args.out is not None:
        scored = Evaluation(
            str(args.weights), scores.top1, scores.top5, scores.samples, per_class,
            data_source=splits.source,
        )  # fmt: skip
        _write_eval_row(args, dtype, scored)
    return 0


def _eval_published(args: argparse.Namespace) -> int:
    import zoo
    from bench.training.pretrained import evaluate_published, load_published, published_weights
    from bench.training.recipes import resolve_dtype
    from bench.training.runs import Evaluation
    from data.imagefolder import default_workers

    if args.data in ("mnist", "cifar10"):
        raise ValueError(
            f"torchvision's weights are ImageNet's, not {args.data}'s: give --data an "
            "ImageNet-style folder (class folders named as the weights' categories, or the "
            "1,000 synset folders)"
        )
    workers = _data_options(args).get("num_workers", default_workers())
    published = published_weights(args.model, args.weights)
    model = zoo.get_model(args.model)
    model.load_state_dict(load_published(published))
    dtype = resolve_dtype(args.dtype or "fp32", args.device)
    scores = evaluate_published(
        model, published, Path(args.data), device=args.device, dtype=dtype,
        batch_size=args.batch_size, workers=workers,
    )  # fmt: skip

    def pct(value: float | None) -> str:
        return "not published" if value is None else f"{value:.2%}"

    print(
        f"{args.model} with {published.name} on {args.data} ({scores.samples} images, {dtype}, "
        f"the weights' own preprocessing): top-1 {scores.top1:.2%}, top-5 {scores.top5:.2%}; "
        f"torchvision publishes top-1 {pct(published.top1)}, top-5 {pct(published.top5)} "
        "(ImageNet-1K val, 50,000 images)"
    )
    _print_weakest(scores.per_class)
    if args.out is not None:
        scored = Evaluation(
            f"torchvision:{published.name}", scores.top1, scores.top5, scores.samples,
            scores.per_class, published=(published.top1, published.top5),
        )  # fmt: skip
        _write_eval_row(args, dtype, scored)
    return 0


def _print_weakest(per_class: dict[str, float] | None) -> None:
    from bench.report.by_class import weakest_text

    if per_class and len(per_class) > 1:
        print(f"weakest classes: {weakest_text(per_class)}")


def _write_eval_row(args: argparse.Namespace, dtype: str, scored: Any) -> None:
    """Append ``scored`` (a :class:`bench.training.runs.Evaluation`) to ``--out`` as a row."""
    import torch

    from bench.measure.machine import describe
    from bench.schema import ResultsWriter
    from bench.training.runs import evaluation_row

    threads = torch.get_num_threads()
    row = evaluation_row(
        args.model, scored, data_name=str(args.data), device=args.device, dtype=dtype,
        batch_size=args.batch_size, threads=threads,
        machine=describe((args.device,), threads, measure_peak=False),
    )  # fmt: skip
    ResultsWriter(args.out).write_row(row)
    print(f"row written to {args.out / 'results.jsonl'}")


# --- accuracy ---------------------------------------------------------------------------------


def add_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench accuracy``."""
    parser.add_argument("out", type=Path, help="results folder to append the rows to")
    parser.add_argument(
        "--data",
        choices=["mnist", "cifar10"],
        default="mnist",
        help="the plan of a data set: mnist (provisioned if missing; default) or cifar10 (every "
        "CIFAR-sized variant; provision it first with `python -m data fetch cifar10`)",
    )
    parser.add_argument("--full", action="store_true", help="the long plan (recipes to the end)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="PATTERN",
        help="only the plan's runs whose model matches",
    )
    parser.add_argument(
        "--none-ok",
        action="store_true",
        help="no run matching --models is not an error (`bench all` passes its own --models)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=None,
        choices=["cpu", "cuda"],
        metavar="DEVICE",
        help="train each run on each of these: cpu and/or cuda (default: cpu)",
    )
    add_threads(parser, positive(int))
    add_eval_dtype(parser)
    parser.add_argument("--resume", action="store_true", help="skip runs already in OUT")
    parser.add_argument(
        "--plan-budget-s",
        type=non_negative(float),
        default=None,
        metavar="S",
        help="leave out each run whose time, predicted from the harness's rows in OUT, is over "
        "what is left of S seconds (one line each, and the report lists them); `bench all` "
        "passes what is left of its --job-budget-min",
    )
    add_shard(
        parser,
        "only the I-th of N disjoint slices of the plan (as `bench run --shard`); auto: the "
        "scheduler's slice, into OUT/shard-I-of-N",
    )


def _measure_rate(row: RateRow) -> float | None:
    """The samples/s of the training row a run's prediction needs, timed by the harness; None,
    with the reason on stderr, where it failed (the prediction then stands)."""
    from bench.sweep.loop import train_rate

    try:
        rate = train_rate(row.model, row.device, row.dtype, row.memory_format, row.batch_size)
    except Exception as error:  # a prediction's helper: the plan goes on without it
        print(f"{row.model} at {row.text()}: not measured: {one_line(error)}", file=sys.stderr)
        return None
    print(f"{row.model} at {row.text()}: {rate:,.1f} samples/s", flush=True)
    return rate


def run_accuracy_plan(args: argparse.Namespace) -> int:
    """Train the accuracy plan of MNIST (provisioned if missing) or CIFAR-10, one row per run."""
    import torch

    from bench.training import runs

    out = shard_out(args, args.out) or args.out
    _check_folder(out, "accuracy:")
    devices = tuple(dict.fromkeys(args.devices or ["cpu"]))
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("--devices cuda but no CUDA device is available: use --devices cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data == "cifar10":
        import data

        data.cifar10_copy()  # not provisioned: one line naming the fetch command, nothing run
    whole = runs.accuracy_plan(args.data, args.full)
    plan = runs.select_runs(whole, args.models, devices)
    if args.eval_dtype is not None:
        plan = tuple(replace(s, eval_dtype=args.eval_dtype) for s in plan)
    if not plan:
        if args.none_ok:
            print(f"accuracy: no run of the plan matches {' '.join(args.models)}; skipped")
            return 0
        raise ValueError(f"no run of the accuracy plan matches {' '.join(args.models)}")
    shard = resolve_shard(args)
    if shard is not None:
        mine = tuple(s for s in plan if runs.in_shard(s, shard))
        print(f"accuracy plan, shard {shard}: {len(mine)} of its {len(plan)} runs", flush=True)
        plan = mine
    done = runs.run_accuracy_plan(
        plan,
        out,
        resume=args.resume,
        listen=TrainingListener(),
        budget_s=args.plan_budget_s,
        full=args.full,
        measure_rate=_measure_rate,
    )
    return 1 if any(run.row["error"] is not None for run in done) else 0
