"""cnn-zoo-bench's harness: count, time and measure memory of the zoo's models.

Measuring (``counting``, ``memory``, ``timing``, ``steps``, ``machine``: pure functions
returning small typed results), orchestrating (``orchestrate``: the loop over a
``config.RunPlan``) and writing (``results``: one row appended as soon as it is measured) are
separate modules; ``cli`` is the command line (``python -m bench``).
"""

from __future__ import annotations
