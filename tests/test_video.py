"""3D ResNets against torchvision and Hara et al.; Moving Fashion-MNIST clips; the video task interface.

Parameter counts: torchvision's (r3d_18 33,371,472; mc3_18 11,695,440; r2plus1d_18 31,505,325, the numbers
of its model docs); Hara et al.'s 3D ResNets are derived from them below. Clip tests use hand-made
28x28 "garments" whose pixel values encode their class and split, so every claim about the clips (which
images, which direction, which labels) is checked pixel by pixel; the real Fashion-MNIST test skips where
the files are absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from reslab.analysis.gradients import gradient_profile
from reslab.data import ArrayDataset, find_dataset, write_idx
from reslab.data.video import (
    DIRECTIONS,
    ClipLoader,
    ClipSpec,
    clip_factors,
    draw_paths,
    load_moving_fashion,
    moving_clips,
)
from reslab.errors import ConfigError
from reslab.models import count_params_and_macs, create_model, deleted_blocks
from reslab.models.video import mid_channels
from reslab.tasks import TASKS

TORCHVISION_VIDEO = {"r3d_18": 33_371_472, "mc3_18": 11_695_440, "r2plus1d_18": 31_505_325}


def params(name: str, **kw) -> int:
    return count_params_and_macs(name, **kw)[0]


# -------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(("name", "count"), TORCHVISION_VIDEO.items())
def test_video_param_counts_and_macs_match_torchvision(name, count):
    assert params(name) == count
    tv = getattr(torchvision.models.video, name)(weights=None)
    assert sum(p.numel() for p in tv.parameters()) == count
    # torchvision's weight metadata: "_ops" in G multiply-adds for one 3x16x112x112 clip (40.697, ...)
    enum = {"r3d_18": "R3D_18", "mc3_18": "MC3_18", "r2plus1d_18": "R2Plus1D_18"}[name] + "_Weights"
    meta = getattr(torchvision.models.video, enum).KINETICS400_V1.meta
    assert meta["num_params"] == count
    assert round(count_params_and_macs(name)[1] / 1e9, 3) == meta["_ops"]


@pytest.mark.parametrize("name", TORCHVISION_VIDEO)
def test_torchvision_video_state_dict_loads_and_matches(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models.video, name)(weights=None).eval()
    state = tv.state_dict()
    for key, v in state.items():  # non-trivial BN statistics and affine terms, so every tensor matters
        if key.endswith(("running_mean", "bias")):
            v.normal_(0, 0.1)
        elif key.endswith(("running_var", "bn.weight")) or (key.endswith("weight") and v.ndim == 1):
            v.uniform_(0.5, 1.5)
    tv.load_state_dict(state)
    ours = create_model(name).eval()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = tv(x)
        assert expected.abs().max() > 0.01
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)


def test_r2plus1d_mid_channels_follow_torchvision():
    # Tran et al. 2018, Sec. 3.5: M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), t = d = 3
    assert mid_channels(64, 64) == 144 and mid_channels(64, 128) == 230 and mid_channels(128, 128) == 288
    unit = create_model("r2plus1d_18").layer2[0]
    # torchvision uses the unit's (64, 128) for both convolutions: 230, not 288, in the second one
    assert unit.residual.conv1[0][0].out_channels == unit.residual.conv2[0][0].out_channels == 230
    assert create_model("r2plus1d_18").stem[0].out_channels == 45


def test_hara_param_counts_follow_from_torchvision():
    # Hara et al.'s 3D ResNet-18 is r3d_18 with a 7x7x7 instead of a 3x7x7 stem and type-A shortcuts
    # (no projections): 33,235,280. (Counted, not checked against a table of the paper.)
    projections = sum(cin * cout + 2 * cout for cin, cout in ((64, 128), (128, 256), (256, 512)))
    assert params("resnet3d_18") == 33_371_472 - projections + 3 * 64 * (7 * 7 * 7 - 3 * 7 * 7) == 33_235_280
    assert params("resnet3d_34") == 63_544_912
    assert params("resnet3d_50") == 47_018_576  # bottlenecks, type-B shortcuts
    assert params("resnet3d_18", shortcut="B") == 33_235_280 + projections
    assert not any(n.endswith("downsample.0.weight") for n in create_model("resnet3d_18").state_dict())


def test_option_a_shortcut_in_3d_subsamples_time_and_space():
    unit = create_model("resnet3d_18", in_chans=1, num_classes=3).layer2[0]
    x = torch.randn(1, 64, 5, 7, 7)
    s = unit.shortcut(x)
    assert s.shape == (1, 128, 3, 4, 4) == unit.residual(x).shape
    torch.testing.assert_close(s[:, :64], x[:, :, ::2, ::2, ::2])
    assert s[:, 64:].abs().sum() == 0
    # MC3's 2D stages downsample space only, and so does their projection
    mc3 = create_model("mc3_18").layer3[0]
    assert mc3.shortcut[0].stride == (1, 2, 2) and mc3.residual.conv1[0].stride == (1, 2, 2)


def test_video_units_are_residual_units_for_lesions_and_gradients():
    torch.manual_seed(0)
    model = create_model("video_resnet", depth=10, width=8, conv="2plus1d", in_chans=1, num_classes=4).eval()
    x, y = torch.randn(3, 1, 4, 16, 16), torch.tensor([0, 1, 2])
    unit = model.blocks[2]  # the first unit of layer3: (2+1)D, downsampling, projection shortcut
    with torch.no_grad():
        inp = model.layer2(model.layer1(model.stem(x)))
        torch.testing.assert_close(unit(inp), torch.relu(unit.shortcut(inp) + unit.residual(inp)))
        full = model(x)
        with deleted_blocks(model, [2]):
            lesioned = model(x)
            torch.testing.assert_close(unit(inp), unit.shortcut(inp))
        feats = model.layer4(model.layer3[0].shortcut(inp))
        torch.testing.assert_close(lesioned, model.forward_head(feats))
    assert not torch.equal(full, lesioned)
    profile = gradient_profile(model, x, y)
    assert len(profile.input_norm) == len(model.blocks) == 4
    assert (
        (profile.input_norm > 0).all()
        and (profile.shortcut_norm > 0).all()
        and (profile.branch_norm > 0).all()
    )


def test_zero_init_residual_makes_3d_units_identity():
    model = create_model("resnet3d_18", in_chans=1, num_classes=3, zero_init_residual=True).eval()
    x = torch.rand(1, 64, 2, 8, 8)  # non-negative: a ReLU after the identity changes nothing
    with torch.no_grad():
        torch.testing.assert_close(model.layer1[0](x), x)


def test_2d_video_resnet_cannot_see_frame_order():
    # conv="2d": a 2D ResNet per frame, features averaged over time; reversing the clip changes nothing.
    torch.manual_seed(0)
    x = torch.randn(2, 1, 6, 16, 16)
    flat = create_model("video_resnet", depth=10, conv="2d", width=8, in_chans=1, num_classes=4).eval()
    r3d = create_model("video_resnet", depth=10, conv="3d", width=8, in_chans=1, num_classes=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(flat(x.flip(2)), flat(x))
        assert (r3d(x.flip(2)) - r3d(x)).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="clips"):
        flat(torch.randn(1, 1, 16, 16))


# --------------------------------------------------------------------------------------------- clips


def garments(n_train: int, n_test: int) -> ArrayDataset:
    """28x28 'garments' whose pixels encode (split, class): value 10 * (class + 1) + 1 for training images,
    + 2 for test images, with a 4-pixel black border so the path can be read off the frame."""

    def make(n: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
        x[:, :, 4:24, 4:24] = (10 * (y + 1) + offset).to(torch.uint8).view(n, 1, 1, 1)
        return x, y

    (tx, ty), (sx, sy) = make(n_train, 1), make(n_test, 2)
    classes = [f"g{i}" for i in range(10)]
    return ArrayDataset("garments", tx, ty, sx, sy, classes, (0.5,), (0.5,), source="hand-made")


SMALL = ClipSpec(frames=8, size=48, speeds=(1, 2), train_clips=120, test_clips=40, seed=3)


def test_clips_take_train_images_for_train_and_test_images_for_test():
    clips = moving_clips(garments(50, 30), SMALL)
    assert clips.train_x.shape == (120, 1, 8, 48, 48) and clips.train_x.dtype == torch.uint8
    assert clips.test_x.shape == (40, 1, 8, 48, 48) and clips.num_classes == 40 and not clips.flip
    for x, y, offset in ((clips.train_x, clips.train_y, 1), (clips.test_x, clips.test_y, 2)):
        values = x.flatten(1).amax(1).long()
        assert set((values % 10).tolist()) == {offset}  # only that split's images
        garment, _ = clip_factors(y)
        assert torch.equal(values // 10 - 1, garment)  # the label's garment is the image's class
        # the whole garment in every frame: 20 x 20 non-zero pixels per frame
        assert ((x > 0).sum((1, 3, 4)) == 400).all()
    assert clips.classes[:4] == [f"g0, {d}" for d in DIRECTIONS]


def test_clip_labels_give_the_direction_and_the_speed_is_constant():
    clips = moving_clips(garments(50, 30), SMALL)
    x = clips.train_x[:, 0].float()
    grid = torch.arange(48.0)
    mass = x.sum((2, 3))
    cy = (x.sum(3) * grid).sum(2) / mass  # (N, T) centroids
    cx = (x.sum(2) * grid).sum(2) / mass
    dy, dx = cy.diff(dim=1), cx.diff(dim=1)
    _, direction = clip_factors(clips.train_y)
    expected = torch.tensor([(0, 1), (0, -1), (1, 0), (-1, 0)])[direction].float()  # right left down up
    speed = (dy.abs() + dx.abs())[:, 0]
    assert set(speed.tolist()) <= {1.0, 2.0} and len(set(speed.tolist())) == 2
    torch.testing.assert_close(dy, expected[:, :1] * speed[:, None].expand_as(dy))
    torch.testing.assert_close(dx, expected[:, 1:] * speed[:, None].expand_as(dx))
    assert torch.bincount(direction, minlength=4).min() > 15


def test_paths_of_opposite_directions_are_mirror_images():
    # The frame order is the only evidence of the sign of the motion: positions of right-moving paths
    # read backwards are distributed as those of left-moving ones (same for down / up).
    paths = draw_paths(40_000, ClipSpec(), torch.Generator().manual_seed(0))
    d = paths["direction"]
    for pos, fwd, back in (("x", 0, 1), ("y", 2, 3)):
        forward = paths[pos][d == fwd].flip(1).double()
        backward = paths[pos][d == back].double()
        assert (forward.mean(0) - backward.mean(0)).abs().max() < 0.25  # std of a mean here: ~0.08
        assert abs(forward.std() - backward.std()) < 0.2
        assert paths[pos].min() >= 0 and paths[pos].max() <= 64 - 28


def test_clips_are_a_function_of_the_seed():
    ds = garments(50, 30)
    a, b = moving_clips(ds, SMALL), moving_clips(ds, SMALL)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    c = moving_clips(ds, ClipSpec(**{**SMALL.__dict__, "seed": 4}))
    assert not torch.equal(a.train_x, c.train_x)
    with pytest.raises(ConfigError, match="fastest speed is 2"):
        ClipSpec(speeds=(3,))


def write_fake_fmnist(folder, ds: ArrayDataset) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", ds.train_x[:, 0].numpy())
    write_idx(folder / "train-labels-idx1-ubyte", ds.train_y.numpy().astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", ds.test_x[:, 0].numpy())
    write_idx(folder / "t10k-labels-idx1-ubyte", ds.test_y.numpy().astype(np.uint8))


def test_moving_fashion_cache_is_checked_and_rebuilt(tmp_path):
    write_fake_fmnist(tmp_path / "fmnist", garments(50, 30))
    cache = tmp_path / "cache"
    first = load_moving_fashion(SMALL, tmp_path / "fmnist", cache_dir=cache)
    (npz,) = cache.glob("*.npz")
    assert "sha256" in first.source and str(npz) in first.source
    assert first.classes[-1] == "Ankle boot, up" and first.train_x.shape == (120, 1, 8, 48, 48)
    stamp = npz.stat().st_mtime_ns
    again = load_moving_fashion(SMALL, tmp_path / "fmnist", cache_dir=cache)
    assert npz.stat().st_mtime_ns == stamp and torch.equal(again.train_x, first.train_x)
    npz.write_bytes(npz.read_bytes()[:-100])  # a truncated cache: found by its checksum, rebuilt
    rebuilt = load_moving_fashion(SMALL, tmp_path / "fmnist", cache_dir=cache)
    assert torch.equal(rebuilt.test_x, first.test_x) and rebuilt.source == first.source
    other = load_moving_fashion(
        ClipSpec(**{**SMALL.__dict__, "seed": 9}), tmp_path / "fmnist", cache_dir=cache
    )
    assert len(list(cache.glob("*.npz"))) == 2 and not torch.equal(other.train_x, first.train_x)


def test_clip_loader_batches_and_exact_resume():
    clips = moving_clips(garments(50, 30), SMALL)
    kw = {"mean": clips.mean, "std": clips.std, "augment": True, "pad": 4, "seed": 5}
    loader = ClipLoader(clips.train_x, clips.train_y, 16, **kw)
    assert len(loader) == 7
    it = loader.batches()
    xb, _ = next(it)
    assert xb.shape == (16, 1, 8, 48, 48) and xb.dtype == torch.float32
    # each clip is its stored clip shifted by one (dy, dx) in [-4, 4]^2 for all of its frames at once
    raw = (xb * clips.std[0] + clips.mean[0]).mul(255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(clips.train_x[loader.epoch_indices()[:16]], (4, 4, 4, 4))
    for b in range(16):
        shifts = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if torch.equal(padded[b, ..., i : i + 48, j : j + 48], raw[b])
        ]
        assert shifts, f"clip {b}: no single crop gives all of its frames"
    for _ in range(2):
        next(it)
    state = loader.state_dict()
    expected = next(it)
    resumed = ClipLoader(clips.train_x, clips.train_y, 16, **kw)
    resumed.load_state_dict(state)
    got = next(iter(resumed))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.skipif(find_dataset("fashion-mnist") is None, reason="Fashion-MNIST files not installed")
def test_moving_fashion_from_real_fashion_mnist(tmp_path):
    spec = ClipSpec(train_clips=600, test_clips=200)
    ds = load_moving_fashion(spec, cache_dir=tmp_path)
    assert ds.train_x.shape == (600, 1, 16, 64, 64) and ds.num_classes == 40 and not ds.flip
    assert ds.classes[0] == "T-shirt/top, right" and 0.02 < ds.mean[0] < 0.2
    garment, direction = clip_factors(ds.train_y)
    assert torch.bincount(garment, minlength=10).min() > 30 and torch.bincount(direction).min() > 100
    again = load_moving_fashion(spec, cache_dir=tmp_path / "other")
    assert again.source.split("sha256 ")[1] == ds.source.split("sha256 ")[1]  # rebuilt: the same bytes


# -------------------------------------------------------------------------------------- the task


def test_video_task_trains_a_3d_resnet_on_a_fixed_batch():
    from reslab.tasks import video as task

    assert TASKS["video"] is task.Video and task.Video.model_task == "video-classification"
    assert task.Video.metric_names[0] == "error" and not task.Video.higher_is_better
    tiny = ClipSpec(frames=4, size=36, train_clips=32, test_clips=16)
    clips = moving_clips(garments(50, 30), tiny)
    torch.manual_seed(0)
    kw = {
        "depth": 10,
        "width": 8,
        "conv": "2plus1d",
        "in_chans": 1,
        "num_classes": 40,
    }  # the recipe's, narrower
    model = create_model("video_resnet", **kw)
    x, y = next(task.train_loader(clips, 16, seed=0).batches())
    assert x.shape == (16, 1, 4, 36, 36)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.0  # ~ln 40 = 3.69 at the start
    assert losses[-1] < 0.5 * losses[0], losses
    result = task.evaluate(model, clips, batch_size=16)
    assert set(result) == {"loss", "accuracy", "garment_accuracy", "direction_accuracy"}
    assert 0 <= result["accuracy"] <= min(result["garment_accuracy"], result["direction_accuracy"]) <= 100
    meta = task.describe(clips)
    assert (
        meta["input_size"] == [1, 4, 36, 36]
        and len(meta["classes"]) == 40
        and meta["mean"] == list(clips.mean)
    )


def test_video_model_round_trips_through_weights(tmp_path):
    from reslab.models.weights import load_model, save_weights

    kw = {"depth": 10, "width": 8, "conv": "mc3", "in_chans": 1, "num_classes": 40}
    model = create_model("video_resnet", **kw).eval()
    save_weights(model, tmp_path / "v.safetensors")
    again, _ = load_model(tmp_path / "v.safetensors")
    assert again.model_kwargs == kw
    x = torch.rand(2, 1, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model(x))
