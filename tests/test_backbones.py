"""reslab.models.backbones / reslab.models.dense: reslab networks inside torchvision's detectors and
segmenters. What is asserted: torchvision's own FPN backbone and dilated ResNet-50 give the same numbers
as reslab's with the same weights; dilation is the exact "atrous" algorithm for every family; freezing
matches torchvision's ``trainable_layers``; a classification run initializes a detector; the spec rebuilds
a model that takes the same state dict."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

from reslab.errors import CheckpointError, ConfigError
from reslab.models import create_model
from reslab.models.backbones import (
    ResNetFeatures,
    dilate,
    freeze,
    resnet_fpn_backbone,
    stage_channels,
    stage_strides,
)
from reslab.models.blocks import Bottleneck
from reslab.models.dense import aspp_rates, build_from_spec, create_detector, create_segmenter
from reslab.models.weights import save_weights
from reslab.models.zoo import imagenet_resnet

# every family and shortcut option, small enough for a CPU test
FAMILIES = [
    ("resnet20", {}),  # option A
    ("resnet20", {"shortcut": "B"}),
    ("resnet20", {"shortcut": "C"}),
    ("plain20", {}),
    ("highway20", {}),
    ("preact_resnet164", {"depth": 20, "bottleneck": False}),
    ("preact_resnet", {"depth": 11, "bottleneck": True}),
    ("wrn", {"depth": 10, "width": 1}),
    ("resnet18", {}),
    ("plain18", {}),
    ("bottleneck1111", {"stride_in_1x1": True}),  # ResNet-50's units, one per stage, the paper's stride
]


def _build(name: str, kw: dict) -> nn.Module:
    if name == "bottleneck1111":
        return imagenet_resnet(Bottleneck, (1, 1, 1, 1), **kw)
    if name == "preact_resnet164" and "depth" in kw:
        name = "preact_resnet"
    return create_model(name, **kw)


def test_geometry_of_stages():
    with torch.device("meta"):
        r50, r20, pre = create_model("resnet50"), create_model("resnet20"), create_model("preact_resnet164")
    assert stage_strides(r50) == [4, 8, 16, 32] and stage_channels(r50) == [256, 512, 1024, 2048]
    assert stage_strides(r20) == [1, 2, 4]  # no down-sampling stem on CIFAR
    assert stage_channels(r20) == [16, 32, 64] and stage_channels(pre) == [64, 128, 256]


# ----------------------------------------------------------------------------------------- dilation


@pytest.mark.parametrize("output_stride,flags", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilation_equals_torchvision_replace_stride_with_dilation(output_stride, flags):
    torch.manual_seed(0)
    ours = create_model("resnet50").eval()
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=flags).eval()
    theirs.load_state_dict(ours.state_dict())
    assert dilate(ours, output_stride) == (["layer4"] if output_stride == 16 else ["layer3", "layer4"])
    assert stage_strides(ours)[-1] == output_stride
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = nn.Sequential(*list(theirs.children())[:-2])(x)
        got = ours.forward_features(x)
    assert got.shape == want.shape == (1, 2048, 64 // output_stride, 64 // output_stride)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "name,kw", FAMILIES, ids=lambda v: v if isinstance(v, str) else ",".join(map(str, v.values()))
)
def test_dilation_is_the_atrous_algorithm(name, kw):
    """Holschneider et al. 1989 / Chen et al. 2017: replacing a stride by dilation behind it computes the
    same feature map on a denser grid, so subsampling the dilated output gives the original exactly."""
    torch.manual_seed(0)
    base = _build(name, kw).double().eval()
    chans = base.in_chans
    x = torch.randn(2, chans, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = base.forward_features(x)
    native = stage_strides(base)[-1]
    for output_stride in (native // 2, native // 4):
        net = _build(name, kw).double().eval()
        net.load_state_dict(base.state_dict())
        dilate(net, output_stride)
        with torch.no_grad():
            out = net.forward_features(x)
        f = native // output_stride
        assert out.shape[-1] == 64 // output_stride
        scale = ref.abs().max()
        assert (out[:, :, ::f, ::f] - ref).abs().max() <= 1e-12 * scale


def test_dilation_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="choose from 32, 16, 8, 4"):
        dilate(create_model("resnet18"), 12)
    with pytest.raises(ConfigError, match="choose from 4, 2, 1"):
        dilate(create_model("resnet20"), 8)
    net = create_model("resnet18")
    dilate(net, 16)
    with pytest.raises(ConfigError, match="dilated already"):
        dilate(net, 8)


# ---------------------------------------------------------------------------------------------- FPN


@pytest.mark.parametrize("depth,returned", [("resnet18", None), ("resnet18", [2, 3, 4])])
def test_fpn_backbone_is_torchvisions(depth, returned):
    """Same state-dict keys as torchvision's resnet_fpn_backbone (strict load) and the same outputs."""
    torch.manual_seed(0)
    theirs = tv_fpn(
        backbone_name=depth,
        weights=None,
        trainable_layers=5,
        returned_layers=returned,
        norm_layer=nn.BatchNorm2d,
    ).eval()
    ours = resnet_fpn_backbone(depth, returned_layers=returned).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.out_channels == theirs.out_channels == 256
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        got, want = ours(x), theirs(x)
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("trainable", [0, 3, 5])
def test_trainable_layers_as_torchvision(trainable):
    with torch.device("meta"):  # names and flags only
        theirs = _resnet_fpn_extractor(torchvision.models.resnet50(), trainable)
        ours = resnet_fpn_backbone("resnet50", trainable_layers=trainable)
    want = {n for n, p in theirs.body.named_parameters() if p.requires_grad}
    got = {
        n.replace("residual.", "").replace("shortcut.", "downsample.")
        for n, p in ours.body.named_parameters()
        if p.requires_grad
    }
    assert got == want
    assert all(p.requires_grad for p in ours.fpn.parameters())


