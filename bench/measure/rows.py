"""A row's base: its settings, the model's facts, its counts and the machine, every measurement
null; what the sweep and the training runs fill in.

The columns are :mod:`bench.schema`'s; filling them from the zoo and the measuring code belongs
here, so that the schema, read by the report and ``bench compare`` too, imports neither.
"""

from __future__ import annotations

from typing import Any

import zoo
from bench.measure.counting import Counts, uncounted_ops_text
from bench.measure.machine import Machine, row_tf32
from bench.schema import ROW_COLUMNS, timestamp

__all__ = ["base_row"]


def base_row(
    model: str,
    device: str,
    dtype: str,
    memory_format: str,
    mode: str,
    batch_size: int,
    max_batch: bool = False,
    compile: str = "none",
    *,
    threads: int,
    counts: Counts | None,
    machine: Machine,
) -> dict[str, Any]:
    """A row (every column of :data:`bench.schema.ROW_COLUMNS`) with its settings, the model's
    facts and ``counts`` filled in and every measurement null. ``max_batch``: a ``--max-batch``
    row, whose ``max_batch`` column is 0 until the largest batch is found; ``compile``: the
    ``torch.compile`` mode the row runs under (``"none"``: eager)."""
    card = zoo.get_card(model)
    counted = {
        "params": counts.params if counts else None,
        "params_total": counts.params_total if counts else None,
        "macs_fvcore": counts.macs_fvcore if counts else None,
        "flops": counts.flops if counts else None,
        "uncounted_ops": uncounted_ops_text(counts.skipped_ops) if counts else None,
    }
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(
        model=model,
        family=card.family,
        input_shape="x".join(str(d) for d in card.input_shape),
        num_classes=card.num_classes,
        device=device,
        device_name=machine.gpu if device == "cuda" else machine.cpu_model,
        dtype=dtype,
        memory_format=memory_format,
        threads=threads,
        batch_size=batch_size,
        mode=mode,
        compile=compile,
        **counted,
        tf32=row_tf32(device, dtype),
        max_batch=0 if max_batch else None,
        torch_version=machine.torch_version,
        git_commit=machine.git_commit,
        timestamp=timestamp(),
    )
    return row
