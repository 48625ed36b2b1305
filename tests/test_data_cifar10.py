"""CIFAR-10: every fetch path on archives made here in the official layouts (10 classes, a few
images each), the copy's record, loading, and bad input as one line.

The real 19.6 MB image-folder tarball is used only by the slow test at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import exit_code
from PIL import Image

import data
from data import cifar10
from data.__main__ import main as data_main
from data.errors import (
    ChecksumError,
    DataError,
    DownloadError,
    ImageFolderError,
    MissingDataError,
    UnsafePickleError,
)

TRAIN_PER_BATCH = 4  # 5 batches: 20 training images, 2 a class
TEST_IMAGES = 10
# ../shared/data beside the checkout (../shared/DATA.md): the copy the issue measures.
REAL_TARBALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
REAL_SHA256 = "3022f9fb17037334e5887995cfc2558435f731f5d6fe7263e287d1c177f28814"


# --- archives in the official python layout ---------------------------------------------------


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"batch {seed}",
        "labels": [(seed + i) % 10 for i in range(n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def official_batches(folder: Path, payloads: dict[str, bytes] | None = None) -> dict[str, str]:
    """``cifar-10-batches-py``'s seven files in ``folder`` (pickled as the official ones are:
    dicts of a uint8 data array and a label list; protocol 3, where Python 2 wrote the array's
    bytes as a string, so that numpy's array constructors are all they reference); their MD5s,
    by name."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        name: pickle.dumps(_batch(TRAIN_PER_BATCH, seed), protocol=3)
        for seed, name in enumerate(cifar10.TRAIN_BATCHES, 1)
    }
    blobs["test_batch"] = pickle.dumps(_batch(TEST_IMAGES, 0), protocol=3)
    blobs["batches.meta"] = pickle.dumps({"label_names": list(cifar10.CLASSES)}, protocol=3)
    blobs.update(payloads or {})
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}


def official_archive(path: Path, payloads: dict[str, bytes] | None = None) -> dict[str, str]:
    """A ``cifar-10-python.tar.gz`` of the official layout at ``path``; every MD5 the fetch
    checks (the archive's and each member's), to inject in place of torchvision's."""
    staging = path.parent / "staging"
    md5s = official_batches(staging / cifar10.BATCHES_DIR, payloads)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(staging / cifar10.BATCHES_DIR, arcname=cifar10.BATCHES_DIR)
    shutil.rmtree(staging)
    return {cifar10.ARCHIVE: hashlib.md5(path.read_bytes()).hexdigest(), **md5s}


