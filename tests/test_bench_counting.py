"""Counting: expected MACs computed from layer shapes, so a wrong formula cannot pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TinyNet
from torch import nn

import zoo
from bench.measure.counting import count_flops, count_model, count_params
from zoo.lenet import RBFOutput


def conv_macs(c_in: int, c_out: int, k: int, h_out: int, w_out: int, groups: int = 1) -> int:
    return c_out * h_out * w_out * (c_in // groups) * k * k


def test_tiny_net_counts_match_layer_shapes() -> None:
    counts = count_model(TinyNet(), (3, 8, 8))
    conv = conv_macs(3, 4, 3, 8, 8)  # 6,912
    pool = 4 * 8 * 8  # fvcore counts adaptive average pooling as one MAC per input element
    fc = 4 * 3
    assert counts.macs_fvcore == conv + pool + fc
    assert counts.flops == 2 * (conv + fc)  # FlopCounterMode: conv and matmul only
    assert counts.params == counts.params_total == (3 * 9 * 4 + 4) + (4 * 3 + 3)
    assert counts.macs_by_handles == 0


def test_layer_breakdown_adds_up_and_has_shapes() -> None:
    counts = count_model(TinyNet(), (3, 8, 8))
    by_name = {layer.layer: layer for layer in counts.layers}
    assert [layer.layer for layer in counts.layers] == ["conv", "relu", "pool", "fc"]
    assert by_name["conv"].output_shape == (4, 8, 8)
    assert by_name["conv"].activation_bytes == 4 * 8 * 8 * 4
    assert by_name["fc"].output_shape == (3,)
    assert sum(layer.macs for layer in counts.layers) == counts.macs_fvcore
    assert sum(layer.params for layer in counts.layers) == counts.params_total
    assert counts.largest_activation_bytes == 4 * 8 * 8 * 4


class ConvLRN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)  # (B, 8, 6, 6)
        self.lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrn(self.conv(x))


def test_lrn_handle_counts_size_macs_per_output_element() -> None:
    counts = count_model(ConvLRN(), (3, 8, 8))
    lrn = 8 * 6 * 6 * 5  # output elements × window size
    assert counts.macs_by_handles == lrn
    assert counts.macs_fvcore == conv_macs(3, 8, 3, 6, 6) + lrn
    assert {layer.layer: layer.macs for layer in counts.layers}["lrn"] == lrn


def test_rbf_handle_counts_the_paper_840_connections() -> None:
    prototypes = torch.randint(0, 2, (10, 84)).float() * 2 - 1
    model = nn.Sequential(nn.Flatten(), RBFOutput(prototypes))
    counts = count_model(model, (84, 1, 1))
    assert counts.macs_by_handles == 10 * 84
    assert counts.macs_fvcore == 10 * 84
    assert counts.params == 0  # the prototypes are a fixed buffer


def test_lenet5_weight_macs_and_params_match_the_paper() -> None:
    counts = count_model(zoo.get_model("lenet5"), zoo.get_card("lenet5").input_shape)
    assert counts.params == 60_000
    # 326,520 weight MACs (LeCun et al. 1998; the lab's PAPERS.md notes); the RBF layer's 840
    # of them come from our handle.
    assert counts.macs_fvcore == 326_520
    assert counts.macs_by_handles == 840
    layers = {layer.layer: layer for layer in counts.layers}
    assert layers["c1"].macs == conv_macs(1, 6, 5, 28, 28)
    assert layers["c5"].macs == conv_macs(16, 120, 5, 1, 1)
    assert sum(layer.macs for layer in counts.layers if layer.layer.startswith("c3")) == 150_000


def test_alexnet_cifar_lrn_layers_counted_from_their_output_shapes() -> None:
    card = zoo.get_card("alexnet_cifar")
    counts = count_model(zoo.get_model("alexnet_cifar"), card.input_shape)
    lrn_layers = [layer for layer in counts.layers if layer.type == "LocalResponseNorm"]
    assert len(lrn_layers) == 2
    for layer in lrn_layers:
        elements = 1
        for dim in layer.output_shape:
            elements *= dim
        assert layer.macs == 5 * elements
    assert counts.macs_by_handles == sum(layer.macs for layer in lrn_layers)
    assert sum(layer.macs for layer in counts.layers) == counts.macs_fvcore
    assert any(op.endswith("max_pool2d") for op in counts.skipped_ops)


@pytest.mark.parametrize(("affine", "per_element"), [(True, 2), (False, 1)])
def test_batch_norm_is_counted_per_element_its_scale_and_shift(
    affine: bool, per_element: int
) -> None:
    # conv 3->4, 3x3, pad 1 on 8x8: 4*8*8 outputs of 3*9 MACs each = 6,912; the batch norm
    # after it 2 MACs per element with its scale and shift (1 without: the normalisation
    # alone), as fvcore's batchnorm_flop_jit counts in eval mode: 256 elements.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, affine=affine))
    counts = count_model(model, (3, 8, 8))
    assert counts.macs_fvcore == 4 * 8 * 8 * 3 * 9 + per_element * 4 * 8 * 8
    # FlopCounterMode counts the convolution only: 2 FLOPs per MAC, none for the norm.
    assert counts.flops == 2 * 4 * 8 * 8 * 3 * 9


def test_count_params_separates_frozen_parameters() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == (3 + 3 * 2 + 2, 4 * 3 + 3 + 3 * 2 + 2)


@pytest.mark.parametrize("batch", [1, 4])
def test_flop_counter_scales_with_the_batch(batch: int) -> None:
    flops = count_flops(nn.Linear(16, 8).eval(), torch.randn(batch, 16))
    assert flops == 2 * batch * 16 * 8


# --- training FLOPs (the step actually timed), activation bytes, uncounted ops --------------


def linear_macs(n_in: int, n_out: int) -> int:
    return n_in * n_out


# lenet5_modern (1x32x32): conv 1→6 5x5 → 28x28, pool → 14x14, conv 6→16 5x5 → 10x10, pool → 5x5,
# fc 400→120→84→10.
LENET5_MODERN_CONV1 = conv_macs(1, 6, 5, 28, 28)  # 117,600
LENET5_MODERN_MACS = (
    LENET5_MODERN_CONV1
    + conv_macs(6, 16, 5, 10, 10)
    + linear_macs(400, 120)
    + linear_macs(120, 84)
    + linear_macs(84, 10)
)
# Forward 2·MACs, weight gradients 2·MACs, input gradients 2·MACs for all but the first layer.
LENET5_MODERN_TRAIN_FLOPS = 3 * 2 * LENET5_MODERN_MACS - 2 * LENET5_MODERN_CONV1  # 2,263,920


@pytest.fixture(scope="module")
def lenet5_modern_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import FAKE_MACHINE

    from bench.measure.timing import TimerSettings
    from bench.sweep.loop import run_plan
    from bench.sweep.plan import RunPlan

    fast = TimerSettings(warmup=1, min_steps=2, min_time_s=0.0)
    plan = RunPlan(
        models=("lenet5_modern",), batch_sizes=(2,), threads=1, timer=fast, large_timer=fast,
        devices=("cpu",), dtypes=("fp32",),
    )  # fmt: skip
    out = tmp_path_factory.mktemp("lenet5_modern_run")
    run_plan(plan, out, machine=FAKE_MACHINE)
    return out


def _rows(folder: Path) -> dict[str, dict]:
    from bench.schema import read_jsonl

    return {row["mode"]: row for row in read_jsonl(folder / "results.jsonl")}


def test_train_row_counts_the_flops_of_its_training_step(lenet5_modern_run: Path) -> None:
    rows = _rows(lenet5_modern_run)
    assert rows["train"]["error"] is None
    assert rows["train"]["train_flops"] == LENET5_MODERN_TRAIN_FLOPS
    assert rows["train"]["flops"] == 2 * LENET5_MODERN_MACS
    assert rows["infer"]["train_flops"] is None


def test_achieved_gflops_uses_train_flops_on_train_rows(lenet5_modern_run: Path) -> None:
    rows = _rows(lenet5_modern_run)
    train, infer = rows["train"], rows["infer"]
    assert train["achieved_gflops"] == pytest.approx(
        LENET5_MODERN_TRAIN_FLOPS * 2 / (train["step_ms_median"] / 1e3) / 1e9
    )
    assert infer["achieved_gflops"] == pytest.approx(
        2 * LENET5_MODERN_MACS * 2 / (infer["step_ms_median"] / 1e3) / 1e9
    )


def test_grouped_convolution_weight_gradient_is_counted_once() -> None:
    from bench.measure.counting import count_step_flops

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=2),  # 4x6x6 -> 4x4x4
        nn.Conv2d(4, 6, 3, groups=2),  # -> 6x2x2
    ).float()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float32)
    first = conv_macs(4, 4, 3, 4, 4, groups=2)  # 1,152
    second = conv_macs(4, 6, 3, 2, 2, groups=2)  # 432
    expected = 2 * (first + second) + 2 * (first + second) + 2 * second
    assert count_step_flops(lambda: model(x).sum().backward()) == expected  # 7,200


class Reuse(nn.Module):
    """conv (called twice) and an in-place ReLU (called twice), a residual add, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)  # (B, 2, 4, 4)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(x))
        z = self.relu(self.conv(y) + y)
        return self.fc(z.flatten(1))


