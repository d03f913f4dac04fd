"""reslab.tasks.metrics on hand-made cases whose answers are known: COCO mAP (torchmetrics + pycocotools)
and mIoU (a confusion matrix, checked against torchmetrics' MulticlassJaccardIndex)."""

from __future__ import annotations

import math

import pytest
import torch

from reslab.errors import ConfigError
from reslab.tasks.metrics import DetectionMetric, SegmentationMetric, confusion_matrix, iou_from_confusion


def _t(boxes, labels, masks=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    if masks is not None:
        out["masks"] = masks
    return out


def _p(boxes, scores, labels, masks=None):
    out = _t(boxes, labels, masks)
    out["scores"] = torch.tensor(scores, dtype=torch.float32)
    return out


def _map(preds, targets, **kw):
    m = DetectionMetric(**kw)
    m.update(preds, targets)
    return m.compute()


def test_perfect_detections_score_one():
    targets = [_t([[0, 0, 40, 40], [50, 50, 90, 100]], [1, 2]), _t([[10, 10, 60, 30]], [1])]
    preds = [_p(t["boxes"].tolist(), [0.9] * len(t["labels"]), t["labels"].tolist()) for t in targets]
    r = _map(preds, targets)
    assert (
        r["map"] == pytest.approx(1.0)
        and r["map_50"] == pytest.approx(1.0)
        and r["mar_100"] == pytest.approx(1.0)
    )


def test_iou_072_counts_at_five_of_ten_thresholds():
    """IoU 0.72: a true positive at 0.50, 0.55, ..., 0.70 and a miss at 0.75 ... 0.95 -> AP 1 at five of
    COCO's ten thresholds: mAP@[.5:.95] = 0.5, mAP@.5 = 1, mAP@.75 = 0."""
    r = _map([_p([[0, 0, 100, 72]], [0.9], [1])], [_t([[0, 0, 100, 100]], [1])])
    assert (
        r["map"] == pytest.approx(0.5)
        and r["map_50"] == pytest.approx(1.0)
        and r["map_75"] == pytest.approx(0.0)
    )


def test_a_confident_false_positive_halves_precision():
    """One object, two detections: a wrong one (score 0.9) before the right one (0.8). Precision is 1/2 at
    recall 1, and COCO's interpolated precision is 1/2 at every recall level: AP = 0.5."""
    r = _map([_p([[200, 200, 240, 240], [0, 0, 40, 40]], [0.9, 0.8], [1, 1])], [_t([[0, 0, 40, 40]], [1])])
    assert r["map_50"] == pytest.approx(0.5)


def test_wrong_class_and_missed_objects():
    """Class 1 found, class 2 predicted as 3: AP(1) = 1, AP(2) = 0 (missed); class 3 has no ground truth and
    is left out of the mean (COCO): mAP = 0.5."""
    targets = [_t([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2])]
    preds = [_p([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 3])]
    assert _map(preds, targets)["map"] == pytest.approx(0.5)


def test_mask_map():
    size = 32
    gt = torch.zeros(1, size, size, dtype=torch.uint8)
    gt[0, 4:20, 4:20] = 1
    half = torch.zeros(1, 1, size, size)
    half[0, 0, 4:20, 4:12] = 0.9  # half of the object: mask IoU 0.5
    target = [_t([[4, 4, 20, 20]], [1], gt)]
    r = _map([_p([[4, 4, 20, 20]], [0.9], [1], gt[:, None].float())], target, masks=True)
    assert r["mask_map"] == pytest.approx(1.0) and r["map"] == pytest.approx(1.0)
    r = _map([_p([[4, 4, 20, 20]], [0.9], [1], half)], target, masks=True)
    assert r["map"] == pytest.approx(1.0)  # the box is right
    assert r["mask_map_50"] == pytest.approx(1.0) and r["mask_map_75"] == pytest.approx(
        0.0
    )  # IoU 0.5 exactly


def test_detection_metric_refusals():
    with pytest.raises(ConfigError, match="no images"):
        DetectionMetric().compute()
    with pytest.raises(ConfigError, match="2 predictions for 1 targets"):
        DetectionMetric().update([_p([], [], [])] * 2, [_t([], [])])


# ------------------------------------------------------------------------------------------------ mIoU


def test_confusion_matrix_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 2]])
    pred = torch.tensor([[0, 0, 1, 0], [0, 1, 1, 2]])
    cm = confusion_matrix(pred, target, num_classes=4)
    assert cm.tolist() == [[3, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    r = iou_from_confusion(cm)
    # IoU0 = 3 / (4 + 4 - 3) = 0.6; IoU1 = 2 / (3 + 3 - 2) = 0.5; IoU2 = 1; class 3 absent: left out
    assert r["iou"][:3] == pytest.approx([0.6, 0.5, 1.0]) and math.isnan(r["iou"][3])
    assert r["miou"] == pytest.approx(0.7) and r["miou_fg"] == pytest.approx(0.75)
    assert r["pixel_acc"] == pytest.approx(6 / 8)


def test_miou_matches_torchmetrics_over_batches():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    ours = SegmentationMetric(6)
    theirs = MulticlassJaccardIndex(num_classes=6, average="macro")
    for _ in range(3):
        target = torch.randint(0, 5, (2, 16, 16), generator=g)  # class 5 never occurs
        logits = torch.randn(2, 6, 16, 16, generator=g) + 3 * torch.nn.functional.one_hot(target, 6).permute(
            0, 3, 1, 2
        )
        ours.update(logits, target)
        theirs.update(logits.argmax(1), target)
    assert ours.compute()["miou"] == pytest.approx(float(theirs.compute()), abs=1e-6)


def test_miou_refusals():
    with pytest.raises(ConfigError, match="outside"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(ConfigError, match="differ in shape"):
        confusion_matrix(torch.zeros(2), torch.zeros(3), 3)
    with pytest.raises(ConfigError, match="no pixels"):
        SegmentationMetric(3).compute()
    cm = confusion_matrix(torch.tensor([1, 2]), torch.tensor([255, 2]), 3, ignore_index=255)
    assert int(cm.sum()) == 1
