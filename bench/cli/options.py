"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["Parser", "positive", "fraction", "non_negative_int", "add_out", "add_threads"]


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


def non_negative_int(text: str) -> int:
    """An argument type: an integer, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


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
