"""Accuracy by class (each accuracy row's ``per_class_accuracy``) and the evaluations of given
weights (``bench eval --out``: rows with ``weights``), with torchvision's published accuracy
beside ours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.report.document import Block, Heading, Para, table
from bench.report.formatting import fmt_frac, fmt_int, missing

__all__ = ["WIDE_CLASSES", "WEAKEST", "weakest_text", "evaluation_blocks", "per_class_blocks"]

# Up to this many classes a data set's table has a column per class; past it, each row names
# its WEAKEST classes.
WIDE_CLASSES = 12
WEAKEST = 5


def _classes(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def weakest_text(scores: Mapping[str, float]) -> str:
    """The :data:`WEAKEST` classes of ``{class: accuracy}``, lowest first (ties by name), as
    ``cat 61.20%, dog 70.05%, …``: the report's and ``bench eval``'s."""
    ordered = sorted(scores.items(), key=lambda item: (item[1], item[0]))[:WEAKEST]
    return ", ".join(f"{name} {fmt_frac(acc)}" for name, acc in ordered)


def evaluation_blocks(evaluations: pd.DataFrame) -> list[Block]:
    """Given weights scored on a data set, one row each, the published accuracy beside ours."""
    if evaluations.empty:
        return []
    headers = (
        "model", "weights", "data", "images", "dtype", "top-1", "top-5", "published top-1",
        "published top-5", "weakest classes",
    )  # fmt: skip
    rows = [
        (
            str(r["model"]),
            str(r["weights"]),
            str(r["data"]),
            fmt_int(r["test_samples"]),
            str(r["eval_dtype"] if not missing(r["eval_dtype"]) else r["dtype"]),
            fmt_frac(r["accuracy"]),
            fmt_frac(r["top5"]),
            fmt_frac(r["published_top1"]),
            fmt_frac(r["published_top5"]),
            weakest_text(_classes(r["per_class_accuracy"])),
        )
        for _, r in evaluations.sort_values(["model", "weights"], kind="mergesort").iterrows()
    ]
    numeric = (False,) * 3 + (True, False) + (True,) * 4 + (False,)
    return [
        Heading(2, "Given weights, evaluated here"),
        Para(
            "`bench eval MODEL --weights … --out DIR`: weights trained elsewhere (torchvision's "
            "published ImageNet weights, or a saved run), scored here on the data named, each "
            "image through the weights' own preprocessing. The published columns are "
            "torchvision's own figures on the 50,000 ImageNet-1K validation images; ours are "
            "on the images given, which may be another set or a subset."
        ),
        table(headers, rows, numeric),
    ]


def per_class_blocks(accuracy: pd.DataFrame) -> list[Block]:
    """Each training run's accuracy by class, data set by data set: a column per class up to
    :data:`WIDE_CLASSES` classes, else the :data:`WEAKEST` classes of each run."""
    if accuracy.empty or "per_class_accuracy" not in accuracy:
        return []
    blocks: list[Block] = []
    for data, part in accuracy.groupby(accuracy["data"].astype(str), sort=True):
        scored = [(r, _classes(r["per_class_accuracy"])) for _, r in part.iterrows()]
        scored = [(r, s) for r, s in scored if s]
        if not scored:
            continue
        names = sorted({name for _, s in scored for name in s}, key=_class_order)
        label = [f"{r['model']} seed {fmt_int(r['seed'])}" for r, _ in scored]
        if len(names) <= WIDE_CLASSES:
            headers = ("run", *names, "weakest")
            rows = [
                (run, *(fmt_frac(s.get(n)) for n in names), min(s, key=lambda n: (s[n], n)))
                for run, (_, s) in zip(label, scored)
            ]
            numeric = (False, *(True,) * len(names), False)
        else:
            headers = ("run", "classes", f"{WEAKEST} weakest")
            rows = [(run, fmt_int(len(s)), weakest_text(s)) for run, (_, s) in zip(label, scored)]
            numeric = (False, True, False)
        blocks += [Heading(3, f"{data}"), table(headers, rows, numeric)]
    if not blocks:
        return []
    return [
        Heading(2, "Accuracy by class"),
        Para(
            "Each training run's final top-1 accuracy on each class's test images "
            "(per_class_accuracy): where a network's errors sit, e.g. CIFAR-10's cat against "
            "dog, MNIST's 9 against 4."
        ),
        *blocks,
    ]


def _class_order(name: str) -> tuple[int, Any]:
    # Digits in numeric order (MNIST's "0".."9"), then names.
    return (0, int(name)) if name.isdigit() else (1, name)
