"""Compiled against eager: --compile joins the plan's axes and the row key; a compiled row keeps
its compile time apart; a failed compile is an error row. One real compile, of a tiny model
(slow marker).
And the fastest format: in the default plan where bf16 is native, nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import FAKE_MACHINE, register_test_models

from bench.cli import build_parser, build_plan
from bench.measure import workload
from bench.measure.timing import TimerSettings
from bench.schema import read_jsonl, row_key
from bench.shards import Shard
from bench.sweep import loop
from bench.sweep.loop import plan_rows, run_plan
from bench.sweep.plan import FASTEST_FORMAT, RunPlan

FAST = TimerSettings(warmup=1, min_steps=2, min_time_s=0.0)


def plan(**overrides: object) -> RunPlan:
    settings: dict[str, object] = dict(
        models=("tiny_net",), batch_sizes=(2,), threads=1, timer=FAST, large_timer=FAST
    )
    settings.update(overrides)
    return RunPlan(**settings)  # type: ignore[arg-type]


def test_compile_is_an_axis_of_the_plan_and_of_the_row_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_test_models(monkeypatch)
    rows = plan_rows(plan(compiles=("none", "default"), modes=("infer",)), "tiny_net")
    assert [r.compile for r in rows] == ["none", "default"]
    keys = {r.key(1) for r in rows}
    assert len(keys) == 2
    # A row written before the column (no "compile") ran eagerly: it keys as "none".
    eager = rows[0].settings(1)
    assert row_key({k: v for k, v in eager.items() if k != "compile"}) == row_key(eager)
    # An eager row's shard does not depend on the column's presence.
    for count in (2, 3, 5):
        shard = Shard(1, count)
        assert shard.holds(eager) == shard.holds({**eager, "compile": None})
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        plan(compiles=("fast",))


def test_the_command_line_takes_a_list_of_compile_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_models(monkeypatch)
    args = build_parser().parse_args(
        ["run", "--models", "tiny_net", "--devices", "cpu", "--compile", "none", "max-autotune"]
    )
    assert build_plan(args).compiles == ("none", "max-autotune")
    default = build_parser().parse_args(["run", "--models", "tiny_net", "--devices", "cpu"])
    assert build_plan(default).compiles == ("none",)


def test_a_model_that_fails_to_compile_is_an_error_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)

    def failing_compile(model: torch.nn.Module, mode: str | None = None) -> object:
        def run(*args: object) -> torch.Tensor:
            raise RuntimeError("inductor: C++ compile failed\nlong log")

        return run

    monkeypatch.setattr(workload.torch, "compile", failing_compile)
    run_plan(plan(compiles=("none", "default")), tmp_path, machine=FAKE_MACHINE)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert [(r["compile"], r["mode"]) for r in rows] == [
        ("none", "infer"), ("none", "train"), ("default", "infer"), ("default", "train"),
    ]  # fmt: skip
    eager, compiled = rows[:2], rows[2:]
    assert all(r["error"] is None and r["compile_s"] is None for r in eager)
    for row in compiled:
        assert row["error"] == "RuntimeError: inductor: C++ compile failed"
        assert row["compile_s"] is None and row["samples_per_s"] is None
    assert "compile=default" in (tmp_path / "errors.log").read_text()


@pytest.mark.slow  # a real inductor build, cold: 15 s; its logic is tested faked below
def test_a_tiny_model_compiles_on_cpu_and_keeps_its_compile_time_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    run_plan(plan(compiles=("default",), modes=("infer",)), tmp_path, machine=FAKE_MACHINE)
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    assert row["error"] is None, row["error"]
    assert row["compile"] == "default"
    # Structure, not timing: a compile time and a steady-state step, measured apart.
    assert isinstance(row["compile_s"], float) and row["compile_s"] > 0
    assert row["steps_timed"] == 2 and row["step_ms_median"] > 0
    assert row["compile_cache"] == "cold"


def test_compile_time_is_the_first_call_less_a_step_on_an_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call runs with inductor's cache an empty folder of its own, and compile_s is
    that call's seconds less the median step (here 5 s, faked, less the measured median)."""
    register_test_models(monkeypatch)
    seen: list[tuple[str | None, list[str]]] = []

    def first_call(step: object, device: torch.device) -> float:
        folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        seen.append((folder, os.listdir(folder) if folder else []))
        return 5.0

    monkeypatch.setattr(loop, "_first_call_seconds", first_call)
    monkeypatch.setattr(workload.torch, "compile", lambda model, mode=None: model)
    run_plan(plan(compiles=("default",), modes=("infer",)), tmp_path, machine=FAKE_MACHINE)
    (row,) = read_jsonl(tmp_path / "results.jsonl")
    ((folder, entries),) = seen
    assert folder is not None and entries == [] and not os.path.exists(folder)  # removed after
    assert folder != os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    assert row["compile_s"] == pytest.approx(5.0 - row["step_ms_median"] / 1e3)
    assert row["compile_cache"] == "cold"


