"""One sweep over many machines (issue 28): ``--shard auto`` reads the slice from a Slurm job
array, a Kubernetes Indexed Job or torchrun; each slice writes ``ROOT/shard-I-of-N``;
``bench report ROOT`` merges them; the templates in examples/scale-out/ say the same command."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FAKE_MACHINE, register_test_models, run_cli

from bench import cli
from bench.report.runs import load_run, merge_runs, results_folders
from bench.schema import read_jsonl, row_key
from bench.shards import KUBERNETES, SLURM, TORCHRUN, Shard, from_environment

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TEMPLATES = REPO / "examples" / "scale-out"
FIXTURE = TESTS / "fixtures" / "report"

Env = dict[str, str]


def slurm(first: int = 0, step: int = 1, count_given: bool = True) -> Callable[[int], Env]:
    """Task ``i`` (0-based) of a Slurm array of four from ``first`` every ``step``."""

    def env(i: int) -> Env:
        out = {
            "SLURM_ARRAY_TASK_ID": str(first + i * step),
            "SLURM_ARRAY_TASK_MIN": str(first),
            "SLURM_ARRAY_TASK_MAX": str(first + 3 * step),
            "SLURM_ARRAY_TASK_STEP": str(step),
        }
        return {**out, "SLURM_ARRAY_TASK_COUNT": "4"} if count_given else out

    return env


SCHEDULERS: dict[str, Callable[[int], Env]] = {
    "slurm from 0": lambda i: {
        "SLURM_ARRAY_TASK_ID": str(i),
        "SLURM_ARRAY_TASK_COUNT": "4",
        "SLURM_ARRAY_TASK_MIN": "0",
    },
    "slurm from 1": slurm(first=1),
    "slurm 1-7:2": slurm(first=1, step=2),
    "slurm 10-16:2, no COUNT": slurm(first=10, step=2, count_given=False),
    "kubernetes": lambda i: {"JOB_COMPLETION_INDEX": str(i), "JOB_COMPLETIONS": "4"},
    "torchrun": lambda i: {"RANK": str(i), "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "1"},
}


@pytest.fixture(autouse=True)
def no_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start outside any scheduler, whatever runs the suite."""
    for name in (*SLURM, *KUBERNETES, *TORCHRUN, "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def _set(monkeypatch: pytest.MonkeyPatch, env: Env) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _plan_keys(args: list[str]) -> list[tuple[object, ...]]:
    from bench.sweep.loop import plan_rows

    plan = cli.build_plan(cli.build_parser().parse_args(["run", *args]))
    return [spec.key(plan.threads) for m in plan.models for spec in plan_rows(plan, m)]


# --- the slice from each scheduler's environment ----------------------------------------------


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_every_task_of_an_array_of_four_is_its_own_slice(scheduler: str) -> None:
    shards = [from_environment(SCHEDULERS[scheduler](i)).shard for i in range(4)]
    assert shards == [Shard(i, 4) for i in (1, 2, 3, 4)]


@pytest.mark.parametrize("scheduler", ["slurm 1-7:2", "kubernetes", "torchrun"])
def test_the_slices_of_an_array_are_the_plan_disjoint(
    scheduler: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = _plan_keys(["--full", "--devices", "cpu"])
    parts = []
    for i in range(4):
        with monkeypatch.context() as env:
            _set(env, SCHEDULERS[scheduler](i))
            auto = ["--shard", "auto", "--out", "root"]  # the plan only: nothing is written
            parts.append(_plan_keys(["--full", "--devices", "cpu", *auto]))
        # One line says which variables gave which slice.
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"--shard auto: slice {i + 1}/4 from ")
        given = SCHEDULERS[scheduler](i).items()
        assert all(f"{k}={v}" in line for k, v in given if k != "LOCAL_WORLD_SIZE")
    assert sorted(k for part in parts for k in part) == sorted(whole)  # none twice, none lost
    assert all(parts)


def test_a_slurm_array_from_one_stepping_by_two_numbers_its_tasks_as_slurm_does() -> None:
    # sbatch --array=1-7:2: the tasks 1, 3, 5, 7; task 5 is the third.
    scheduled = from_environment(slurm(first=1, step=2)(2))
    assert scheduled.shard == Shard(3, 4)
    assert "SLURM_ARRAY_TASK_ID=5" in scheduled.source and "every 2" in scheduled.source


def test_torchrun_with_several_processes_a_machine_is_warned_of() -> None:
    scheduled = from_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert scheduled.shard == Shard(2, 4)
    assert scheduled.warning is not None and "--nproc_per_node 1" in scheduled.warning


BAD_ENVIRONMENTS: dict[str, tuple[Env, str]] = {
    "none": ({}, "no scheduler's slice in the environment"),
    "slurm without a count": (
        {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0"},
        "without SLURM_ARRAY_TASK_COUNT",
    ),
    "slurm without MIN": (
        {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"},
        "without SLURM_ARRAY_TASK_MIN",
    ),
    "slurm task outside": (
        {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"},
        "SLURM_ARRAY_TASK_ID=4 is not an index of the array 0..3",
    ),
    "slurm task between the steps": (
        {**slurm(first=1, step=2)(0), "SLURM_ARRAY_TASK_ID": "4"},
        "SLURM_ARRAY_TASK_ID=4 is not an index of the array 1..7 every 2",
    ),
    "slurm listed indices": (
        {**SCHEDULERS["slurm from 0"](0), "SLURM_ARRAY_TASK_MAX": "7"},
        "indices are not MIN..MAX every STEP",
    ),
    "kubernetes without the count": (
        {"JOB_COMPLETION_INDEX": "2"},
        "without JOB_COMPLETIONS",
    ),
    "kubernetes index past the count": (
        {"JOB_COMPLETION_INDEX": "4", "JOB_COMPLETIONS": "4"},
        "JOB_COMPLETION_INDEX=4 of JOB_COMPLETIONS=4 is no slice",
    ),
    "torchrun without WORLD_SIZE": ({"RANK": "1"}, "torchrun without WORLD_SIZE"),
    "not an integer": ({"RANK": "one", "WORLD_SIZE": "4"}, "RANK='one' is not an integer"),
    "two schedulers": (
        {"RANK": "0", "WORLD_SIZE": "2", "JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "2"},
        "both a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, JOB_COMPLETIONS) and torchrun",
    ),
}


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to measure or train fails the test: errors must come before the work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started")

    monkeypatch.setattr("bench.sweep.loop.run_plan", refuse)
    monkeypatch.setattr("bench.training.runs.run_accuracy_plan", refuse)


@pytest.mark.parametrize("command", ["run", "accuracy", "all"])
@pytest.mark.parametrize("case", list(BAD_ENVIRONMENTS))
def test_a_bad_environment_is_one_line_and_exit_2(
    case: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_work: None,
) -> None:
    env, message = BAD_ENVIRONMENTS[case]
    _set(monkeypatch, env)
    out = ["--out", str(tmp_path)] if command != "accuracy" else [str(tmp_path)]
    code, stdout, err = run_cli([command, *out, "--shard", "auto"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --shard auto: ") and message in err
    assert stdout == ""
    assert not any(tmp_path.iterdir())  # nothing written


def test_auto_needs_a_root_the_tasks_share(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    _set(monkeypatch, SCHEDULERS["kubernetes"](1))
    code, _, err = run_cli(["run", "--shard", "auto"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--shard auto needs --out ROOT" in err


# --- slices measured into one root, and its report --------------------------------------------

SWEEP = ["--models", "tiny_net", "--batch-sizes", "1", "2", "3", "4", "--threads", "1",
         "--min-steps", "1", "--min-time", "0", "--no-fastest-format", "--passes", "1"]  # fmt: skip


def _measured(folders: list[Path]) -> list[tuple[object, ...]]:
    return [row_key(r) for f in folders for r in read_jsonl(f / "results.jsonl")]


def test_four_slurm_tasks_measure_their_quarters_and_report_as_one_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    root = tmp_path / "sweep"
    for i in range(4):
        with monkeypatch.context() as env:
            _set(env, SCHEDULERS["slurm from 0"](i))
            code, _, err = run_cli(["run", *SWEEP, "--shard", "auto", "--out", str(root)], capsys)
        assert code == 0, err
        assert err.startswith(f"--shard auto: slice {i + 1}/4 from a Slurm job array: ")
        # The task measures its quarter: the rows of --shard I/4 by hand.
        slice_keys = _plan_keys([*SWEEP, "--shard", f"{i + 1}/4"])
        assert sorted(_measured([root / f"shard-{i + 1}-of-4"])) == sorted(slice_keys)
    assert sorted(p.name for p in root.iterdir()) == [f"shard-{i}-of-4" for i in (1, 2, 3, 4)]
    folders = results_folders([root])  # shard-4-of-4 measured none of the 8 rows
    keys = _measured(folders)
    assert sorted(keys) == sorted(_plan_keys(SWEEP))  # the whole plan, none missing or twice
    assert len(merge_runs([load_run(f) for f in folders]).results) == 8
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(["report", str(root)], capsys)
    assert code == 0, err
    md = Path(stdout.strip()).read_text()
    assert Path(stdout.strip()).parent.name == "sweep"  # the report is named after the root
    origin = md[md.index("### Where the rows came from") :]
    for folder in folders:
        rows = len(read_jsonl(folder / "results.jsonl"))
        assert any(x.startswith(f"| {folder.name} | test | test cpu |") and f"| {rows} |" in x
                   for x in origin.splitlines())  # fmt: skip


def test_all_with_auto_gives_accuracy_the_slice_and_leaves_the_report_to_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_test_models(monkeypatch)
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    seen: list[tuple[str, argparse.Namespace]] = []

    def follow_up(name: str) -> cli.Subcommand:
        def run(args: argparse.Namespace) -> int:
            seen.append((name, args))
            return 0

        return cli.Subcommand(name, cli.SUBCOMMANDS[name].add_arguments, run)

    for name in ("accuracy", "report"):
        monkeypatch.setitem(cli.SUBCOMMANDS, name, follow_up(name))
    _set(monkeypatch, SCHEDULERS["kubernetes"](2))
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data"))  # no CIFAR-10: MNIST's step only
    root = tmp_path / "sweep"
    code, stdout, err = run_cli(["all", *SWEEP, "--shard", "auto", "--out", str(root)], capsys)
    assert code == 0, err
    ((name, args),) = seen
    assert name == "accuracy" and args.out == root / "shard-3-of-4" and args.shard == "3/4"
    assert f"python -m bench report {root}" in stdout


def test_accuracy_with_auto_trains_its_slice_into_the_slice_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.training import runs

    trained: list[tuple[tuple[object, ...], Path]] = []
    monkeypatch.setattr(
        runs, "run_accuracy_plan", lambda plan, out, **kw: trained.append((tuple(plan), out)) or []
    )
    for i in range(2):
        with monkeypatch.context() as env:
            _set(env, {"RANK": str(i), "WORLD_SIZE": "2"})
            code, _, err = run_cli(["accuracy", str(tmp_path), "--shard", "auto"], capsys)
        assert code == 0, err
        assert err.startswith(f"--shard auto: slice {i + 1}/2 from torchrun: RANK={i}")
    (first, out1), (second, out2) = trained
    assert (out1, out2) == (tmp_path / "shard-1-of-2", tmp_path / "shard-2-of-2")
    assert set(first).isdisjoint(second)
    assert sorted(map(repr, first + second)) == sorted(map(repr, runs.ACCURACY_PLAN))


def test_an_accuracy_plans_slices_are_alike_on_machines_with_and_without_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run's slice hashes its dtypes as asked (``auto``), never as this machine resolves
    them: tasks on an AVX2 node and on a bf16 node split the plans alike."""
    from bench.training import runs

    def slices(flags: str) -> list[list[bool]]:
        monkeypatch.setenv("CNN_ZOO_CPU_FLAGS", flags)
        plans = (*runs.ACCURACY_PLAN, *runs.CIFAR_PLAN, *runs.FULL_ACCURACY_PLAN)
        return [[runs.in_shard(s, Shard(i, 3)) for s in plans] for i in (1, 2, 3)]

    avx2, bf16 = slices("avx2,fma"), slices("avx2,fma,avx512f,avx512_bf16")
    assert avx2 == bf16
    assert [sum(column) for column in zip(*avx2)] == [1] * len(avx2[0])  # each run in one


def _copy_slice(root: Path, index: int, count: int, **overrides: object) -> Path:
    """The report fixture's rows of slice ``index`` of ``count`` (every count-th row)."""
    folder = root / f"shard-{index}-of-{count}"
    folder.mkdir(parents=True)
    meta = json.loads((FIXTURE / "meta.json").read_text())
    meta.update(run_id=folder.name, interrupted=False, plan={**meta.get("plan", {}),
                "shard": {"index": index, "count": count}})  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    rows = [{**r, **overrides} for r in read_jsonl(FIXTURE / "results.jsonl")]
    mine = rows[index - 1 :: count]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mine))
    return folder


def test_a_root_lacking_a_slice_or_mixing_splits_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for i in (1, 2, 4):
        _copy_slice(root, i, 4)
    with pytest.raises(ValueError, match=r"lacks slice 3 of 4") as info:
        results_folders([root])
    assert "\n" not in str(info.value)
    _copy_slice(root, 3, 4)
    assert [f.name for f in results_folders([root])] == [f"shard-{i}-of-4" for i in (1, 2, 3, 4)]
    _copy_slice(root, 1, 2)
    with pytest.raises(ValueError, match=r"slices of 2 splits \(of 2, 4\)"):
        results_folders([root])


def test_an_empty_slice_is_left_out_and_an_unfinished_one_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sweep"
    _copy_slice(root, 1, 2)
    empty = root / "shard-2-of-2"
    empty.mkdir()
    meta = empty / "meta.json"
    meta.write_text(json.dumps({"run_id": empty.name, "interrupted": False}))
    assert results_folders([root]) == [root / "shard-1-of-2"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    meta.write_text(json.dumps({"run_id": empty.name, "interrupted": None}))  # still running
    assert results_folders([root]) == [root / "shard-1-of-2"]
    assert f"{empty} has no rows and has not finished" in caplog.text


def test_the_templates_ship_in_the_sdist() -> None:
    assert "graft examples" in (REPO / "MANIFEST.in").read_text().splitlines()


def test_slices_measured_on_another_kind_of_machine_are_refused_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "sweep"
    _copy_slice(root, 1, 2)
    _copy_slice(root, 2, 2, device_name="Other EPYC")
    runs = [load_run(f) for f in results_folders([root])]
    with pytest.raises(ValueError, match="the cpu rows were measured on different machines"):
        merge_runs(runs)
    code, stdout, err = run_cli(["report", str(root), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "give --across-machines" in err
    merged = merge_runs(runs, across_machines=True)
    assert set(merged.results["device_name"]) == {"Fixture Xeon", "Other EPYC"}
    argv = ["report", str(root), "--across-machines", "--out", str(tmp_path / "r")]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    md = Path(stdout.strip()).read_text()  # the report says which machine measured what
    assert (
        "Merged across machines (--across-machines): the cpu rows on Fixture Xeon "
        "(shard-1-of-2) and Other EPYC (shard-2-of-2)" in md
    )
    # Hosts alike in CPU (the nodes of one partition) merge without asking.
    other_host = tmp_path / "hosts"
    _copy_slice(other_host, 1, 2)
    _copy_slice(other_host, 2, 2)
    meta = other_host / "shard-2-of-2" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "hostname": "node7"}))
    merge_runs([load_run(f) for f in results_folders([other_host])])


# --- two processes into one root ------------------------------------------------------------

# A child process: tiny_net and a machine without peaks to measure, then `python -m bench`. It
# imports no test module (conftest pulls in more than the CLI does: each child costs imports).
CHILD = """
import sys

from torch import nn

import bench.sweep.loop
from bench.cli import main
from bench.measure.machine import Machine
from zoo.registry import _REGISTRY, ModelCard


class TinyNet(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


_REGISTRY["tiny_net"] = ModelCard(
    name="tiny_net", family="test", builder=TinyNet, input_shape=(3, 8, 8), num_classes=3,
    summary="test model tiny_net",
)
bench.sweep.loop.describe = lambda *a, **k: Machine(
    cpu_model="test cpu", cpu_flags=(), gpu=None, threads=1, torch_version="test",
    torchvision_version="test", git_commit="test", hostname="test", peak_gflops={},
)
sys.exit(main(sys.argv[1:]))
"""


def test_two_processes_write_one_root_that_reports_as_one_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pods of a Kubernetes Indexed Job, as two processes at once, into one root."""
    register_test_models(monkeypatch)  # for the plan here; each child registers its own
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    root = tmp_path / "sweep"
    argv = [sys.executable, str(child), "run", *SWEEP, "--shard", "auto", "--resume", "--out",
            str(root)]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in (*SLURM, *KUBERNETES, *TORCHRUN)}
    procs = [
        subprocess.Popen(
            argv,
            cwd=tmp_path,
            env={**clean, "JOB_COMPLETION_INDEX": str(i), "JOB_COMPLETIONS": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in (0, 1)
    ]
    for i, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
        assert (
            f"--shard auto: slice {i + 1}/2 from a Kubernetes Indexed Job: "
            f"JOB_COMPLETION_INDEX={i}, JOB_COMPLETIONS=2" in stderr
        )
    folders = results_folders([root])
    assert [f.name for f in folders] == ["shard-1-of-2", "shard-2-of-2"]
    assert all(read_jsonl(f / "results.jsonl") for f in folders)
    assert sorted(_measured(folders)) == sorted(_plan_keys(SWEEP))  # none missing or twice
    assert len(merge_runs([load_run(f) for f in folders]).results) == 8


# --- the templates -------------------------------------------------------------------------

SLURM_SCRIPT = TEMPLATES / "slurm-array.sh"


def _yaml_documents(name: str) -> list[dict[str, object]]:
    yaml = pytest.importorskip("yaml")
    return [d for d in yaml.safe_load_all((TEMPLATES / name).read_text()) if d]


def _without_out(argv: list[str]) -> tuple[list[str], str]:
    """``argv`` without ``--out X``, and X."""
    at = argv.index("--out")
    return argv[:at] + argv[at + 2 :], argv[at + 1]


def test_the_slurm_script_parses() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = subprocess.run([bash, "-n", str(SLURM_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _fake_bin(folder: Path, name: str, output: str = "") -> Path:
    """A program ``name`` that appends its arguments (one a line, then a blank line) to
    ``folder/calls`` and prints ``output``."""
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "{folder}/calls"\n'
        f'echo >> "{folder}/calls"\nprintf "%s" "{output}"\n'
    )
    program.chmod(0o755)
    return program


def _calls(folder: Path) -> list[list[str]]:
    text = (folder / "calls").read_text()
    return [block.splitlines() for block in text.split("\n\n") if block.strip()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_slurm_script_submits_the_array_then_the_report_after_it(tmp_path: Path) -> None:
    bin_ = tmp_path / "bin"
    _fake_bin(bin_, "sbatch", "4242;cluster")
    root = tmp_path / "sweep"
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "BENCH_ROOT": str(root)}
    for name in (*SLURM, *KUBERNETES, *TORCHRUN):
        env.pop(name, None)
    done = subprocess.run(["bash", str(SLURM_SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    array, report = _calls(bin_)
    assert array == ["--parsable", f"--export=ALL,BENCH_ROOT={root}", str(SLURM_SCRIPT)]
    assert "--dependency=afterok:4242" in report  # the report waits for every task
    (wrap,) = [a for a in report if a.startswith("--wrap=")]
    assert shlex.split(wrap.removeprefix("--wrap=")) == [
        "python", "-m", "bench", "report", str(root), "--out", str(root / "report"),
    ]  # fmt: skip


def _slurm_task_argv(tmp_path: Path, env: Env) -> list[str]:
    """The command one task of the array runs (``python`` faked), under ``env``."""
    bin_ = tmp_path / "bin"
    _fake_bin(bin_, "python")
    full = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", **env}
    done = subprocess.run(["bash", str(SLURM_SCRIPT)], env=full, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (argv,) = _calls(bin_)
    return ["python", *argv]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_slurm_task_and_the_kubernetes_pod_run_the_same_command(tmp_path: Path) -> None:
    docs = _yaml_documents("k8s-indexed-job.yaml")
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    job = next(d for d in docs if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["JOB_COMPLETIONS"]) == spec["completions"]  # the count Kubernetes withholds
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    pod_argv, pod_root = _without_out(container["command"])
    assert pod_root.startswith(container["volumeMounts"][0]["mountPath"] + "/")

    slurm_env = {**SCHEDULERS["slurm from 0"](2), "SLURM_ARRAY_JOB_ID": "4242",
                 "SLURM_SUBMIT_DIR": str(tmp_path)}  # fmt: skip
    task_argv, task_root = _without_out(_slurm_task_argv(tmp_path, slurm_env))
    assert task_root == str(tmp_path / "results" / "sweep-4242")  # sbatch without the wrapper
    assert task_argv == pod_argv
    assert task_argv[:4] == ["python", "-m", "bench", "run"] and "auto" in task_argv
    # The command parses, and every pod's index is a slice of the Job's completions.
    cli.build_parser().parse_args(pod_argv[3:] + ["--out", pod_root])
    slices = [
        from_environment({"JOB_COMPLETION_INDEX": str(i), **env}).shard
        for i in range(spec["completions"])
    ]
    assert slices == [Shard(i + 1, spec["completions"]) for i in range(spec["completions"])]


def test_the_kubernetes_report_job_reads_the_root_the_pods_write() -> None:
    (job_doc,) = [d for d in _yaml_documents("k8s-indexed-job.yaml") if d["kind"] == "Job"]
    (report,) = _yaml_documents("k8s-report-job.yaml")
    _, root = _without_out(job_doc["spec"]["template"]["spec"]["containers"][0]["command"])
    pod = report["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:5] == ["python", "-m", "bench", "report", root]
    assert pod["volumes"] == job_doc["spec"]["template"]["spec"]["volumes"]
