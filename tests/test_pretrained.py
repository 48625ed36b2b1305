"""`bench eval MODEL --weights torchvision[:NAME]`: torchvision's published weights from torch's
hub cache, checked by the SHA-256 prefix in their file name, scored with their own preprocessing
on an ImageNet-style folder. Never the network: the weights are a file the test writes into a
temporary hub cache, and the expected scores come from torchvision's own model and ImageFolder
loader on the same files (the second method)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from conftest import run_cli
from PIL import Image

from bench.training import pretrained
from bench.training.pretrained import imagenet_labels, load_published, published_weights
from data.errors import MissingDataError
from data.idx import sha256_of_file
from data.imagefolder import Tree


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, and no download: every fetch fails as it does offline."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(folder))

    def offline(*_: Any, **__: Any) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return folder


def test_published_weights_name_the_file_and_torchvision_s_published_accuracy(hub: Path) -> None:
    weights = published_weights("resnet34")
    assert weights.name == "ResNet34_Weights.IMAGENET1K_V1"
    assert weights.file == hub / "checkpoints" / "resnet34-b627a593.pth"
    # torchvision's table (docs: ResNet34_Weights.IMAGENET1K_V1, acc@1 73.314, acc@5 91.42).
    assert weights.top1 == pytest.approx(0.73314) and weights.top5 == pytest.approx(0.9142)
    assert published_weights("vgg16", "torchvision:IMAGENET1K_V1").file.name == "vgg16-397923af.pth"
    with pytest.raises(ValueError, match="no 'V9': give one of IMAGENET1K_V1"):
        published_weights("resnet34", "torchvision:V9")
    with pytest.raises(ValueError, match="no classifier"):
        published_weights("vgg16", "torchvision:IMAGENET1K_FEATURES")
    with pytest.raises(ValueError, match="fits alexnet_owt, resnet34, vgg16, vgg19"):
        published_weights("vgg16_cifar")


def test_missing_weights_offline_is_one_line_naming_where_to_put_them(
    hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = published_weights("resnet34")
    with pytest.raises(MissingDataError, match="not downloaded"):
        load_published(weights, download=False)
    folder = tmp_path / "images" / "tench"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(folder / "0.png")
    code, out, err = run_cli(
        ["eval", "resnet34", "--weights", "torchvision", "--data", str(tmp_path / "images")],
        capsys,
    )
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "the download failed (OSError)" in line
    assert f"put {weights.url} at {weights.file}" in line


def test_a_file_whose_sha256_differs_from_its_name_is_refused(hub: Path) -> None:
    weights = published_weights("resnet34")
    weights.file.parent.mkdir(parents=True)
    torch.save({"fc.bias": torch.zeros(1000)}, weights.file)
    with pytest.raises(ValueError, match="its name says b627a593"):
        load_published(weights)


def test_class_folders_map_to_the_weights_outputs_by_name_or_as_the_1000_synsets() -> None:
    categories = published_weights("resnet34").categories
    named = Tree(Path("."), ("goldfish", "tench"), ())
    assert imagenet_labels(named, categories) == [1, 0]  # tench is output 0, goldfish 1
    synsets = Tree(Path("."), tuple(f"n{i:08d}" for i in range(1000)), ())
    assert imagenet_labels(synsets, categories) == list(range(1000))
    with pytest.raises(ValueError, match="class folder 'cat' is none of the weights"):
        imagenet_labels(Tree(Path("."), ("cat", "dog"), ()), categories)


def test_eval_scores_torchvision_weights_as_torchvision_s_own_model_does(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet34().eval()
    # The weights file, named as torch.hub names them: the first hex digits of its SHA-256.
    staging = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), staging)
    file = hub / "checkpoints" / f"resnet34-{sha256_of_file(staging)[:8]}.pth"
    file.parent.mkdir(parents=True)
    staging.rename(file)
    real = published_weights("resnet34")
    monkeypatch.setattr(
        pretrained, "published_weights", lambda *_: dataclasses.replace(real, file=file)
    )
    # Images of different sizes and colours; where torchvision's model puts each decides its
    # folder: the first 9 in the folder of their predicted category, the last 3 in another.
    images = tmp_path / "images"
    generator = torch.Generator().manual_seed(1)
    pixels = [
        torch.randint(0, 256, (40 + 13 * i, 52 + 7 * i, 3), generator=generator, dtype=torch.uint8)
        for i in range(12)
    ]
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, array in enumerate(pixels):
        Image.fromarray(array.numpy()).save(loose / f"{i}.png")
    transforms = real.transforms
    with torch.inference_mode():
        batch = torch.stack([transforms(Image.open(loose / f"{i}.png")) for i in range(12)])
        predicted = reference(batch).topk(5, dim=1).indices
    names = real.categories
    anywhere = set(predicted.flatten().tolist())  # in some image's top-5
    wrong = next(c for c in range(1000) if c not in anywhere)
    for i in range(12):
        folder = images / "val" / names[int(predicted[i, 0]) if i < 9 else wrong]
        folder.mkdir(parents=True, exist_ok=True)
        (loose / f"{i}.png").rename(folder / f"{i}.png")
    # The second method: torchvision's ImageFolder and model on the same folder.
    dataset = torchvision.datasets.ImageFolder(str(images / "val"), transform=transforms)
    to_output = [names.index(c) for c in dataset.classes]
    hits = top5_hits = 0
    with torch.inference_mode():
        for image, label in dataset:
            best = reference(image[None]).topk(5, dim=1).indices[0].tolist()
            hits += best[0] == to_output[label]
            top5_hits += to_output[label] in best
    assert hits == 9 and top5_hits == 9  # as the folders were made

    out = tmp_path / "results"
    code, printed, err = run_cli(
        ["eval", "resnet34", "--weights", "torchvision", "--data", str(images), "--batch-size",
         "5", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "top-1 75.00%, top-5 75.00%; torchvision publishes top-1 73.31%, top-5 91.42%" in printed
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["accuracy"] == hits / 12 and row["top5"] == top5_hits / 12
    assert row["weights"] == "torchvision:ResNet34_Weights.IMAGENET1K_V1"
    assert row["published_top1"] == pytest.approx(0.73314) and row["mode"] == "accuracy"
    assert row["test_samples"] == 12 and row["epochs"] == 0
    right_folders = {names[int(p)] for p in predicted[:9, 0]}
    assert row["per_class_accuracy"] == {**dict.fromkeys(right_folders, 1.0), names[wrong]: 0.0}
