"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from bench.shards import Shard

__all__ = [
    "Parser",
    "positive",
    "fraction",
    "non_negative",
    "non_negative_int",
    "add_out",
    "add_threads",
    "add_shard",
    "shard_is_auto",
    "resolve_shard",
    "shard_out",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def positive(kind: type) -> Callable[[str], Any]:
    """An argument type: a ``kind`` (int, float) above 0."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def fraction(text: str) -> float:
    """An argument type: a fraction in (0, 1]; a percentage (``99``) is told how to write it."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a fraction in (0, 1], e.g. 0.99; got {text!r}"
        ) from None
    if not 0.0 < value <= 1.0:
        percent = f" (for {value:g}% write {value / 100:g})" if 1.0 < value <= 100.0 else ""
        raise argparse.ArgumentTypeError(
            f"must be a fraction in (0, 1], e.g. 0.99; got {text}{percent}"
        )
    return value


def non_negative(kind: type) -> Callable[[str], Any]:
    """An argument type: a ``kind`` (int, float), 0 or more."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else f"a {kind.__name__}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value

    return parse


non_negative_int = non_negative(int)


def add_out(parser: argparse.ArgumentParser, help: str) -> None:
    """``--out DIR``, a folder (None when not given)."""
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help=help)


def add_threads(parser: argparse.ArgumentParser, kind: Callable[[str], Any] = int) -> None:
    """``--threads N``: torch's CPU threads."""
    parser.add_argument(
        "--threads",
        type=kind,
        default=None,
        help="torch CPU threads (default: the cores this process may use)",
    )


def add_shard(parser: argparse.ArgumentParser, help: str) -> None:
    """``--shard I/N`` or ``--shard auto`` (the slice from a scheduler's environment)."""
    parser.add_argument("--shard", default=None, metavar="I/N|auto", help=help)


def shard_is_auto(args: argparse.Namespace) -> bool:
    """True for ``--shard auto``: the slice comes from the environment and ``--out`` is the
    root the slices share, each writing its ``shard-I-of-N`` folder there."""
    from bench.shards import AUTO

    return args.shard is not None and args.shard.strip().lower() == AUTO


def resolve_shard(args: argparse.Namespace) -> Shard | None:
    """The slice ``--shard`` asks for, None without it. ``auto`` reads the scheduler's
    environment (:func:`bench.shards.from_environment`) and says on stderr, once, which
    variables gave which slice; it needs ``--out`` (``args.out``), the root of the slices."""
    if args.shard is None:
        return None
    if getattr(args, "resolved_shard", None) is not None:
        return args.resolved_shard
    from bench.shards import Shard, from_environment

    if not shard_is_auto(args):
        shard = Shard.parse(args.shard)
    else:
        if getattr(args, "out", None) is None:
            raise ValueError(
                "--shard auto needs --out ROOT, a folder every task reaches (a shared file "
                "system or volume): each task writes ROOT/shard-I-of-N, and `bench report "
                "ROOT` merges them"
            )
        scheduled = from_environment(os.environ)
        shard = scheduled.shard
        print(f"--shard auto: slice {shard} from {scheduled.source}", file=sys.stderr)
        if scheduled.warning:
            print(f"warning: {scheduled.warning}", file=sys.stderr)
    args.resolved_shard = shard
    return shard


def shard_out(args: argparse.Namespace, out: Path | None) -> Path | None:
    """The folder to write for ``--out out``: ``out`` itself, or with ``--shard auto`` (one
    command on every task) the slice's own ``out/shard-I-of-N``, ``out`` being the root every
    task shares (:func:`resolve_shard` refuses ``auto`` without it: its tasks would not
    meet). A root that is itself a results folder is refused (``bench report ROOT`` would
    read it, not its slices)."""
    if not shard_is_auto(args) or out is None:
        return None if out is None else Path(out)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give --shard auto a folder, the tasks' root")
    if (out / "results.jsonl").exists():
        raise ValueError(
            f"{out} is a results folder itself: give --shard auto a root for the slices alone"
        )
    shard = resolve_shard(args)
    assert shard is not None
    return out / shard.folder
