"""The ReLU + 2x2 max-pool kernel (bench.training.relu_pool): torch's own modules are the second
method, to the bit, and the training loop uses it only where it applies and says so."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import separable_split
from torch import nn

import zoo
from bench.cli import main
from bench.schema import read_jsonl
from bench.training import relu_pool
from bench.training.loop import TrainSettings, train
from bench.training.recipes import Recipe
from data.splits import Splits

DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> relu_pool.Kernel:
    """The kernel, built once a session (skipped, visibly, on a machine with no compiler)."""
    monkeypatch.delenv(relu_pool.SWITCH_ENV, raising=False)
    if relu_pool._built is not None and relu_pool._built.lib is None:
        monkeypatch.setattr(relu_pool, "_built", None)  # left unbuilt while forced off
    kernel = relu_pool.kernel()
    if kernel.lib is None:
        pytest.skip(f"the ReLU + max-pool kernel is unavailable here: {kernel.reason}")
    return kernel


@pytest.fixture(params=["switch", "compiler"])
def unavailable(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """The kernel forced off: by its switch, or by a compiler that does not exist."""
    monkeypatch.setattr(relu_pool, "_built", None)
    if request.param == "switch":
        monkeypatch.setenv(relu_pool.SWITCH_ENV, "0")
    else:
        monkeypatch.delenv(relu_pool.SWITCH_ENV, raising=False)
        monkeypatch.setenv(relu_pool.COMPILER_ENV, "no-such-cc-for-cnn-zoo-bench")
    return request.param


def _maps(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Channels_last maps of small integers: many windows hold ties and non-positive maxima."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, shape, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last)


def _both(x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(output, input gradient) of torch's ReLU then max-pool, and of the kernel's module."""
    results = []
    for module in (lambda t: F.max_pool2d(F.relu(t), 2), relu_pool.ReluMaxPool2d()):
        leaf = x.detach().clone().requires_grad_()
        out = module(leaf)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype))
        results.append((out.detach(), leaf.grad))
    return tuple(results)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3, 6, 7, 16])
def test_the_kernel_equals_relu_then_max_pool_to_the_bit(built, dtype, channels):
    (want, want_grad), (got, got_grad) = _both(_maps((4, channels, 12, 10), dtype))
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)
    assert torch.equal(got_grad, want_grad)  # ties: the first in row-major order, as torch


@pytest.mark.parametrize(
    "x",
    [
        _maps((2, 6, 8, 8), torch.float32).contiguous(),  # NCHW
        _maps((2, 6, 9, 8), torch.float32),  # odd height: the last row is dropped
        _maps((2, 6, 8, 8), torch.float64),  # a dtype the kernel does not take
        _maps((2, 6, 8, 8), torch.float32).index_fill(2, torch.tensor([3]), float("nan")),
    ],
    ids=["nchw", "odd-height", "float64", "nan"],
)
def test_what_the_kernel_does_not_take_goes_to_torch(built, x):
    (want, want_grad), (got, got_grad) = _both(x)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())
    assert torch.allclose(got_grad.nan_to_num(), want_grad.nan_to_num())


def test_fuse_replaces_only_few_channel_pairs_and_keeps_the_state_dict(built):
    net = zoo.get_model("lenet5_mnist")
    keys = list(net.state_dict())
    assert relu_pool.fusable(net) == 1 and relu_pool.fuse(net) == 1
    # conv1's 6 channels take the kernel; conv2's 16, and the classifier's ReLUs, keep torch's
    assert [type(m) for m in net.features] == [
        nn.Conv2d, nn.Identity, relu_pool.ReluMaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d
    ]  # fmt: skip
    assert list(net.state_dict()) == keys
    for model in ("lab_cnn", "vgg16_mnist", "alexnet_mnist", "resnet34_mnist", "lenet5"):
        assert relu_pool.fusable(zoo.get_model(model)) == 0, model


@pytest.mark.parametrize("dtype", ["fp32", "bf16_autocast"])
def test_training_with_the_kernel_ends_with_the_same_weights(built, dtype):
    split = separable_split(256, 1)
    splits = Splits("synthetic", split, separable_split(64, 2), (1, 28, 28), split.normalisation)
    recipe = Recipe(lr=0.05, batch_size=32, samples=256, dtype=dtype)
    settings = TrainSettings("lenet5_mnist", evals_per_epoch=1, seed=0)
    fused = train(settings, splits, recipe)
    plain = train(settings, splits, replace(recipe, relu_pool_kernel=False))
    assert isinstance(fused.model.features[2], relu_pool.ReluMaxPool2d)
    assert isinstance(plain.model.features[2], nn.MaxPool2d)
    for (name, a), b in zip(fused.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert fused.accuracy == plain.accuracy


def test_without_the_kernel_nothing_is_replaced(unavailable):
    kernel = relu_pool.kernel()
    assert kernel.lib is None
    assert ("turned off" if unavailable == "switch" else "no C compiler") in kernel.reason
    net = zoo.get_model("lenet5_mnist")
    assert relu_pool.fusable(net) == 0 and relu_pool.fuse(net) == 0
    assert [type(m) for m in net.features][1:3] == [nn.ReLU, nn.MaxPool2d]
    (want, want_grad), (got, got_grad) = _both(_maps((2, 6, 8, 8), torch.float32))
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)


def _row_recipe(folder, out, *extra: str) -> str:
    argv = ["train", "lenet5_mnist", "--data", str(folder), "--out", str(out), *extra]
    assert main([*argv, "--batch-size", "64", "--epochs", "1", "--no-save"]) == 0
    return read_jsonl(out / "results.jsonl")[-1]["recipe"]


def test_the_row_says_whether_the_kernel_ran(gray_folder, tmp_path, monkeypatch, built):
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))
    assert "ReLU+pool kernel" in _row_recipe(gray_folder, tmp_path / "a")
    monkeypatch.setenv(relu_pool.SWITCH_ENV, "0")
    monkeypatch.setattr(relu_pool, "_built", None)
    assert "ReLU+pool kernel" not in _row_recipe(gray_folder, tmp_path / "b")
