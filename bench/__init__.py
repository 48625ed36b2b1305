"""cnn-zoo-bench's harness: count, time and measure memory of the zoo's models, train them, report.

Wings (docs/ARCHITECTURE.md): ``measure`` (one model: counts, memory, timing, the machine, the
timed steps), ``sweep`` (a plan and the loop that measures it into rows), ``training`` (the
training loop, recipes, torchrun, accuracy runs), ``report``; below them ``schema`` (columns,
row key, a row's settings in words, writing a results folder; the bottom, no torch), ``shards``
(a plan's --shard slice, the sweep's and the training plans') and ``events`` (what library code
reports); above them ``cli`` (``python -m bench``, the only code that prints).
"""

from __future__ import annotations
