"""Installed from a wheel, the suite writes where the user works and nowhere in the package.

The wheel is built from this checkout and installed (without dependencies) into a fresh venv
that borrows the test venv's torch and the rest through a ``.pth`` line, so the project itself
is imported from the wheel only. From a temporary working directory: ``list``, a small ``run``,
``report`` and ``train --epochs 1``; then nothing new may be under the venv, and everything
must be under the working directory. About 40 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

# The peaks are not what this test checks (4-5 s a start): the run skips them.
NO_PEAKS = (
    "import sys; import bench.sweep.loop as loop; from bench.measure import machine; "
    "loop.describe = lambda d, t: machine.describe(d, t, measure_peak=False); "
    "from bench.cli import main; sys.exit(main(sys.argv[1:]))"
)
REPO = Path(__file__).resolve().parent.parent


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("cnn_zoo_bench-*.whl")
    return built


def test_the_wheel_carries_every_package_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(p.relative_to(REPO))
        for package in ("zoo", "bench", "data")
        for p in (REPO / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources - names == set()
    assert "bench/report/page.js" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cnn-zoo-bench = bench.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_an_installed_wheel_writes_only_where_the_user_works(
    wheel: Path, tmp_path: Path, gray_folder: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # torch, torchvision, pandas, … from the test venv; the project from the wheel alone
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    before = _files(venv)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",  # importing must not write into site-packages either
        "CNN_ZOO_DATA": str(work / "data"),
        "HOME": str(work / "home"),
        "XDG_CACHE_HOME": str(work / "cache"),
        "MPLCONFIGDIR": str(work / "mpl"),
    }

    def bench(*args: str) -> str:
        done = subprocess.run(
            [python, "-c", NO_PEAKS, *args], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    imported = subprocess.run(
        [python, "-c", "import bench; print(bench.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert Path(imported.strip()).is_relative_to(site), imported  # the wheel, not the checkout
    assert "lenet5_mnist" in bench("list")
    bench(
        "run", "--models", "lenet5_modern", "--batch-sizes", "1", "--modes", "infer",
        "--threads", "1", "--min-steps", "2", "--min-time", "0", "--passes", "1",
        "--no-fastest-format", "--out", "results/small",
    )  # fmt: skip
    bench("report", "results/small")
    bench(
        "train", "lenet5_mnist", "--data", str(gray_folder), "--epochs", "1",
        "--out", "results/train",
    )  # fmt: skip
    assert _files(venv) == before  # nothing written under the venv, site-packages included
    written = _files(work)
    assert any(p.parts[:2] == ("results", "small") and p.name == "results.jsonl" for p in written)
    assert any(p.parts[0] == "reports" and p.name == "report.html" for p in written)
    assert any(p.parts[:2] == ("results", "train") and p.suffix == ".pt" for p in written)
