"""The criteria a model is trained with, by the name its card gives (``ModelCard.loss``).

One home for the sweep's timed training step and the training loop alike: both read the card,
so neither imports the other to learn that LeNet-5 trains with its MAP criterion.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from zoo.lenet import map_loss
from zoo.registry import get_card

__all__ = ["LOSSES", "criterion"]

# A card's ``loss`` -> the criterion: scores and targets -> the mean loss of the batch.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "map": map_loss,  # LeNet-5's MAP criterion on its RBF scores (Sec. II.C)
}


def criterion(
    model: str, label_smoothing: float = 0.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The criterion ``model`` is trained with (its card's ``loss``); ``label_smoothing``, a
    recipe's, where given. Looked up at each call, so a test may replace an entry of
    :data:`LOSSES`."""
    loss = LOSSES[get_card(model).loss]
    if label_smoothing:
        return partial(loss, label_smoothing=label_smoothing)
    return loss
