"""Batch augmentation (data.augment) and where training uses it; top-5 accuracy.

Second methods: a known image's crop and flip written out by hand, and a per-image reference
built from torchvision's own functional pad, crop and flip.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from conftest import MEANSTD, separable_split
from torch import nn

from bench.training.loop import Scores, TrainSettings, evaluate, evaluate_scores, train
from bench.training.recipes import Recipe, recipe_for
from data.augment import CropFlip, augment_batch, crop_flip, draw_crop_flip
from data.batches import TensorSplit
from data.splits import Splits

WORLD = 2


# --- the operation ------------------------------------------------------------------------------


def test_a_known_image_cropped_and_flipped_by_hand() -> None:
    ramp = torch.arange(16.0).view(1, 1, 4, 4)  # pixel (r, c) = 4r + c
    x = ramp.repeat(3, 1, 1, 1)
    draws = CropFlip(
        top=torch.tensor([5, 4, 0]),  # padded row 5 = image row 1; 4 = row 0; 0 = all padding
        left=torch.tensor([2, 4, 8]),  # padded col 2 = image col -2; 4 = col 0; 8 = col 4
        flip=torch.tensor([True, False, False]),
    )  # pad 4, the standard recipe's
    out = crop_flip(x, draws, fill=-1.0)
    f = -1.0
    expected = torch.tensor(
        [
            # rows 1..4, cols -2..1 (-2, -1: padding), mirrored: cols 1, 0, -1, -2
            [[5, 4, f, f], [9, 8, f, f], [13, 12, f, f], [f, f, f, f]],
            # offset (4, 4): the image itself
            [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]],
            # offset (0, 8): rows -4..-1, all padding
            [[f, f, f, f]] * 4,
        ]
    ).view(3, 1, 4, 4)
    assert torch.equal(out, expected)


def test_crop_flip_equals_torchvisions_pad_crop_and_flip_image_by_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32, generator=g)
    fill = torch.tensor([-1.9, -2.0, -1.7]).view(1, 3, 1, 1)  # black, normalised, per channel
    draws = draw_crop_flip(64, g)
    out = crop_flip(x, draws, fill)
    for i in range(64):
        padded = torch.cat(
            [TF.pad(x[i, c : c + 1], [4, 4, 4, 4], fill=float(fill[0, c])) for c in range(3)]
        )
        ref = TF.crop(padded, int(draws.top[i]), int(draws.left[i]), 32, 32)
        if draws.flip[i]:
            ref = TF.horizontal_flip(ref)
        assert torch.equal(out[i], ref), i
    assert out.is_contiguous() and out.shape == x.shape


@pytest.mark.parametrize(("name", "pad"), [("flip", 0), ("crop2_flip", 2)])
def test_the_lighter_augmentations_are_a_smaller_pad_crop_and_flip(name: str, pad: int) -> None:
    """Each image found among torchvision's crops of it padded by ``pad``, mirrored or not."""
    x = torch.randn(48, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = augment_batch(x, name, torch.Generator().manual_seed(5), fill=-1.5)
    found = []
    for i in range(len(x)):
        padded = TF.pad(x[i], [pad] * 4, fill=-1.5)
        found += [
            (top, left, flip)
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (TF.horizontal_flip if flip else (lambda t: t))(TF.crop(padded, top, left, 12, 12)),
            )
        ][:1]
        assert len(found) == i + 1, f"image {i} is no {pad}-pixel crop of itself, flipped or not"
    assert {top for top, _, _ in found} == set(range(2 * pad + 1))  # every offset drawn
    assert {flip for _, _, flip in found} == {False, True}


def test_draws_cover_every_offset_and_both_flips_from_the_seed() -> None:
    a = draw_crop_flip(4000, torch.Generator().manual_seed(3))
    b = draw_crop_flip(4000, torch.Generator().manual_seed(3))
    assert torch.equal(a.top, b.top) and torch.equal(a.flip, b.flip)  # the seed decides
    assert set(a.top.tolist()) == set(a.left.tolist()) == set(range(9))  # 0..8: pad 4 each side
    assert 0.45 < a.flip.float().mean().item() < 0.55


def test_none_draws_nothing_and_returns_the_batch() -> None:
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    x = torch.randn(8, 3, 32, 32)
    assert augment_batch(x, "none", g) is x and torch.equal(g.get_state(), state)
    with pytest.raises(
        ValueError, match="unknown augmentation 'cutout'; use one of none, flip, crop2_flip, crop4"
    ):
        augment_batch(x, "cutout", g)


# --- N processes see the augmented samples one process sees -----------------------------------


def test_a_global_draw_sliced_per_rank_equals_each_ranks_own() -> None:
    x = torch.randn(16, 3, 8, 8)  # one step's global batch
    alone = augment_batch(x, "crop4_flip", torch.Generator().manual_seed(7))
    for rank in range(WORLD):
        mine = augment_batch(
            x[rank::WORLD], "crop4_flip", torch.Generator().manual_seed(7), shard=(rank, WORLD)
        )
        assert torch.equal(mine, alone[rank::WORLD])


