"""The zoo against the papers' tables: shapes, parameter counts, MACs, torchvision parity."""

from __future__ import annotations

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

import zoo
from zoo.alexnet import paper_lrn
from zoo.lenet import C3_TABLE, DIGIT_BITMAPS, LeNet5, map_loss
from zoo.registry import Variant, register_variants
from zoo.resnet import ResNet, ResNetConfig

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


# Layer-shape arithmetic: the expected counts are computed here, not read from the models.
def conv(cin: int, cout: int, k: int, groups: int = 1, bias: bool = True) -> int:
    return cout * (cin // groups) * k * k + (cout if bias else 0)


def linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def bn(c: int) -> int:
    return 2 * c


def alexnet_small(cin: int, side: int) -> int:
    convs = conv(cin, 96, 5) + conv(96, 256, 5, 2) + conv(256, 384, 3)
    convs += conv(384, 384, 3, 2) + conv(384, 256, 3, 2)
    return convs + linear(256 * side * side, 4096) + linear(4096, 4096) + linear(4096, 10)


def vgg_small(cin: int, column: str) -> int:
    widths = {"D": [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6,
              "E": [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8}[column]  # fmt: skip
    total, c = 0, cin
    for w in widths:
        total += conv(c, w, 3) + bn(w)
        c = w
    return total + linear(512, 10)


def resnet34_small(cin: int) -> int:
    total, c = conv(cin, 64, 3, bias=False) + bn(64), 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(blocks):
            total += conv(c, width, 3, bias=False) + bn(width)
            total += conv(width, width, 3, bias=False) + bn(width)
            if c != width:
                total += conv(c, width, 1, bias=False) + bn(width)
            c = width
    return total + linear(512, 10)


# The papers' counts (and the tutorial's and the lab's), which the cards quote.
PAPER_PARAMS = {
    "lenet5": 60_000,
    "lenet5_modern": 61_706,
    "lenet5_mnist": 61_706,
    "lab_cnn": 3_274_634,
    "alexnet": 60_965_224,
    "alexnet_owt": 61_100_840,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg16_cifar": 14_728_266,
    "vgg19_cifar": 20_040_522,
    "resnet34": 21_797_672,
    "resnet34_a": 21_623_848,
    "resnet34_cifar": 21_282_122,
}
# The designs without a paper, counted from their layer shapes.
COUNTED_PARAMS = {
    "lenet5_cifar": conv(3, 6, 5)
    + conv(6, 16, 5)
    + linear(400, 120)
    + linear(120, 84)
    + linear(84, 10),
    "alexnet_cifar": alexnet_small(3, 3),
    "alexnet_cifar_kaiming": alexnet_small(3, 3),
    "alexnet_mnist": alexnet_small(1, 2),
    "alexnet_mnist_kaiming": alexnet_small(1, 2),
    "vgg16_mnist": vgg_small(1, "D"),
    "vgg19_mnist": vgg_small(1, "E"),
    "resnet34_mnist": resnet34_small(1),
}
PARAMS = PAPER_PARAMS | COUNTED_PARAMS

# fvcore's MACs at 224x224 (AlexNet at 227), from the papers' tables and the lab's PAPERS.md notes.
MACS_224 = {"alexnet": 0.724e9, "vgg16": 15.47e9, "vgg19": 19.63e9, "resnet34": 3.67e9}

TORCHVISION_TWINS = {
    "alexnet_owt": torchvision.models.alexnet,
    "vgg16": torchvision.models.vgg16,
    "vgg19": torchvision.models.vgg19,
    "resnet34": torchvision.models.resnet34,
}


@pytest.fixture(autouse=True)
def _seeded():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_every_model_has_a_contracted_count():
    assert sorted(PARAMS) == zoo.list_models()


@pytest.mark.parametrize("name", zoo.list_models())
def test_parameter_count(name):
    assert trainable(zoo.get_model(name)) == PARAMS[name]


def test_the_cards_quote_the_papers_counts():
    quoted = {n: p.params for n in zoo.list_models() if (p := zoo.get_card(n).paper) and p.params}
    assert quoted == PAPER_PARAMS


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", zoo.list_models())
def test_forward_backward(name, device):
    card = zoo.get_card(name)
    model = zoo.get_model(name).to(device).train()
    x = torch.randn(2, *card.input_shape, device=device)
    out = model(x)
    assert out.shape == (2, card.num_classes)
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["lenet5_modern", "vgg16_cifar", "resnet34_mnist", "lab_cnn"])
def test_num_classes_overrides_the_head(name):
    card = zoo.get_card(name)
    out = zoo.get_model(name, num_classes=7).eval()(torch.randn(1, *card.input_shape))
    assert out.shape == (1, 7)


# --- LeNet-5 (LeCun et al. 1998, Sec. II.B) --------------------------------------------------


def test_lenet5_per_layer_parameters():
    model = LeNet5()
    per_layer = {name: trainable(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5")}
    per_layer["f6"] = trainable(model.f6)
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert trainable(model.output) == 0  # the RBF prototypes are fixed


def test_lenet5_connections():
    # Connections = (weights + bias) per output unit x output units, layer by layer.
    model, x = LeNet5(), torch.zeros(1, 1, 32, 32)
    sizes = {}
    for name in ("c1", "s2", "c3", "s4", "c5"):
        x = getattr(model, name)(x)
        sizes[name] = x.shape[-1] * x.shape[-2]
    c3_in = sum(len(row) for row in C3_TABLE)
    connections = {
        "c1": sizes["c1"] * 6 * (25 + 1),
        "s2": sizes["s2"] * 6 * (4 + 1),
        "c3": sizes["c3"] * (c3_in * 25 + 16),
        "s4": sizes["s4"] * 16 * (4 + 1),
        "c5": sizes["c5"] * 120 * (16 * 25 + 1),
        "f6": 84 * (120 + 1),
        "rbf": 10 * 84,
    }
    assert connections == {"c1": 122_304, "s2": 5_880, "c3": 151_600, "s4": 2_000,
                           "c5": 48_120, "f6": 10_164, "rbf": 840}  # fmt: skip
    assert sum(connections.values()) == zoo.get_card("lenet5").paper.connections == 340_908


def test_lenet5_c3_table_is_the_papers():
    assert C3_TABLE[:6] == tuple(tuple((i + k) % 6 for k in range(3)) for i in range(6))
    assert C3_TABLE[6:12] == tuple(tuple((i + k) % 6 for k in range(4)) for i in range(6))
    assert C3_TABLE[12:15] == ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5))
    assert C3_TABLE[15] == (0, 1, 2, 3, 4, 5)


def test_lenet5_c3_reads_only_its_table():
    model = LeNet5()
    for out_map, row in enumerate(C3_TABLE):
        x = torch.zeros(1, 6, 14, 14, requires_grad=True)
        model.c3(x)[0, out_map].sum().backward()
        touched = {c for c in range(6) if x.grad[0, c].abs().sum() > 0}
        assert touched == set(row), f"C3 map {out_map}"


def test_lenet5_rbf_is_the_squared_distance_to_fixed_bitmaps():
    model = LeNet5()
    protos = model.output.prototypes
    assert protos.shape == (10, 84) and set(protos.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(p.tolist()) for p in protos}) == 10  # ten distinct digit codes
    assert all(len(b.split()) == 12 for b in DIGIT_BITMAPS)  # 7 x 12 bitmaps
    x = torch.randn(3, 84)
    expected = ((x[:, None, :] - protos[None]) ** 2).sum(-1)
    torch.testing.assert_close(model.output(x), -expected)
    # A unit at its own prototype has distance 0: the largest score.
    assert model.output(protos[4:5]).argmax().item() == 4


def test_lenet5_squashing_and_map_loss():
    from zoo.lenet import squash

    a = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(squash(a), 1.7159 * torch.tanh(2 * a / 3))
    scores, target, j = -torch.rand(4, 10) * 5, torch.tensor([0, 3, 9, 2]), 1.5
    y = -scores  # the RBF penalties
    expected = (y[torch.arange(4), target] + torch.log(torch.exp(torch.tensor(-j))
                + torch.exp(-y).sum(1))).mean()  # fmt: skip
    torch.testing.assert_close(map_loss(scores, target, j=j), expected)


# --- AlexNet (Krizhevsky et al. 2012, Sec. 3) ------------------------------------------------


def test_alexnet_feature_map_shapes():
    model, x = zoo.get_model("alexnet").eval(), torch.zeros(1, 3, 227, 227)
    shapes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    assert tuple(x.shape[1:]) == (256, 6, 6)
    groups = [m.groups for m in model.features if isinstance(m, nn.Conv2d)]
    assert groups == [1, 2, 1, 2, 2]


def test_alexnet_lrn_is_the_papers_formula():
    # b_c = a_c / (k + alpha * sum_{c' in [c - n/2, c + n/2]} a_c'^2) ^ beta, k=2 n=5 alpha=1e-4.
    a = torch.tensor([3.0, -40.0, 25.0, 7.0, 0.5, -12.0, 60.0]).view(1, 7, 1, 1)
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    vals = a.flatten().tolist()
    expected = []
    for c, v in enumerate(vals):
        window = vals[max(0, c - n // 2) : min(len(vals), c + n // 2 + 1)]
        expected.append(v / (k + alpha * sum(w * w for w in window)) ** beta)
    got = paper_lrn()(a).flatten()
    torch.testing.assert_close(got, torch.tensor(expected))


@pytest.mark.parametrize(
    "name, drops",
    [("alexnet_mnist", "outputs"), ("alexnet_cifar", "outputs"), ("alexnet_owt", "inputs")],
)
def test_alexnet_dropout_acts_where_the_paper_puts_it(name, drops):
    """Sec. 4.2: "dropout in the first two fully-connected layers", on the outputs of fc6 and
    fc7; torchvision's one-weird-trick AlexNet drops their inputs instead."""
    torch.manual_seed(0)
    model = zoo.get_model(name).train()
    card = zoo.get_card(name)
    fc6, fc7, fc8 = [m for m in model.classifier if isinstance(m, nn.Linear)]
    seen: dict[nn.Module, torch.Tensor] = {}
    for fc in (fc6, fc7, fc8):
        fc.register_forward_pre_hook(lambda m, args: seen.__setitem__(m, args[0].clone()))
    x = torch.randn(2, *card.input_shape)
    with torch.no_grad():
        features = torch.flatten(model.avgpool(model.features(x)), 1)
        model(x)
        fc7_out = torch.relu(fc7(seen[fc7]))  # what fc8 reads without dropout after fc7
    # Dropout zeroes about half of its inputs and doubles the rest.
    fc6_reads_features_unchanged = torch.equal(seen[fc6], features)
    kept = seen[fc8] != 0
    fc8_reads_dropped_fc7_outputs = bool(
        (fc7_out[~kept] > 0).any() and torch.allclose(seen[fc8][kept], 2 * fc7_out[kept])
    )
    if drops == "outputs":
        assert fc6_reads_features_unchanged and fc8_reads_dropped_fc7_outputs
    else:
        assert not fc6_reads_features_unchanged and torch.equal(seen[fc8], fc7_out)


# --- Parity with torchvision: same state dict, same outputs -----------------------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_torchvision_state_dict_parity(name):
    reference = TORCHVISION_TWINS[name](weights=None).eval()
    ours = zoo.get_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *zoo.get_card(name).input_shape)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


# --- MACs at the papers' input sizes ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACS_224))
def test_macs_match_the_papers(name):
    model = zoo.get_model(name).eval()
    x = torch.zeros(1, *zoo.get_card(name).input_shape)
    counter = FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
    macs = counter.uncalled_modules_warnings(False).total()
    assert macs == pytest.approx(MACS_224[name], rel=0.01)
    assert macs == pytest.approx(zoo.get_card(name).paper.macs, rel=0.02)  # ResNet: 3.6 G


def test_lenet5_macs_are_the_papers_weight_multiplications():
    counter = FlopCountAnalysis(zoo.get_model("lenet5"), torch.zeros(1, 1, 32, 32))
    assert counter.unsupported_ops_warnings(False).total() == 326_520


# --- Bad input --------------------------------------------------------------------------------


def test_unknown_model_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'resnet35'.*resnet34") as err:
        zoo.get_model("resnet35")
    assert "\n" not in str(err.value)


def test_a_variant_row_is_registered_with_its_shape_and_classes(monkeypatch):
    monkeypatch.setattr(zoo.registry, "_REGISTRY", {})
    row = Variant(ResNetConfig(1, 20, stem="small", shortcut="A"), num_classes=5, summary="a row")
    register_variants("resnet", ResNet, {"resnet34_a_tiny": row})
    card = zoo.get_card("resnet34_a_tiny")
    assert (card.family, card.input_shape, card.num_classes) == ("resnet", (1, 20, 20), 5)
    assert zoo.get_model("resnet34_a_tiny").eval()(torch.zeros(1, 1, 20, 20)).shape == (1, 5)


def test_registry_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register_model("vgg16", family="vgg", input_shape=(3, 1, 1), num_classes=1,
                           summary="")(lambda: nn.Identity())  # fmt: skip


def test_list_models_pattern():
    assert zoo.list_models("vgg1?") == ["vgg16", "vgg19"]
    mnist = ["alexnet_mnist", "lenet5_mnist", "resnet34_mnist", "vgg16_mnist", "vgg19_mnist"]
    assert zoo.list_models("*_mnist") == mnist
