"""``python -m bench train`` and ``python -m bench eval``: accuracy runs, written as they go.

Each run appends one ``mode = "accuracy"`` row to ``results.jsonl`` (the harness's writer, the
same columns) and one line per evaluation to ``epochs.jsonl``; the trained weights are saved with
their SHA-256 beside them.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

import zoo
from bench.training import distributed
from bench.training.distributed import ONE_PROCESS, World
from bench.training.loop import (
    EVAL_DTYPE,
    EvalPoint,
    TrainSettings,
    evaluate,
    load_weights,
    save_weights,
    train,
)
from bench.training.recipes import Recipe, recipe_for, resolve_dtype

__all__ = [
    "MNIST_TARGET",
    "check_input_fits",
    "run_accuracy",
    "add_train_arguments",
    "run_train",
    "add_eval_arguments",
    "run_eval",
    "register_cli",
]

log = logging.getLogger(__name__)

MNIST_TARGET = 0.99  # DAWNBench-style target for MNIST (the lab's loop reaches it in 2-3 epochs)
MAX_UPSCALE = 4  # an input more than 4x the data's side would be mostly invented pixels
# What the training clock includes besides the steps (a row's ``data_on_clock``): MNIST and a
# cached ImageFolder are decoded before training, untimed (``data_setup_s``); only their batch
# making (indexing, normalising, copying) is timed. A streamed ImageFolder decodes on the clock.
ON_CLOCK_TENSOR = "batches from a decoded in-memory tensor"
ON_CLOCK_STREAMED = "decode+resize per batch (DataLoader)"


def check_input_fits(model: str, data_shape: tuple[int, int, int]) -> None:
    """Refuse a model whose input cannot honestly be made from the data's images."""
    card = zoo.get_card(model)
    _, model_h, model_w = card.input_shape
    _, data_h, data_w = data_shape
    if model_h > MAX_UPSCALE * data_h or model_w > MAX_UPSCALE * data_w:
        small = [n for n in zoo.list_models(f"{card.family}*") if n.endswith(("_mnist", "_cifar"))]
        raise ValueError(
            f"{model} needs {model_h}x{model_w} input; the data's {data_h}x{data_w} images would "
            f"be upscaled {model_h / data_h:.0f}x: use a small-input variant ({', '.join(small)})"
        )


def _data_shape(data: str) -> tuple[int, int, int]:
    """The stored image shape of a data set, for :func:`check_input_fits`, before any decoding."""
    if data.lower() == "mnist":
        return (1, 28, 28)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data {data}: no such directory; give 'mnist' or an ImageFolder")
    from PIL import Image

    for image in sorted(path.rglob("*")):
        if image.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}:
            try:
                with Image.open(image) as img:
                    return (len(img.getbands()), img.height, img.width)
            except OSError:
                continue  # data.load names it (or skips it with --skip-bad-files)
    raise ValueError(f"--data {data}: no readable image files; expected root/<class>/<image>")


@dataclass(frozen=True)
class AccuracyRun:
    """What one training run produced: its row and where its weights went."""

    row: dict[str, Any]
    weights: Path | None


