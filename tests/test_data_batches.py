"""The fast path (whole split as one uint8 tensor) and its benchmark against the lab's "
"DataLoader."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data
from data.idx import write_idx
from data.normalise import (
    LENET5_BACKGROUND,
    LENET5_FOREGROUND,
    MNIST_MEAN,
    MNIST_STD,
    Normalisation,
)

N_BENCH = 10_000  # MNIST-sized images, a sixth of the training set: keeps the suite short
BATCH = 128  # the lab's batch size
_EPOCH_S: dict[str, float] = {}  # fastest epoch (s), filled by the two benchmarks below


def _split(
    n: int, input_shape=(1, 28, 28), norm: str = "meanstd", seed: int = 0
) -> data.TensorSplit:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return data.TensorSplit(
        images,
        labels,
        class_names=[str(i) for i in range(10)],
        input_shape=input_shape,
        normalisation=Normalisation.make(norm, (MNIST_MEAN,), (MNIST_STD,)),
    )


def test_epoch_visits_every_sample_once() -> None:
    s = _split(1000)
    seen = torch.cat([y for _, y in s.batches(64, shuffle=True, seed_or_generator=5)])
    assert len(seen) == 1000 and torch.equal(seen.sort().values, s.labels.sort().values)
    assert [len(y) for _, y in s.batches(300, drop_last=True)] == [300, 300, 300]
    assert [len(y) for _, y in s.batches(300)] == [300, 300, 300, 100]


def test_shuffle_seed_and_generator() -> None:
    s = _split(500)
    first = [y for _, y in s.batches(100, shuffle=True, seed_or_generator=7)]
    again = [y for _, y in s.batches(100, shuffle=True, seed_or_generator=7)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    g = torch.Generator().manual_seed(7)
    e1 = torch.cat([y for _, y in s.batches(500, shuffle=True, seed_or_generator=g)])
    e2 = torch.cat([y for _, y in s.batches(500, shuffle=True, seed_or_generator=g)])
    assert not torch.equal(e1, e2)  # a generator gives a new order each epoch


def test_batches_kept_by_the_consumer_are_never_overwritten() -> None:
    """Group memory is reused only once no batch of it is held: kept batches stay correct."""
    s = _split(3000)
    expected = (s.images.float() / 255 - MNIST_MEAN) / MNIST_STD
    kept = [x for x, _ in s.batches(100)]  # every batch held at once
    other = s.batches(100)  # a second epoch in flight beside the first
    first_other, _ = next(other)
    again = [x for x, _ in s.batches(100)]
    torch.testing.assert_close(torch.cat(kept), expected)
    torch.testing.assert_close(torch.cat(again), expected)
    torch.testing.assert_close(first_other, expected[:100])
    order = torch.randperm(3000, generator=torch.Generator().manual_seed(4))
    shuffled = [(x, y) for x, y in s.batches(100, shuffle=True, seed_or_generator=4)]
    torch.testing.assert_close(torch.cat([x for x, _ in shuffled]), expected[order])
    assert torch.equal(torch.cat([y for _, y in shuffled]), s.labels[order])


def test_group_memory_is_reused_when_batches_are_let_go() -> None:
    s = _split(3000)
    list(s.batches(100, shuffle=True, seed_or_generator=0))  # the first epoch allocates
    pointers = {x.untyped_storage().data_ptr() for x, _ in s.batches(100, shuffle=True)}
    assert len(pointers) <= 2  # the pool's two group buffers, no fresh memory per group


def test_normalisations() -> None:
    s = _split(4, input_shape=(1, 32, 32), norm="lenet5_paper")
    s.images[:] = 0
    s.images[:, :, 10:12, 10:12] = 255
    x, _ = next(s.batches(4))
    assert x.shape == (4, 1, 32, 32)
    assert torch.allclose(x[:, :, 12:14, 12:14], torch.tensor(LENET5_FOREGROUND))  # 2 px pad
    assert torch.allclose(x[:, :, 0, 0], torch.tensor(LENET5_BACKGROUND))
    m = _split(2000)
    x, _ = next(m.batches(2000))
    raw = m.images.float() / 255
    torch.testing.assert_close(x, (raw - MNIST_MEAN) / MNIST_STD)


def test_resize_and_channels() -> None:
    x, y = next(_split(8, input_shape=(3, 224, 224)).batches(8))
    assert x.shape == (8, 3, 224, 224) and x.is_contiguous() and y.shape == (8,)


def _lab_dataset(tmp_path: Path, n: int) -> data.DatasetMNIST:
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "images", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "labels", rng.integers(0, 10, n, dtype=np.uint8))
    return data.DatasetMNIST(tmp_path / "images", tmp_path / "labels")


def _record(benchmark, key: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        # min, not mean: on a shared machine, neighbours only ever add time to a round.
        _EPOCH_S[key] = stats.stats.min


def dataloader_epoch(ds: data.DatasetMNIST) -> int:
    """The lab's section 4.2: DataLoader(DatasetMNIST, batch_size=128, shuffle=True,
    num_workers=0), inputs scaled as its training loop does."""
    n = 0
    for batch in DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=0):
        x = batch["date"] / 255
        n += len(x)
    return n


def fast_epoch(split: data.TensorSplit, generator: torch.Generator) -> int:
    """The fast path: the split as one uint8 tensor, a permutation, normalised batches."""
    return sum(len(x) for x, _ in split.batches(BATCH, shuffle=True, seed_or_generator=generator))


# Both run with the process's default torch threads, as a training loop runs them: the fast path
# spreads its conversions over them, the per-sample DataLoader (num_workers=0) cannot.
@pytest.mark.benchmark(group="data-epoch")
def test_epoch_dataloader_over_lab_dataset(benchmark, tmp_path: Path) -> None:
    ds = _lab_dataset(tmp_path, N_BENCH)
    assert benchmark.pedantic(dataloader_epoch, (ds,), rounds=5, warmup_rounds=0) == N_BENCH
    _record(benchmark, "dataloader")


@pytest.mark.benchmark(group="data-epoch")
def test_epoch_fast_path(benchmark) -> None:
    s, g = _split(N_BENCH), torch.Generator().manual_seed(0)
    assert benchmark.pedantic(fast_epoch, (s, g), rounds=40, warmup_rounds=2) == N_BENCH
    _record(benchmark, "fast")


def _fastest(epoch, rounds: int) -> float:
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.perf
def test_fast_path_is_20x_faster_per_epoch(tmp_path: Path) -> None:
    """Issue 4: the fast path at least 20x faster per epoch than the lab's DataLoader.

    A speed ratio, so kept out of the default run (a loaded machine would decide it, not the
    code): `nox -s tests -- -m perf` on a quiet machine. It compares the fastest epochs of the
    two benchmarks above when they ran in the same session, else measures both itself.
    """
    if set(_EPOCH_S) != {"dataloader", "fast"}:
        ds = _lab_dataset(tmp_path, N_BENCH)
        s, g = _split(N_BENCH), torch.Generator().manual_seed(0)
        _EPOCH_S["dataloader"] = _fastest(lambda: dataloader_epoch(ds), rounds=5)
        _EPOCH_S["fast"] = _fastest(lambda: fast_epoch(s, g), rounds=40)
    ratio = _EPOCH_S["dataloader"] / _EPOCH_S["fast"]
    print(f"fast path {ratio:.1f}x faster per epoch of {N_BENCH} samples: {_EPOCH_S}")
    assert ratio >= 20, f"fast path only {ratio:.1f}x faster per epoch ({_EPOCH_S})"
