"""Style transfer (issue 35): the perceptual loss against hand computations, Gatys' optimization under
L-BFGS and Adam, ``reslab stylize`` end to end, Johnson's transformation network, the style task's tiny
run through ``reslab train`` / ``eval`` / ``predict``, and the one-line errors. Images are scikit-image's
bundled ones, at 32-64 pixels; the loss network is a random ResNet-20 (small and fast)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.tasks.perceptual import (
    PerceptualLoss,
    Weights,
    content_loss,
    gram,
    loss_network,
    style_layer_loss,
    tv_loss,
)

TINY_TASK = [
    "--iterations", "4", "--device", "cpu", "--seed", "1", "--batch-size", "2", "--set", "eval_every=2",
    "--set", "checkpoint_every=2", "--set", "log_every=1", "--set", "threads=1", "--set", "tensorboard=false",
    "--set", "warmup_iters=0", "--set", "model_kwargs.width=4", "--set", "model_kwargs.units=1",
    "--set", "task_kwargs.crop=32", "--set", "task_kwargs.content_size=64", "--set", "task_kwargs.style_size=64",
    "--set", "task_kwargs.loss_network=resnet20",
]  # fmt: skip
STYLIZE = ["--size", "32", "--model", "resnet20", "--steps", "4", "--threads", "1", "--device", "cpu"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reslab: error: "), err
    return err[0]


def test_gram_and_style_loss_match_a_hand_computation():
    # F (N=2 maps, M=4 positions): rows [1, 2, 3, 4] and [0, 1, 0, 1]
    f = torch.tensor([[1.0, 2, 3, 4], [0, 1, 0, 1]]).view(1, 2, 2, 2)
    assert torch.equal(gram(f)[0], torch.tensor([[30.0, 6], [6, 2]]))  # Gatys Eq. 3: sum_k F_ik F_jk
    # Eq. 4 against A = 0: (30^2 + 6^2 + 6^2 + 2^2) / (4 N^2 M^2) = 976 / 256
    assert float(style_layer_loss(f, torch.zeros(1, 2, 2))) == pytest.approx(976 / 256)
    assert float(style_layer_loss(f, gram(f))) == 0.0
    assert float(content_loss(f, torch.zeros_like(f))) == pytest.approx((1 + 4 + 9 + 16 + 1 + 1) / 8)
    img = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)  # dx: (1, 0), dy: (0, 1)
    assert float(tv_loss(img)) == pytest.approx(0.5 + 0.5)


def test_the_loss_network_reads_the_stages_and_refuses_unknown_layers():
    net = loss_network("resnet20", seed=3)
    feats = net(torch.rand(1, 3, 32, 32))
    assert list(feats) == ["stem", "layer1", "layer2", "layer3"]
    assert [tuple(v.shape[1:]) for v in feats.values()] == [
        (16, 32, 32),
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
    ]
    again = loss_network("resnet20", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with pytest.raises(Exception, match="no layer 'layer4' in resnet20; choose from stem, layer1"):
        PerceptualLoss.for_style(net, Weights(style_layers=("layer4",)), torch.rand(3, 32, 32))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_loss_decreases_under_both_optimizers(optimizer):
    from reslab.deploy.stylize import stylize

    g = torch.Generator().manual_seed(0)
    content = (torch.rand(3, 24, 24, generator=g) * 255).to(torch.uint8)
    style = (torch.rand(3, 24, 24, generator=g) * 255).to(torch.uint8)
    r = stylize(content, style, size=24, model="resnet20", steps=15, optimizer=optimizer)
    assert r.image.shape == (3, 24, 24) and r.image.dtype == torch.uint8
    assert r.history[-1]["loss"] < 0.5 * r.history[0]["loss"], (r.history[0], r.history[-1])
    assert r.history[-1]["style"] < r.history[0]["style"]


def test_stylize_cli_end_to_end(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "cat.png"
    assert main(["stylize", "skimage:chelsea", "skimage:gravel", "--out", str(out), *STYLIZE]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: 32x21, lbfgs 4 steps") and "resnet20, random weights (seed 0)" in text
    with Image.open(out) as im:
        assert im.size == (32, 21) and im.mode == "RGB"
    assert main(["stylize", "skimage:chelsea", "skimage:gravel", "--out", str(out), *STYLIZE]) == 2
    assert "--overwrite" in _one_line(capsys)
    args = [
        "stylize",
        "skimage:coffee",
        "skimage:brick",
        "--out",
        str(out),
        "--overwrite",
        "--optimizer",
        "adam",
    ]
    assert main([*args, *STYLIZE]) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.png", "skimage:brick"], "no such image: missing.png"),
        (["skimage:chelsea", "skimage:nope"], "unknown bundled image 'skimage:nope'"),
        (
            ["skimage:chelsea", "skimage:brick", "--init-from", "torchvision", "--model", "resnet18"],
            "torchvision",
        ),
        (["skimage:chelsea", "skimage:brick", "--content-layer", "layer9"], "no layer 'layer9'"),
        (["skimage:chelsea", "skimage:brick", "--style-weight", "-1"], "style_weight must be >= 0"),
    ],
)
def test_stylize_errors_are_one_line(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: no ImageNet weights
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    assert main(["stylize", *args, "--out", str(out), *STYLIZE]) == 2
    assert needle in _one_line(capsys)
    assert not out.exists() and not (tmp_path / "torch").exists()  # nothing written, nothing downloaded


def test_johnson_transformer_is_the_papers_network():
    from reslab.models import create_model, model_info
    from reslab.models.base import ResidualUnit

    # 1,679,235: PyTorch's examples/fast_neural_style TransformerNet (the same layers, instance norm)
    info = model_info("johnson_transformer")
    assert (info["params"], info["task"], info["num_classes"]) == (1_679_235, "style-transfer", 0)
    for variant in ({"upsample": "nearest"}, {"norm": "batch"}):  # the same parameter count
        assert (
            sum(p.numel() for p in create_model("johnson_transformer", **variant).parameters()) == 1_679_235
        )
    model = create_model("johnson_transformer").eval()
    assert len(model.blocks) == 5 and all(
        isinstance(b, ResidualUnit) and not b.post_act for b in model.blocks
    )
    x = torch.rand(1, 3, 30, 42)  # not multiples of 4: padded and cropped back
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert model.forward_features(torch.rand(1, 3, 32, 32)).shape == (1, 128, 8, 8)


def test_style_task_trains_evaluates_and_predicts(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", "--task", "style", *TINY_TASK, "--out", str(run), "--quiet"]) == 0
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert all(float(rows[-1][f"val_{m}"]) > 0 for m in ("loss", "content", "style", "tv"))
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert set(result["val"]) >= {"loss", "loss/coffee"} and set(result["test"]) >= {"loss/chelsea"}
    assert "style skimage:immunohistochemistry" in capsys.readouterr().out
    image = tmp_path / "in.png"
    Image.fromarray((torch.rand(20, 28, 3) * 255).to(torch.uint8).numpy()).save(image)
    out = tmp_path / "styled.png"
    assert main(["predict", str(run), str(image), "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["predictions"][0]
    assert record["size"] == [28, 20] and record["seconds"] > 0
    with Image.open(out) as im:
        assert im.size == (28, 20)


def test_style_task_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    base = ["train", "--task", "style", *TINY_TASK, "--quiet"]
    cases = [
        (
            ["--set", "task_kwargs.loss_init=torchvision", "--set", "task_kwargs.loss_network=resnet18"],
            "torchvision",
        ),
        (["--set", "task_kwargs.style_image=nowhere.png"], "no such image: nowhere.png"),
        (["--set", "task_kwargs.colour=1"], "unknown style option 'colour'"),
    ]
    for extra, needle in cases:
        run = tmp_path / f"run{len(extra)}{needle[:4]}"
        assert main([*base, *extra, "--out", str(run)]) == 2, extra
        assert needle in _one_line(capsys)
        assert not (run / "checkpoints").exists()
    assert not (tmp_path / "torch").exists()
    plain = [a for a in TINY_TASK if "model_kwargs" not in a]
    plain = [
        a
        for i, a in enumerate(plain)
        if not (a == "--set" and i + 1 < len(plain) and plain[i + 1] == "--set")
    ]
    assert (
        main(["train", "--task", "style", *plain, "--model", "resnet20", "--out", str(tmp_path / "r")]) == 2
    )
    assert "trains style-transfer models; 'resnet20' is image-classification" in _one_line(capsys)


def test_bundled_images_are_read_without_a_download():
    from reslab.data.photos import BUNDLED, read_photo

    for name in ("chelsea", "brick", "immunohistochemistry"):
        assert name in BUNDLED
        im = read_photo(f"skimage:{name}")
        assert im.dtype == torch.uint8 and im.shape[0] == 3
    assert Path  # the path form is exercised by the CLI tests