def run_accuracy(
    settings: TrainSettings,
    out: Path,
    *,
    recipe: Recipe | None = None,
    save: bool = True,
    progress: bool = True,
    machine: Any = None,
    world: World = ONE_PROCESS,
    data_options: dict[str, Any] | None = None,
) -> AccuracyRun:
    """Train once and write the row (and the per-evaluation log) into the results folder ``out``.

    A failure after the data is loaded (out of memory, a model error) becomes a row with
    ``error`` set; bad settings raise ``ValueError`` before any work. Under several processes
    (``world``) every rank trains, and rank 0 alone prints, writes and saves. ``data_options``
    go to :func:`data.load` (an ImageFolder's ``cache_limit_bytes``, ``num_workers``,
    ``bad_files``).
    """
    import data
    from bench.measure.counting import count_model
    from bench.measure.machine import describe
    from bench.schema import ResultsWriter
    from bench.sweep.loop import RowSpec, base_row

    recipe = recipe or recipe_for(settings.model)
    card = zoo.get_card(settings.model)
    check_input_fits(settings.model, _data_shape(settings.data))
    batch = settings.batch_size or recipe.batch_size
    world.local_batch(batch)  # refuse a batch the ranks cannot share before loading anything
    with world.main_first():  # rank 0 provisions or caches the data; the others then read it
        if settings.data.lower() == "mnist" and not data.is_provisioned():
            data.provision_mnist(progress=progress and world.is_main)  # a download: not setup
        setup_started = time.perf_counter()
        splits = data.load(
            settings.data,
            input_shape=card.input_shape,
            normalisation=recipe.normalisation,
            seed=settings.seed,
            progress=progress and world.is_main,
            **(data_options or {}),
        )
        data_setup_s = time.perf_counter() - setup_started
    streamed = isinstance(splits.train, data.StreamingSplit)
    if settings.num_classes is not None and settings.num_classes != splits.num_classes:
        raise ValueError(
            f"--num-classes {settings.num_classes} but {settings.data} has {splits.num_classes} "
            f"classes ({', '.join(splits.class_names[:5])}{'…' if splits.num_classes > 5 else ''}):"
            " drop --num-classes or fix the data"
        )
    if settings.target_acc is None and settings.data.lower() == "mnist":
        settings = replace(settings, target_acc=MNIST_TARGET)
    dtype = resolve_dtype(settings.dtype or recipe.dtype, settings.device)
    # The recipe as actually run (command-line overrides and the detected dtype), for the row.
    recipe = replace(recipe, batch_size=batch, epochs=settings.epochs or recipe.epochs, dtype=dtype)
    threads = torch.get_num_threads()
    machine = machine or describe((settings.device,), threads, measure_peak=False)
    run_id = _run_id(settings, world)
    writer = ResultsWriter(out) if world.is_main else None
    counts = count_model(
        zoo.get_model(settings.model, num_classes=splits.num_classes), card.input_shape
    )
    memory_format = "channels_last" if recipe.channels_last else "contiguous"
    row = base_row(
        RowSpec(settings.model, settings.device, dtype, memory_format, "accuracy", batch),
        counts,
        threads,
        machine,
    )
    row.update(
        num_classes=splits.num_classes,
        data=settings.data,
        target_acc=settings.target_acc,
        budget_s=settings.budget_s,
        seed=settings.seed,
        recipe=recipe.describe(),
        data_loading_in_timing=streamed,  # decoding on the clock
        data_on_clock=ON_CLOCK_STREAMED if streamed else ON_CLOCK_TENSOR,
        data_setup_s=round(data_setup_s, 3),
        eval_dtype=EVAL_DTYPE,
        run=run_id,
        test_samples=min(settings.eval_limit or len(splits.test), len(splits.test)),
        world_size=world.world_size,
        backend=world.backend,
        global_batch=batch,
    )

    def on_eval(point: EvalPoint) -> None:
        if writer is None:
            return
        writer.write_epoch(
            {
                "run": run_id,
                "model": settings.model,
                "data": settings.data,
                "seed": settings.seed,
                "world_size": world.world_size,
                "device": settings.device,
                **asdict(point),
            }
        )
        print(
            f"{settings.model} seed {settings.seed} epoch {point.epoch:5.2f}  "
            f"{point.wall_s:7.1f} s  loss {point.train_loss:.4f}  "
            f"test acc {point.test_accuracy:.4f}  {point.samples_per_s:,.0f} samples/s",
            flush=True,
        )

    weights: Path | None = None
    try:
        outcome = train(settings, splits, recipe, on_eval=on_eval, progress=progress, world=world)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # OOM or a model error
        row["error"] = " ".join(str(error).split())[:300]
    else:
        row.update(
            accuracy=outcome.accuracy,
            time_to_target_s=outcome.time_to_target_s,
            epochs=round(outcome.epochs, 3),
            train_s=round(outcome.train_s, 3),
            samples_per_s=(
                outcome.epochs * len(splits.train) / outcome.train_s if outcome.train_s else None
            ),
        )
        if save and outcome.model is not None and world.is_main:
            weights = Path(out) / "weights" / f"{_run_name(settings, world)}.pt"
            save_weights(outcome.model, weights)
    if writer is not None:
        writer.write_row(row)
    return AccuracyRun(row=row, weights=weights)


