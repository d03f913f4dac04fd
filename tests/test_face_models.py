"""The face embedders against their reference code (issue 33, part 1): names, shapes, parameter counts
and outputs.

- IR-ResNets: ``RefIResNet`` below is a transcription of insightface's
  ``recognition/arcface_torch/backbones/iresnet.py`` (deepinsight/insightface, commit d9cb10e; the
  ``fp16`` flag and gradient checkpointing left out, dilation unused there): its state dict must load
  into reslab's strictly, with the same key order, shapes, parameter count and outputs.
- ``inception_resnet_v1``: facenet-pytorch 2.6.0's ``InceptionResnetV1`` itself (installed with
  ``--no-deps`` by ``make install``; skipped with a reason where it is absent).
- ``inception_resnet_v2``: timm's ``inception_resnet_v2`` (the dev extra).

Random weights, seeded, with BN running statistics moved off their initial values so that eval-mode
outputs depend on every tensor. Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.cli import main
from reslab.errors import ConfigError
from reslab.models import count_params_and_macs, create_model, model_info
from reslab.models.features import stage_shapes
from reslab.models.weights import load_model, save_weights

IRESNETS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3)}
IRESNETS["iresnet100"] = (3, 13, 30, 3)


# --------------------------------------------------------------- the reference, transcribed for the test


class RefIBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class RefIResNet(nn.Module):
    fc_scale = 7 * 7

    def __init__(self, layers, dropout=0, num_features=512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-05)
            )
        layers = [RefIBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [RefIBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _stir(model: nn.Module) -> nn.Module:
    """Seeded random BN statistics and affine parameters, PReLU slopes: every tensor shapes the output."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
        elif isinstance(m, nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model.eval()


def _shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


# ------------------------------------------------------------------------------------------ IR-ResNets


@pytest.mark.parametrize("name", sorted(IRESNETS))
def test_iresnet_names_shapes_and_counts_are_arcface_torch(name):
    with torch.device("meta"):
        ref = RefIResNet(IRESNETS[name])
        ours = create_model(name)
    assert _shapes(ours) == _shapes(ref)  # same keys, same order, same shapes: backbone.pth loads strictly
    n_ref = sum(p.numel() for p in ref.parameters())
    assert count_params_and_macs(name)[0] == n_ref == model_info(name)["params"]
    frozen = [n for n, p in ours.named_parameters() if not p.requires_grad]
    assert frozen == ["features.weight"]  # the reference's fixed gamma
    with torch.device("meta"):
        plain = create_model(f"{name}_plain")
    projections = {k for k, _ in _shapes(ours) if ".downsample." in k}
    assert len({k.split(".downsample")[0] for k in projections}) == 4  # one per stage, layer1's too
    assert _shapes(plain) == [(k, s) for k, s in _shapes(ours) if k not in projections]
    n_proj = sum(p.numel() for b in ours.blocks for p in b.shortcut.parameters())
    assert sum(p.numel() for p in plain.parameters()) == n_ref - n_proj


def test_iresnet50_has_arcface_torchs_43_6m_parameters():
    # arcface_torch's iresnet50: 43.6M parameters (the transcription above, counted: 43,590,848).
    assert count_params_and_macs("iresnet50")[0] == 43_590_848
    assert count_params_and_macs("iresnet100")[0] == 65_156_160


def test_iresnet_loads_a_backbone_pth_strictly_and_gives_the_references_embedding(tmp_path):
    # fc_scale is a class attribute of the reference: 1 (a 16x16 input, 1x1 final map) keeps this fast;
    # the 112x112 file's names and shapes are the test above's.
    torch.manual_seed(0)
    ref = _stir(type("RefIResNet16", (RefIResNet,), {"fc_scale": 1})(IRESNETS["iresnet18"]))
    path = tmp_path / "backbone.pth"
    torch.save(ref.state_dict(), path)
    ours = create_model("iresnet18", pretrained=path, input_size=16).eval()
    x = torch.randn(2, 3, 16, 16)
    x[:, 1:] = x[:, :1]  # a grey face, channels replicated (how Olivetti reaches a 3-channel network)
    with torch.no_grad():
        want = ref(x)
        assert want.shape == (2, 512)
        torch.testing.assert_close(ours(x), want, rtol=0, atol=0)
        # in_chans=1 sums conv1 over RGB, so the grey image itself gives the same embedding
        with pytest.warns(UserWarning, match="conv1 adapted from 3 to 1"):
            grey = create_model("iresnet18", pretrained=path, in_chans=1, input_size=16).eval()
        torch.testing.assert_close(grey(x[:, :1]), want, rtol=1e-4, atol=1e-4)


def test_iresnet_forward_parts_classifier_and_round_trip(tmp_path):
    model = create_model("iresnet18", in_chans=1, num_classes=0).eval()
    assert model.num_classes == 0 and model.num_features == 512 and model.in_chans == 1
    assert [s[1:] for s in stage_shapes(model, 112, stem=True)] == [
        (64, 112, 112), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)
    ]  # fmt: skip
    model = create_model("iresnet18", in_chans=1, input_size=32).eval()  # 2x2 final map: fast
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        stages = model.forward_stages(x, stem=True)
        torch.testing.assert_close(model.forward_features(x), stages[-1])
        emb = model.forward_head(stages[-1], pre_logits=True)
        torch.testing.assert_close(model.forward_head(stages[-1]), emb)
    model.reset_classifier(5)
    assert model.get_classifier() is model.logits and model.forward_head(stages[-1]).shape == (2, 5)
    save_weights(model, tmp_path / "w.safetensors")
    again, meta = load_model(tmp_path / "w.safetensors")
    assert meta["model_kwargs"] == {"num_classes": 5, "in_chans": 1, "input_size": 32}
    torch.testing.assert_close(again(x), model(x))
    small = create_model("iresnet18", input_size=64).eval()  # Olivetti's own 64x64: a 4x4 final map
    assert small.fc.in_features == 512 * 4 * 4 and small(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    with pytest.raises(ConfigError, match="input_size") as e:
        small(torch.randn(1, 3, 112, 112))
    assert "\n" not in str(e.value)


def test_iresnet_units_are_reslab_units_and_plain_twins_have_no_shortcut():
    small = {"input_size": 16}  # (a small fc: faster to build)
    res, plain = create_model("iresnet18", **small).eval(), create_model("iresnet18_plain", **small).eval()
    assert len(res.blocks) == len(plain.blocks) == 8 and res.stage_names == plain.stage_names
    assert res.stem_names == ("conv1", "bn1", "prelu")
    x = torch.randn(2, 64, 14, 14)
    with torch.no_grad():
        for model, added in ((res, True), (plain, False)):
            unit = model.blocks[1]  # identity shortcut in the residual network
            assert unit.has_shortcut is added and not unit.post_act
            torch.testing.assert_close(unit(x), unit.residual(x) + x if added else unit.residual(x))
            unit.deleted = True
            torch.testing.assert_close(unit(x), x)
            unit.deleted = False
    assert isinstance(res.blocks[0].shortcut, nn.Sequential)  # conv1x1-BN, stride 2 (layer1 too)
    assert sum(p.numel() for p in plain.blocks[0].shortcut.parameters()) == 0
    zero = create_model("iresnet18", zero_init_residual=True, **small).train()
    with torch.no_grad():
        torch.testing.assert_close(zero.blocks[1](x), x)  # the reference's zero-init: bn2's gamma = 0
    with pytest.raises(ConfigError, match="plain"):
        create_model("iresnet18_plain", zero_init_residual=True)
    with pytest.raises(ConfigError, match="shortcuts"):
        create_model("iresnet18_plain", drop_path_rate=0.1)


# --------------------------------------------------------------------------- facenet's InceptionResnetV1


def test_inception_resnet_v1_is_facenets(tmp_path):
    facenet = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch not installed (make install)")
    torch.manual_seed(0)
    ref = _stir(facenet.InceptionResnetV1(classify=True, num_classes=8631))  # a vggface2 file's layout
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(ref.state_dict(), path)
    ours = create_model("inception_resnet_v1", pretrained=path).eval()  # the embedder: logits unused
    assert sum(p.numel() for p in ours.parameters()) == model_info("inception_resnet_v1")["params"]
    assert (
        model_info("inception_resnet_v1")["params"] == sum(p.numel() for p in ref.parameters()) - 8631 * 513
    )
    x = torch.randn(2, 3, 75, 75)  # any size from 75 up: the equality does not need 160
    with torch.no_grad():
        logits = ref(x)
        ref.classify = False
        emb = ref(x)  # facenet's embedding: L2-normalized
        assert ours(x).shape == (2, 512) and ours.forward_features(x).shape == (2, 1792, 1, 1)
        torch.testing.assert_close(F.normalize(ours(x), p=2, dim=1), emb, rtol=0, atol=0)
        classify = create_model("inception_resnet_v1", pretrained=path, num_classes=8631).eval()
        torch.testing.assert_close(classify(x), logits, rtol=0, atol=0)
    assert list(classify.state_dict()) == list(ref.state_dict())
    assert classify.get_classifier() is classify.logits
    assert len(ours.blocks) == 5 + 10 + 5 + 1 and not ours.blocks[-1].post_act


# ------------------------------------------------------------------------------- timm's v2


def test_inception_resnet_v2_is_timms():
    timm = pytest.importorskip("timm", reason="timm (the dev extra) not installed")
    torch.manual_seed(0)
    ref = _stir(timm.create_model("inception_resnet_v2", pretrained=False, num_classes=10))
    ours = create_model("inception_resnet_v2", num_classes=10).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert model_info("inception_resnet_v2")["params"] == 55_843_464  # timm 1.0.31's count, 1000 classes
    x = torch.randn(2, 3, 75, 75)  # any size from 75 up: the equality does not need 299
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    assert ours.get_classifier() is ours.classif and ours.num_features == 1536
    assert len(ours.blocks) == 10 + 20 + 9 + 1


def test_face_models_in_the_catalogue(capsys):
    assert main(["models", "--info", "iresnet50"]) == 0
    out = capsys.readouterr().out
    assert "43,590,848" in out and "face-embedding" in out
    assert main(["models", "iresnet*"]) == 0
    assert "iresnet100_plain" in capsys.readouterr().out


def test_face_models_registry_task_and_features_only():
    info = model_info("iresnet50")
    assert (info["task"], info["num_classes"], info["input_size"]) == ("face-embedding", 0, (3, 112, 112))
    assert model_info("inception_resnet_v1")["input_size"] == (3, 160, 160)
    assert model_info("inception_resnet_v2")["task"] == "image-classification"
    with pytest.raises(ConfigError, match="features_only applies to image models"):
        create_model("iresnet18", features_only=True)
    with torch.device("meta"):  # timm's feature index 0 (conv2d_2b), then the stages
        feats = create_model("inception_resnet_v2", features_only=True, out_indices=(0, 1, 3, 7))
    assert feats.feature_info.channels() == [64, 320, 1088, 1536]
    assert feats.feature_info.module_name() == ["stem", "repeat", "repeat_1", "conv2d_7b"]


@pytest.mark.parametrize("name", ["iresnet18", "iresnet18_plain"])
def test_iresnet_shape_count_equals_flop_counter(name):
    from reslab.models.registry import flop_counter_macs

    model = create_model(name, input_size=(40, 24), num_classes=3, in_chans=1)  # odd shapes, a classifier
    assert model.count_macs((40, 24)) == flop_counter_macs(model, (1, 40, 24))
