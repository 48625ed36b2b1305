"""The papers' layer names (zoo.paper_layers and each family's map) read like the papers."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import FAKE_MACHINE

import zoo
from bench.cli import main
from bench.measure.counting import count_model, paper_layer_groups
from bench.schema import read_jsonl


def _leaves(name: str) -> list[tuple[str, str]]:
    model = zoo.get_model(name)
    return [
        (path, type(module).__name__)
        for path, module in model.named_modules()
        if not list(module.children())
    ]


def _in_order(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def test_lenet5_has_the_papers_seven_layers_with_its_parameter_counts() -> None:
    card = zoo.get_card("lenet5")
    counts = count_model(zoo.get_model("lenet5"), card.input_shape, card.paper_names)
    groups = {name: parts for name, parts in paper_layer_groups(counts.layers)}
    params = {name: sum(p.params for p in parts) for name, parts in groups.items()}
    assert [n for n in groups if n != "(top level)"] == list(zoo.lenet.LENET5_LAYERS)
    assert params == {
        "C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "OUTPUT": 0,
        "(top level)": 0,
    }  # fmt: skip
    # C3 is one layer with its parts beneath: the three groups of the connection table.
    assert [p.layer for p in groups["C3"]] == ["c3.groups.0", "c3.groups.1", "c3.groups.2", "c3"]
    assert [p.params for p in groups["C3"]] == [456, 909, 151, 0]


def test_the_tutorial_lenet_takes_the_same_names() -> None:
    names = zoo.paper_layer_names("lenet5_modern", _leaves("lenet5_modern"))
    assert _in_order(names) == list(zoo.lenet.LENET5_LAYERS)


def test_vgg16_reads_conv1_1_to_conv5_3_and_fc6_to_fc8() -> None:
    names = zoo.paper_layer_names("vgg16", _leaves("vgg16"))
    convs = [n for n, (_, kind) in zip(names, _leaves("vgg16")) if kind == "Conv2d"]
    fcs = [n for n, (_, kind) in zip(names, _leaves("vgg16")) if kind == "Linear"]
    blocks = (2, 2, 3, 3, 3)
    assert convs == [f"conv{b}_{i}" for b, n in enumerate(blocks, 1) for i in range(1, n + 1)]
    assert fcs == ["fc6", "fc7", "fc8"]
    assert [n for n in _in_order(names) if n.startswith("pool")] == [
        f"pool{b}" for b in range(1, 6)
    ]


def test_alexnet_reads_conv1_to_fc8() -> None:
    for name in ("alexnet", "alexnet_owt"):
        names = _in_order(zoo.paper_layer_names(name, _leaves(name)))
        assert names == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_resnet34_stages_hold_3_4_6_3_blocks() -> None:
    leaves = _leaves("resnet34")
    names = zoo.paper_layer_names("resnet34", leaves)
    assert _in_order(names) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    blocks = Counter(
        stage
        for stage, block in {
            (name, ".".join(path.split(".")[:2]))
            for name, (path, _) in zip(names, leaves)
            if path.startswith("layer")
        }
    )
    assert blocks == {"conv2_x": 3, "conv3_x": 4, "conv4_x": 6, "conv5_x": 3}


def test_every_model_has_a_paper_name_for_every_layer() -> None:
    for name in zoo.list_models():
        leaves = _leaves(name)
        names = zoo.paper_layer_names(name, leaves)
        assert len(names) == len(leaves) and all(names), name


def test_bench_layers_shows_c3_once_with_its_parts_beneath() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "layers", "lenet5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    c3 = next(i for i, line in enumerate(lines) if line.split()[:1] == ["C3"])
    assert "1,516" in lines[c3]
    assert [lines[c3 + k].split()[1] for k in (1, 2, 3)] == [
        "c3.groups.0",
        "c3.groups.1",
        "c3.groups.2",
    ]


def test_the_sweep_writes_the_paper_names_into_layers_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bench.sweep.loop.describe", lambda *a, **k: FAKE_MACHINE)
    args = ["run", "--models", "lenet5", "--batch-sizes", "1", "--modes", "infer",
            "--threads", "1", "--min-steps", "2", "--min-time", "0",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    lines = read_jsonl(tmp_path / "layers.jsonl")
    assert [x["paper_layer"] for x in lines if x["layer"].startswith("c3")] == ["C3"] * 4
    c3 = sum(x["params"] for x in lines if x["paper_layer"] == "C3")
    assert c3 == 1_516
