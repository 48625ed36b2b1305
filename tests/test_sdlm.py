"""LeNet-5's SDLM trainer (bench.training.sdlm) against the zoo's LeNet5 under autograd.

The hand-written network must give the zoo model's scores, loss and gradients; each layer's
back-propagated second derivatives must equal the exact diagonal of J^T D J for that layer (D a
positive diagonal curvature at its output, J the layer's Jacobian from autograd on the zoo's own
module), and the criterion's curvature the exact Hessian diagonal. Everything in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

import zoo
from bench.schema import read_jsonl
from bench.training import sdlm
from bench.training.loop import load_weights
from zoo.lenet import C3_TABLE, PartialConv, RBFOutput, Subsampling, map_loss, squash

DOUBLE = torch.float64


@pytest.fixture
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.get_model("lenet5").to(DOUBLE)
    with torch.no_grad():  # weights of a trained network's size, so every layer matters
        for p in model.parameters():
            p.mul_(8.0)
    return model


def exact_diag(fn, at: torch.Tensor, curvature: torch.Tensor) -> torch.Tensor:
    """sum_k D_k (d out_k / d at_m)^2 for every m: the diagonal of J^T D J."""
    jac = jacobian(fn, at).reshape(curvature.numel(), at.numel())
    return (curvature.reshape(-1, 1) * jac**2).sum(0).reshape(at.shape)


def trainer_layout(per_parameter: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Tensors shaped like the zoo LeNet5's parameters (autograd's gradients, in its order),
    put in the trainer's layout (PARAM_NAMES; C3 dense, zero where unconnected)."""
    holder = zoo.get_model("lenet5").to(DOUBLE)
    with torch.no_grad():
        for p, g in zip(holder.parameters(), per_parameter):
            p.copy_(g)
    return sdlm.from_model(holder)


def positive(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, dtype=DOUBLE) + 0.1


def test_forward_and_gradients_are_the_zoo_networks(net):
    x = torch.randn(3, 1, 32, 32, dtype=DOUBLE)
    y = torch.tensor([1, 5, 9])
    params = sdlm.from_model(net)
    acts = sdlm.forward(params, x)
    out = sdlm.criterion(acts.x6, y, net.output.prototypes.to(DOUBLE))
    scores = net(x)
    torch.testing.assert_close(out.scores, scores)
    loss = map_loss(scores, y) * len(y)  # map_loss is a mean; the trainer's losses are summed
    torch.testing.assert_close(out.loss.sum(), loss)
    expected = torch.autograd.grad(loss, list(net.parameters()))
    mask = sdlm.c3_mask(DOUBLE)
    for name, mine, theirs in zip(
        sdlm.PARAM_NAMES, sdlm.backprop(params, acts, out.grad), trainer_layout(expected)
    ):
        torch.testing.assert_close(mine * mask if name == "w3" else mine, theirs, msg=name)


def test_parameters_round_trip_through_the_zoo_layout(net):
    params = sdlm.from_model(net)
    other = zoo.get_model("lenet5").to(DOUBLE)
    sdlm.to_model(params, other)
    x = torch.randn(2, 1, 32, 32, dtype=DOUBLE)
    torch.testing.assert_close(other(x), net(x))
    # C3's dense layout holds the 1,500 connections of Table I and zeros elsewhere.
    w3 = params[sdlm.PARAM_NAMES.index("w3")]
    assert int((w3 != 0).sum()) == sum(len(row) for row in C3_TABLE) * 25 == 1_500


def test_squash_second_derivative_is_the_squared_slope():
    a = torch.randn(7, dtype=DOUBLE)
    d = positive(7)
    expected = exact_diag(squash, a, d)  # Gauss-Newton through f: f'(a)^2 D
    torch.testing.assert_close(sdlm.squash_back(d, squash(a), square=True), expected)


def test_full_connection_second_derivatives_are_exact():
    layer = torch.nn.Linear(5, 4).to(DOUBLE)
    x = torch.randn(1, 5, dtype=DOUBLE)
    d = positive(1, 4)
    h_x, h_w, h_b = sdlm.dense_back(d, layer.weight, x, square=True)
    torch.testing.assert_close(h_x, exact_diag(layer, x, d))
    w_fn = lambda w: F.linear(x, w, layer.bias)  # noqa: E731
    torch.testing.assert_close(h_w, exact_diag(w_fn, layer.weight.detach(), d))
    b_fn = lambda b: F.linear(x, layer.weight, b)  # noqa: E731
    torch.testing.assert_close(h_b, exact_diag(b_fn, layer.bias.detach(), d))


