"""reslab.tasks: the pieces a training loop calls for detection and segmentation, run as a short loop on a
handful of real 64x64 Fashion-MNIST scenes (the loss must fall on a fixed batch), and the ONNX exports of
the resulting models checked with onnxruntime (reslab.deploy.dense)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reslab.data import load_dataset
from reslab.data.scenes import SceneConfig
from reslab.errors import CheckpointError, ConfigError
from reslab.models import create_model
from reslab.models.dense import load_dense, save_dense
from reslab.models.weights import save_weights
from reslab.tasks import scene_ops as get_task

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
SMALL = SceneConfig(size=64, min_scale=14, max_scale=32, max_objects=4)
# fewer sampled RoIs and proposals than COCO's defaults: this is a CPU test
SMALL_RCNN = {
    "fpn_channels": 32,
    "rpn_post_nms_top_n_train": 200,
    "rpn_post_nms_top_n_test": 100,
    "box_batch_size_per_image": 64,
    "box_detections_per_img": 20,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    source = load_dataset("fashion-mnist", data_dir=SYSTEM_FMNIST)
    cache = tmp_path_factory.mktemp("scenes")
    return get_task("detection").load_data(8, 4, seed=0, config=SMALL, cache_dir=cache, source=source)


def _fit(task, model, batch, steps: int, lr: float) -> list[float]:
    """A few SGD steps on one fixed batch: the loop the engine runs, in miniature."""
    torch.manual_seed(0)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        loss, parts = task.loss(model, batch)
        assert all(torch.isfinite(v) for v in parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_flip_moves_boxes_with_masks(data):
    task = get_task("detection")
    g = torch.Generator().manual_seed(0)
    plain = task.batch(data.train, range(8))
    flipped = task.batch(data.train, range(8), augment=True, generator=g)
    n_flipped = 0
    for a, b, xa, xb in zip(plain.targets, flipped.targets, plain.images, flipped.images):
        same = torch.equal(xa, xb)
        n_flipped += not same
        if not same:
            torch.testing.assert_close(xb, xa.flip(-1))
            torch.testing.assert_close(b["masks"], a["masks"].flip(-1))
        for box, mask in zip(b["boxes"], b["masks"]):  # boxes still bound their masks
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert 0 < n_flipped < 8
    seg = get_task("segmentation").batch(
        data.train, range(8), augment=True, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(seg.images, flipped.images)  # the same draws flip the same scenes


def test_detection_loop_and_rebuild(data, tmp_path):
    task = get_task("detection")
    torch.manual_seed(0)
    model = task.build_model(data, arch="fasterrcnn", backbone="resnet20", **SMALL_RCNN)
    assert model.spec["min_size"] == model.spec["max_size"] == 64 and model.spec["num_classes"] == 11
    batch = task.batch(data.train, range(4))
    losses = _fit(task, model, batch, steps=10, lr=0.02)
    assert losses[-1] < 0.6 * losses[0], losses
    metrics = task.evaluate(model, data.test, batch_size=4)
    assert set(metrics) == {"map", "map_50", "map_75", "mar_100"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    # what a checkpoint holds is enough: the spec rebuilds the model, the state dict fills it
    save_dense(model, tmp_path / "run" / "checkpoints" / "best.safetensors", {"step": 10})
    again, meta = load_dense(tmp_path / "run")
    assert meta["step"] == 10 and meta["spec"] == model.spec
    x = batch.images[:2]
    a, b = task.predict(model, x), task.predict(again, x)
    torch.testing.assert_close(a[0]["boxes"], b[0]["boxes"])
    with pytest.raises(ConfigError, match="not detection"):
        task.rebuild({**model.spec, "task": "segmentation"})
    save_weights(create_model("resnet20"), tmp_path / "clf.safetensors")
    with pytest.raises(CheckpointError, match="classification model"):
        load_dense(tmp_path / "clf.safetensors")
    with pytest.raises(ConfigError, match="train mode"):
        task.loss(model.eval(), batch)


def test_segmentation_loop_learns_the_batch(data):
    task = get_task("segmentation")
    torch.manual_seed(0)
    model = task.build_model(data, arch="deeplabv3", backbone="resnet20", aux_loss=True)
    assert model.spec["output_stride"] == 4 and model.spec["atrous_rates"] == [3, 6, 9]  # 16x16 maps
    batch = task.batch(data.train, range(4))
    before = _miou(task, model, batch)
    losses = _fit(task, model, batch, steps=10, lr=0.05)
    assert losses[-1] < 0.6 * losses[0], losses
    assert _miou(task, model, batch) > before
    metrics = task.evaluate(model, data.test, batch_size=4)
    assert 0.0 <= metrics["miou"] <= 1.0 and len(metrics["iou"]) == 11


def _miou(task, model, batch) -> float:
    from reslab.tasks import SegmentationMetric

    m = SegmentationMetric(11)
    m.update(task.predict(model, batch.images), batch.targets)
    return m.compute()["miou"]


def test_mask_rcnn_evaluation_and_drawing(data):
    """Mask R-CNN is scored on boxes and masks; predictions are drawn onto the scene (boxes, masks, class
    maps), leaving the pixels far from them untouched."""
    det_task, seg_task = get_task("detection"), get_task("segmentation")
    torch.manual_seed(0)
    model = det_task.build_model(data, arch="maskrcnn", backbone="resnet20", **SMALL_RCNN)
    metrics = det_task.evaluate(model, data.test.subset(2), batch_size=2)
    assert {"map", "map_50", "mask_map", "mask_map_50"} <= set(metrics)
    image = data.test.images[0]
    truth = data.test.target(0)
    fake = {**truth, "scores": torch.ones(len(truth["labels"])), "masks": truth["masks"][:, None].float()}
    drawn = det_task.draw(image, fake, data.classes)
    assert drawn.shape == (3, 64, 64) and drawn.dtype == torch.uint8
    x1, y1, x2, _ = truth["boxes"][0].int().tolist()
    assert not torch.equal(drawn[:, y1, x1:x2], image.expand(3, -1, -1)[:, y1, x1:x2])  # the box's top edge
    rows = torch.ones(64, dtype=torch.bool)  # rows no box (nor its label text, which may overhang) touches
    for b in truth["boxes"].int().tolist():
        rows[max(b[1] - 2, 0) : max(b[3], b[1] + 14) + 2] = False
    assert rows.any() and torch.equal(drawn[:, rows], image.expand(3, -1, -1)[:, rows])
    assert torch.equal(
        det_task.draw(image, {**fake, "scores": torch.zeros(len(fake["scores"]))}, data.classes)[0], image[0]
    )
    class_map = data.test.semantic([0])[0]
    painted = seg_task.draw(image.float() / 255, class_map, data.num_classes)
    changed = (painted != image.expand(3, -1, -1)).any(0)
    assert torch.equal(changed & (class_map == 0), torch.zeros_like(changed))  # the background is left alone
    assert changed[class_map > 0].float().mean() > 0.9


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown scene task 'pose'"):
        get_task("pose")


@pytest.mark.slow
def test_onnx_exports(data, tmp_path):
    """The segmenter through the dynamo exporter (dynamic batch); the detector, which the dynamo exporter
    cannot take on this torch/torchvision, through the TorchScript one, with the reason recorded; both
    checked against PyTorch with onnxruntime, the detector on detections it really makes."""
    from reslab.deploy.dense import export_dense_onnx

    seg_task, det_task = get_task("segmentation"), get_task("detection")
    torch.manual_seed(0)
    seg = seg_task.build_model(data, arch="fcn", backbone="resnet20")
    r = export_dense_onnx(seg, tmp_path / "seg.onnx", input_size=(1, 64, 64))
    assert r.exporter == "torch.onnx.export(dynamo=True)" and r.max_abs_diff < 1e-3 and not r.per_image
    assert (tmp_path / "seg.onnx").stat().st_size == r.bytes

    det = det_task.build_model(data, arch="fasterrcnn", backbone="resnet20", **SMALL_RCNN)
    _fit(det_task, det, det_task.batch(data.train, range(4)), steps=3, lr=0.02)
    images = det_task.batch(data.test, range(2)).images
    r = export_dense_onnx(det, tmp_path / "det.onnx", images=images)
    assert r.per_image and r.max_abs_diff < 1e-3
    count = int(r.compared.split()[0])
    assert count > 0  # real detections were compared, not two empty lists
    if r.exporter.startswith("torch.onnx.export(dynamo=False"):
        assert "batched_nms" in r.notes[0] or "data-dependent" in r.notes[0], r.notes
    with pytest.raises(ConfigError, match="needs images"):
        export_dense_onnx(det, tmp_path / "x.onnx")