class Evil:
    """Unpickled, it runs a shell command: what an unchecked batch file could do."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def expected_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """What the official layout above holds, as uint8 ``[N, 3, 32, 32]`` images and labels."""
    if split == "train":
        batches = [_batch(TRAIN_PER_BATCH, seed) for seed in range(1, 6)]
    else:
        batches = [_batch(TEST_IMAGES, 0)]
    images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b["labels"] for b in batches])
    return images, labels


# --- image-folder copies ----------------------------------------------------------------------


def image_tree(root: Path, per_class: dict[str, int] | None = None, extra_test=()) -> Path:
    """``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``, 32x32 RGB, as the shared copy
    is laid out: 2 training and 1 test image a class unless ``per_class`` says otherwise."""
    counts = per_class or {"train": 2, "test": 1}
    for split, n in counts.items():
        for c, name in enumerate((*cifar10.CLASSES, *(extra_test if split == "test" else ()))):
            for i in range(n):
                path = root / split / name / f"{i:04d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                color = (25 * c, 255 - 20 * c, 10 * i + (split == "test") * 100)
                Image.new("RGB", (32, 32), color).save(path, quality=75)
    return root


def image_tarball(path: Path, tree: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        readme = tree / "README.md"
        readme.write_text("# CIFAR-10-images\n")  # the shared copy has one; it is skipped
        for member in ("README.md", "test", "train"):
            tar.add(tree / member, arcname=member)
        readme.unlink()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the official python batches --------------------------------------------------------------


def test_official_archive_is_checked_stored_as_idx_and_loaded(tmp_path: Path) -> None:
    md5s = official_archive(tmp_path / cifar10.ARCHIVE)
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=tmp_path / cifar10.ARCHIVE, md5s=md5s)
    assert copy.fresh and copy.kind == "official" and (copy.train, copy.test) == (20, 10)
    assert copy.directory == root / "cifar10"
    assert sorted(p.name for p in copy.directory.iterdir()) == sorted(
        [*cifar10.IDX_FILES.values(), cifar10.RECORD]
    )
    record = json.loads((copy.directory / cifar10.RECORD).read_text())
    assert record["kind"] == "official" and record["description"] == copy.describe()
    assert record["source_sha256"] == sha256(tmp_path / cifar10.ARCHIVE)
    assert "python batches" in copy.describe() and "not the official ones" in copy.describe()
    assert data.describe_cifar10(root) == copy.describe()

    splits = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    assert splits.name == "cifar10" and splits.source == copy.describe()
    assert splits.class_names == cifar10.CLASSES and (len(splits.train), len(splits.test)) == (
        20,
        10,
    )
    for split, loaded in (("train", splits.train), ("test", splits.test)):
        images, labels = expected_split(split)
        assert torch.equal(loaded.images, torch.from_numpy(images))  # byte for byte, in order
        assert loaded.labels.tolist() == labels.tolist()
    # A second fetch finds the copy intact and does nothing.
    again = data.provision_cifar10(root, from_path=tmp_path / cifar10.ARCHIVE, md5s=md5s)
    assert not again.fresh and again.describe() == copy.describe()


def test_official_describe_names_torchvisions_md5s(tmp_path: Path, monkeypatch) -> None:
    md5s = official_archive(tmp_path / cifar10.ARCHIVE)
    for name, md5 in md5s.items():  # as if this were the official archive
        monkeypatch.setitem(cifar10.OFFICIAL_MD5, name, md5)
    copy = data.provision_cifar10(tmp_path / "root", from_path=tmp_path / cifar10.ARCHIVE)
    assert copy.describe() == (
        "official CIFAR-10 python batches (MD5s as torchvision publishes); 20 train and 10 test "
        "images, not 50,000 and 10,000"
    )


@pytest.mark.parametrize("where", ["batches", "torchvision_root"])
def test_extracted_batches_folder(tmp_path: Path, where: str) -> None:
    md5s = official_batches(tmp_path / "tv" / cifar10.BATCHES_DIR)
    source = tmp_path / "tv" / cifar10.BATCHES_DIR if where == "batches" else tmp_path / "tv"
    copy = data.provision_cifar10(tmp_path / "root", from_path=source, md5s=md5s)
    assert copy.kind == "official" and copy.source_sha256 is None
    splits = data.load("cifar10", input_shape=(3, 32, 32), root=tmp_path / "root")
    assert splits.train.labels.tolist() == expected_split("train")[1].tolist()


def test_a_wrong_archive_checksum_is_one_line_and_nothing_is_unpickled(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    official_archive(tmp_path / cifar10.ARCHIVE, {"data_batch_1": pickle.dumps(Evil())})
    root = tmp_path / "root"
    argv = ["fetch", "cifar10", "--root", str(root), "--from", str(tmp_path / cifar10.ARCHIVE)]
    assert data_main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and "has MD5" in err
    assert cifar10.OFFICIAL_MD5[cifar10.ARCHIVE] in err  # torchvision's published one
    assert not (tmp_path / "pwned").exists() and not (root / "cifar10").exists()


def test_a_pickle_beyond_numpy_arrays_is_refused_even_when_its_md5_matches(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    md5s = official_archive(tmp_path / cifar10.ARCHIVE, {"data_batch_1": pickle.dumps(Evil())})
    with pytest.raises(UnsafePickleError, match=r"references posix.system|references os.system"):
        data.provision_cifar10(tmp_path / "root", from_path=tmp_path / cifar10.ARCHIVE, md5s=md5s)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "root" / "cifar10").exists()


def test_a_batch_file_with_the_wrong_md5_is_named(tmp_path: Path) -> None:
    md5s = official_batches(tmp_path / cifar10.BATCHES_DIR)
    md5s["test_batch"] = "0" * 32
    with pytest.raises(ChecksumError, match=r"test_batch has MD5 \w+, expected 0{32}"):
        data.provision_cifar10(tmp_path / "root", from_path=tmp_path, md5s=md5s)


def test_torchvisions_download_is_the_default_source(tmp_path: Path, monkeypatch) -> None:
    from torchvision.datasets import utils as tv_utils

    archive = tmp_path / "made" / cifar10.ARCHIVE
    archive.parent.mkdir()
    md5s = official_archive(archive)
    asked = {}

    def download_url(url, root, filename=None, md5=None, **kw):  # the network, stood in for
        asked.update(url=url, md5=md5)
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", download_url)
    copy = data.provision_cifar10(tmp_path / "root", md5s=md5s)
    assert asked == {"url": cifar10.URL, "md5": md5s[cifar10.ARCHIVE]}  # torchvision checks it
    assert copy.kind == "official" and copy.source == f"torchvision download {cifar10.URL}"
    assert not list((tmp_path / "root" / "cifar10").glob(".download*"))  # not kept

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution\nmore")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DownloadError, match="torchvision's download of .* --from PATH$"):
        data.provision_cifar10(tmp_path / "other", md5s=md5s)


# --- image-folder copies ----------------------------------------------------------------------


def test_image_folder_tarball_is_recorded_with_its_sha256_and_loaded(tmp_path: Path) -> None:
    tarball = image_tarball(tmp_path / "copy.tar.gz", image_tree(tmp_path / "tree"))
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=tarball)
    assert copy.kind == "imagefolder" and copy.source_sha256 == sha256(tarball)
    assert copy.describe().startswith(
        f"CIFAR-10 image-folder copy copy.tar.gz, sha256 {sha256(tarball)}"
    )
    assert not (copy.directory / "README.md").exists()  # only the images are kept
    assert sorted(p.name for p in (copy.directory / "train").iterdir()) == list(cifar10.CLASSES)

    splits = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    assert splits.source == copy.describe() and splits.class_names == cifar10.CLASSES
    assert (len(splits.train), len(splits.test)) == (20, 10)
    assert list((root / "cache" / "imagefolder").glob("*.pt"))  # decoded once, cached
    again = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    assert torch.equal(again.train.images, splits.train.images)

    assert not data.provision_cifar10(root, from_path=tarball).fresh  # the same archive: no-op
    with pytest.raises(ChecksumError, match=f"has SHA-256 {sha256(tarball)}, expected 0{{64}}"):
        data.provision_cifar10(root, from_path=tarball, sha256="0" * 64)


def test_image_folder_tree_and_a_known_copys_description(tmp_path: Path, monkeypatch) -> None:
    tree = image_tree(tmp_path / "tree")
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=tree)
    assert copy.source_sha256 is None and copy.describe().startswith(
        f"CIFAR-10 image-folder copy, files' sha256 {copy.content_sha256}"
    )
    # Another source replaces the copy; a known archive is named for what it is.
    tarball = image_tarball(tmp_path / "cifar10-jpeg.tar.gz", tree)
    monkeypatch.setitem(cifar10.KNOWN_COPIES, sha256(tarball), "a copy these tests know")
    other = data.provision_cifar10(root, from_path=tarball)
    assert other.fresh and "(a copy these tests know)" in other.describe()
    # Made from a tree or its tarball, the stored files are the same.
    assert other.content_sha256 == copy.content_sha256


def test_a_partial_or_corrupt_copy_is_remade(tmp_path: Path) -> None:
    tarball = image_tarball(tmp_path / "copy.tar.gz", image_tree(tmp_path / "tree"))
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=tarball)
    image = copy.directory / "test" / "cat" / "0000.jpg"
    good = image.read_bytes()
    image.write_bytes(good[:-10])  # truncated
    (root / ".cifar10.partial-999999").mkdir()  # what a killed fetch leaves
    remade = data.provision_cifar10(root, from_path=tarball)
    assert remade.fresh and image.read_bytes() == good
    assert not (root / ".cifar10.partial-999999").exists()
    (copy.directory / cifar10.RECORD).unlink()  # killed before its record: not a copy
    with pytest.raises(MissingDataError, match="python -m data fetch cifar10"):
        data.load("cifar10", input_shape=(3, 32, 32), root=root)
    assert data.provision_cifar10(root, from_path=tarball).fresh


def test_a_copy_changed_after_provisioning_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=image_tree(tmp_path / "tree"))
    first = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    image = copy.directory / "train" / "dog" / "0001.jpg"
    # Touched, the same bytes (as `cp -r` leaves a copy): loads, and the record takes the time.
    stamp = time.time_ns() + 5_000_000_000
    os.utime(image, ns=(stamp, stamp))
    again = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    assert torch.equal(again.train.images, first.train.images)
    assert json.loads((copy.directory / cifar10.RECORD).read_text())["stat_sha256"] != (
        copy.stat_sha256
    )
    # Other pixels: refused, not served from the cache nor named as the recorded copy.
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image, quality=75)
    with pytest.raises(DataError, match="changed since it was provisioned.*--force"):
        data.load("cifar10", input_shape=(3, 32, 32), root=root)


def test_a_test_class_the_train_split_lacks_is_one_line(tmp_path: Path, capsys) -> None:
    tree = image_tree(tmp_path / "tree", extra_test=("unicorn",))
    argv = ["fetch", "cifar10", "--root", str(tmp_path / "root"), "--from", str(tree), "--quiet"]
    assert data_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "only in test/: ['unicorn']" in err
    assert not (tmp_path / "root" / "cifar10").exists()
    # The same folder given to training as an ImageFolder: refused in one line too.
    argv = ["train", "lenet5_cifar", "--data", str(tree), "--samples", "8", "--no-save"]
    assert exit_code([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "only in test/: ['unicorn']" in err


def test_other_classes_are_not_cifar10(tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "tree")
    for split in ("train", "test"):
        (tree / split / "truck").rename(tree / split / "lorry")
    with pytest.raises(ImageFolderError, match="CIFAR-10's are airplane, .*--data PATH"):
        data.provision_cifar10(tmp_path / "root", from_path=tree)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "pypi"], "cifar10 has no PyPI source"),
        (["--from", "{tmp}/absent"], "does not exist"),
        (["--from", "{tmp}/notes.txt"], "is not a readable tar archive"),
        (["--from", "{tmp}"], "no CIFAR-10 in"),
    ],
)
def test_bad_fetch_input_is_one_line(tmp_path: Path, capsys, argv, message) -> None:
    (tmp_path / "notes.txt").write_text("not an archive")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert data_main(["fetch", "cifar10", "--root", str(tmp_path / "r"), *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and message in err


def test_cli_fetch_then_a_second_fetch_says_so(tmp_path: Path, capsys) -> None:
    tarball = image_tarball(tmp_path / "copy.tar.gz", image_tree(tmp_path / "tree"))
    argv = ["fetch", "cifar10", "--root", str(tmp_path / "r"), "--from", str(tarball), "--quiet"]
    assert data_main(argv) == 0
    assert capsys.readouterr().out.startswith("cifar10: provisioned in ")
    assert data_main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("cifar10: already provisioned in ") and "nothing to do" in out


def test_unprovisioned_cifar10_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="not provisioned in .*python -m data fetch cifar10"):
        data.load("cifar10", input_shape=(3, 32, 32), root=tmp_path)


def test_bench_train_on_cifar10_names_the_copy_in_its_row(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=image_tree(tmp_path / "tree"))
    monkeypatch.setenv("CNN_ZOO_DATA", str(root))
    argv = ["train", "lenet5_cifar", "--data", "cifar10", "--batch-size", "10", "--samples", "20"]
    argv += ["--augment", "crop4_flip", "--dtype", "fp32", "--no-save"]
    assert exit_code([*argv, "--out", str(tmp_path / "out")]) == 0
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert row["error"] is None and row["data"] == "cifar10"
    assert row["data_source"] == copy.describe()
    assert row["augment"] == "crop4_flip" and "augment crop4_flip" in row["recipe"]
    assert "crop4_flip augmentation" in row["data_on_clock"]
    assert (
        row["test_samples"] == 10 and 0.0 <= row["top5"] <= 1.0 and row["top5"] >= row["accuracy"]
    )


# --- the real image-folder copy (19.6 MB): slow ----------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not REAL_TARBALL.is_file(), reason=f"needs {REAL_TARBALL}")
def test_the_shared_jpeg_copy_fetches_loads_and_reloads_fast(tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy = data.provision_cifar10(root, from_path=REAL_TARBALL, sha256=REAL_SHA256)
    assert (copy.train, copy.test) == (50_000, 10_000)
    assert copy.describe().endswith("(the official splits re-encoded as JPEG quality 75)")
    started = time.perf_counter()
    first = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = data.load("cifar10", input_shape=(3, 32, 32), root=root)
    second_s = time.perf_counter() - started
    print(f"CIFAR-10 JPEG copy: first load {first_s:.2f} s, second {second_s:.2f} s")
    assert torch.equal(first.train.images, second.train.images)
    # DATA.md's per-channel means and standard deviations of this copy's train split.
    assert first.normalisation.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=1e-4)
    assert first.normalisation.std == pytest.approx((0.2452, 0.2428, 0.2606), abs=1e-4)
    assert second_s < 3.0  # "ready in a second or two"; 3 s leaves room for a busy machine
    assert not data.provision_cifar10(root, from_path=REAL_TARBALL).fresh