def test_convolution_second_derivatives_sum_shared_weights_exactly():
    conv = torch.nn.Conv2d(2, 3, 5).to(DOUBLE)
    x = torch.randn(1, 2, 8, 8, dtype=DOUBLE)
    d = positive(1, 3, 4, 4)
    h_x, h_w, h_b = sdlm.conv_back(
        d.reshape(1, 3, 16), conv.weight.reshape(3, 50), F.unfold(x, 5), 8, square=True
    )
    torch.testing.assert_close(h_x, exact_diag(conv, x, d))
    w_fn = lambda w: F.conv2d(x, w, conv.bias)  # noqa: E731
    torch.testing.assert_close(h_w, exact_diag(w_fn, conv.weight.detach(), d).reshape(3, 50))
    b_fn = lambda b: F.conv2d(x, conv.weight, b)  # noqa: E731
    torch.testing.assert_close(h_b, exact_diag(b_fn, conv.bias.detach(), d))


def test_c3_partial_connections_second_derivatives_are_exact(net):
    c3: PartialConv = net.c3
    x = torch.randn(1, 6, 7, 7, dtype=DOUBLE)
    d = positive(1, 16, 3, 3)
    dense = sdlm.from_model(net)[sdlm.PARAM_NAMES.index("w3")]
    h_x, h_w, _ = sdlm.conv_back(d.reshape(1, 16, 9), dense, F.unfold(x, 5), 7, square=True)
    torch.testing.assert_close(h_x, exact_diag(c3, x, d))
    # Each group's weights through the zoo's own module, then into the dense layout.
    holder = zoo.get_model("lenet5").to(DOUBLE)
    for index, (conv, mine) in enumerate(zip(holder.c3.groups, c3.groups)):
        name = f"groups.{index}.weight"

        def of_weight(w: torch.Tensor, name: str = name) -> torch.Tensor:
            return functional_call(c3, {name: w}, (x,))

        with torch.no_grad():
            conv.weight.copy_(exact_diag(of_weight, mine.weight.detach(), d))
    expected = sdlm.from_model(holder)[sdlm.PARAM_NAMES.index("w3")]
    torch.testing.assert_close(h_w * sdlm.c3_mask(DOUBLE), expected)


def test_subsampling_second_derivatives_are_exact():
    layer = Subsampling(3).to(DOUBLE)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, -1.5, 2.0]))
    x = torch.randn(1, 3, 4, 4, dtype=DOUBLE)
    d = positive(1, 3, 2, 2)
    sums = F.avg_pool2d(x, 2) * 4
    h_x, h_c, h_b = sdlm.subsample_back(d, layer.weight, sums, square=True)
    torch.testing.assert_close(h_x, exact_diag(layer, x, d))

    def of_coefficient(c: torch.Tensor) -> torch.Tensor:
        return sums * c.view(1, -1, 1, 1) + layer.bias.view(1, -1, 1, 1)

    torch.testing.assert_close(h_c, exact_diag(of_coefficient, layer.weight.detach(), d))
    assert torch.equal(h_b, d.sum((0, 2, 3)))


def test_rbf_and_map_curvature_is_the_exact_hessian(net):
    rbf: RBFOutput = net.output
    x6 = torch.randn(1, 84, dtype=DOUBLE) * 1.5
    for target in (0, 7):
        y = torch.tensor([target])
        out = sdlm.criterion(x6, y, rbf.prototypes.to(DOUBLE))
        exact = hessian(lambda v, y=y: map_loss(rbf(v), y), x6).reshape(84, 84).diagonal()
        torch.testing.assert_close(sdlm.curvature(out)[0], exact)
        assert bool((sdlm.curvature(out) > 0).all())


def test_the_estimate_is_an_average_over_samples(net):
    params = sdlm.from_model(net)
    x = torch.randn(4, 1, 32, 32, dtype=DOUBLE)
    y = torch.tensor([0, 3, 3, 8])
    prototypes = net.output.prototypes.to(DOUBLE)
    whole = sdlm.diag_hessian(params, x, y, prototypes)
    singles = [sdlm.diag_hessian(params, x[i : i + 1], y[i : i + 1], prototypes) for i in range(4)]
    for k, h in enumerate(whole):
        torch.testing.assert_close(h, sum(s[k] for s in singles) / 4)
        assert bool((h >= 0).all())


