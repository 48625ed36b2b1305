"""``--shard I/N``: the I-th of N disjoint slices of a plan, so N machines cover one sweep.

A row belongs to slice ``1 + sha256(its settings) mod N``. The settings hashed are the row key
without the thread count, which defaults to each machine's core count: machines with different
cores still agree on every row's slice. The split depends on nothing else (not on the plan's
order or on which other rows it holds), so every machine that runs the same command with its
own ``I`` measures a different part, and ``bench report DIR...`` merges the parts.

``--shard auto`` reads ``I`` and ``N`` from the scheduler that started the process
(:func:`from_environment`): a Slurm job array, a Kubernetes Indexed Job or torchrun. Every
task then runs one command, and writes ``ROOT/shard-I-of-N`` (:attr:`Shard.folder`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.schema import shard_folder

__all__ = ["Shard", "MACHINE_DEPENDENT", "AUTO", "Scheduled", "from_environment"]

MACHINE_DEPENDENT = ("threads",)  # row-key columns left out of the hash

_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(
                f"--shard {self.index}/{self.count}: I must be 1..N of N >= 1 slices "
                f"(the I-th of N), e.g. --shard 1/{max(self.count, 2)}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/4"`` → ``Shard(2, 4)``; anything else is a one-line ``ValueError``."""
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(
                f"--shard {text!r}: write I/N, e.g. --shard 1/4 … --shard 4/4, or --shard auto "
                "under a Slurm job array, a Kubernetes Indexed Job or torchrun"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder(self) -> str:
        """``shard-2-of-4``: this slice's folder under a root the slices share."""
        return shard_folder(self.index, self.count)

    def holds(self, settings: Mapping[str, Any]) -> bool:
        """True if the row with these settings (a row's key columns) is in this slice. An eager
        row (``compile`` none) hashes as it did before the column existed."""
        stable = {
            k: v
            for k, v in sorted(settings.items())
            if k not in MACHINE_DEPENDENT and not (k == "compile" and v in (None, "none"))
        }
        digest = hashlib.sha256(json.dumps(stable, default=str).encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


AUTO = "auto"  # --shard auto: the slice from the scheduler's environment

SLURM = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
)
# Kubernetes exports a pod's index, not the Job's completion count: the manifest passes the
# count as JOB_COMPLETIONS (examples/scale-out/k8s-indexed-job.yaml).
KUBERNETES = ("JOB_COMPLETION_INDEX", "JOB_COMPLETIONS")
TORCHRUN = ("RANK", "WORLD_SIZE")
_SCHEDULERS = (
    ("a Slurm job array", SLURM),
    ("a Kubernetes Indexed Job", KUBERNETES),
    ("torchrun", TORCHRUN),
)
_FIX = "or give --shard I/N"


@dataclass(frozen=True)
class Scheduled:
    """A slice read from a scheduler's environment: ``source`` names the variables that gave
    it; ``warning``, when set, says why its timings may suffer."""

    shard: Shard
    source: str
    warning: str | None = None


def from_environment(environ: Mapping[str, str]) -> Scheduled:
    """The slice of ``--shard auto``: from a Slurm job array (``SLURM_ARRAY_TASK_ID`` among
    ``SLURM_ARRAY_TASK_MIN``..``MAX`` every ``STEP``, ``COUNT`` tasks), a Kubernetes Indexed
    Job (``JOB_COMPLETION_INDEX`` of ``JOB_COMPLETIONS``) or torchrun (``RANK`` of
    ``WORLD_SIZE``); indices start at 0 but a Slurm array's, which start at its MIN.

    No scheduler's variables, several schedulers' at once, a variable missing, not an integer,
    or an index outside its array raise a one-line ``ValueError`` naming it: a process must
    never measure the whole plan because its environment said nothing.
    """
    found = [(name, names) for name, names in _SCHEDULERS if any(environ.get(v) for v in names)]
    if not found:
        raise ValueError(
            "--shard auto: no scheduler's slice in the environment (a Slurm job array's "
            "SLURM_ARRAY_TASK_ID, _COUNT and _MIN; a Kubernetes Indexed Job's "
            f"JOB_COMPLETION_INDEX with JOB_COMPLETIONS; torchrun's RANK and WORLD_SIZE); {_FIX}"
        )
    if len(found) > 1:
        said = " and ".join(
            f"{name} ({', '.join(v for v in names if environ.get(v))})" for name, names in found
        )
        raise ValueError(f"--shard auto: both {said} set a slice: unset one's variables, {_FIX}")
    names = found[0][1]
    if names is SLURM:
        return _slurm(environ)
    if names is KUBERNETES:
        index, count = _required(environ, KUBERNETES, "a Kubernetes Indexed Job", _K8S_HINT)
        source = f"a Kubernetes Indexed Job: {_said(environ, KUBERNETES)}"
        return Scheduled(_zero_based(index, count, *KUBERNETES), source)
    rank, world = _required(environ, TORCHRUN, "torchrun", "launch with torchrun")
    local = _integer(environ, "LOCAL_WORLD_SIZE") if environ.get("LOCAL_WORLD_SIZE") else 1
    warning = None
    if local > 1:
        warning = (
            f"LOCAL_WORLD_SIZE={local}: {local} slices are measured on this machine at once, "
            "their timings competing for its cores and devices; start one process a machine "
            "(torchrun --nproc_per_node 1)"
        )
    source = f"torchrun: {_said(environ, TORCHRUN)}"
    return Scheduled(_zero_based(rank, world, *TORCHRUN), source, warning)


_K8S_HINT = (
    "Kubernetes exports only the index, so the manifest must set env JOB_COMPLETIONS to the "
    "Job's spec.completions (completionMode: Indexed)"
)


def _integer(environ: Mapping[str, str], name: str) -> int:
    text = environ[name]
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"--shard auto: {name}={text!r} is not an integer; {_FIX}") from None


