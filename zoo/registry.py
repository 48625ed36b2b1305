"""The one registry of the zoo: every model is found, listed and built through it.

A model is registered with the facts that describe it (its :class:`ModelCard`), so tests, the
harness and reports read one record instead of keeping their own lists.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "PaperFacts",
    "ModelCard",
    "register_model",
    "list_models",
    "get_model",
    "get_card",
]


@dataclass(frozen=True)
class PaperFacts:
    """What a publication reports about a model, copied from the paper (see PAPERS.md)."""

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
    # Builder arguments this variant fixes: get_model refuses a conflicting value.
    fixed: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelCard] = {}


def register_model(
    name: str,
    *,
    family: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    summary: str,
    paper: PaperFacts | None = None,
    fixed: Mapping[str, Any] | None = None,
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
            fixed=dict(fixed or {}),
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
    card = get_card(name)
    for key, value in kwargs.items():
        if key in card.fixed and card.fixed[key] != value:
            raise ValueError(
                f"{name} fixes {key}={card.fixed[key]!r}; got {key}={value!r}: "
                f"drop the argument or pick a model made for that {key}"
            )
    return card.builder(**{k: v for k, v in kwargs.items() if k not in card.fixed})
