"""Each model, layer by layer: one collapsible part per model with its layers as the paper
names them (the modules of each beneath it in the ``modules`` column), after the family's
per-layer figure."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.report.document import Block, Details, Heading, Image, Para, table
from bench.report.formatting import fmt_int, fmt_num, fmt_si
from bench.report.summary import paper_layer_totals

MODEL_DETAILS_TITLE = "Each model, layer by layer"

_HEADERS = ("layer (paper)", "modules", "output", "params", "MACs", "activations MiB")


def model_detail_blocks(
    layers: pd.DataFrame, models: Sequence[str], layer_figs: Sequence[tuple[str, str]]
) -> list[Block]:
    """The section: the per-family figures, then one table per model (in ``models``' order,
    then any other model with layers), each collapsed."""
    if layers.empty:
        return []
    present = [str(m) for m in layers["model"].dropna().unique()]
    order = [m for m in models if m in present] + sorted(m for m in present if m not in models)
    blocks: list[Block] = [
        Heading(2, MODEL_DETAILS_TITLE),
        Para(
            "From layers.jsonl: each model's layers under the names its paper gives them "
            "(LeNet-5's C1 … OUTPUT, AlexNet's conv1 … fc8, VGG's conv1_1 … fc8, ResNet's "
            "conv1, conv2_x … conv5_x, fc), a layer's numbers the sum of its modules (one "
            "sample, fp32; activations: the tensors its modules create). Open a model to see "
            "its table."
        ),
    ]
    blocks += [
        Details(
            f"{family} family: parameters and MACs per layer (figure)",
            (Image(file, f"{family}: parameters and MACs per layer, as the papers name them."),),
        )
        for family, file in layer_figs
    ]
    for model in order:
        totals = paper_layer_totals(layers[layers["model"] == model])
        rows = [
            (
                r["paper_layer"],
                ", ".join(r["parts"]),
                r["output_shape"],
                fmt_int(r["params"]),
                fmt_si(r["macs"]),
                fmt_num(r["activation_mib"]),
            )
            for r in totals.to_dict("records")
        ]
        summary = (
            f"{model}: {len(rows)} layers, {fmt_int(totals['params'].sum())} parameters, "
            f"{fmt_si(totals['macs'].sum())} MACs"
        )
        blocks.append(Details(summary, (table(_HEADERS, rows, (False,) * 3 + (True,) * 3),)))
    return blocks