def test_activation_bytes_count_each_storage_once_and_every_call() -> None:
    counts = count_model(Reuse(), (2, 4, 4))
    map_bytes = 2 * 4 * 4 * 4  # one (2, 4, 4) fp32 map: 128
    rows = {layer.layer: layer for layer in counts.layers}
    assert rows["conv"].calls == 2 and rows["conv"].activation_bytes == 2 * map_bytes
    assert rows["relu"].calls == 2 and rows["relu"].activation_bytes == 0  # in place
    assert rows["(top level)"].activation_bytes == map_bytes  # conv(y) + y
    assert rows["fc"].activation_bytes == 3 * 4
    # 2 conv outputs + the add + fc's output; the old sum (first call of each layer: conv,
    # relu, fc) was 128 + 128 + 12 = 268.
    assert counts.activation_bytes == 3 * map_bytes + 12 == 396
    assert counts.largest_activation_bytes == map_bytes


def test_resnet34_mnist_activation_bytes_match_a_hand_count() -> None:
    card = zoo.get_card("resnet34_mnist")
    counts = count_model(zoo.get_model("resnet34_mnist"), card.input_shape)
    stem = 64 * 28 * 28
    elements = 2 * stem  # conv1, bn1 (relu in place; maxpool is Identity)
    # Each BasicBlock: conv1, bn1, conv2, bn2 and the residual add (relu in place, twice);
    # the first block of stages 2-4 also a projection conv and its bn.
    for channels, size, blocks in ((64, 28, 3), (128, 14, 4), (256, 7, 6), (512, 4, 3)):
        maps = channels * size * size
        elements += blocks * 5 * maps + (2 * maps if channels != 64 else 0)
    elements += 512 + 10  # avgpool, fc
    assert counts.activation_bytes == 4 * elements == 7_784_488
    # The old sum (first call of each layer's output) added the stem's in-place ReLU and
    # Identity (2 stem maps) and missed the adds while counting each block's ReLU once.
    assert 4 * (elements + 2 * stem) == 8_185_896 != counts.activation_bytes
    relus = [layer for layer in counts.layers if layer.layer.endswith(".relu")]
    assert len(relus) == 16 and {layer.calls for layer in relus} == {2}
    assert {layer.activation_bytes for layer in relus} == {0}
    blocks = [layer for layer in counts.layers if layer.type == "BasicBlock"]
    assert blocks[0].activation_bytes == 4 * stem  # its add


