"""The conv + ReLU + 2x2 max-pool kernels (bench.training.relu_pool). Second methods: torch's
own modules, to the bit, on maps of small integers (every sum exact, ties everywhere); on random
maps, torch's convolution backward in float64 through torch's own pool indices. The training loop
uses the kernels only where they apply and says so."""

from __future__ import annotations

import shutil
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


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> relu_pool.Kernel:
    """The kernel, built once a session (skipped, visibly, on a machine with no compiler)."""
    monkeypatch.delenv(relu_pool.SWITCH_ENV, raising=False)
    if relu_pool._built is not None and relu_pool._built.lib is None:
        monkeypatch.setattr(relu_pool, "_built", None)  # left unbuilt while forced off
    kernel = relu_pool.kernel()
    if kernel.lib is None and any(shutil.which(c) for c in relu_pool._compilers()):
        pytest.fail(f"a compiler is here but the kernels did not build: {kernel.reason}")
    if kernel.lib is None:
        pytest.skip(f"the kernels are unavailable here: {kernel.reason}")
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


def _maps(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0
) -> torch.Tensor:
    """Channels_last maps of small integers: many windows hold ties and non-positive maxima."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, shape, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _conv(ci: int, co: int, k: int, padding: int, integers: bool = True) -> nn.Conv2d:
    conv = nn.Conv2d(ci, co, k, padding=padding)
    if integers:
        with torch.no_grad():
            conv.weight.copy_(_maps(conv.weight.shape, seed=1))
            conv.bias.copy_(_maps((co,), seed=2))
    return conv


def _run(net: nn.Module, x: torch.Tensor, autocast: bool, grad_seed: int = 3):
    """Output and the gradients of the input, the weights and the bias, for one backward."""
    leaf = x.detach().clone().requires_grad_()
    net.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = net(leaf)
    out.backward(_maps(out.shape, out.dtype, seed=grad_seed))
    conv = net[0]
    return out.detach(), leaf.grad, conv.weight.grad, conv.bias.grad


def _block(conv: nn.Conv2d) -> tuple[nn.Sequential, nn.Sequential]:
    """torch's conv, ReLU and pool, and the same with the block fused in (shared parameters)."""
    plain = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))
    fused = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))
    assert relu_pool.fuse(fused) == 1
    return plain, fused


SHAPES = [  # in, out channels, kernel, padding, map size
    pytest.param(1, 6, 5, 2, 28, id="lenet5-c1"),
    pytest.param(6, 16, 5, 0, 14, id="lenet5-c3"),
    pytest.param(3, 6, 5, 0, 12, id="lenet5-cifar-c1"),
    pytest.param(3, 5, 3, 1, 10, id="other-kernel-and-channels"),
]


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("ci,co,k,padding,size", SHAPES)
def test_the_block_equals_torchs_modules_to_the_bit(built, ci, co, k, padding, size, autocast):
    plain, fused = _block(_conv(ci, co, k, padding))
    x = _maps((3, ci, size, size))
    want, got = _run(plain, x, autocast), _run(fused, x, autocast)
    assert isinstance(fused[0], relu_pool.ConvReluPool2d)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), got, want):
        assert a.dtype == b.dtype and torch.equal(a, b), name  # ties: torch's first maximum


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("ci,co,k,padding,size", SHAPES)
def test_the_gradients_match_float64_on_random_maps(built, ci, co, k, padding, size, autocast):
    """Sums of non-integers. Second methods: the forward against float64; the gradients against
    torch's float64 convolution backward of the gradient that torch's own pool indices route
    (pooling torch's conv in the run's dtype, which is the block's forward conv)."""
    torch.manual_seed(0)
    conv = _conv(ci, co, k, padding, integers=False)
    _, fused = _block(conv)
    x = torch.randn(4, ci, size, size).contiguous(memory_format=torch.channels_last)
    out, grad_x, grad_w, grad_b = _run(fused, x, autocast)
    dtype = torch.bfloat16 if autocast else torch.float32
    x64, w64, b64 = (
        t.detach().to(dtype).double().requires_grad_() for t in (x, conv.weight, conv.bias)
    )
    exact = F.max_pool2d(F.relu(F.conv2d(x64, w64, b64, padding=padding)), 2)
    rounding = 2**-8 if autocast else 1e-6  # one bf16 rounding; fp32 sums in any order
    assert (out.double() - exact).abs().max() <= rounding * exact.abs().max()
    conv_out = F.conv2d(x64.to(dtype), w64.to(dtype), b64.to(dtype), padding=padding)
    _, indices = F.max_pool2d(F.relu(conv_out), 2, return_indices=True)
    grad = _maps(out.shape, seed=3).double() * (out > 0)  # the ReLU zeroes non-positive maxima
    routed = torch.zeros(conv_out.shape, dtype=torch.float64).flatten(2)
    routed = routed.scatter(2, indices.flatten(2), grad.flatten(2)).view(conv_out.shape)
    F.conv2d(x64, w64, b64, padding=padding).backward(routed)
    tolerance = 2**-8 if autocast else 1e-5  # the kernel sums in fp32 and rounds once
    for a, want in ((grad_x, x64.grad), (grad_w, w64.grad), (grad_b, b64.grad)):
        assert (a.double() - want).abs().max() <= tolerance * want.abs().max()


