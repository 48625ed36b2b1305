"""cnn-zoo-bench's model zoo: LeNet-5, AlexNet, VGG-16/19 and ResNet-34, with small-input variants.

Everything enumerates models through the registry: ``list_models``, ``get_model``, ``get_card``;
``criterion(name)`` is the loss a model's card says it trains with.
"""

from __future__ import annotations

from zoo import alexnet, lenet, resnet, vgg  # noqa: F401  (importing registers the models)
from zoo.losses import criterion
from zoo.registry import (
    ModelCard,
    PaperFacts,
    get_card,
    get_model,
    list_models,
    paper_layer_names,
    register_model,
)

__all__ = [
    "criterion",
    "ModelCard",
    "PaperFacts",
    "get_card",
    "get_model",
    "list_models",
    "paper_layer_names",
    "register_model",
]