def _run_name(settings: TrainSettings, world: World) -> str:
    procs = f"-{world.world_size}procs" if world.distributed else ""
    return f"{settings.model}-seed{settings.seed}{procs}"


def _run_id(settings: TrainSettings, world: World) -> str:
    """A training run's id (``run`` in its row and its epochs.jsonl lines), unique per folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{_run_name(settings, world)}-{settings.device}-{stamp}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------------------------
# CLI


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text} (99% is 0.99)")
    return value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _common_arguments(parser: argparse.ArgumentParser, dtype_help: str) -> None:
    parser.add_argument("model", help="a registered model name (see `python -m bench list`)")
    parser.add_argument("--data", default="mnist", help="'mnist' or an ImageFolder path")
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
        type=_positive(int),
        default=None,
        help="refuse data whose class count differs",
    )
    parser.add_argument(
        "--threads",
        type=_positive(int),
        default=None,
        help="torch CPU threads (default: the cores this process may use)",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench train``."""
    _common_arguments(
        parser,
        "training dtype; default: the recipe's ('auto': bf16 autocast where the CPU has native "
        "bf16); evaluation is always fp32",
    )
    parser.add_argument(
        "--epochs",
        type=_positive(int),
        default=None,
        help="passes over the training split (default: the recipe's)",
    )
    parser.add_argument(
        "--target-acc",
        type=_fraction,
        default=None,
        help="time-to-accuracy target, a fraction (default: 0.99 on MNIST)",
    )
    parser.add_argument(
        "--budget-s",
        type=_positive(float),
        default=None,
        help="stop training after this many seconds (accuracy at budget)",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument(
        "--seeds",
        type=_positive(int),
        default=1,
        help="repeat with seeds seed..seed+N-1 and report mean ± std",
    )
    parser.add_argument("--batch-size", type=_positive(int), default=None)
    parser.add_argument("--evals-per-epoch", type=_positive(int), default=2)
    parser.add_argument(
        "--eval-limit",
        type=_positive(int),
        default=None,
        metavar="N",
        help="evaluate on the first N test samples only (default: all; rows record N)",
    )
    parser.add_argument(
        "--stop-at-target",
        action="store_true",
        help="stop at the first evaluation at or above --target-acc",
    )
    parser.add_argument("--no-save", action="store_true", help="do not save the weights")
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
    parser.add_argument(
        "--backend",
        default=None,
        choices=distributed.BACKENDS,
        help="under torchrun: the process group's backend (default: gloo on cpu, nccl on cuda)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="results folder (default: results/<run-id>)",
    )


def _setup(args: argparse.Namespace) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available: use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo.get_card(args.model)


def run_train(args: argparse.Namespace) -> int:
    """Train a model on MNIST or an ImageFolder: time-to-accuracy and accuracy-at-budget."""
    from bench.sweep.loop import new_run_dir

    _setup(args)
    _check_folder(args.out, "--out")
    base = TrainSettings(
        model=args.model,
        data=args.data,
        epochs=args.epochs,
        target_acc=args.target_acc,
        budget_s=args.budget_s,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        num_classes=args.num_classes,
        evals_per_epoch=args.evals_per_epoch,
        stop_at_target=args.stop_at_target,
        eval_limit=args.eval_limit,
    )
    data_options = _data_options(args)
    launched = distributed.launched()
    # Refused before the process group forms: a bad batch must not leave the others waiting.
    World(world_size=launched[1] if launched else 1).local_batch(
        args.batch_size or recipe_for(args.model).batch_size
    )
    world = distributed.start(args.device, args.backend)
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for all
    try:
        out = args.out or new_run_dir()
        runs = []
        for seed in range(args.seed, args.seed + args.seeds):
            run = run_accuracy(
                replace(base, seed=seed),
                out,
                save=not args.no_save,
                world=world,
                data_options=data_options,
            )
            runs.append(run.row)
            if world.is_main:
                _print_row(run)
        if world.is_main:
            if len(runs) > 1:
                _print_seeds_summary(runs)
            print(f"results in {out}", file=sys.stderr)
    finally:
        distributed.stop(world)
    return 0 if all(r["error"] is None for r in runs) else 1


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


def _print_row(run: AccuracyRun) -> None:
    row = run.row
    if row["error"]:
        print(f"{row['model']} seed {row['seed']}: ERROR {row['error']}")
        return
    ttt = row["time_to_target_s"]
    target = row["target_acc"]
    reached = (
        f"{target:.2%} reached at {ttt:.1f} s"
        if ttt is not None
        else (f"{target:.2%} not reached" if target is not None else "no target")
    )
    procs = (
        f" on {row['world_size']} processes ({row['backend']}, global batch {row['global_batch']})"
        if (row.get("world_size") or 1) > 1
        else ""
    )
    print(
        f"{row['model']} seed {row['seed']}{procs}: test accuracy {row['accuracy']:.4f} after "
        f"{row['epochs']:g} epochs, {row['train_s']:.1f} s of training ({row['data_on_clock']} "
        f"on the clock, evaluation excluded); {reached}"
        + (f"; weights {run.weights}" if run.weights else "")
    )


def _print_seeds_summary(rows: list[dict[str, Any]]) -> None:
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


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench eval``."""
    _common_arguments(parser, "evaluation dtype (default: fp32, as during training)")
    parser.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="a .pt file saved by `bench train` (its .sha256 beside it)",
    )


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate saved weights on the test (or val) split, after checking their SHA-256."""
    import data

    _setup(args)
    state = load_weights(args.weights)  # checks the hash first; weights_only=True
    card = zoo.get_card(args.model)
    check_input_fits(args.model, _data_shape(args.data))
    recipe = recipe_for(args.model)
    splits = data.load(
        args.data,
        input_shape=card.input_shape,
        normalisation=recipe.normalisation,
        bad_files="skip" if args.skip_bad_files else "error",
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
        first = str(error).splitlines()[0]
        raise ValueError(f"{args.weights} does not fit {args.model}: {first}") from None
    model = model.to(args.device)
    dtype = resolve_dtype(args.dtype or EVAL_DTYPE, args.device)
    accuracy = evaluate(model, splits.test, device=args.device, dtype=dtype)
    print(
        f"{args.model} on {args.data} ({len(splits.test)} test samples, {dtype}): "
        f"accuracy {accuracy:.4f}"
    )
    return 0


# The accuracy part of `nox -s bench` (`python -m bench all`): every family's MNIST-sized model
# trains at least once. The LeNets and the lab's network run their recipes to the end; the big
# families get a fixed time budget (accuracy at budget: what each reaches in the same CPU time)
# and, since evaluating 10,000 images costs them more than their training, the first 1,000
# test images (the row's test_samples says so), with batch 32 so that 40 s hold ~50+ steps.
QUICK_BUDGET_S = 40.0
QUICK_EVAL = 1000
DEFAULT_PLAN: tuple[TrainSettings, ...] = (
    TrainSettings("lenet5_mnist"),
    TrainSettings("lab_cnn"),
    TrainSettings("lenet5", budget_s=30.0),
    TrainSettings("alexnet_mnist", budget_s=QUICK_BUDGET_S, eval_limit=QUICK_EVAL, batch_size=32),
    TrainSettings("vgg16_mnist", budget_s=QUICK_BUDGET_S, eval_limit=QUICK_EVAL, batch_size=32),
    TrainSettings("resnet34_mnist", budget_s=QUICK_BUDGET_S, eval_limit=QUICK_EVAL, batch_size=32),
)
# --full: the recipes run to the end (LeNet-5's 20 passes), three seeds of the fastest models.
FULL_PLAN: tuple[TrainSettings, ...] = tuple(
    replace(TrainSettings(name), seed=seed)
    for name in ("lenet5_mnist", "lab_cnn")
    for seed in range(3)
) + (
    TrainSettings("lenet5"),
    TrainSettings("alexnet_mnist"),
    TrainSettings("vgg16_mnist"),
    TrainSettings("resnet34_mnist"),
)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench accuracy``."""
    parser.add_argument("out", type=Path, help="results folder to append the rows to")
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
    parser.add_argument(
        "--threads",
        type=_positive(int),
        default=None,
        help="torch CPU threads (default: the cores this process may use)",
    )
    parser.add_argument("--resume", action="store_true", help="skip runs already in OUT")
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="only the I-th of N disjoint slices of the plan (as `bench run --shard`)",
    )


def run_plan_accuracy(args: argparse.Namespace) -> int:
    """Train the accuracy plan on MNIST (provisioned if missing), one row per run."""
    import fnmatch

    from bench.schema import ResultsWriter, row_key

    _check_folder(args.out, "accuracy:")
    devices = tuple(dict.fromkeys(args.devices or ["cpu"]))
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("--devices cuda but no CUDA device is available: use --devices cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = FULL_PLAN if args.full else DEFAULT_PLAN
    if args.models:
        plan = tuple(s for s in plan if any(fnmatch.fnmatchcase(s.model, p) for p in args.models))
        if not plan:
            if args.none_ok:
                print(f"accuracy: no run of the plan matches {' '.join(args.models)}; skipped")
                return 0
            raise ValueError(f"no run of the accuracy plan matches {' '.join(args.models)}")
    plan = tuple(replace(s, device=device) for s in plan for device in devices)
    if args.shard is not None:
        from bench.sweep.shards import Shard

        shard = Shard.parse(args.shard)
        whole = len(plan)
        plan = tuple(s for s in plan if shard.holds(_shard_key(s)))
        print(f"accuracy plan, shard {shard}: {len(plan)} of its {whole} runs", flush=True)
    done = {row_key(r) for r in _rows(args.out)} if args.resume else set()
    failed = 0
    for i, settings in enumerate(plan, 1):
        key_row = _key_row(settings)
        if key_row is not None and row_key(key_row) in done:
            print(f"[{i}/{len(plan)}] {settings.model} seed {settings.seed}: already measured")
            continue
        budget = f", budget {settings.budget_s:g} s" if settings.budget_s else ""
        what = f"{settings.model} on {settings.data}, {settings.device} "
        what += f"(seed {settings.seed}{budget})"
        print(f"[{i}/{len(plan)}] training {what}", flush=True)
        run = run_accuracy(settings, args.out)
        _print_row(run)
        failed += run.row["error"] is not None
    ResultsWriter(args.out).write_csv()
    return 1 if failed else 0


def _rows(out: Path) -> list[dict[str, Any]]:
    from bench.schema import read_jsonl

    return read_jsonl(Path(out) / "results.jsonl")


def _shard_key(settings: TrainSettings) -> dict[str, Any]:
    # What identifies a run on every machine alike (the dtype "auto" resolves per machine).
    return {
        "model": settings.model,
        "mode": "accuracy",
        "device": settings.device,
        "data": settings.data,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
    }


def _key_row(settings: TrainSettings) -> dict[str, Any] | None:
    """The settings columns a finished run of ``settings`` would have written."""
    recipe = recipe_for(settings.model)
    return {
        "model": settings.model,
        "device": settings.device,
        "dtype": resolve_dtype(settings.dtype or recipe.dtype, settings.device),
        "memory_format": "channels_last" if recipe.channels_last else "contiguous",
        "threads": torch.get_num_threads(),
        "batch_size": settings.batch_size or recipe.batch_size,
        "mode": "accuracy",
        "max_batch": None,
        "data": settings.data,
        "seed": settings.seed,
        "world_size": 1,
    }


def register_cli(register: Any) -> None:
    """Register ``train`` and ``eval`` with ``python -m bench``."""
    register(
        "train",
        help=run_train.__doc__.splitlines()[0],
        add_arguments=add_train_arguments,
        run=run_train,
    )
    register(
        "accuracy",
        help=run_plan_accuracy.__doc__.splitlines()[0],
        add_arguments=add_plan_arguments,
        run=run_plan_accuracy,
    )
    register(
        "eval",
        help=run_eval.__doc__.splitlines()[0],
        add_arguments=add_eval_arguments,
        run=run_eval,
    )
