"""Super-resolution: SRResNet / EDSR-baseline against their papers, the residual ablation switches, PSNR /
SSIM on hand-made cases, the bundled photographs and their bicubic baseline, patches, the task interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reslab.data.sr import SR_TEST, SR_TRAIN, PatchSampler, bicubic_down, bicubic_up, sr_data
from reslab.errors import ConfigError
from reslab.models import count_params_and_macs, create_model, deleted_blocks
from reslab.models.sr import Scale
from reslab.tasks import TASKS, task_class
from reslab.tasks.metrics import accuracy, luminance, psnr, ssim
from reslab.tasks.upscaling import upscale

# ------------------------------------------------------------------------------------------- models


def params(name: str, **kw) -> int:
    return count_params_and_macs(name, **kw)[0]


def test_edsr_baseline_param_counts():
    # Lim et al. 2017, Table 1 ("baseline": 16 units, 64 channels, 1.5M at x4); EDSR's code reports 1.37M /
    # 1.52M. head 3*64*9+64, 16 units x 2 x (64*64*9+64), body end 64*64*9+64, per x2: 64*256*9+256, tail
    # 64*3*9+3. The mean shift is a buffer, not a parameter.
    head, unit, end, up, tail = 1_792, 2 * 36_928, 36_928, 147_712, 1_731
    assert params("edsr_baseline_x2") == head + 16 * unit + end + up + tail == 1_369_859
    assert params("edsr_baseline_x4") == head + 16 * unit + end + 2 * up + tail == 1_517_571


def test_srresnet_param_counts():
    # Ledig et al. 2017, Fig. 4: 9x9 head (+bias) + PReLU; units of two bias-free 3x3 convs with BN and one
    # PReLU; 3x3 conv + BN; per x2 a conv to 256 channels (+bias) and a PReLU; 9x9 tail (+bias).
    head, unit, end, up, tail = (
        3 * 64 * 81 + 64 + 1,
        2 * (64 * 64 * 9 + 128) + 1,
        64 * 64 * 9 + 128,
        147_713,
        15_555,
    )
    assert params("srresnet_x4") == head + 16 * unit + end + 2 * up + tail == 1_547_350
    assert params("srresnet_x2") == 1_547_350 - up == 1_399_637


def test_ablation_switches_keep_the_parameters_and_change_the_function():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 10, 10)
    base = create_model("edsr_baseline_x2").eval()
    plain = create_model("edsr_baseline_x2", residual=False, global_skip=False).eval()
    assert params("edsr_baseline_x2", residual=False, global_skip=False) == params("edsr_baseline_x2")
    plain.load_state_dict(base.state_dict())  # the same weights, other wiring
    assert all(b.has_shortcut for b in base.blocks) and not any(b.has_shortcut for b in plain.blocks)
    with torch.no_grad():
        h = base.head(x - base.mean)
        u = base.blocks[0]
        torch.testing.assert_close(u(h), h + u.residual(h))
        torch.testing.assert_close(plain.blocks[0](h), u.residual(h))
        body = base.body_end(base.body(h))
        torch.testing.assert_close(base.forward_features(x), body + h)
        torch.testing.assert_close(plain.forward_features(x), plain.body_end(plain.body(h)))
        assert base(x).shape == (1, 3, 20, 20) and not torch.allclose(base(x), plain(x))
    scaled = create_model("edsr_baseline_x4", res_scale=0.1)
    assert (
        isinstance(scaled.blocks[0].residual.scale, Scale) and scaled.blocks[0].residual.scale.factor == 0.1
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in base.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in create_model("srresnet_x4").modules()) == 33


def test_sr_lesion_deletes_units_to_the_identity():
    model = create_model("srresnet_x2", in_chans=1).eval()
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad(), deleted_blocks(model, range(16)):
        h = model.head(x)
        torch.testing.assert_close(model.forward_features(x), model.body_end(h) + h)


# ------------------------------------------------------------------------------------------ metrics


def test_psnr_on_hand_made_images():
    a = np.full((1, 32, 32), 100, np.uint8)
    assert psnr(a, a) == math.inf
    # a constant error of 10 grey levels: MSE 100, PSNR = 10 log10(255^2 / 100) = 28.1308 dB
    assert psnr(a + 10, a) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    # +-5 in a checkerboard: MSE 25 -> 34.1514 dB
    b = a.astype(int) + np.where(np.indices((32, 32)).sum(0) % 2 == 0, 5, -5)
    assert psnr(b.astype(np.uint8), a) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    # errors of 100 in the top 2 rows (64 of 1024 pixels, MSE 625): gone once a 2-pixel border is shaved
    c = a.copy()
    c[:, :2] = 0
    assert (
        psnr(c, a) == pytest.approx(10 * math.log10(255**2 / 625), abs=1e-9)
        and psnr(c, a, shave=2) == math.inf
    )
    # RGB is compared on Y (BT.601, 16..235): black vs white differ by 219 -> 20 log10(255 / 219)
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    assert luminance(black)[0, 0] == pytest.approx(16) and luminance(white)[0, 0] == pytest.approx(
        235, abs=0.01
    )
    assert psnr(black, white) == pytest.approx(20 * math.log10(255 / 219), abs=1e-3)
    with pytest.raises(ConfigError, match="uint8"):
        psnr(a.astype(np.float32), a)


def test_ssim_on_hand_made_images():
    a = np.full((1, 32, 32), 100, np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    # constant images have no variance: SSIM is the luminance term (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = (0.01 * 255) ** 2
    assert ssim(a + 10, a) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-9)
    # a contrast-inverted texture is structurally opposite: SSIM < 0
    rng = np.random.default_rng(0)
    t = rng.integers(50, 200, (1, 32, 32)).astype(np.uint8)
    assert ssim((250 - t).astype(np.uint8), t) < -0.5
    assert accuracy(
        torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 0, 0])
    ) == pytest.approx(200 / 3)


# ------------------------------------------------------------------------------------- data, bicubic


def test_bicubic_downsampling_keeps_constants_and_refuses_odd_sizes():
    flat = torch.full((3, 16, 24), 77, dtype=torch.uint8)
    assert torch.equal(bicubic_down(flat, 4), torch.full((3, 4, 6), 77, dtype=torch.uint8))
    assert torch.equal(bicubic_up(bicubic_down(flat, 2), 2), flat)
    with pytest.raises(ConfigError, match="multiple"):
        bicubic_down(torch.zeros(3, 10, 10, dtype=torch.uint8), 4)


def test_default_photographs_and_their_bicubic_baseline():
    data = sr_data(4)
    assert data.train_names == SR_TRAIN and data.test_names == SR_TEST and not set(SR_TRAIN) & set(SR_TEST)
    assert [tuple(im.shape) for im in data.train_hr] == [(3, 512, 512), (3, 424, 640), (3, 500, 740)]
    assert [tuple(im.shape) for im in data.test_lr] == [(3, 75, 112), (3, 100, 150)]
    # measured: bicubic x4 on Y, 4 pixels shaved (torch's antialiased bicubic, skimage's metrics)
    scores = [
        (psnr(bicubic_up(lr, 4), hr, 4), ssim(bicubic_up(lr, 4), hr, 4))
        for lr, hr in zip(data.test_lr, data.test_hr)
    ]
    assert scores[0] == pytest.approx((31.61, 0.810), abs=0.02)  # chelsea
    assert scores[1] == pytest.approx((27.38, 0.767), abs=0.02)  # coffee
    with pytest.raises(ConfigError, match="both"):
        sr_data(2, train=("chelsea",), test=("chelsea",))


def hand_images(scale: int = 2):
    """Smooth random pictures (bilinear blow-ups of 8x8 noise), two for training and one for testing."""
    g = torch.Generator().manual_seed(0)

    def picture(h: int, w: int) -> torch.Tensor:
        noise = torch.rand(1, 3, 8, 8, generator=g) * 255
        return (
            F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[0].round().to(torch.uint8)
        )

    images = {"a": picture(40, 48), "b": picture(32, 36), "t": picture(16, 16)}
    return sr_data(scale, train=("a", "b"), test=("t",), images=images)


def test_patch_sampler_crops_aligned_pairs_and_resumes():
    data = hand_images()
    sampler = PatchSampler(data, 6, 8, seed=1, augment=False)
    lr, hr = sampler.batch(0)
    assert lr.shape == (8, 3, 6, 6) and hr.shape == (8, 3, 12, 12) and lr.min() >= 0 and lr.max() <= 1
    lr_u8, hr_u8 = (lr * 255).round().to(torch.uint8), (hr * 255).round().to(torch.uint8)
    for b in range(8):  # find each LR patch in its image; the HR patch is the aligned crop
        hits = [
            (i, y, x)
            for i, im in enumerate(data.train_lr)
            for y in range(im.shape[1] - 5)
            for x in range(im.shape[2] - 5)
            if torch.equal(im[:, y : y + 6, x : x + 6], lr_u8[b])
        ]
        assert len(hits) == 1
        i, y, x = hits[0]
        assert torch.equal(data.train_hr[i][:, 2 * y : 2 * y + 12, 2 * x : 2 * x + 12], hr_u8[b])
    # augmented: the same flip / rotation on both (re-downsampling the HR patch gives the LR patch back,
    # up to the patch border of the bicubic kernel)
    aug_lr, aug_hr = PatchSampler(data, 6, 64, seed=2).batch(5)
    inner = (bicubic_down((aug_hr * 255).round().to(torch.uint8), 2).float() / 255 - aug_lr)[..., 1:-1, 1:-1]
    assert inner.abs().mean() < 0.05
    # batch k is a function of (seed, k): resume from a state dict
    it = iter(sampler)
    for _ in range(3):
        next(it)
    state = sampler.state_dict()
    expected = next(it)
    resumed = PatchSampler(data, 6, 8, seed=1, augment=False)
    resumed.load_state_dict(state)
    got = next(iter(resumed))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    with pytest.raises(ConfigError, match="larger"):
        PatchSampler(data, 20, 8)


# -------------------------------------------------------------------------------------- the task


def test_sr_task_trains_edsr_on_a_fixed_batch_and_evaluates_against_bicubic():
    from reslab.tasks import super_resolution as task

    assert TASKS["sr"] is TASKS["super-resolution"] is task.SuperResolution
    assert task.SuperResolution.metric_names[0] == "psnr" and task.SuperResolution.higher_is_better
    with pytest.raises(ConfigError, match="unknown task"):
        task_class("captioning")
    data = hand_images()
    torch.manual_seed(0)
    model = create_model("edsr_baseline_x2", units=2, width=16)
    lr, hr = next(task.train_loader(data, 8, patch=6, seed=0).batches())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = task.sr_loss(model(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::5]
    result = task.evaluate(model, data)
    bic = bicubic_up(data.test_lr[0], 2)
    assert result["bicubic_psnr"] == pytest.approx(psnr(bic, data.test_hr[0], 2))
    assert np.isfinite(result["psnr"]) and 0 < result["ssim"] <= 1 and set(result) >= {"psnr/t", "ssim/t"}
    meta = task.describe(data)
    assert meta == {
        "dataset": "skimage-photographs",
        "scale": 2,
        "in_chans": 3,
        "train_images": ["a", "b"],
        "val_images": [],
        "test_images": ["t"],
        "source": "given images",
        "sha256": data.sha256(),
    }
    assert len(meta["sha256"]) == 64 and hand_images().sha256() == meta["sha256"]  # a function of the bytes
    out = upscale(model, data.test_lr[0].permute(1, 2, 0).numpy())  # (h, w, C) arrays too
    assert out.shape == (3, 16, 16) == data.test_hr[0].shape and out.dtype == torch.uint8


def test_ablated_model_round_trips_through_weights(tmp_path):
    from reslab.models.weights import load_model, save_weights

    model = create_model("edsr_baseline_x2", units=2, residual=False, global_skip=False).eval()
    save_weights(model, tmp_path / "plain.safetensors", {"task": "super-resolution"})
    again, meta = load_model(tmp_path / "plain.safetensors")
    assert meta["task"] == "super-resolution" and not again.global_skip
    assert not any(b.has_shortcut for b in again.blocks)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model(x))