def test_lenet5_modern_uncounted_ops_are_listed() -> None:
    counts = count_model(zoo.get_model("lenet5_modern"), (1, 32, 32))
    # Two in-place ReLUs after the convs, two after the hidden fc layers; two max-pools.
    assert counts.skipped_ops == {"aten::relu_": 4, "aten::max_pool2d": 2}
    from bench.measure.counting import uncounted_ops_text

    assert uncounted_ops_text(counts.skipped_ops) == "max_pool2d×2, relu×4"


def test_rows_and_report_carry_the_uncounted_ops(lenet5_modern_run: Path, tmp_path: Path) -> None:
    from bench import report

    rows = _rows(lenet5_modern_run)
    assert {row["uncounted_ops"] for row in rows.values()} == {"max_pool2d×2, relu×4"}
    built = report.build_report([lenet5_modern_run], tmp_path / "report")
    assert "lenet5_modern: max_pool2d×2, relu×4" in (built / "report.md").read_text()


# --- bytes moved and arithmetic intensity -----------------------------------------------------


def test_conv_and_batch_norm_bytes_and_intensity_match_a_hand_count() -> None:
    from bench.measure.counting import layer_bytes, layer_intensity

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    conv, norm = count_model(model, (3, 8, 8)).layers
    # Conv2d(3, 4, 3, padding=1) on 8×8: 4·8·8 outputs of 27 MACs each; reads 3·8·8 inputs and
    # 4·27 weights + 4 biases, writes 4·8·8 outputs.
    assert conv.macs == 4 * 8 * 8 * 27 == 6912
    assert (conv.input_elements, conv.output_elements, conv.params) == (192, 256, 112)
    assert layer_bytes(conv, batch=1) == (192 + 256 + 112) * 4 == 2240
    assert layer_intensity(conv, batch=1) == pytest.approx(2 * 6912 / 2240)  # 6.17 FLOP/byte
    # Weights are read once per batch: at 8 samples, 8·(192 + 256) + 112 elements.
    assert layer_bytes(conv, batch=8) == (8 * 448 + 112) * 4 == 14784
    assert layer_intensity(conv, batch=8) == pytest.approx(2 * 6912 * 8 / 14784)  # 7.48
    assert layer_bytes(conv, batch=8, element_size=2) == 14784 // 2  # bf16: half the bytes
    # BatchNorm2d(4) on 4×8×8: a scale and a shift per element (fvcore: 2 MACs), 256 in, 256
    # out, 4 weights + 4 biases (running statistics are buffers, left out).
    assert norm.macs == 2 * 256
    assert (norm.input_elements, norm.output_elements, norm.params) == (256, 256, 8)
    assert layer_bytes(norm, batch=1) == (256 + 256 + 8) * 4 == 2080
    assert layer_intensity(norm, batch=1) == pytest.approx(2 * 512 / 2080)  # 0.49 FLOP/byte
    assert layer_intensity(norm, batch=64) == pytest.approx(2 * 512 * 64 / ((64 * 512 + 8) * 4))


def test_a_layer_called_twice_reads_and_writes_at_each_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.relu(x) + 1)

    (relu, *_) = count_model(Twice(), (2, 4, 4)).layers
    assert (relu.calls, relu.input_elements, relu.output_elements) == (2, 64, 64)
