"""The video and super-resolution tasks behind the loop's seam (:class:`~reslab.tasks.base.LoaderTask`), without the loop.

Each test builds the task from a training config and a single-process CPU :class:`Runtime`, as the engine
does, and checks what the loop relies on: the loss falls under a few SGD steps through ``forward``,
``evaluate`` gives every metric it names, the loader's state continues with the very next batch (also
through the loop's world-independent ``loader_state``), and "best" is chosen on the validation split,
never the test split. Video clips are built from the real Fashion-MNIST (skipped where absent) into a
temporary cache; the super-resolution photographs ship with scikit-image.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from reslab.config import TrainConfig
from reslab.data import find_dataset
from reslab.data.sr import PatchSampler, photograph, sr_data
from reslab.errors import ConfigError
from reslab.models.weights import save_weights
from reslab.tasks import LOADER_TASKS, upscaling, video
from reslab.tasks import super_resolution as sr
from reslab.tasks.base import Dist, Runtime
from reslab.tasks.loader_task import LoaderTask
from reslab.train.distributed import load_loader_state, loader_state

SR_METRICS, VIDEO_METRICS = sr.METRICS, video.METRICS


def LoaderTraining(cfg: Any, rt: Runtime) -> LoaderTask:
    return LOADER_TASKS[cfg.task](cfg, rt)


@dataclasses.dataclass
class TaskConfig(TrainConfig):
    """The training config with the two fields the loop's generalized seam adds (``task``, ``task_kwargs``)."""

    task: str = "video"
    task_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


RT = Runtime(torch.device("cpu"), Dist(), False, None)
CLIPS = {"frames": 4, "size": 32, "speeds": [1], "train_clips": 160, "test_clips": 48}


def video_config(**changes: Any) -> TaskConfig:
    kw = {"depth": 10, "width": 8, "conv": "2plus1d"}
    return dataclasses.replace(
        TaskConfig(task="video", model="video_resnet", model_kwargs=kw, task_kwargs=CLIPS, val_split=32),
        batch_size=16, iterations=10, **changes,
    )  # fmt: skip


