"""Counting: expected MACs computed from layer shapes, so a wrong formula cannot pass."""

from __future__ import annotations

import pytest
import torch
from test_bench_helpers import TinyNet
from torch import nn

import zoo
from bench.counting import count_flops, count_model, count_params
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
    # 326,520 weight MACs (PAPERS.md); the RBF layer's 840 of them come from our handle.
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


def test_count_params_separates_frozen_parameters() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == (3 + 3 * 2 + 2, 4 * 3 + 3 + 3 * 2 + 2)


@pytest.mark.parametrize("batch", [1, 4])
def test_flop_counter_scales_with_the_batch(batch: int) -> None:
    flops = count_flops(nn.Linear(16, 8).eval(), torch.randn(batch, 16))
    assert flops == 2 * batch * 16 * 8
