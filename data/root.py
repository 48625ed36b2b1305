"""The data root: where provisioned data sets and caches live (never inside the package)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

__all__ = ["ENV_VAR", "REPO_ROOT", "data_root"]

ENV_VAR = "CNN_ZOO_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``root`` if given, else ``$CNN_ZOO_DATA``, else ``<repo>/.data``.

    The directory is not created here; a root inside the ``data/`` package is refused, so that
    downloads never end up in the source tree.
    """
    if root is None:
        env = os.environ.get(ENV_VAR)
        path = Path(env).expanduser() if env else REPO_ROOT / ".data"
    else:
        path = Path(root).expanduser()
    resolved = path.resolve()
    if resolved == PACKAGE_DIR or PACKAGE_DIR in resolved.parents:
        raise DataError(
            f"data root {path} is inside the data/ package; "
            f"use the default .data/ or set {ENV_VAR} to a directory outside the source tree"
        )
    return resolved
