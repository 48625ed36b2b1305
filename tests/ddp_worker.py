"""Run by tests/test_distributed.py under torchrun: what every rank of a 2-process gloo group sees.

``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT`` writes
``OUT/rank<r>.json``: the accuracies a random model gets on an odd-sized test split (all of it,
and its first 37 samples), and the outcome of a run stopped by a time budget; rank 0 also saves
``OUT/augmented.pt``, the weights of a short run whose batches are augmented (crop4_flip).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

import zoo
from bench.training import distributed
from bench.training.loop import TrainSettings, evaluate, train
from bench.training.recipes import Recipe
from data.batches import TensorSplit
from data.normalise import Normalisation
from data.splits import Splits

TEST_SAMPLES = 101  # odd: two ranks get 51 and 50; padding would count one sample twice
LIMIT = 37
QUICK = Recipe(lr=0.05, batch_size=32, samples=50 * 256, dtype="fp32", channels_last=False)
# Four steps at the global batch, each batch cropped and flipped: the same samples on 2 ranks.
AUGMENTED = replace(QUICK, samples=4 * 32, augment="crop4_flip")


def random_split(n: int, seed: int) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(
        torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n,), generator=g),
        class_names=[str(d) for d in range(10)],
        input_shape=(1, 28, 28),
        normalisation=Normalisation.make("meanstd", (0.5,), (0.25,)),
    )


def random_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.get_model("lenet5_mnist")


def augmented_settings() -> TrainSettings:
    return TrainSettings("lenet5_mnist", evals_per_epoch=1)


def main(out: Path) -> None:
    world = distributed.start("cpu")
    test = random_split(TEST_SAMPLES, 1)
    model = random_model()
    result = {
        "rank": world.rank,
        "world_size": world.world_size,
        "backend": world.backend,
        "accuracy": evaluate(model, test, batch_size=16, world=world),
        "accuracy_first_37": evaluate(model, test, batch_size=16, limit=LIMIT, world=world),
    }
    # The budget is the length: every rank must stop at the same step.
    splits = Splits("random", random_split(256, 0), test, (1, 28, 28), test.normalisation)
    settings = TrainSettings("lenet5_mnist", budget_s=1.0, evals_per_epoch=2)
    outcome = train(settings, splits, QUICK, world=world)
    result.update(
        budget_epochs=outcome.epochs,
        budget_evaluations=len(outcome.history),
        budget_accuracy=outcome.accuracy,
    )
    augmented = train(augmented_settings(), splits, AUGMENTED, world=world)
    if world.is_main and augmented.model is not None:
        torch.save(augmented.model.state_dict(), out / "augmented.pt")
    distributed.stop(world)
    (out / f"rank{result['rank']}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
