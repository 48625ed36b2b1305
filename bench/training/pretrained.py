"""torchvision's published ImageNet weights, evaluated on the zoo's state-dict-compatible models.

``bench eval MODEL --weights torchvision[:NAME]``: the weights of the card's
``torchvision_weights`` enum (``ResNet34_Weights.IMAGENET1K_V1``; NAME defaults to ``DEFAULT``)
are read from torch's hub cache (``$TORCH_HOME/hub/checkpoints/<file>``, as
``torch.hub.load_state_dict_from_url`` keeps them), downloaded there first where the network
allows. The file's name carries the first hex digits of its SHA-256 (``resnet34-b627a593.pth``),
checked before it is loaded, every time, not only after a download; then ``torch.load`` with
``weights_only=True``. The images go through the weights' own preprocessing
(``weights.transforms()``: resize 256, centre crop 224, ImageNet mean and std), one by one, as
torchvision evaluates them.

Class folders map to the weights' 1,000 outputs by name: folders named as the weights'
categories (``tench``, ``goldfish``; a subset will do), or the 1,000 ImageNet synset folders
(``n01440764`` …), whose sorted order is the outputs' order. Any other tree is refused: its
labels would mean nothing to these weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import zoo
from bench.measure.workload import autocast_context
from data.errors import MissingDataError
from data.idx import sha256_of_file
from data.imagefolder import Tree, scan_tree

__all__ = [
    "PREFIX",
    "Published",
    "PublishedScores",
    "is_published",
    "published_weights",
    "load_published",
    "imagenet_labels",
    "evaluate_published",
]

PREFIX = "torchvision"  # --weights torchvision[:NAME]
IMAGENET_CLASSES = 1000
# torch.hub's convention: the file name's "-<hex>." is a prefix of the file's SHA-256.
_HASH = re.compile(r"-([a-f0-9]*)\.")


def is_published(spec: str) -> bool:
    """Whether a --weights value names torchvision's weights rather than a file."""
    return spec == PREFIX or spec.startswith(PREFIX + ":")


@dataclass(frozen=True)
class Published:
    """One entry of torchvision's weights enums, as far as the evaluation needs it."""

    name: str  # "ResNet34_Weights.IMAGENET1K_V1"
    url: str
    file: Path  # where torch's hub cache keeps it
    top1: float | None  # torchvision's published ImageNet-1K accuracy, a fraction
    top5: float | None
    categories: tuple[str, ...]
    transforms: Callable[[Any], torch.Tensor]


def published_weights(model: str, spec: str = PREFIX) -> Published:
    """The weights ``spec`` (``torchvision`` or ``torchvision:NAME``) names for ``model``;
    a one-line ``ValueError`` for a model without any or an unknown NAME."""
    import torchvision.models

    card = zoo.get_card(model)
    if card.torchvision_weights is None:
        having = [m for m in zoo.list_models() if zoo.get_card(m).torchvision_weights]
        raise ValueError(
            f"{model} has no torchvision weights: --weights torchvision fits {', '.join(having)}"
        )
    enum = torchvision.models.get_model_weights(card.torchvision_weights.removesuffix("_Weights"))
    name = spec.partition(":")[2] or "DEFAULT"
    if name not in enum.__members__:
        raise ValueError(
            f"{card.torchvision_weights} has no {name!r}: give one of {', '.join(enum.__members__)}"
        )
    weights = enum[name]
    categories = weights.meta.get("categories")
    if not categories:
        raise ValueError(
            f"{weights} has no classifier (no categories): give --weights torchvision:IMAGENET1K_V1"
        )
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})

    def fraction(key: str) -> float | None:
        value = metrics.get(key)
        number = isinstance(value, (int, float)) and value == value  # NaN: not published
        return round(float(value) / 100, 6) if number else None

    return Published(
        name=str(weights),
        url=weights.url,
        file=Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name,
        top1=fraction("acc@1"),
        top5=fraction("acc@5"),
        categories=tuple(categories),
        transforms=weights.transforms(),
    )