def test_sharded_epochs_with_augmentation_match_one_process_step_by_step() -> None:
    """Each rank's batches (data.batches' shards) augmented with its own generator, seeded
    alike: interleaved, every step is one process's augmented global batch, bit for bit."""
    split = separable_split(200, 0, side=12)

    def epoch(batch: int, shard: tuple[int, int] | None) -> list[torch.Tensor]:
        order, draws = torch.Generator().manual_seed(3), torch.Generator().manual_seed(9)
        batches = split.batches(
            batch, shuffle=True, seed_or_generator=order, drop_last=True, shard=shard
        )
        return [augment_batch(x, "crop4_flip", draws, shard=shard, fill=-0.4) for x, _ in batches]

    alone = epoch(2 * 20, None)
    ranks = [epoch(20, (rank, WORLD)) for rank in range(WORLD)]
    assert len(alone) == len(ranks[0]) == len(ranks[1]) == 200 // 40
    for step, global_batch in enumerate(alone):
        # rank r holds the global batch's samples r, r + W, ...: interleave them back
        together = torch.stack([ranks[0][step], ranks[1][step]], dim=1).flatten(0, 1)
        assert torch.equal(together, global_batch)


# --- the training loop ------------------------------------------------------------------------


QUICK = Recipe(lr=0.05, batch_size=20, samples=200, dtype="fp32", channels_last=False)


def _splits() -> Splits:
    train_split, test_split = separable_split(200, 0), separable_split(60, 1)
    return Splits("digits", train_split, test_split, (1, 28, 28), MEANSTD)


def _weights(settings: TrainSettings, recipe: Recipe) -> dict[str, torch.Tensor]:
    outcome = train(settings, _splits(), recipe)
    assert outcome.model is not None
    return {k: v.clone() for k, v in outcome.model.state_dict().items()}


def test_training_augments_from_the_seed_and_only_when_asked() -> None:
    plain = _weights(TrainSettings("lenet5_mnist", seed=0), QUICK)
    augmented = _weights(TrainSettings("lenet5_mnist", seed=0, augment="crop4_flip"), QUICK)
    again = _weights(TrainSettings("lenet5_mnist", seed=0), replace(QUICK, augment="crop4_flip"))
    other_seed = _weights(TrainSettings("lenet5_mnist", seed=1, augment="crop4_flip"), QUICK)
    w = "classifier.4.weight"
    assert not torch.equal(plain[w], augmented[w])  # the batches were augmented
    assert torch.equal(augmented[w], again[w])  # the setting or the recipe: the same draws
    assert not torch.equal(augmented[w], other_seed[w])


def test_evaluation_never_augments() -> None:
    splits = _splits()
    outcome = train(TrainSettings("lenet5_mnist", augment="crop4_flip"), splits, QUICK)
    assert outcome.model is not None
    # The run's evaluations score the plain test images: its last one is exactly what an
    # evaluation outside training gets (a random crop would move it).
    assert outcome.accuracy == evaluate(outcome.model, splits.test)


def test_bad_augment_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown augmentation .mixup."):
        TrainSettings("lenet5_mnist", augment="mixup")


def test_recipes_say_their_augmentation() -> None:
    recipe = recipe_for("lenet5_mnist")  # digits are not flipped
    assert recipe.augment == "none" and "no augmentation" in recipe.describe()
    assert "augment crop4_flip" in replace(recipe, augment="crop4_flip").describe()
    assert "augment crop4_flip" in recipe_for("lenet5_cifar").describe()


# --- top-5 ------------------------------------------------------------------------------------


class FixedScores(nn.Module):
    """Scores set by hand, one row per sample (the batch's rows in order)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.scores[self.seen : self.seen + len(x)]
        self.seen += len(x)
        return rows


def _split_of(labels: list[int], classes: int) -> TensorSplit:
    n = len(labels)
    return TensorSplit(
        torch.zeros(n, 1, 2, 2, dtype=torch.uint8),
        torch.tensor(labels),
        class_names=[str(c) for c in range(classes)],
        input_shape=(1, 2, 2),
        normalisation=MEANSTD,
    )


def test_top1_and_top5_counted_by_hand() -> None:
    # Seven classes; class c's score in row i is scores[i][c]. Ranks below, highest first.
    scores = torch.tensor(
        [
            [9, 8, 7, 6, 5, 4, 3],  # label 0: 1st -> top-1 and top-5 hit
            [9, 8, 7, 6, 5, 4, 3],  # label 4: 5th -> top-5 hit only
            [9, 8, 7, 6, 5, 4, 3],  # label 5: 6th -> neither
            [1, 2, 3, 4, 5, 6, 7],  # label 2: 5th (7, 6, 5, 4, 3) -> top-5 only
            [0, 0, 0, 9, 0, 0, 0],  # label 3: 1st -> both
        ],
        dtype=torch.float32,
    )
    split = _split_of([0, 4, 5, 2, 3], classes=7)
    got = evaluate_scores(FixedScores(scores), split, batch_size=2)  # across batches
    # Top-1 hits: labels 0 and 3; labels 2, 4 and 5 missed; classes 1 and 6 have no sample.
    by_class = (1.0, None, 0.0, 1.0, 0.0, 0.0, None)
    assert got == Scores(top1=2 / 5, top5=4 / 5, samples=5, per_class=by_class)


def test_top5_on_five_classes_or_fewer_is_not_scored_and_refused_when_asked() -> None:
    split = _split_of([0, 1, 2], classes=3)
    scores = torch.eye(3)
    assert evaluate_scores(FixedScores(scores), split).top5 is None
    with pytest.raises(
        ValueError, match="top-5 accuracy needs more than 5 classes, the data has 3"
    ):
        evaluate_scores(FixedScores(scores), split, top5=True)


def test_a_training_run_reports_top5_on_ten_classes() -> None:
    outcome = train(TrainSettings("lenet5_mnist"), _splits(), QUICK)
    assert outcome.top5 is not None and outcome.top5 >= outcome.accuracy
