"""Measuring one model: counts, memory, timing, the machine, the timed steps (workload)."""
