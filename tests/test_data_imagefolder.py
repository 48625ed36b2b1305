"""ImageFolder: layouts, conversion to the model's input, caching, streaming, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
from data.errors import ImageFolderError, MissingDataError


def _png(path: Path, value: int, size: tuple[int, int] = (28, 28), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, color).save(path)


def _tree(root: Path, classes: dict[str, int], per_class: int = 5, **kw) -> Path:
    for c, value in classes.items():
        for i in range(per_class):
            _png(root / c / f"{i}.png", value + i, **kw)
    return root


def test_single_tree_split_reproducible_and_shaped(tmp_path: Path) -> None:
    root = _tree(tmp_path / "digits", {"zero": 10, "one": 200}, per_class=10)
    kw = dict(input_shape=(1, 32, 32), val_fraction=0.2, seed=3, root=tmp_path / "dr")
    a = data.load(root, **kw)
    b = data.load(root, **kw)  # second load: from the decoded-tensor cache
    assert (len(a.train), len(a.test)) == (16, 4)
    assert a.class_names == ("one", "zero") and a.num_classes == 2
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.test.images, b.test.images)
    assert list((tmp_path / "dr" / "cache" / "imagefolder").glob("*.pt"))
    x, y = next(a.train.batches(8, shuffle=True, seed_or_generator=0))
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # meanstd from the train split: the whole train split normalises to mean 0, std 1
    xs = torch.cat([x for x, _ in a.train.batches(64)])
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std(unbiased=False).item() - 1) < 1e-3


def test_train_val_pair_rgb_to_gray_and_resize(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _tree(tmp_path / "ds" / split, {"a": 0, "b": 100}, per_class=3, size=(40, 50), mode="RGB")
    s = data.load(tmp_path / "ds", input_shape=(1, 24, 24), root=tmp_path / "dr")
    assert (len(s.train), len(s.test)) == (6, 6)
    x, _ = next(s.test.batches(6))
    assert x.shape == (6, 1, 24, 24)


def test_gray_to_rgb(tmp_path: Path) -> None:
    root = _tree(tmp_path / "g", {"a": 0, "b": 100}, per_class=4)
    s = data.load(root, input_shape=(3, 32, 32), normalisation="lenet5_paper", root=tmp_path / "dr")
    x, _ = next(s.train.batches(4))
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_large_tree_streams_with_workers(tmp_path: Path) -> None:
    root = _tree(tmp_path / "big", {"a": 0, "b": 100}, per_class=6)
    s = data.load(
        root, input_shape=(1, 28, 28), root=tmp_path / "dr", cache_limit_bytes=0, num_workers=2
    )
    assert isinstance(s.train, data.StreamingSplit)
    cached = data.load(root, input_shape=(1, 28, 28), root=tmp_path / "dr2")
    streamed = torch.cat([x for x, _ in s.test.batches(4)])
    fast = torch.cat([x for x, _ in cached.test.batches(4)])
    assert streamed.shape == fast.shape == (len(s.test), 1, 28, 28)
    torch.testing.assert_close(streamed, fast)  # same images, same split, same statistics
    batches = list(s.train.batches(3, shuffle=True, seed_or_generator=1, drop_last=True))
    assert all(x.shape == (3, 1, 28, 28) for x, _ in batches)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="does not exist or is not a directory"):
        data.load(tmp_path / "absent", input_shape=(1, 28, 28), root=tmp_path)


def test_no_class_folders(tmp_path: Path) -> None:
    _png(tmp_path / "flat" / "x.png", 0)
    with pytest.raises(ImageFolderError, match="has no class folders; expected .*/<class>/<image>"):
        data.load(tmp_path / "flat", input_shape=(1, 28, 28), root=tmp_path)


def test_empty_class_folder_named(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100})
    (root / "empty_one").mkdir()
    with pytest.raises(ImageFolderError, match=r"class folder .*empty_one holds no images"):
        data.load(root, input_shape=(1, 28, 28), root=tmp_path)


def test_non_image_file_fails_or_skips(tmp_path: Path, caplog) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "a" / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    with pytest.raises(
        ImageFolderError, match=r"notes.txt has no image extension; .*bad_files='skip'"
    ):
        data.load(root, input_shape=(1, 28, 28), root=tmp_path)
    with caplog.at_level("WARNING"):
        s = data.load(root, input_shape=(1, 28, 28), root=tmp_path, bad_files="skip")
    assert "notes.txt" in caplog.text and len(s.train) + len(s.test) == 10


def test_undecodable_image_fails_or_skips(tmp_path: Path, caplog) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100})
    (root / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageFolderError, match=r"broken.png is not a readable image"):
        data.load(root, input_shape=(1, 28, 28), root=tmp_path / "r1")
    with pytest.raises(ImageFolderError, match=r"^\S*broken.png is not a readable image"):
        s = data.load(
            root, input_shape=(1, 28, 28), root=tmp_path / "r2", cache_limit_bytes=0, num_workers=1
        )
        list(s.train.batches(20))
        list(s.test.batches(20))
    with caplog.at_level("WARNING"):
        s = data.load(root, input_shape=(1, 28, 28), root=tmp_path / "r3", bad_files="skip")
    assert "broken.png" in caplog.text and len(s.train) + len(s.test) == 10


def test_mismatched_class_sets(tmp_path: Path) -> None:
    _tree(tmp_path / "ds" / "train", {"a": 0, "b": 100, "c": 50})
    _tree(tmp_path / "ds" / "val", {"a": 0, "b": 100, "d": 50})
    with pytest.raises(ImageFolderError, match=r"only in train/: \['c'\], only in val/: \['d'\]"):
        data.load(tmp_path / "ds", input_shape=(1, 28, 28), root=tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100})
    with pytest.raises(ValueError, match="val_fraction"):
        data.load(root, input_shape=(1, 28, 28), val_fraction=1.5, root=tmp_path)
    with pytest.raises(ValueError, match="unknown normalisation"):
        data.load(root, input_shape=(1, 28, 28), normalisation="zscore", root=tmp_path)
    assert np.isfinite(
        data.load(root, input_shape=(1, 28, 28), root=tmp_path).normalisation.std
    ).all()


def test_a_changed_tree_is_never_served_from_the_cache(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100}, per_class=4)
    kw = dict(input_shape=(1, 28, 28), val_fraction=0.25, seed=0, root=tmp_path / "dr")
    first = data.load(root, **kw)
    _png(root / "a" / "2.png", 77)  # other pixels in one file
    changed = data.load(root, **kw)
    assert not torch.equal(
        torch.cat([changed.train.images, changed.test.images]).sort(0).values,
        torch.cat([first.train.images, first.test.images]).sort(0).values,
    )
    assert (torch.cat([changed.train.images, changed.test.images]) == 77).any()
    (root / "b" / "3.png").unlink()  # a file gone
    assert len(data.load(root, **kw).train) + len(data.load(root, **kw).test) == 7


def test_a_torn_or_foreign_cache_file_is_decoded_again(tmp_path: Path, caplog) -> None:
    root = _tree(tmp_path / "t", {"a": 0, "b": 100}, per_class=4)
    kw = dict(input_shape=(1, 28, 28), root=tmp_path / "dr")
    first = data.load(root, **kw)
    (cache,) = (tmp_path / "dr" / "cache" / "imagefolder").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])  # torn by a kill mid-write (or a full disk)
    with caplog.at_level("WARNING"):
        again = data.load(root, **kw)
    assert "unreadable" in caplog.text and torch.equal(again.train.images, first.train.images)
    # Readable, but not this tree's: labels that do not match its files.
    blob = torch.load(cache, weights_only=True)
    torch.save({**blob, "labels": 1 - blob["labels"]}, cache)
    caplog.clear()
    with caplog.at_level("WARNING"):
        third = data.load(root, **kw)
    assert "does not match" in caplog.text and torch.equal(third.train.labels, first.train.labels)


@pytest.mark.parametrize("cache_limit", [None, 0], ids=["cached", "streamed"])
def test_a_limited_epoch_of_a_class_sorted_folder_holds_every_class(
    tmp_path: Path, cache_limit: int | None
) -> None:
    """A folder's test split is stored class by class (4 classes of 10 here), so its first 20
    images would be two classes. An epoch limited to 20 takes every second image instead,
    floor(i × 40 / 20) = 2i: 5 of each class, the images 0, 2, …, 38 of the whole split."""
    for split in ("train", "test"):
        _tree(tmp_path / "ds" / split, {"a": 0, "b": 60, "c": 120, "d": 180}, per_class=10)
    options = {} if cache_limit is None else {"cache_limit_bytes": 0, "num_workers": 0}
    s = data.load(tmp_path / "ds", input_shape=(1, 28, 28), root=tmp_path / "dr", **options)
    whole = torch.cat([x for x, _ in s.test.batches(8)])
    limited = list(s.test.batches(7, limit=20))
    labels = torch.cat([y for _, y in limited])
    assert torch.bincount(labels).tolist() == [5, 5, 5, 5]
    torch.testing.assert_close(torch.cat([x for x, _ in limited]), whole[0:40:2])
    assert data.batches.spread(40, 20).tolist() == list(range(0, 40, 2))