@pytest.mark.parametrize(
    "x",
    [
        _maps((2, 3, 8, 8)).contiguous(),  # NCHW
        _maps((2, 3, 9, 8)),  # an odd conv output: the last row is dropped
        _maps((2, 3, 8, 8), torch.float64),  # a dtype the kernels do not take
        _maps((2, 3, 8, 8)).index_fill(2, torch.tensor([3]), float("nan")),
        _maps((2, 1, 9, 8)),  # one input channel, as lenet5's conv1
        _maps((2, 1, 8, 8)).index_fill(2, torch.tensor([3]), float("nan")),
    ],
    ids=["nchw", "odd-height", "float64", "nan", "one-channel-odd-height", "one-channel-nan"],
)
def test_what_the_kernels_do_not_take_goes_to_torch(built, x):
    conv = _conv(x.shape[1], 5, 3, 1).to(x.dtype)
    plain, fused = _block(conv)
    for got, want in zip(_run(fused, x, False), _run(plain, x, False)):
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(), want.nan_to_num())


def test_fuse_replaces_the_few_channel_blocks_and_keeps_the_state_dict(built):
    net = zoo.get_model("lenet5_mnist")
    keys = list(net.state_dict())
    assert relu_pool.fusable(net) == 2 and relu_pool.fuse(net) == 2
    block, same = relu_pool.ConvReluPool2d, nn.Identity
    assert [type(m) for m in net.features] == [block, same, same, block, same, same]
    assert list(net.state_dict()) == keys
    # lab_cnn: 32 and 64 output channels (and conv2 reads 32, a row of 160 floats): torch's
    for model in ("lab_cnn", "vgg16_mnist", "alexnet_mnist", "resnet34_mnist", "lenet5"):
        assert relu_pool.fusable(zoo.get_model(model)) == 0, model


@pytest.mark.parametrize("dtype", ["fp32", "bf16_autocast"])
def test_training_with_the_kernels_ends_near_torchs_weights(built, dtype):
    """The same batches and steps; only where sums are rounded differs (the kernels sum in fp32
    and round once, torch's backward rounds its own way)."""
    split = separable_split(256, 1)
    splits = Splits("synthetic", split, separable_split(64, 2), (1, 28, 28), split.normalisation)
    recipe = Recipe(lr=0.05, batch_size=32, samples=256, dtype=dtype)
    settings = TrainSettings("lenet5_mnist", evals_per_epoch=1, seed=0)
    fused = train(settings, splits, recipe)
    plain = train(settings, splits, replace(recipe, relu_pool_kernel=False))
    assert isinstance(fused.model.features[0], relu_pool.ConvReluPool2d)
    assert type(plain.model.features[0]) is nn.Conv2d
    tolerance = 1e-2 if dtype == "bf16_autocast" else 1e-4
    for (name, a), b in zip(fused.model.state_dict().items(), plain.model.state_dict().values()):
        assert (a - b).abs().max() <= tolerance * b.abs().max(), name


def test_without_the_kernels_nothing_is_replaced(unavailable):
    kernel = relu_pool.kernel()
    assert kernel.lib is None
    assert ("turned off" if unavailable == "switch" else "no C compiler") in kernel.reason
    net = zoo.get_model("lenet5_mnist")
    assert relu_pool.fusable(net) == 0 and relu_pool.fuse(net) == 0
    assert [type(m) for m in net.features][:3] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    block = relu_pool.ConvReluPool2d(3, 5, 3, padding=1)  # made by hand: torch's modules run
    plain = nn.Sequential(block, nn.Identity())
    want = F.max_pool2d(
        F.relu(F.conv2d(_maps((2, 3, 8, 8)), block.weight, block.bias, padding=1)), 2
    )
    assert torch.equal(plain(_maps((2, 3, 8, 8))), want)


def _row_recipe(folder, out, *extra: str) -> str:
    argv = ["train", "lenet5_mnist", "--data", str(folder), "--out", str(out), *extra]
    assert main([*argv, "--batch-size", "64", "--epochs", "1", "--no-save"]) == 0
    return read_jsonl(out / "results.jsonl")[-1]["recipe"]


def test_the_row_says_whether_the_kernel_ran(gray_folder, tmp_path, monkeypatch, built):
    monkeypatch.setenv("CNN_ZOO_DATA", str(tmp_path / "data-root"))
    assert "conv+ReLU+pool kernel" in _row_recipe(gray_folder, tmp_path / "a")
    monkeypatch.setenv(relu_pool.SWITCH_ENV, "0")
    monkeypatch.setattr(relu_pool, "_built", None)
    assert "conv+ReLU+pool kernel" not in _row_recipe(gray_folder, tmp_path / "b")
