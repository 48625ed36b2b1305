"""Training on several processes (issue 8): sharded epochs, DDP under torchrun, exact evaluation.

The multi-process tests start 2 processes with torchrun and the gloo backend on this CPU; they
need no GPU and no network (torchrun's ``--standalone`` rendezvous is on localhost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import exit_code
from ddp_worker import (
    AUGMENTED,
    LIMIT,
    TEST_SAMPLES,
    augmented_settings,
    random_model,
    random_split,
)

from bench.training.distributed import World, choose_backend
from bench.training.loop import evaluate, load_weights, train
from data.batches import shard_order
from data.imagefolder import StreamingSplit
from data.normalise import Normalisation
from data.splits import Splits

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` from the repository root."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "CNN_ZOO_DATA": str(tmp_path / "data-root"),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(WORLD), *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# --- the split of an epoch between ranks -------------------------------------------------------


def test_ranks_together_make_one_process_batches():
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    batch = 32  # per rank: the global batch is 64
    parts = [shard_order(order, (r, WORLD), batch, drop_last=True) for r in range(WORLD)]
    assert len(parts[0]) == len(parts[1]) == (1000 // 64) * batch  # same number of full steps
    for step in range(1000 // 64):
        together = torch.cat([p[step * batch : (step + 1) * batch] for p in parts])
        alone = order[step * 64 : (step + 1) * 64]
        assert set(together.tolist()) == set(alone.tolist())


def test_an_unshuffled_epoch_is_split_without_padding():
    parts = [shard_order(torch.arange(101), (r, 3), 8, drop_last=False) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(101))  # each sample exactly once
    assert [len(p) for p in parts] == [34, 34, 33]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0)])
def test_impossible_shards_are_refused(shard):
    with pytest.raises(ValueError, match="0 <= rank < world"):
        shard_order(torch.arange(10), shard, 2, drop_last=False)


def test_tensor_split_shards_match_one_process():
    split = random_split(200, 0)
    alone = [y for _, y in split.batches(40, shuffle=True, seed_or_generator=3, drop_last=True)]
    ranks = [
        [y for _, y in split.batches(20, shuffle=True, seed_or_generator=3, drop_last=True,
                                     shard=(r, WORLD))]
        for r in range(WORLD)
    ]  # fmt: skip
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 5
    for step, y in enumerate(alone):
        together = torch.cat([ranks[0][step], ranks[1][step]])
        assert sorted(together.tolist()) == sorted(y.tolist())


def test_streaming_split_shards_with_distributed_sampler(gray_folder):
    from data.imagefolder import scan_tree

    tree = scan_tree(gray_folder)
    split = StreamingSplit(
        tree.samples,
        class_names=tree.classes,
        input_shape=(1, 28, 28),
        normalisation=Normalisation.make("meanstd", (0.5,), (0.25,)),
        num_workers=0,
    )

    def pixels(batches) -> list[list[float]]:
        return [x.flatten(1).sum(1).tolist() for x, _ in batches]

    alone = pixels(split.batches(40, shuffle=True, seed_or_generator=5, drop_last=True))
    ranks = [
        pixels(split.batches(20, shuffle=True, seed_or_generator=5, drop_last=True,
                             shard=(r, WORLD)))
        for r in range(WORLD)
    ]  # fmt: skip
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 200 // 40
    for step, sums in enumerate(alone):
        assert sorted(ranks[0][step] + ranks[1][step]) == pytest.approx(sorted(sums))
    evaluated = [len(y) for r in range(3) for _, y in split.batches(16, shard=(r, 3))]
    assert sum(evaluated) == 200  # an evaluation sees every image once, none padded in


# --- settings refused before any process group forms -----------------------------------------


def test_a_batch_the_world_size_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="pass --batch-size 126 or 129"):
        World(world_size=3).local_batch(128)
    assert World(world_size=4).local_batch(128) == 32


def test_backends_are_checked_against_the_device():
    assert choose_backend("cpu") == "gloo"
    with pytest.raises(ValueError, match="nccl runs on CUDA devices only"):
        choose_backend("cpu", "nccl")


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--backend", "nccl"], {}, "--backend nccl runs on CUDA devices only"),
        (["--backend", "mpi"], {}, "invalid choice: 'mpi'"),
        ([], {"WORLD_SIZE": "3", "RANK": "0"}, "does not split evenly over 3 processes"),
        ([], {"WORLD_SIZE": "2", "RANK": "5"}, "RANK 5 of WORLD_SIZE 2 is impossible"),
    ],
)
def test_bad_distributed_input_is_one_line(argv, env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert exit_code(["train", "lab_cnn", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


# --- 2 processes, gloo, this CPU ---------------------------------------------------------------


@pytest.mark.parametrize(
    "loading",
    [[], ["--cache-limit-mb", "0", "--workers", "0"]],
    ids=["cached-tensor-split", "streamed-distributed-sampler"],
)
def test_ddp_under_torchrun_equals_one_process_at_the_global_batch(
    gray_folder,
    tmp_path,
    monkeypatch,
    loading,
):
    """`torchrun -m bench train` unchanged: the same parameters as one process at batch 16, for
    an ImageFolder cached as a tensor (the fast path's shards) and one streamed from its files
    (DistributedSampler)."""
    # fp32 pinned: the comparison is at float32 tolerances, and `--dtype auto` would train in
    # bf16 autocast on a CPU with native bf16.
    argv = ["train", "lab_cnn", "--data", str(gray_folder), "--batch-size", "16", "--epochs", "1"]
    argv += ["--dtype", "fp32", *loading]
    torchrun(["-m", "bench", *argv, "--out", str(tmp_path / "ddp")], tmp_path)
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))
    assert exit_code([*argv, "--out", str(tmp_path / "one")]) == 0

    rows = (tmp_path / "ddp" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 1  # rank 0 alone writes
    row = json.loads(rows[0])
    assert (row["world_size"], row["backend"], row["global_batch"]) == (WORLD, "gloo", 16)
    assert row["error"] is None and row["test_samples"] == 41
    weights = list((tmp_path / "ddp" / "weights").glob("*.pt"))
    assert [w.name for w in weights] == ["lab_cnn-seed0-2procs.pt"]
    ddp = load_weights(weights[0])
    alone = load_weights(tmp_path / "one" / "weights" / "lab_cnn-seed0.pt")
    assert ddp.keys() == alone.keys()
    for name in alone:
        torch.testing.assert_close(ddp[name], alone[name], msg=name)  # float32 defaults
    one_row = json.loads((tmp_path / "one" / "results.jsonl").read_text())
    assert (one_row["world_size"], one_row["backend"], one_row["global_batch"]) == (1, None, 16)


def test_ddp_evaluation_is_exact_and_ranks_stop_together(tmp_path):
    torchrun([str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    model = random_model()
    test = random_split(TEST_SAMPLES, 1)
    for got in ranks:
        assert (got["world_size"], got["backend"]) == (WORLD, "gloo")
        # Exact: the same count as one process over all 101 samples (no sample counted twice).
        assert got["accuracy"] == evaluate(model, test, batch_size=16)
        assert got["accuracy_first_37"] == evaluate(model, test, batch_size=16, limit=LIMIT)
    assert ranks[0]["budget_epochs"] == ranks[1]["budget_epochs"] < 50
    assert ranks[0]["budget_evaluations"] == ranks[1]["budget_evaluations"]
    assert ranks[0]["budget_accuracy"] == ranks[1]["budget_accuracy"]
    # Augmented batches (crop4_flip): 2 ranks trained on the samples one process crops and
    # flips at the global batch, so the weights agree as they do without augmentation.
    splits = Splits("random", random_split(256, 0), test, (1, 28, 28), test.normalisation)
    alone = train(augmented_settings(), splits, AUGMENTED).model
    assert alone is not None
    ddp = torch.load(tmp_path / "augmented.pt", weights_only=True)
    for name, value in alone.state_dict().items():
        torch.testing.assert_close(ddp[name], value, msg=name)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices for 2 nccl ranks")
def test_ddp_with_nccl_on_two_gpus(gray_folder, tmp_path):
    argv = ["train", "lab_cnn", "--data", str(gray_folder), "--batch-size", "16", "--epochs", "1"]
    torchrun(["-m", "bench", *argv, "--device", "cuda", "--out", str(tmp_path / "ddp")], tmp_path)
    row = json.loads((tmp_path / "ddp" / "results.jsonl").read_text())
    assert (row["world_size"], row["backend"], row["error"]) == (WORLD, "nccl", None)
