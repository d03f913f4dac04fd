"""Export (ONNX, torch.export, safetensors), predict on image files, and multi-scale features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.cli import main
from reslab.models import create_model

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
CLASSES = [f"item-{i}" for i in range(10)]


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms, so a wrong normalization or layout shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _make_run(root: Path, *, in_chans: int = 1, size: int = 28, config: dict | None = None) -> Path:
    """A run directory as training writes it: checkpoints/best.safetensors with the config in its metadata."""
    from reslab.models.weights import save_weights

    torch.manual_seed(0)
    model = _randomize_bn(create_model("resnet20", in_chans=in_chans, num_classes=10))
    if config is None:
        # As training writes it: the resolved config, with the data set's facts under "data".
        config = {
            "model": "resnet20",
            "dataset": "fashion-mnist",
            "data": {
                "input_size": [in_chans, size, size],
                "mean": [FMNIST_MEAN] * in_chans,
                "std": [FMNIST_STD] * in_chans,
                "classes": CLASSES,
            },
        }
    run = root / "run"
    save_weights(model, run / "checkpoints" / "best.safetensors", {"config": config, "step": 123})
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _make_run(tmp_path_factory.mktemp("deploy"))


def _reference_logits(run: Path, x: torch.Tensor) -> torch.Tensor:
    from reslab.models.weights import load_model

    model, _ = load_model(run)
    with torch.no_grad():
        return model.float().eval()(x)


# ------------------------------------------------------------------------------------------ export


def test_onnx_round_trip(run_dir, tmp_path, capsys):
    pytest.importorskip("onnx", reason="onnx not installed (pip install 'reslab[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'reslab[onnx]')")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "batch sizes 1, 3" in printed
    diff = float(printed.split("max abs diff vs PyTorch ")[1].split()[0])
    assert diff < 1e-4

    # Independently: the file runs in onnxruntime with a dynamic batch and matches PyTorch.
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    assert isinstance(inp.shape[0], str), f"batch dimension is not dynamic: {inp.shape}"
    for batch in (1, 3):
        x = torch.randn(batch, 1, 28, 28)
        got = sess.run(None, {inp.name: x.numpy()})[0]
        want = _reference_logits(run_dir, x).numpy()
        assert got.shape == (batch, 10)
        assert np.abs(got - want).max() < 1e-4

    import onnx

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["reslab.classes"]) == CLASSES
    assert json.loads(props["reslab.input_size"]) == [1, 28, 28]
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "temporary files left behind"


def test_torch_export_round_trip(run_dir, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", str(run_dir), "--format", "torch-export", "--out", str(out)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    program = torch.export.load(str(out))
    module = program.module()
    for batch in (1, 3):
        x = torch.randn(batch, 1, 28, 28)
        torch.testing.assert_close(module(x), _reference_logits(run_dir, x), rtol=1e-5, atol=1e-5)


def test_safetensors_export_keeps_metadata(run_dir, tmp_path, capsys):
    from reslab.models.weights import load_model

    out = tmp_path / "weights.safetensors"
    assert main(["export", str(run_dir), "--format", "safetensors", "--out", str(out)]) == 0
    model, metadata = load_model(out)
    assert metadata["config"]["data"]["classes"] == CLASSES and metadata["step"] == 123
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), _reference_logits(run_dir, x))


def test_export_never_overwrites_without_flag(run_dir, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")
    assert main(["export", str(run_dir), "--format", "safetensors", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert main(["export", str(run_dir), "--format", "safetensors", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_export_failed_verification_writes_nothing(run_dir, tmp_path, monkeypatch):
    """A program that does not match PyTorch is an error and leaves no file (atomic publish)."""
    from reslab.deploy import export as export_mod
    from reslab.errors import ReslabError

    monkeypatch.setattr(export_mod, "_compare", lambda *a, **k: 1.0)
    with pytest.raises(ReslabError, match="max abs diff"):
        export_mod.export_model(run_dir, "safetensors", tmp_path / "bad.safetensors")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------- predict


def _expected_probs(run: Path, img: Image.Image) -> torch.Tensor:
    """The run's preprocessing written out by hand: L, 28x28 bilinear, /255, (x - mean) / std."""
    grey = img.convert("L").resize((28, 28), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)[None, None]
    x = (x - FMNIST_MEAN) / FMNIST_STD
    return torch.softmax(_reference_logits(run, x), dim=1)[0]


