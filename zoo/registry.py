"""The one registry of the zoo: every model is found, listed and built through it.

A model is registered with the facts that describe it (its :class:`ModelCard`), so tests, the
harness and reports read one record instead of keeping their own lists.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from torch import nn

from zoo.paper_layers import PaperNamer

__all__ = [
    "PaperFacts",
    "ModelCard",
    "Variant",
    "register_model",
    "register_variants",
    "input_shape",
    "list_models",
    "get_model",
    "get_card",
    "paper_layer_names",
]


@dataclass(frozen=True)
class PaperFacts:
    """What a publication reports about a model, copied from the paper its ``citation`` names."""

    citation: str
    params: int | None = None  # trainable parameters as the paper (or its reference code) counts
    macs: float | None = None  # multiply-accumulates of one forward pass at the declared input
    connections: int | None = None  # LeNet-5 counts connections, i.e. MACs including biases
    top1_error: float | None = None  # fraction, on the data set named in `reported_on`
    top5_error: float | None = None
    test_accuracy: float | None = None  # fraction, on the data set named in `reported_on`
    reported_on: str | None = None
    notes: str = ""


@dataclass(frozen=True)
class ModelCard:
    """A registered model: its builder and the facts tests and reports read."""

    name: str
    family: str  # "lenet", "alexnet", "vgg", "resnet": the zoo file it lives in
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W) of one sample
    num_classes: int
    summary: str
    paper: PaperFacts | None = None
    # the family's map of module paths to the paper's layer names (zoo.paper_layers)
    paper_names: PaperNamer | None = None
    # the criterion its scores are trained with (zoo.losses.LOSSES): "map" for LeNet-5's RBF
    # penalties, "cross_entropy" for every network with a linear output
    loss: str = "cross_entropy"
    # torchvision's weights enum whose state dicts load into it ("ResNet34_Weights"): what
    # `bench eval MODEL --weights torchvision` evaluates; None where none do
    torchvision_weights: str | None = None


_REGISTRY: dict[str, ModelCard] = {}


class SquareInput(Protocol):
    """What a family's config row says about its input: channels and a square side."""

    @property
    def in_channels(self) -> int: ...

    @property
    def input_size(self) -> int: ...


Config = TypeVar("Config", bound=SquareInput)


def input_shape(config: SquareInput) -> tuple[int, int, int]:
    """The ``(C, H, W)`` of one sample, read from a config row."""
    return (config.in_channels, config.input_size, config.input_size)


@dataclass(frozen=True)
class Variant(Generic[Config]):
    """One row of a family's table of variants: its config and the facts its card carries."""

    config: Config
    num_classes: int  # the head's default width; ``get_model(name, num_classes=...)`` overrides
    summary: str
    paper: PaperFacts | None = None
    notes: str = ""  # why the variant is built as it is; becomes its builder's docstring
    loss: str = "cross_entropy"  # its card's criterion (zoo.losses)
    torchvision_weights: str | None = None  # its card's (ModelCard.torchvision_weights)


def register_variants(
    family: str,
    build: Callable[[Config, int], nn.Module],
    variants: Mapping[str, Variant[Config]],
    paper_names: PaperNamer | None = None,
) -> None:
    """Register each row of ``variants`` under its name, built by ``build(config, num_classes)``;
    its card's input shape and classes come from the row."""
    for name, variant in variants.items():
        register_model(
            name,
            family=family,
            input_shape=input_shape(variant.config),
            num_classes=variant.num_classes,
            summary=variant.summary,
            paper=variant.paper,
            paper_names=paper_names,
            loss=variant.loss,
            torchvision_weights=variant.torchvision_weights,
        )(_builder(name, build, variant))


def _builder(
    name: str, build: Callable[[Config, int], nn.Module], variant: Variant[Config]
) -> Callable[..., nn.Module]:
    def builder(*, num_classes: int = variant.num_classes) -> nn.Module:
        return build(variant.config, num_classes)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{variant.summary}\n\n{variant.notes}" if variant.notes else variant.summary
    return builder


def register_model(
    name: str,
    *,
    family: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    summary: str,
    paper: PaperFacts | None = None,
    paper_names: PaperNamer | None = None,
    loss: str = "cross_entropy",
    torchvision_weights: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name``; a duplicate name is an error."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelCard(
            name=name,
            family=family,
            builder=builder,
            input_shape=input_shape,
            num_classes=num_classes,
            summary=summary,
            paper=paper,
            paper_names=paper_names,
            loss=loss,
            torchvision_weights=torchvision_weights,
        )
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"vgg*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_card(name: str) -> ModelCard:
    """The :class:`ModelCard` of ``name``; an unknown name raises a one-line ``ValueError``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `python -m bench list`"
        raise ValueError(f"unknown model {name!r}: {hint}") from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (keyword arguments go to its builder, e.g. ``num_classes=10``)."""
    return get_card(name).builder(**kwargs)


def paper_layer_names(name: str, layers: Sequence[tuple[str, str]]) -> list[str]:
    """The paper's name of each of model ``name``'s layers, given as ``(module path, type)`` in
    forward order; a model whose family has no map keeps its module paths."""
    namer = get_card(name).paper_names
    names = namer(layers) if namer is not None else [path for path, _ in layers]
    if len(names) != len(layers):
        raise ValueError(f"{name}: {len(names)} paper names for {len(layers)} layers")
    return names