@pytest.mark.parametrize("native", [True, False])
def test_fastest_format_is_added_only_where_bf16_is_native(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr(loop, "native_bf16", lambda device: native)
    rows = plan_rows(plan(modes=("infer",), fastest_format=True), "tiny_net")
    formats = [(r.dtype, r.memory_format) for r in rows]
    expected = [("fp32", "contiguous")] + ([FASTEST_FORMAT] if native else [])
    assert formats == expected
    # Asked for already: not twice.
    both = plan(
        modes=("infer",), fastest_format=True, dtypes=("bf16_autocast",),
        memory_formats=("channels_last",),
    )  # fmt: skip
    assert len(plan_rows(both, "tiny_net")) == 1
    args = build_parser().parse_args(["run", "--models", "tiny_net", "--fastest-format"])
    assert build_plan(args).fastest_format is True


FP32_ROWS = {  # the short plan's batches: (1, 32) infer and 32 train small, 1 and 1 large
    "tiny_net": [("fp32", "contiguous", "infer", 1), ("fp32", "contiguous", "infer", 32),
                 ("fp32", "contiguous", "train", 32)],
    "vgg16": [("fp32", "contiguous", "infer", 1), ("fp32", "contiguous", "train", 1)],
}  # fmt: skip
FASTEST_ROWS = {  # at each mode's largest batch only; the short plan's ImageNet-sized: none
    "tiny_net": [(*FASTEST_FORMAT, "infer", 32), (*FASTEST_FORMAT, "train", 32)],
    "vgg16": [],
}


def default_plan_rows(*options: str) -> dict[str, list[tuple[object, ...]]]:
    """The rows ``bench run`` and ``bench all`` plan for tiny_net and vgg16 on the CPU, as
    (dtype, memory format, mode, batch) (the two commands must agree)."""
    planned = []
    for command in ("run", "all"):
        argv = [command, "--models", "tiny_net", "vgg16", "--devices", "cpu", *options]
        made = build_plan(build_parser().parse_args(argv))
        rows = {model: plan_rows(made, model) for model in made.models}
        planned.append(
            {
                m: [(r.dtype, r.memory_format, r.mode, r.batch_size) for r in rs]
                for m, rs in rows.items()
            }
        )
    assert planned[0] == planned[1]
    return planned[0]


@pytest.mark.parametrize("flags, native", [("avx2,fma", False), ("avx2,avx512f,avx512_bf16", True)])
def test_the_default_plan_adds_the_fastest_format_where_bf16_is_native(
    flags: str, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setenv("CNN_ZOO_CPU_FLAGS", flags)  # the real detector, told the CPU's flags
    expected = {m: FP32_ROWS[m] + (FASTEST_ROWS[m] if native else []) for m in FP32_ROWS}
    assert default_plan_rows() == expected
    assert RunPlan.short(("tiny_net",)).fastest_format is True
    assert default_plan_rows("--no-fastest-format") == FP32_ROWS
    # --full measures every format at every batch already: nothing added, nothing twice.
    full = default_plan_rows("--full", "--fastest-format")
    assert len(full["tiny_net"]) == len(set(full["tiny_net"])) == 3 * 2 * (5 + 4)