def test_a_step_moves_each_weight_by_eta_over_mu_plus_h(net):
    params = sdlm.from_model(net)
    prototypes = net.output.prototypes.to(DOUBLE)
    x = torch.randn(1, 1, 32, 32, dtype=DOUBLE)
    y = torch.tensor([4])
    h = sdlm.diag_hessian(params, x, y, prototypes)
    sizes = sdlm.step_sizes(h)
    before = [p.clone() for p in params]
    loss = map_loss(net(x), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    eta = 1e-4
    sdlm.sdlm_step(params, sizes, x, y, torch.tensor(eta, dtype=DOUBLE), prototypes)
    mask = sdlm.c3_mask(DOUBLE)
    for name, new, old, g, hk in zip(sdlm.PARAM_NAMES, params, before, trainer_layout(grads), h):
        expected = old - eta * g / (sdlm.MU + hk)
        torch.testing.assert_close(new, expected * mask if name == "w3" else expected, msg=name)
    # Unconnected C3 weights stay zero; the step lowers this sample's loss.
    assert bool((params[sdlm.PARAM_NAMES.index("w3")][mask == 0] == 0).all())
    sdlm.to_model(params, net)
    assert map_loss(net(x), y) < loss


def test_bench_train_lenet5_runs_sdlm_per_sample(gray_folder, tmp_path, capsys, monkeypatch):
    estimates = []
    original = sdlm.SDLM.estimate

    def estimate(self, x, y):
        estimates.append(len(x))
        original(self, x, y)

    monkeypatch.setattr(sdlm.SDLM, "estimate", estimate)
    threads_seen: set[int] = set()
    one = sdlm.SDLM._one
    monkeypatch.setattr(
        sdlm.SDLM,
        "_one",
        lambda self, x, y: threads_seen.add(torch.get_num_threads()) or one(self, x, y),
    )
    out = tmp_path / "results"
    args = ["train", "lenet5", "--data", str(gray_folder), "--samples", "250", "--out", str(out)]
    code, stdout, _ = run_cli([*args, "--threads", "2"], capsys)
    assert code == 0, stdout
    (row,) = read_jsonl(out / "results.jsonl")
    assert row["error"] is None
    assert row["batch_size"] == 1 and row["samples_seen"] == 250 and row["stopped_by"] == "length"
    assert row["recipe"].startswith("sdlm ")
    # 250 updates over a training split of about 160 images: two passes, each estimated first
    # on the whole split (fewer images than the paper's 500).
    assert 1 < row["epochs"] < 2 and len(estimates) == 2
    assert estimates[0] == round(250 / row["epochs"])
    assert row["compile_s"] > 0  # the step was compiled before the clock started
    assert row["compile_cache"] == "cold"
    # The row names the threads its steps ran on, not the process's two.
    assert threads_seen == {row["threads"]} == {1}
    weights = load_weights(next((out / "weights").glob("*.pt")))
    w3 = weights["c3.groups.0.weight"]
    assert w3.shape == (6, 3, 5, 5)  # the zoo's own layout, written back from the trainer's


def test_the_sgd_stand_in_is_a_named_recipe(gray_folder, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["train", "lenet5", "--recipe", "lenet5_sgd", "--data", str(gray_folder)]
    code, stdout, _ = run_cli([*args, "--samples", "64", "--no-save", "--out", str(out)], capsys)
    assert code == 0, stdout
    (row,) = read_jsonl(out / "results.jsonl")
    assert row["batch_size"] == 16 and row["recipe"].startswith("sgd ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--full", "--samples", "100"], "--full trains the recipe's whole length"),
        (["--batch-size", "4"], "SDLM updates per sample"),
    ],
)
def test_sdlm_refuses_what_it_cannot_do(gray_folder, tmp_path, capsys, extra, message):
    args = ["train", "lenet5", "--data", str(gray_folder), "--no-save", "--out", str(tmp_path)]
    code, _, err = run_cli([*args, *extra], capsys)
    assert code == 2 and message in err


def test_warming_up_compiles_without_touching_the_parameters(net):
    trainer = sdlm.SDLM(net.float(), compile_step=False)
    before = [p.clone() for p in trainer.params]
    assert trainer.warm_up() >= 0 and trainer.sizes is None
    for old, new in zip(before, trainer.params):
        assert torch.equal(old, new)