def sr_config(**changes: Any) -> TaskConfig:
    kw = {"units": 2, "width": 8}
    return dataclasses.replace(
        TaskConfig(task="sr", model="edsr_baseline_x4", model_kwargs=kw, task_kwargs={"patch": 12}),
        batch_size=8, iterations=10, **changes,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two contending with other work on a small machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def clip_cache(tmp_path, monkeypatch):
    if find_dataset("fashion-mnist") is None:
        pytest.skip("Fashion-MNIST files not found")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the clips' cache (reslab.data.default_root)


def sgd_losses(task: LoaderTask, model: torch.nn.Module, batch: Any, steps: int, lr: float) -> list[float]:
    """The losses of ``steps`` SGD updates on one fixed batch through the task's ``forward``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss, errors, n = task.forward(model, batch)
        assert loss.dtype == torch.float32 and errors.dtype == torch.long and n == len(batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_resumes_exactly(make: Any) -> None:
    """Three batches, save, the next batch; a new task restored from the state gives that batch."""
    first = make()
    it = first.loader.batches()
    for _ in range(3):
        next(it)
    state = loader_state(first.loader, RT.dist)
    expected = next(it)
    again = make()
    load_loader_state(again.loader, json.loads(json.dumps(state)), RT.dist)  # the checkpoint's JSON types
    got = next(again.loader.batches())
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


# ---------------------------------------------------------------------------------------------- video


def test_video_task_learns_evaluates_resumes_and_selects_on_validation(clip_cache):
    cfg = video_config()
    task = LoaderTraining(cfg, RT)
    assert (task.metric_names, task.higher_is_better, task.counts_errors) == (VIDEO_METRICS, False, True)
    assert task.eval_splits == ("val", "test") and task.selection == "val_error"
    info = json.loads(json.dumps(task.info))  # JSON, as stored in every checkpoint
    assert info["task"] == "video" and info["input_size"] == [1, 4, 32, 32] and len(info["classes"]) == 40
    assert (info["num_train"], info["num_val"], info["num_test"]) == (128, 32, 48)
    assert info["clip_spec"]["frames"] == 4 and "sha256" in info["source"]
    assert "128 train, 32 val, 48 test clips" in task.describe()
    assert len(task.loader) == 128 // 16

    torch.manual_seed(0)
    model = task.build_model(cfg, init=True)
    assert (model.num_classes, model.in_chans) == (40, 1)
    batch = next(task.loader.batches())
    assert batch[0].shape == (16, 1, 4, 32, 32)
    losses = sgd_losses(task, model, batch, steps=12, lr=0.05)
    assert losses[0] > 3.0 and losses[-1] < 0.6 * losses[0], losses  # ~ln 40 = 3.69 at the start

    metrics = {split: task.evaluate(split, model) for split in task.eval_splits}
    for m in metrics.values():
        assert tuple(m) == VIDEO_METRICS and all(math.isfinite(v) for v in m.values())
        assert 0 <= m["garment_error"] <= m["error"] <= 100 and 0 <= m["direction_error"] <= m["error"]
    # "best" follows the validation error, whatever the test error says
    assert task.select({"val": {"error": 40.0}, "test": {"error": 10.0}}, 5.0) == ("val_error", 40.0)
    assert_resumes_exactly(lambda: LoaderTraining(cfg, RT))

    no_val = LoaderTraining(dataclasses.replace(cfg, val_split=0, eval_test=False), RT)
    assert no_val.eval_splits == () and no_val.select({}, 12.5) == ("train_error", 12.5)


def test_video_run_evaluation_from_a_checkpoint(clip_cache, tmp_path):
    cfg = video_config()
    task = LoaderTraining(cfg, RT)
    model = task.build_model(cfg, init=True).eval()
    run = tmp_path / "run"
    meta = {"config": cfg.to_dict() | {"data": task.info}, "step": 7}
    save_weights(model, run / "checkpoints" / "best.safetensors", meta)
    r = video.evaluate_video_run(run, device="cpu")
    assert r["step"] == 7 and r["data_matches"] and (run / "eval.json").is_file()
    assert r["test"]["error"] == pytest.approx(task.evaluate("test", model)["error"])
    assert r["val"]["clips"] == 32 and set(r["test"]["per_direction_accuracy"]) == {
        "right",
        "left",
        "down",
        "up",
    }
    assert len(r["test"]["per_class_accuracy"]) == 40 and len(r["test"]["per_garment_accuracy"]) == 10
    assert sum(map(sum, r["test"]["direction_confusion"]["matrix"])) == 48


def test_video_options_are_checked_in_one_line(clip_cache):
    with pytest.raises(ConfigError, match="unknown clip option 'clips'"):
        LoaderTraining(video_config(task_kwargs={"clips": 10}), RT)
    with pytest.raises(ConfigError, match="super-resolution"):
        LoaderTraining(video_config(model="edsr_baseline_x4"), RT)


# ----------------------------------------------------------------------------------- super-resolution


def test_sr_validation_band_is_cut_from_the_training_photographs_before_downsampling():
    data = sr_data(4, val_rows=96)
    assert data.val_names == ("astronaut-bottom", "rocket-bottom", "motorcycle-bottom")
    assert not set(data.val_names) & set(data.test_names)
    for name, train_hr, val_hr, val_lr in zip(data.train_names, data.train_hr, data.val_hr, data.val_lr):
        full = photograph(name)[:, : photograph(name).shape[1] // 4 * 4, : photograph(name).shape[2] // 4 * 4]
        assert torch.equal(torch.cat([train_hr, val_hr], 1), full) and val_hr.shape[1] == 96
        assert val_lr.shape[1:] == (24, full.shape[2] // 4)
    assert sr_data(4).val_names == ()  # the raw data holds nothing out unless asked


def test_sr_task_learns_evaluates_resumes_and_selects_on_validation():
    cfg = sr_config()
    task = LoaderTraining(cfg, RT)
    assert (task.metric_names, task.higher_is_better, task.counts_errors) == (SR_METRICS, True, False)
    assert task.eval_splits == ("val", "test") and task.selection.startswith("val_psnr")
    info = json.loads(json.dumps(task.info))
    assert (info["task"], info["scale"], info["patch"], info["val_rows"]) == ("super-resolution", 4, 12, 96)
    assert info["val_images"] == ["astronaut-bottom", "rocket-bottom", "motorcycle-bottom"]
    assert not set(info["val_images"]) & set(info["test_images"]) and len(info["sha256"]) == 64

    torch.manual_seed(0)
    model = task.build_model(cfg, init=True)
    batch = next(task.loader.batches())
    assert batch[0].shape == (8, 3, 12, 12) and batch[1].shape == (8, 3, 48, 48)
    assert int(task.forward(model, batch)[1]) == 0  # no errors to count
    losses = sgd_losses(task, model, batch, steps=30, lr=0.1)  # L1: slow under plain SGD, but falling
    assert losses[-1] < 0.6 * losses[0], losses[::5]

    metrics = {split: task.evaluate(split, model) for split in task.eval_splits}
    for m in metrics.values():
        assert tuple(m) == SR_METRICS and all(math.isfinite(v) for v in m.values()) and 0 < m["ssim"] <= 1
    assert metrics["val"]["bicubic_psnr"] != metrics["test"]["bicubic_psnr"]  # different images
    # "best" follows the validation PSNR (higher is better), never the test photographs'
    assert task.select({"val": {"psnr": 25.0}, "test": {"psnr": 31.0}}, 0.0) == ("val_psnr", 25.0)
    assert_resumes_exactly(lambda: LoaderTraining(cfg, RT))


def test_sr_patches_are_the_same_for_every_world_size():
    data = sr_data(2, images={"a": photograph("chelsea")[:, :64, :96]}, train=("a",), test=())
    whole = PatchSampler(data, 8, 6, seed=3).batch(4)
    parts = [PatchSampler(data, 8, 3, seed=3, shard=(r, 2)).batch(4) for r in range(2)]
    assert all(torch.equal(torch.cat([p[i] for p in parts]), whole[i]) for i in range(2))
    s = PatchSampler(data, 8, 6, seed=3)
    s.load_state_dict({"epoch": 2, "position": 1, "batch_size": 6})
    assert s.step == 2 * len(s) + 1 and s.state_dict()["position"] == 1


def test_sr_options_are_checked_in_one_line():
    for options, match in (
        ({"val_rows": 0}, "validation band"),
        ({"scale": 2}, "does not match"),
        ({"loss": "l3"}, "loss must be"),
        ({"patches": 8}, "unknown super-resolution option 'patches'"),
    ):
        with pytest.raises(ConfigError, match=match):
            LoaderTraining(sr_config(task_kwargs=options), RT)
    with pytest.raises(ConfigError, match="val_split"):
        LoaderTraining(sr_config(val_split=5), RT)
    with pytest.raises(ConfigError, match="in_chans"):
        LoaderTraining(sr_config(), RT).build_model(sr_config(model_kwargs={"in_chans": 1}), init=True)


def test_upscale_in_tiles_matches_the_whole_image_and_files_keep_their_kind(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    from reslab.models import create_model

    model = create_model("edsr_baseline_x2", units=2, width=8).eval()
    lr = photograph("coffee")[:, :40, :52]
    whole, tiled = upscaling.upscale(model, lr), upscaling.upscale(model, lr, tile=16)
    assert tiled.shape == (3, 80, 104) and (whole.int() - tiled.int()).abs().max() <= 1
    assert upscaling.context_radius(model) == 8  # head 1 + 2 x 2 units + body end 1 + upsampler 1 + tail 1/2

    rgb = lr.permute(1, 2, 0).numpy()
    for mode, src in (("RGB", Image.fromarray(rgb)), ("L", Image.fromarray(rgb).convert("L"))):
        Image.Image.save(src, tmp_path / f"in_{mode}.png")
        out = upscaling.upscale_file(
            model, tmp_path / f"in_{mode}.png", tmp_path / f"out_{mode}.png", tile=16
        )
        with Image.open(out) as im:
            assert (im.mode, im.size) == (mode, (104, 80))
    with Image.open(tmp_path / "out_RGB.png") as im:
        assert np.array_equal(np.asarray(im).transpose(2, 0, 1), tiled.numpy())


def test_sr_run_evaluation_from_a_checkpoint(tmp_path):
    cfg = sr_config()
    task = LoaderTraining(cfg, RT)
    model = task.build_model(cfg, init=True).eval()
    meta = {"config": cfg.to_dict() | {"data": task.info}, "step": 3}
    save_weights(model, tmp_path / "run" / "checkpoints" / "best.safetensors", meta)
    r = sr.evaluate_sr_run(tmp_path / "run", device="cpu")
    assert r["data_matches"] and r["scale"] == 4 and (tmp_path / "run" / "eval.json").is_file()
    assert r["val"]["psnr"] == pytest.approx(task.evaluate("val", model)["psnr"])
    assert set(r["test"]) >= {"psnr/chelsea", "bicubic_ssim/coffee", "psnr_gain_over_bicubic"}
