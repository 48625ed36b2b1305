"""cnn-zoo-bench's harness: count, time and measure memory of the zoo's models, train them, report.

Wings (docs/ARCHITECTURE.md): ``measure`` (one model: counts, memory, timing, the machine, the
timed steps), ``sweep`` (a plan and the loop that measures it into rows), ``training`` (the
training loop, recipes, torchrun, accuracy runs), ``report``; ``schema`` (columns, row key,
writing a results folder), ``events`` (what library code reports) and ``cli`` (``python -m
bench``, the only code that prints).
"""

from __future__ import annotations