def test_frozen_layers_do_not_move_in_train_mode():
    net = resnet_fpn_backbone("resnet20", trainable_layers=1).train()  # stem, layer1, layer2 frozen
    assert isinstance(net.body.bn1, FrozenBatchNorm2d) and isinstance(
        net.body.layer2[0].residual.bn1, FrozenBatchNorm2d
    )
    assert isinstance(net.body.layer3[0].residual.bn1, nn.BatchNorm2d)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(2, 3, 32, 32)).__getitem__("0").sum().backward()
    after = net.state_dict()
    for k in before:
        if k.startswith(("body.conv1", "body.bn1", "body.layer1", "body.layer2")):
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["body.layer3.0.bn1.running_mean"], after["body.layer3.0.bn1.running_mean"])
    assert all(p.grad is None for n, p in net.body.named_parameters() if n.startswith("layer2"))
    with pytest.raises(ConfigError, match=r"\[0, 4\]"):
        freeze(create_model("resnet20"), 5)


@pytest.mark.parametrize(
    "name,kw", FAMILIES, ids=lambda v: v if isinstance(v, str) else ",".join(map(str, v.values()))
)
def test_every_family_as_fpn_backbone(name, kw):
    net = _build(name, kw)
    n = len(net.stage_names)
    backbone = resnet_fpn_backbone(net, out_channels=32)
    x = torch.randn(2, net.in_chans, 64, 64)
    out = backbone(x)
    strides = stage_strides(net)
    assert list(out) == [*map(str, range(n)), "pool"]
    for k, s in zip(out, strides):
        assert out[k].shape == (2, 32, 64 // s, 64 // s)
    assert not any(isinstance(m, nn.Linear) for m in backbone.modules())  # the classifier is gone


def test_preact_last_stage_is_normalized_and_truncation():
    net = create_model("preact_resnet", depth=20, bottleneck=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = net.forward_features(x)
        feats = ResNetFeatures(net, {"layer3": "out"})(x)
    torch.testing.assert_close(feats["out"], want)  # final_bn-ReLU applied, as forward_features
    short = ResNetFeatures(create_model("resnet18"), {"layer1": "a", "layer2": "b"})
    assert short.body.stage_names == ("layer1", "layer2") and not hasattr(short.body, "layer3")
    assert short.channels == [64, 128] and short.strides == [4, 8]
    with pytest.raises(ConfigError, match="must name stages"):
        ResNetFeatures(create_model("resnet20"), {"layer4": "out"})


# ----------------------------------------------------------------------------------- heads + specs


def _tiny_targets(n: int, size: int = 64) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        masks = torch.zeros(1, size, size, dtype=torch.uint8)
        masks[0, 8 + i : 40, 10:50] = 1
        out.append(
            {
                "boxes": torch.tensor([[10.0, 8.0 + i, 50.0, 40.0]]),
                "labels": torch.tensor([3]),
                "masks": masks,
            }
        )
    return out


@pytest.mark.parametrize("arch", ["fasterrcnn", "maskrcnn", "retinanet"])
def test_detectors_train_and_predict(arch):
    torch.manual_seed(0)
    small = (  # fewer sampled RoIs and detections than COCO's defaults: a CPU test
        {"detections_per_img": 10}
        if arch == "retinanet"
        else {"box_batch_size_per_image": 32, "rpn_post_nms_top_n_train": 100, "box_detections_per_img": 10}
    )
    model = create_detector(
        arch,
        "resnet20",
        num_classes=11,
        in_chans=1,
        image_mean=[0.3],
        image_std=[0.2],
        min_size=64,
        max_size=64,
        fpn_channels=32,
        **small,
    )
    images = list(torch.rand(2, 1, 64, 64))
    losses = model.train()(images, _tiny_targets(2))
    expected = (
        {"classification", "bbox_regression"}
        if arch == "retinanet"
        else {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
        | ({"loss_mask"} if arch == "maskrcnn" else set())
    )
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
    with torch.no_grad():
        out = model.eval()(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4
    if arch == "retinanet":  # C3-C5 of a CIFAR network = its last two stages, then P6 and P7
        assert model.spec["returned_layers"] == [2, 3]


def test_segmenters_output_stride_and_aux():
    model = create_segmenter("deeplabv3", "resnet18", num_classes=5, aux_loss=True)
    assert model.spec["output_stride"] == 8 and model.spec["atrous_rates"] == [12, 24, 36]
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out["out"].shape == out["aux"].shape == (1, 5, 64, 64)
    assert stage_strides(model.backbone.body)[-1] == 8
    assert aspp_rates(16) == [6, 12, 18] and aspp_rates(8, image_size=128) == [3, 6, 9]
    fcn = create_segmenter("fcn", "resnet20", num_classes=3, in_chans=1, image_mean=[0.5], image_std=[0.2])
    assert fcn.spec["output_stride"] == 4  # a CIFAR network is finer than 8 already
    with pytest.raises(ConfigError, match="image_mean and image_std"):
        create_segmenter("fcn", "resnet20", num_classes=3, in_chans=1)


def test_backbone_from_a_classification_run(tmp_path):
    """A reslab classification checkpoint initializes the backbone; torchvision's defaults for pretrained
    weights apply (3 trainable groups, frozen BN); the spec rebuilds the model without the file."""
    torch.manual_seed(0)
    clf = create_model("resnet20", num_classes=10, in_chans=1)
    with torch.no_grad():
        for m in clf.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    save_weights(clf, run / "best.safetensors", {"dataset": "fashion-mnist"})
    det = create_detector(
        "fasterrcnn",
        "resnet20",
        num_classes=11,
        in_chans=1,
        image_mean=[0.3],
        image_std=[0.2],
        init_from=tmp_path / "run",
        fpn_channels=32,
    )
    body = det.backbone.body
    for k, v in clf.state_dict().items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):  # FrozenBatchNorm2d has none
            torch.testing.assert_close(body.state_dict()[k], v, rtol=0, atol=0)
    assert det.spec["trainable_layers"] == 3 and det.spec["frozen_bn"] is True
    assert not body.conv1.weight.requires_grad and body.layer1[0].residual.conv1.weight.requires_grad
    assert "init_from" not in det.spec and det.spec["backbone_kwargs"] == {"num_classes": 10, "in_chans": 1}

    again = build_from_spec(det.spec)
    again.load_state_dict(det.state_dict(), strict=True)
    seg = create_segmenter(
        "fcn",
        num_classes=11,
        backbone="resnet20",
        init_from=run / "best.safetensors",
        image_mean=[0.3],
        image_std=[0.2],
    )
    torch.testing.assert_close(
        seg.backbone.body.layer3[2].residual.conv2.weight, clf.layer3[2].residual.conv2.weight
    )

    with pytest.raises(ConfigError, match="holds a resnet20, not the requested backbone resnet18"):
        create_detector("fasterrcnn", "resnet18", num_classes=11, init_from=run / "best.safetensors")
    with pytest.raises(ConfigError, match="in_chans=1, not the requested 3"):
        create_detector(
            "fasterrcnn", "resnet20", num_classes=11, in_chans=3, init_from=run / "best.safetensors"
        )
    with pytest.raises(CheckpointError):
        create_detector("fasterrcnn", "resnet20", num_classes=11, init_from=tmp_path / "nothing")
