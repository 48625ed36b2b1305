"""Sessions of cnn-zoo-bench: `nox -s tests`, `nox -s bench`, `nox -s lint`, `nox -s fixture`
(`nox -l` lists them; only `tests` runs by default).

Arguments after `--` go to the session's command, e.g. `nox -s tests -- -k lenet -x`.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"  # pip finds the pinned torch wheels on this disk


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU; CUDA cases show as skips without a GPU)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure the zoo with the default plan and write a report under reports/.

    Pass harness arguments after `--`, e.g. `nox -s bench -- --full` or
    `nox -s bench -- --models "lenet*" --batch-sizes 1 32`.
    """
    session.install("-e", ".")
    session.run("python", "-m", "bench", "all", *session.posargs)


@nox.session
def fixture(session: nox.Session) -> None:
    """Regenerate the report fixture (tests/fixtures/report) with every column of bench/schema.py.

    Run it after changing a column; pass another folder after `--` to write there instead.
    """
    session.install("-e", ".")
    session.run("python", "tests/fixtures/report/make_fixture.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "zoo", "bench", "data", "tests", "noxfile.py", *session.posargs)
    session.run("ruff", "format", "--check", "zoo", "bench", "data", "tests", "noxfile.py")
