"""The data root: where provisioned data sets and caches live (never inside the package).

``$CNN_ZOO_DATA`` if set, else the user's cache directory (``~/.cache/cnn-zoo-bench``, or
``$XDG_CACHE_HOME/cnn-zoo-bench``; ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
Windows): not the current directory, not the source checkout, not ``site-packages``. The
project's own sessions (``nox -s tests``, ``nox -s bench``) set ``$CNN_ZOO_DATA`` to the
checkout's ``.data/``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from .errors import DataError

__all__ = ["ENV_VAR", "APP_NAME", "data_root", "user_cache_dir"]

ENV_VAR = "CNN_ZOO_DATA"
APP_NAME = "cnn-zoo-bench"
PACKAGE_DIR = Path(__file__).resolve().parent
# Where the data root was before it moved to the user's cache: a checkout's .data/ (in an
# installed wheel, site-packages/.data, which never exists).
LEGACY_ROOT = PACKAGE_DIR.parent / ".data"

log = logging.getLogger(__name__)


def user_cache_dir() -> Path:
    """The platform's cache directory for this project, as platformdirs places it (without
    the dependency): ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows; with ``cnn-zoo-bench`` appended."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base_dir = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: absolute only
    return base_dir / APP_NAME


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``root`` if given, else ``$CNN_ZOO_DATA``, else
    :func:`user_cache_dir`.

    The directory is not created here; a root inside the ``data/`` package is refused, so that
    downloads never end up in the source tree.
    """
    if root is None:
        env = os.environ.get(ENV_VAR)
        if env:
            path = Path(env).expanduser()
        else:
            path = user_cache_dir()
            _note_legacy_root(path)
    else:
        path = Path(root).expanduser()
    resolved = path.resolve()
    if resolved == PACKAGE_DIR or PACKAGE_DIR in resolved.parents:
        raise DataError(
            f"data root {path} is inside the data/ package; "
            f"use the default ({user_cache_dir()}) or set {ENV_VAR} to a directory outside "
            "the source tree"
        )
    return resolved


@functools.cache
def _note_legacy_root(default: Path) -> None:
    """Say once that a checkout's ``.data/`` (the old default) is not the data root now."""
    if LEGACY_ROOT.is_dir() and LEGACY_ROOT.resolve() != default.resolve():
        log.warning(
            "%s (the old default data root) is not used: the data root is %s; set %s=%s to use it",
            LEGACY_ROOT,
            default,
            ENV_VAR,
            LEGACY_ROOT,
        )
