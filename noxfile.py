"""Sessions of cnn-zoo-bench: `nox -s tests`, `nox -s browser`, `nox -s bench`, `nox -s lint`,
`nox -s fixture` (`nox -l` lists them; only `tests` runs by default).

Arguments after `--` go to the session's command, e.g. `nox -s tests -- -k lenet -x`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"  # pip finds the pinned torch wheels on this disk


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _check_chromium(session: nox.Session) -> None:
    """Refuse the browser session without Chromium: a session installs nothing outside the
    project (.ci/run, which provisions CI, installs it there)."""
    if not any(shutil.which(name) for name in CHROMIUM):
        session.error(
            "no Chromium on PATH: install it (Debian: apt-get install chromium) and run again"
        )


def _data_env() -> dict[str, str]:
    """The data root of the project's own sessions: the checkout's .data/ (git ignores it), as
    before the default moved to the user's cache, unless $CNN_ZOO_DATA names another."""
    return {"CNN_ZOO_DATA": os.environ.get("CNN_ZOO_DATA") or str(Path(__file__).parent / ".data")}


RUFF = "ruff==0.17.6"  # pinned: a new ruff's style must not turn a green commit red

# pip's byte-compiling of every installed file (torch's thousands) took 30 of a fresh venv's 73 s
# here; Python compiles what it imports on first use instead.
NO_COMPILE = ("--no-compile",)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU; CUDA cases show as skips without a GPU, the browser test as a
    skip without Chromium). Installs nothing outside the session's venv."""
    session.install(*NO_COMPILE, "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env=_data_env())


@nox.session
def browser(session: nox.Session) -> None:
    """Open the fixture's report.html in headless Chromium (refused without one) and check it:
    no console errors, every figure loaded, sorting, the contents' links."""
    session.install(*NO_COMPILE, "-e", ".[test]")
    _check_chromium(session)
    session.run("python", "-m", "pytest", "-m", "browser", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure the zoo with the default plan and write a report under reports/.

    Pass harness arguments after `--`, e.g. `nox -s bench -- --full` or
    `nox -s bench -- --models "lenet*" --batch-sizes 1 32`.
    """
    session.install(*NO_COMPILE, "-e", ".")
    session.run("python", "-m", "bench", "all", *session.posargs, env=_data_env())


@nox.session
def fixture(session: nox.Session) -> None:
    """Regenerate the report fixture (tests/fixtures/report) with every column of bench/schema.py.

    Run it after changing a column; pass another folder after `--` to write there instead.
    """
    session.install(*NO_COMPILE, "-e", ".")
    session.run("python", "tests/fixtures/report/make_fixture.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install(RUFF)
    session.run("ruff", "check", "zoo", "bench", "data", "tests", "noxfile.py", *session.posargs)
    session.run("ruff", "format", "--check", "zoo", "bench", "data", "tests", "noxfile.py")