def _required(
    environ: Mapping[str, str], names: tuple[str, ...], scheduler: str, hint: str
) -> list[int]:
    """The integers of ``names``, every one of them set; else one line naming the missing."""
    missing = [v for v in names if not environ.get(v)]
    if missing:
        given = ", ".join(f"{v}={environ[v]}" for v in names if environ.get(v))
        raise ValueError(
            f"--shard auto: {scheduler} without {' and '.join(missing)} ({given} set): "
            f"{hint}; {_FIX}"
        )
    return [_integer(environ, v) for v in names]


def _zero_based(index: int, count: int, index_name: str, count_name: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"--shard auto: {index_name}={index} of {count_name}={count} is no slice "
            f"(the index must be 0..{count_name}-1); {_FIX}"
        )
    return Shard(index + 1, count)


def _said(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    return ", ".join(f"{v}={environ[v].strip()}" for v in names if environ.get(v))


def _optional(environ: Mapping[str, str], name: str) -> int | None:
    return _integer(environ, name) if environ.get(name) else None


def _slurm(environ: Mapping[str, str]) -> Scheduled:
    """Task ``(ID - MIN) / STEP + 1`` of ``COUNT``: ``--array=1-7:2`` has the tasks 1, 3, 5, 7
    (MIN 1, MAX 7, STEP 2, COUNT 4) and task 5 is slice 3/4. COUNT may be left to MIN, MAX and
    STEP; an array of listed indices (``--array=0,2,7``) has no such numbering and is refused."""
    hint = "submit with sbatch --array=A-B[:S]"
    task, first = _required(environ, SLURM[:1] + SLURM[2:3], "a Slurm job array", hint)
    count, last = _optional(environ, SLURM[1]), _optional(environ, SLURM[3])
    step = _optional(environ, SLURM[4]) or 1
    said = _said(environ, SLURM)
    if step < 1:
        raise ValueError(f"--shard auto: SLURM_ARRAY_TASK_STEP={step} is below 1; {_FIX}")
    if count is None:
        if last is None:
            raise ValueError(
                f"--shard auto: a Slurm job array without SLURM_ARRAY_TASK_COUNT (or "
                f"SLURM_ARRAY_TASK_MAX) ({said} set): {hint}; {_FIX}"
            )
        count = (last - first) // step + 1
    if last is None:
        last = first + step * (count - 1)
    if count < 1 or last != first + step * (count - 1):
        raise ValueError(
            f"--shard auto: the Slurm array's indices are not MIN..MAX every STEP ({said}), "
            f"so its tasks cannot be numbered 1..N: {hint}, {_FIX}"
        )
    if not first <= task <= last or (task - first) % step:
        raise ValueError(
            f"--shard auto: SLURM_ARRAY_TASK_ID={task} is not an index of the array "
            f"{first}..{last} every {step} ({said}); {_FIX}"
        )
    every = f" every {step}" if step > 1 else ""
    source = f"a Slurm job array: {said} (indices {first}..{last}{every})"
    return Scheduled(Shard((task - first) // step + 1, count), source)
