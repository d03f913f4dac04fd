"""Issue 30's logic fixes of the task figures: ground-truth boxes carry their class alone (no "1.00"
score); detections keep "class score" at or above the threshold."""

from __future__ import annotations

import torch

from reslab.tasks.detection import box_texts

CLASSES = ["__background__", "T-shirt", "Trouser", "Bag"]


def test_ground_truth_boxes_have_no_score_label():
    truth = {"boxes": torch.tensor([[0.0, 0, 5, 5], [2, 2, 9, 9]]), "labels": torch.tensor([1, 3])}
    keep, texts = box_texts(truth, CLASSES)
    assert keep.tolist() == [True, True] and texts == ["T-shirt", "Bag"]
    assert not any(ch.isdigit() for t in texts for ch in t)


def test_detections_keep_class_and_score_above_the_threshold():
    pred = {
        "boxes": torch.zeros(3, 4),
        "labels": torch.tensor([1, 2, 3]),
        "scores": torch.tensor([0.9, 0.4, 0.5]),
    }
    keep, texts = box_texts(pred, CLASSES, 0.5)
    assert keep.tolist() == [True, False, True] and texts == ["T-shirt 0.90", "Bag 0.50"]