def test_predict_converts_and_normalizes(run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8), mode="RGB")  # RGB, 52x40
    grey = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L")
    rgb.save(tmp_path / "photo.png")
    grey.save(tmp_path / "scan.png")

    files = [str(tmp_path / "photo.png"), str(tmp_path / "scan.png")]
    assert main(["predict", str(run_dir), *files, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in doc["predictions"]] == files
    for pred, img in zip(doc["predictions"], (rgb, grey)):
        want = _expected_probs(run_dir, img)
        top = pred["top"]
        assert len(top) == 5
        assert [t["index"] for t in top] == want.topk(5).indices.tolist()
        assert [t["class"] for t in top] == [CLASSES[i] for i in want.topk(5).indices.tolist()]
        np.testing.assert_allclose([t["prob"] for t in top], want.topk(5).values.numpy(), atol=1e-5)

    assert main(["predict", str(run_dir), str(tmp_path / "photo.png"), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    want = _expected_probs(run_dir, rgb)
    assert lines[0] == str(tmp_path / "photo.png") and len(lines) == 3
    assert lines[1].split()[1] == CLASSES[int(want.argmax())]
    assert float(lines[1].split()[-1]) == pytest.approx(float(want.max()), abs=1e-4)


def test_predict_unreadable_files(run_dir, tmp_path, capsys):
    Image.new("L", (28, 28), 60).save(tmp_path / "good.png")  # dark: not inverted
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    files = [tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "missing.png"]
    assert main(["predict", str(run_dir), *map(str, files), "--topk", "3"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == str(files[0]) and len(out.strip().splitlines()) == 4
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 2, err
    assert "broken.png" in err_lines[0] and "missing.png" in err_lines[1]
    assert all(line.startswith("reslab: error: cannot read image") for line in err_lines)
    assert "Traceback" not in err


def test_predict_grey_image_into_rgb_imagenet_style(tmp_path):
    """L -> RGB for a 3-channel model; ImageNet-style configs resize 256 + center crop 224 (torchvision's)."""
    from torchvision import transforms as T

    from reslab.tasks.inputs import input_spec, read_image

    model = create_model("resnet18", num_classes=3)
    config = {"dataset": "imagefolder", "image_size": 224, "classes": ["a", "b", "c"]}
    spec = input_spec(model, {"config": config})
    assert spec.input_size == (3, 224, 224) and spec.resize_crop and spec.resize_size == 256
    assert "mean/std" in spec.fallbacks  # not in this config: the ImageNet statistics are used
    rng = np.random.default_rng(1)
    grey = Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8), mode="L")
    grey.save(tmp_path / "grey.png")
    got = read_image(tmp_path / "grey.png", spec)
    ref = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )(grey.convert("RGB"))
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_predict_without_config_warns_and_uses_defaults(tmp_path, capsys):
    run = _make_run(tmp_path, config={})
    Image.new("RGB", (28, 28), (10, 20, 30)).save(tmp_path / "x.png")
    assert main(["predict", str(run), str(tmp_path / "x.png"), "--topk", "1"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("reslab: warning:") and "classes" in err and len(err.strip().splitlines()) == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[1].split()[1:3][0] == "class"


# ---------------------------------------------------------------------------------------- features


def test_features_resnet20(capsys):
    from reslab.deploy.features import stage_info

    infos = stage_info(create_model("resnet20"), (3, 32, 32))
    assert [(i.name, i.shape, i.stride, i.channels) for i in infos] == [
        ("layer1", (1, 16, 32, 32), 1, 16),
        ("layer2", (1, 32, 16, 16), 2, 32),
        ("layer3", (1, 64, 8, 8), 4, 64),
    ]
    assert main(["features", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "1x64x8x8" in out


def test_features_resnet50(capsys):
    assert main(["features", "resnet50", "--input-size", "3,224,224", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = [(s["name"], s["shape"], s["stride"], s["channels"]) for s in doc["stages"]]
    assert got == [
        ("layer1", [1, 256, 56, 56], 4, 256),
        ("layer2", [1, 512, 28, 28], 8, 512),
        ("layer3", [1, 1024, 14, 14], 16, 1024),
        ("layer4", [1, 2048, 7, 7], 32, 2048),
    ]


def test_features_bad_input_size(capsys):
    assert main(["features", "resnet20", "--input-size", "3,32"]) == 2
    assert "C,H,W" in capsys.readouterr().err


def test_features_of_images_are_the_classifiers_pooled_input(run_dir, tmp_path, capsys):
    """``reslab features RUN IMAGE ...``: the vector entering the classifier, by the run's preprocessing;
    ``--out`` is a NumPy file written whole, never over a file it did not write."""
    from reslab.models.weights import load_model

    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 90, (28, 28), dtype=np.uint8), mode="L") for _ in range(3)]
    files = [str(tmp_path / f"x{i}.png") for i in range(3)]
    for img, f in zip(imgs, files):
        img.save(f)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "emb.npz"
    assert (
        main(["features", str(run_dir), *files, str(tmp_path / "bad.png"), "--out", str(out), "--json"]) == 2
    )
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert cap.err.count("\n") == 1 and "bad.png" in cap.err and doc["what"].startswith("pooled features")
    model, _ = load_model(run_dir)
    model.float().eval()
    x = torch.stack([(torch.from_numpy(np.asarray(i, np.float32) / 255.0)[None] - FMNIST_MEAN) / FMNIST_STD
                     for i in imgs])  # fmt: skip
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(
            model.get_classifier()(want), model(x), atol=1e-5
        )  # it is the classifier's input
    got = np.array([e["vector"] for e in doc["embeddings"]])
    assert [e["file"] for e in doc["embeddings"]] == files and got.shape == (3, 64)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    with np.load(out) as saved:
        assert saved["files"].tolist() == files
        np.testing.assert_allclose(saved["embeddings"], want.numpy(), atol=1e-5)
    assert main(["features", str(run_dir), files[0], "--out", str(out)]) == 2  # exists: refused
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["features", str(run_dir), files[0], "--out", str(out), "--overwrite"]) == 0
    assert "norm " in capsys.readouterr().out and np.load(out)["embeddings"].shape == (1, 64)
    np.savez(tmp_path / "mine.npz", a=np.zeros(3))  # the user's own NumPy file
    before = (tmp_path / "mine.npz").read_bytes()
    for argv, says in [
        (
            [files[0], "--out", str(tmp_path / "mine.npz"), "--overwrite"],
            "not an embeddings file reslab wrote",
        ),
        ([files[0], "--out", str(tmp_path / "e.csv")], "name it *.npz"),
        ([files[0], "--input-size", "1,28,28"], "--input-size sizes the stage listing"),
    ]:
        assert main(["features", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1
    assert (tmp_path / "mine.npz").read_bytes() == before
    assert main(["features", "resnet20", files[0]]) == 2
    assert "needs a trained network" in capsys.readouterr().err


def test_stage_features_drive_an_fpn():
    """The backbone recipe of docs/deploy.md: StageFeatures -> torchvision's FeaturePyramidNetwork."""
    from torchvision.ops import FeaturePyramidNetwork

    from reslab.deploy import StageFeatures

    model = create_model("resnet20").eval()
    backbone = StageFeatures(model, stages=("layer2", "layer3"), input_size=(3, 32, 32))
    assert backbone.out_channels == [32, 64] and backbone.strides == [2, 4]
    fpn = FeaturePyramidNetwork(backbone.out_channels, out_channels=24).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = backbone(x)
        pyramid = fpn(feats)
        stages = model.forward_stages(x)
    assert list(pyramid) == ["layer2", "layer3"]
    assert pyramid["layer2"].shape == (2, 24, 16, 16) and pyramid["layer3"].shape == (2, 24, 8, 8)
    torch.testing.assert_close(feats["layer3"], stages[-1])


def test_onnx_missing_dependency_message(run_dir, tmp_path, monkeypatch, capsys):
    """Without onnxruntime the ONNX export refuses clearly (it could not be verified)."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    pytest.importorskip("onnx", reason="onnx not installed")
    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "onnxruntime" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_predict_matches_the_training_polarity(run_dir, tmp_path, capsys):
    """A garment photographed dark on a light background is inverted for a Fashion-MNIST model (trained
    on light garments on black) and says so; the light-on-dark original is left alone; ``--invert never``
    turns it off; RGB models never invert (issue 12, item 8)."""
    from reslab.tasks.inputs import input_spec, load, read_image_polarity

    rng = np.random.default_rng(0)
    garment = np.zeros((28, 28), np.uint8)
    garment[4:24, 8:20] = rng.integers(120, 255, (20, 12))  # light object, black border (FMNIST style)
    Image.fromarray(garment).save(tmp_path / "as_stored.png")
    Image.fromarray(255 - garment).save(tmp_path / "photo.jpg", quality=95)  # dark object on white
    model, meta = load(run_dir)
    spec = input_spec(model, meta)
    x_orig, inv_orig = read_image_polarity(tmp_path / "as_stored.png", spec)
    x_photo, inv_photo = read_image_polarity(tmp_path / "photo.jpg", spec)
    assert (inv_orig, inv_photo) == (False, True)
    assert (x_photo - x_orig).abs().max() * FMNIST_STD < 0.05  # the same input, up to JPEG loss
    x_kept, inv_kept = read_image_polarity(tmp_path / "photo.jpg", spec, "never")
    assert not inv_kept and (x_kept - x_orig).abs().mean() * FMNIST_STD > 0.5

    assert (
        main(
            ["predict", str(run_dir), str(tmp_path / "as_stored.png"), str(tmp_path / "photo.jpg"), "--json"]
        )
        == 0
    )
    got = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["inverted"] for p in got] == [False, True]
    assert got[0]["top"][0]["class"] == got[1]["top"][0]["class"]
    assert main(["predict", str(run_dir), str(tmp_path / "photo.jpg"), "--invert", "never", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["inverted"] is False

    rgb = _make_run(tmp_path / "rgb", in_chans=3, size=32)
    Image.fromarray(np.stack([255 - np.pad(garment, 2)] * 3, -1)).save(tmp_path / "rgb.png")
    model3, meta3 = load(rgb)
    assert read_image_polarity(tmp_path / "rgb.png", input_spec(model3, meta3))[1] is False
