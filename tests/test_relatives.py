"""The residual family's relatives: SE-ResNets (Hu et al. 2018) and DenseNets (Huang et al. 2017).

Parameter counts against timm / torchvision / the papers; the SE module sits on the branch before the
addition; a dense layer is ``[x, H(x)]`` and a deleted one ``[x, 0]``. torchvision's DenseNet state
dicts loading with identical outputs is asserted in tests/test_models.py (with every torchvision model).
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from reslab.models import count_params_and_macs, create_model, list_models
from reslab.models.registry import flop_counter_macs


def params(name: str, **kw) -> int:
    return count_params_and_macs(name, **kw)[0]


def test_seresnet50_equals_timm():
    # timm's seresnet50: 28,088,024 parameters = ResNet-50 + 16 SE modules with C/16 hidden units.
    assert params("seresnet50") == 28_088_024
    se = sum(
        2 * c * (c // 16) + c // 16 + c
        for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3))
        for _ in range(n)
    )
    assert params("seresnet50") == params("resnet50") + se
    keys = create_model("seresnet50").state_dict()
    assert keys["layer1.0.se.fc1.weight"].shape == (16, 256, 1, 1)  # timm's names and shapes
    assert keys["layer4.2.se.fc2.bias"].shape == (2048,)
    assert not any("residual" in k for k in keys)


# timm 1.0.31's parameter counts (measured: timm.create_model(name), sum of parameter sizes).
TIMM_SE_PARAMS = {
    "seresnet18": 11_779_624,
    "seresnet34": 21_960_416,
    "seresnet50": 28_088_024,
    "seresnet101": 49_326_872,
    "seresnet152": 66_821_848,
}


@pytest.mark.parametrize("name", list(TIMM_SE_PARAMS))
def test_seresnet_counts_equal_timms(name):
    with torch.device("meta"):  # shapes only: no memory, no initialization
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == TIMM_SE_PARAMS[name]


@pytest.mark.parametrize("name", ["seresnet18", "seresnet34", "seresnet50"])
def test_seresnet_loads_timms_state_dict_with_identical_outputs(name):
    timm = pytest.importorskip("timm", reason="timm (a dev dependency) is not installed")
    torch.manual_seed(0)
    theirs = timm.create_model(name).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_cifar_seresnet_reduction_16():
    # C // 16 hidden units (1, 2, 4 for 16/32/64 channels), per unit 2*C*r + r + C parameters.
    extra = sum(9 * (2 * c * (c // 16) + c // 16 + c) for c in (16, 32, 64))
    assert params("seresnet56") == params("resnet56") + extra == 860_137
    assert params("seresnet20") == 269_722 + sum(3 * (2 * c * (c // 16) + c // 16 + c) for c in (16, 32, 64))


def test_se_scales_the_branch_before_the_addition():
    model = create_model("seresnet20").eval()
    unit = model.blocks[3]  # downsampling unit: option-A shortcut
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        body = unit.residual[:-1](x)  # conv1 ... bn2
        gate = torch.sigmoid(
            unit.residual.se.fc2(torch.relu(unit.residual.se.fc1(body.mean((2, 3), keepdim=True))))
        )
        torch.testing.assert_close(unit(x), torch.relu(unit.shortcut(x) + body * gate))
        unit.residual.se.fc2.bias.fill_(-1e4)  # a closed gate: the unit is relu(shortcut(x))
        torch.testing.assert_close(unit(x), torch.relu(unit.shortcut(x)))


@pytest.mark.parametrize(
    ("name", "kw", "size"),
    [
        ("seresnet20", {}, (3, 32, 32)),
        ("seresnet50", {"stride_in_1x1": True}, (3, 64, 64)),
        ("densenet_bc", {"depth": 16, "growth": 6}, (1, 28, 28)),
        ("densenet121", {}, (3, 65, 65)),
    ],
)
def test_shape_count_equals_flop_counter(name, kw, size):
    model = create_model(name, in_chans=size[0], **kw)
    assert model.count_macs(size[1:]) == flop_counter_macs(model, size)


def test_densenet_counts():
    with torch.device("meta"):
        tv = torchvision.models.densenet201()
    assert params("densenet201") == sum(p.numel() for p in tv.parameters()) == 20_013_928
    assert params("densenet121") == 7_978_856 and params("densenet169") == 14_149_480
    assert params("densenet_bc100") / 1e6 == pytest.approx(0.8, rel=0.05)  # Huang et al. Table 2: 0.8M
    # DenseNet-121 at 224x224: 2.83G multiply-adds (torchvision's published 2.83 GFLOPS)
    assert count_params_and_macs("densenet121")[1] / 1e9 == pytest.approx(2.83, abs=0.01)
    assert len(create_model("densenet_bc100").blocks) == 48


def test_dense_layer_concatenates_and_deletes_to_zeros():
    model = create_model("densenet_bc", depth=16, growth=6).eval()
    unit = model.blocks[1]
    x = torch.randn(2, 18, 8, 8)  # 2k = 12 stem channels + one layer's 6
    with torch.no_grad():
        y = unit(x)
        assert y.shape == (2, 24, 8, 8)
        torch.testing.assert_close(y, torch.cat([x, unit.residual(x)], 1))
        unit.deleted = True
        d = unit(x)
    torch.testing.assert_close(d[:, :18], x)
    assert d[:, 18:].abs().sum() == 0


def test_densenet_stages_and_names():
    model = create_model("densenet121").eval()
    stages = model.forward_stages(torch.randn(1, 3, 64, 64))
    assert [tuple(s.shape[1:]) for s in stages] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (1024, 2, 2)]
    assert model.stem_names == ("features.conv0", "features.norm0")
    assert [len(model.get_submodule(s)) for s in model.stage_names] == [6, 12, 24, 16]
    assert model.get_classifier() is model.classifier and model.num_features == 1024
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_relatives_are_listed():
    assert {"seresnet50", "seresnet56", "densenet121", "densenet_bc100"} <= set(list_models())
    assert list_models()[0] == "resnet20"  # the ResNet zoo first, its relatives after
