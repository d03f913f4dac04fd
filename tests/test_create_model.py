"""``create_model`` as a timm user expects it (issue 31): ``pretrained=True``, a new head, ``in_chans``
adapted, ``num_classes=0``, ``features_only`` / ``out_indices``, and ``torch.hub.load`` on a clone.

No network: torchvision's resnet18 file is a randomly initialized torchvision resnet18 saved in a
temporary torch.hub cache (``TORCH_HOME``) under torchvision's name pattern ``resnet18-<sha256 prefix>.pth``
(the URL table is pointed at it, since the cache checks the prefix). timm (a dev dependency) is the
reference where a test compares with it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import reslab
from reslab.errors import CheckpointError, ConfigError
from reslab.models import create_model, hub, list_models
from reslab.models.factory import published_weights
from reslab.models.weights import adapt_input_conv, save_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tv_file(tmp_path, monkeypatch):
    """torchvision's resnet18 state dict (seeded random weights, non-trivial BN statistics) in the torch.hub
    cache under TORCH_HOME=tmp_path/torch: (its state dict, the file)."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    tmp = cache / "resnet18.pth"
    torch.save(tv.state_dict(), tmp)
    path = tmp.rename(cache / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth")
    monkeypatch.setitem(hub.TORCHVISION_URLS, "resnet18", f"https://download.pytorch.org/models/{path.name}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tv.state_dict(), path


# ------------------------------------------------------------------------------------- pretrained


def test_pretrained_new_head_and_grey_input_load_all_but_fc(tv_file):
    """The issue's example: everything but fc is the file's, conv1 is the RGB kernels summed, fc is new."""
    state, path = tv_file
    with pytest.warns(UserWarning) as record:
        model = reslab.create_model("resnet18", pretrained=True, num_classes=10, in_chans=1)
    (w,) = record
    msg = str(w.message)
    assert "\n" not in msg and path.name in msg and "fc not loaded (1000 classes in the file, 10 here)" in msg
    assert "conv1 adapted from 3 to 1 input channels (summed" in msg
    got = model.state_dict()
    torch.testing.assert_close(got["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    for k, v in state.items():
        if k != "conv1.weight" and not k.startswith("fc."):
            assert torch.equal(got[k], v), k
    assert got["fc.weight"].shape == (10, 512) and model.in_chans == 1
    assert model.model_kwargs == {"num_classes": 10, "in_chans": 1}
    # a grey image g gives what the RGB network gives for (g, g, g), up to the new head
    tv = torchvision.models.resnet18().eval()
    tv.load_state_dict(state)
    tv.fc = torch.nn.Identity()
    g = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        feats = model.eval().forward_head(model.forward_features(g), pre_logits=True)
        torch.testing.assert_close(feats, tv(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_pretrained_fitting_file_loads_strictly_and_quietly(tv_file, recwarn):
    state, _ = tv_file
    model = create_model("resnet18", pretrained=True)
    assert not recwarn.list
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    pooled = create_model("resnet18", pretrained=True, num_classes=0)  # no head asked: nothing to say
    assert not recwarn.list and not any(k.startswith("fc.") for k in pooled.state_dict())
    assert pooled.state_dict()["layer4.1.bn2.running_var"].equal(state["layer4.1.bn2.running_var"])


def test_other_in_chans_follow_timms_rule(tv_file):
    state, _ = tv_file
    with pytest.warns(UserWarning, match="conv1 adapted from 3 to 5 input channels .repeated and rescaled"):
        model = create_model("resnet18", pretrained="torchvision", in_chans=5)
    w = state["conv1.weight"]
    want = torch.cat([w, w[:, :2]], dim=1) * (3 / 5)
    torch.testing.assert_close(model.state_dict()["conv1.weight"], want)
    timm_models = pytest.importorskip("timm.models")  # the reference: timm's own function, same weights
    for n in (1, 2, 4, 5, 7):
        torch.testing.assert_close(adapt_input_conv(n, w), timm_models.adapt_input_conv(n, w.clone()))


def test_pretrained_from_a_path_with_new_classes(tmp_path):
    src = create_model("resnet20")
    save_weights(src, tmp_path / "r20.safetensors")
    with pytest.warns(UserWarning, match=r"fc not loaded \(10 classes in the file, 100 here\)"):
        model = create_model("resnet20", pretrained=tmp_path / "r20.safetensors", num_classes=100, in_chans=1)
    want = src.state_dict()
    for k, v in model.state_dict().items():
        if k == "conv1.weight":
            torch.testing.assert_close(v, want[k].sum(1, keepdim=True))
        elif not k.startswith("fc."):
            assert torch.equal(v, want[k]), k


def test_pretrained_without_the_file_or_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert published_weights("resnet20") == "akamaster" and published_weights("resnet50") == "torchvision"
    with pytest.raises(CheckpointError) as e:
        create_model("resnet20", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and "resnet20-12fca82f.th" in msg and "download=True" in msg
    assert not (tmp_path / "torch").exists()  # nothing downloaded, no cache folder made
    with pytest.raises(ConfigError) as e:
        create_model("resnet110", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("no published weights for resnet110")
    assert "resnet50" in msg and "resnet56" in msg
    with pytest.raises(ConfigError, match="pretrained must be True, False, a path"):
        create_model("resnet20", pretrained=3)
    with pytest.raises(ConfigError, match="download=True applies only"):
        create_model("resnet20", pretrained=tmp_path / "x.pth", download=True)


# ---------------------------------------------------------------------------------- features_only


def test_features_only_resnet50_gives_timms_four_maps():
    model = create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 224, 224))
    assert isinstance(maps, list)
    assert [tuple(m.shape) for m in maps] == [
        (2, 256, 56, 56),
        (2, 512, 28, 28),
        (2, 1024, 14, 14),
        (2, 2048, 7, 7),
    ]
    assert model.feature_info.channels() == [256, 512, 1024, 2048]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
    assert not any(k.startswith("body.fc") for k in model.state_dict())  # no classifier left


def test_features_only_equals_timm_with_the_same_weights():
    """Index 0 is the stem before the max-pool, 1..4 the stages, default all: timm's ResNet convention."""
    timm = pytest.importorskip("timm")
    ours = create_model("resnet18", features_only=True).eval()
    theirs = timm.create_model("resnet18", features_only=True, pretrained=False).eval()
    assert ours.feature_info.channels() == theirs.feature_info.channels() == [64, 64, 128, 256, 512]
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert ours.out_indices == tuple(theirs.feature_info.out_indices) == (0, 1, 2, 3, 4)
    theirs.load_state_dict(ours.body.state_dict())  # torchvision's names on both sides, strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b)
    picked = create_model("resnet18", features_only=True, out_indices=(0, 2))
    assert picked.feature_info.reduction() == [2, 8] and picked.body.stage_names == ("layer1", "layer2")


def test_features_only_cifar_densenet_preact_and_errors():
    r20 = create_model("resnet20", features_only=True)  # no pooling stem: strides 1, 1, 2, 4
    assert r20.feature_info.reduction() == [1, 1, 2, 4] and r20.feature_info.channels() == [16, 16, 32, 64]
    dense = create_model("densenet121", features_only=True, out_indices=(0, 2))
    assert dense.feature_info.channels() == [64, 512] and dense.feature_info.reduction() == [2, 8]
    assert [n for n, _ in dense.body.features.named_children()][-1] == "denseblock2"  # later ones removed
    assert [tuple(m.shape) for m in dense(torch.randn(1, 3, 64, 64))] == [(1, 64, 32, 32), (1, 512, 8, 8)]
    pre = create_model("preact_resnet", depth=20, bottleneck=False)
    stem_only = create_model(
        "preact_resnet", depth=20, bottleneck=False, features_only=True, out_indices=(0,)
    )
    stem_only.body.load_state_dict(pre.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    assert stem_only.body.stage_names == () and torch.equal(stem_only(x)[0], pre.conv1(x))
    for kwargs, match in [
        (
            {"features_only": True, "out_indices": (1, 5)},
            r"out_indices must be increasing integers in \[0, 4\]",
        ),
        ({"features_only": True, "out_indices": (2, 1)}, "increasing"),
        ({"out_indices": (1, 2)}, "only with features_only=True"),
    ]:
        with pytest.raises(ConfigError, match=match):
            create_model("resnet18", **kwargs)
    with pytest.raises(ConfigError, match="features_only applies to image models; r3d_18 is a video"):
        create_model("r3d_18", features_only=True)


def test_num_classes_zero_gives_pooled_features_and_round_trips(tmp_path):
    model = create_model("resnet18", num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    assert model(x).shape == (2, 512) and model.num_classes == 0
    save_weights(model, tmp_path / "pooled.safetensors")
    from reslab.models.weights import load_model

    again, _ = load_model(tmp_path / "pooled.safetensors")
    assert again.model_kwargs["num_classes"] == 0 and again(x).shape == (2, 512)
    with pytest.raises(ConfigError, match="num_classes must be >= 0"):
        create_model("resnet18", num_classes=-1)


# ------------------------------------------------------------------------------------------ torch.hub


def _hubconf():
    spec = importlib.util.spec_from_file_location("reslab_hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_has_one_entry_per_registered_model():
    hubconf = _hubconf()
    assert hubconf.dependencies == ["torch"]
    # torch.hub.list's rule: the callables whose names do not start with "_"
    entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]
    assert sorted(entries) == sorted(list_models())
    assert "ResNet-56" in hubconf.resnet56.__doc__


def test_torch_hub_load_local(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = torch.hub.load(str(ROOT), "resnet56", source="local", pretrained=False)
    assert model.model_name == "resnet56" and sum(p.numel() for p in model.parameters()) == 853_018
    feats = torch.hub.load(str(ROOT), "resnet18", source="local", features_only=True, out_indices=(4,))
    assert feats.feature_info.channels() == [512]
    with pytest.raises(CheckpointError, match="download=True"):
        torch.hub.load(str(ROOT), "resnet20", source="local", pretrained=True)
    # a clone that is not installed: hubconf puts its src/ first, from any working directory
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        f"import torch; m = torch.hub.load({str(ROOT)!r}, 'resnet20', source='local'); "
        "import reslab; print(reslab.__file__, m.model_name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert Path(out[0]).is_relative_to(ROOT / "src") and out[1] == "resnet20"