def load_published(published: Published, *, download: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of ``published`` from the hub cache, downloaded there first if missing
    and ``download``; its SHA-256 checked against the file name's prefix, then loaded with
    ``weights_only=True``. Offline, a missing file is one line naming where to put it."""
    file = published.file
    if not file.is_file():
        reason = "not downloaded (offline use)"
        if download:
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(published.url, str(file), progress=False)
            except Exception as error:  # no network, a proxy, a full disk: all one line
                reason = f"the download failed ({type(error).__name__})"
        if not file.is_file():
            raise MissingDataError(
                f"{published.name} is not in torch's hub cache and {reason}: put "
                f"{published.url} at {file} (or set $TORCH_HOME)"
            )
    match = _HASH.search(file.name)
    if match:
        digest = sha256_of_file(file)
        if not digest.startswith(match.group(1)):
            raise ValueError(
                f"{file} has SHA-256 {digest[:12]}…, its name says {match.group(1)}…: the file "
                "is corrupt or not torchvision's; delete it and fetch it again"
            )
    state: dict[str, torch.Tensor] = torch.load(file, map_location="cpu", weights_only=True)
    return state


def imagenet_labels(tree: Tree, categories: Sequence[str]) -> list[int]:
    """The weights' output index of each of ``tree``'s classes (module docstring); a one-line
    ``ValueError`` for a tree whose folders are neither."""
    index = {name: i for i, name in enumerate(categories)}
    if all(name in index for name in tree.classes):
        return [index[name] for name in tree.classes]
    synsets = [bool(re.fullmatch(r"n\d{8}", name)) for name in tree.classes]
    if len(tree.classes) == len(categories) and all(synsets):
        return list(range(len(categories)))
    unknown = next(name for name in tree.classes if name not in index)
    raise ValueError(
        f"class folder {unknown!r} is none of the weights' categories and the tree is not the "
        f"{len(categories)} ImageNet synset folders (it has {len(tree.classes)}): name the "
        "folders as the categories (tench, goldfish, …) or give the whole ImageNet tree"
    )


class _Preprocessed(Dataset):  # type: ignore[type-arg]
    def __init__(self, files: Sequence[tuple[Path, int]], transforms: Callable[..., Any]) -> None:
        self.files, self.transforms = list(files), transforms

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        with Image.open(path) as image:
            return self.transforms(image.convert("RGB")), label


@dataclass(frozen=True)
class PublishedScores:
    """Top-1/top-5 of published weights on a folder, per class too (class name: fraction)."""

    top1: float
    top5: float
    samples: int
    per_class: dict[str, float]


def evaluate_published(
    model: torch.nn.Module,
    published: Published,
    root: Path,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch_size: int = 32,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PublishedScores:
    """Top-1 and top-5 of ``model`` (the weights loaded) on the tree at ``root`` (its ``val/``
    or ``test/`` where it has one), each image through the weights' preprocessing, its label
    the weights' output for its class folder (:func:`imagenet_labels`). ``progress(done,
    total)`` after each batch."""
    root = Path(root)
    for split in ("val", "test"):
        if (root / split).is_dir():
            root = root / split
            break
    tree = scan_tree(root)
    outputs = imagenet_labels(tree, published.categories)
    files = [(path, outputs[label]) for path, label in tree.samples]
    loader = DataLoader(
        _Preprocessed(files, published.transforms), batch_size=batch_size, num_workers=workers
    )
    correct = correct5 = 0
    hits = dict.fromkeys(range(len(tree.classes)), 0)
    seen = dict.fromkeys(range(len(tree.classes)), 0)
    back = {output: i for i, output in enumerate(outputs)}
    model.eval().to(device)
    done = 0
    with torch.inference_mode(), autocast_context(dtype, torch.device(device)):
        for images, labels in loader:
            top = model(images.to(device)).float().topk(5, dim=1).indices.cpu()
            first = top[:, 0] == labels
            correct += int(first.sum())
            correct5 += int((top == labels[:, None]).any(dim=1).sum())
            for label, hit in zip(labels.tolist(), first.tolist()):
                seen[back[label]] += 1
                hits[back[label]] += int(hit)
            done += len(labels)
            if progress is not None:
                progress(done, len(files))
    return PublishedScores(
        top1=correct / len(files),
        top5=correct5 / len(files),
        samples=len(files),
        per_class={tree.classes[i]: hits[i] / seen[i] for i in seen if seen[i]},
    )
