"""Detection and segmentation metrics, from kept libraries.

- Detection: COCO's mAP@[.5:.95] (``map``), mAP@.5 (``map_50``) and mAP@.75, computed by torchmetrics'
  ``MeanAveragePrecision`` with the pycocotools backend (the COCO evaluation code itself: 101-point
  interpolated precision, up to 100 detections per image, classes without ground truth left out). With
  masks (Mask R-CNN) the same numbers on masks: ``mask_map``, ``mask_map_50``.
- Segmentation: the mean intersection over union of PASCAL VOC / Cityscapes (Long et al. 2015, Sec. 5):
  one confusion matrix over every pixel of the evaluation set, IoU_c = TP / (TP + FP + FN) per class, mean
  over the classes present in the ground truth or the prediction (the background counts as a class, as
  VOC's 21). The confusion matrix is a ``bincount`` here; the tests check it against torchmetrics'
  ``MulticlassJaccardIndex``, which averages the same way.
- Super-resolution (as SRResNet, EDSR and most SR papers report): images are quantized to uint8 first,
  PSNR and SSIM are computed by scikit-image (``skimage.metrics``) on the luminance Y of ITU-R BT.601
  (``skimage.color.rgb2ycbcr``, Y in [16, 235], as MATLAB's ``rgb2ycbcr``) with a data range of 255, after
  removing ``shave`` pixels (the scale factor) at every border. SSIM uses Wang et al. 2004's settings: an
  11 x 11 Gaussian window with sigma 1.5 and population covariances, K1 = 0.01, K2 = 0.03. One-channel
  images are used as they are.
- Classification (video too): top-1 :func:`accuracy` in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reslab._device import autocast_ctx
from reslab.errors import ConfigError

__all__ = [
    "DetectionMetric",
    "SegmentationMetric",
    "accuracy",
    "confusion_matrix",
    "iou_from_confusion",
    "luminance",
    "psnr",
    "ssim",
]


class DetectionMetric:
    """COCO mAP over a stream of ``(predictions, targets)`` batches in torchvision's format.

    ``predictions``: per image ``{"boxes": (N, 4) xyxy, "scores": (N,), "labels": (N,)[, "masks": (N, 1, H, W)
    probabilities or (N, H, W) bool]}``; ``targets``: ``{"boxes", "labels"[, "masks" (K, H, W)]}``.
    ``masks=True`` adds the mask mAP (predicted masks thresholded at ``mask_threshold``, Mask R-CNN's 0.5).
    """

    def __init__(self, *, masks: bool = False, mask_threshold: float = 0.5, per_class: bool = False) -> None:
        try:
            from torchmetrics.detection import MeanAveragePrecision
        except ImportError:  # pragma: no cover - a dependency of reslab
            raise ConfigError(
                "detection metrics need torchmetrics and pycocotools: pip install reslab"
            ) from None
        self.masks, self.mask_threshold, self.per_class = masks, mask_threshold, per_class
        iou_type: Any = ("bbox", "segm") if masks else "bbox"
        self._map = MeanAveragePrecision(iou_type=iou_type, backend="pycocotools")
        # per class: box AP@[.5:.95] and AP@.5 (torchmetrics gives per-class values of its mAP only)
        self._per_class = (
            {
                "ap": MeanAveragePrecision(iou_type="bbox", backend="pycocotools", class_metrics=True),
                "ap_50": MeanAveragePrecision(
                    iou_type="bbox", backend="pycocotools", class_metrics=True, iou_thresholds=[0.5]
                ),
            }
            if per_class
            else {}
        )
        self.images = 0

    def update(
        self, predictions: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]]
    ) -> None:
        if len(predictions) != len(targets):
            raise ConfigError(f"{len(predictions)} predictions for {len(targets)} targets")
        preds, tgts = [], []
        for p, t in zip(predictions, targets):
            p2 = {k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")}
            t2 = {k: t[k].detach().cpu() for k in ("boxes", "labels")}
            if self.masks:
                m = p["masks"].detach().cpu()
                m = m[:, 0] if m.ndim == 4 else m
                p2["masks"] = m > self.mask_threshold if m.is_floating_point() else m.bool()
                t2["masks"] = t["masks"].detach().cpu().bool()
            preds.append(p2)
            tgts.append(t2)
        self._map.update(preds, tgts)
        for m in self._per_class.values():
            m.update(
                [{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
                [{k: t[k] for k in ("boxes", "labels")} for t in tgts],
            )
        self.images += len(preds)

    def compute(self) -> dict[str, float]:
        """``map``, ``map_50``, ``map_75``, ``mar_100`` (and ``mask_*`` with masks), as floats in [0, 1];
        with ``per_class``, also ``ap`` (box AP@[.5:.95]) and ``ap_50``: lists indexed by label, NaN for a
        label never seen in truth or prediction."""
        if not self.images:
            raise ConfigError("no images were evaluated")
        r = self._map.compute()
        out: dict[str, Any] = {}
        keys = ("map", "map_50", "map_75", "mar_100")
        for prefix, src in (("bbox", ""), ("segm", "mask_")) if self.masks else (("", ""),):
            for k in keys:
                v = float(r[f"{prefix}_{k}" if prefix else k])
                out[src + k] = v if v >= 0 else math.nan  # COCO's -1: nothing to evaluate
        for key, m in self._per_class.items():
            res = m.compute()
            classes = [int(c) for c in res["classes"].reshape(-1).tolist()]
            values = [float(v) for v in res["map_per_class"].reshape(-1).tolist()]
            per = [math.nan] * (max(classes, default=-1) + 1)
            for c, v in zip(classes, values):
                per[c] = v if v >= 0 else math.nan  # COCO's -1: no ground truth of that class
            out[key] = per
        return out


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted class.

    ``pred`` and ``target`` are integer class maps of the same shape; pixels whose target is
    ``ignore_index`` are left out; a value outside ``[0, num_classes)`` is an error.
    """
    if pred.shape != target.shape:
        raise ConfigError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if p.numel() and (min(int(p.min()), int(t.min())) < 0 or max(int(p.max()), int(t.max())) >= num_classes):
        raise ConfigError(f"class index outside [0, {num_classes})")
    return (
        torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()
    )


def iou_from_confusion(confmat: torch.Tensor) -> dict[str, Any]:
    """``miou`` (mean over classes with a non-empty union), ``iou`` (per class, NaN where the class is
    neither in the truth nor in the prediction), ``pixel_acc`` and ``miou_fg`` (without class 0)."""
    cm = confmat.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    present = ~iou.isnan()
    total = cm.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else math.nan,
        "miou_fg": float(iou[1:][present[1:]].mean()) if present[1:].any() else math.nan,
        "pixel_acc": float(tp.sum() / total) if total > 0 else math.nan,
        "iou": [float(v) for v in iou],
    }


class SegmentationMetric:
    """mIoU over a stream of batches: ``update(logits_or_classes, target)``, then ``compute()``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confmat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: class maps (B, H, W) or logits (B, C, H, W) (argmax taken); ``target``: (B, H, W)."""
        if pred.is_floating_point() and pred.ndim == target.ndim + 1:
            pred = pred.argmax(1)
        self.confmat += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        if not int(self.confmat.sum()):
            raise ConfigError("no pixels were evaluated")
        return iou_from_confusion(self.confmat)


# ------------------------------------------------------------------ super-resolution, classification


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(1) == labels).double().mean() * 100)


def _hwc_uint8(img: Any) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.dtype != np.uint8:
        raise ConfigError(f"PSNR/SSIM take uint8 images (quantize first), got {a.dtype}")
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    return a if a.ndim == 3 else a[..., None]


def luminance(img: Any) -> np.ndarray:
    """Y (float64, 16-235) of an RGB uint8 image (C, H, W) or (H, W, C); a one-channel image as float64."""
    from skimage.color import rgb2ycbcr

    a = _hwc_uint8(img)
    if a.shape[-1] == 1:
        return a[..., 0].astype(np.float64)
    if a.shape[-1] != 3:
        raise ConfigError(f"luminance needs 1 or 3 channels, got {a.shape[-1]}")
    return rgb2ycbcr(a)[..., 0]


def _pair(pred: Any, target: Any, shave: int) -> tuple[np.ndarray, np.ndarray]:
    p, t = luminance(pred), luminance(target)
    if p.shape != t.shape:
        raise ConfigError(f"images differ in size: {p.shape} vs {t.shape}")
    if shave:
        p, t = p[shave:-shave, shave:-shave], t[shave:-shave, shave:-shave]
    return p, t


def psnr(pred: Any, target: Any, shave: int = 0) -> float:
    """PSNR in dB of uint8 ``pred`` against ``target`` on Y (module docstring); inf if identical."""
    from skimage.metrics import peak_signal_noise_ratio

    p, t = _pair(pred, target, shave)
    if np.array_equal(p, t):
        return float("inf")
    return float(peak_signal_noise_ratio(t, p, data_range=255))


def ssim(pred: Any, target: Any, shave: int = 0) -> float:
    """SSIM (Wang et al. 2004) of uint8 ``pred`` against ``target`` on Y (module docstring)."""
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, target, shave)
    return float(
        structural_similarity(
            t, p, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def plot_confusion(cm: torch.Tensor, classes: list[str], path: Path, title: str = "") -> None:
    """A confusion matrix (rows: true class, normalized per row; counts written in the cells) as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reslab._io import write_bytes

    n = len(classes)
    norm = cm.double() / cm.sum(1, keepdim=True).clamp_min(1).double()
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                v = int(cm[i, j])
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------- classifier top-1 / top-5


def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: Any,
    std: Any,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int | None = None,
    tta_flip: bool = False,
    confusion: bool = False,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 error (percent) of ``model`` on uint8 images ``x`` with labels ``y``.

    ``tta_flip`` averages the softmax of each image and its mirror image. ``confusion=True`` adds the
    confusion matrix (rows: true class, columns: predicted) as a CPU int64 tensor.
    """
    from reslab.data import iterate_eval

    nc = int(num_classes or getattr(model, "num_classes", 0) or int(y.max()) + 1)
    batches = iterate_eval(x, y, batch_size, device, mean, std, channels_last=channels_last)
    return evaluate_batches(
        model,
        batches,
        device=device,
        amp_dtype=amp_dtype,
        num_classes=nc,
        tta_flip=tta_flip,
        confusion=confusion,
    )


@torch.inference_mode()
def evaluate_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_classes: int,
    tta_flip: bool = False,
    confusion: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate` over any iterable of normalized ``(images, labels)`` batches (moved to ``device``)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nc = int(num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    cm = torch.zeros(nc * nc, dtype=torch.int64, device=device) if confusion else None
    k = min(5, nc)
    n = 0
    try:
        for xb, yb in batches:
            xb = xb.to(device, non_blocking=True)
            yb = yb.to(device, non_blocking=True)
            if channels_last and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_ctx(device, amp_dtype):
                logits = model(xb)
                if tta_flip:
                    logits = torch.stack([logits, model(xb.flip(3))]).float().softmax(-1).mean(0).log()
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            pred = logits.topk(k, dim=1).indices
            hit = pred == yb[:, None]
            top1 += (~hit[:, 0]).sum()
            top5 += (~hit.any(dim=1)).sum()
            if cm is not None:
                cm += torch.bincount(yb * nc + pred[:, 0], minlength=nc * nc)
            n += len(yb)
    finally:
        model.train(was_training)
    out: dict[str, Any] = {
        "n": n,
        "loss": loss_sum.item() / max(n, 1),
        "top1_error": 100.0 * top1.item() / max(n, 1),
        "top5_error": 100.0 * top5.item() / max(n, 1),
    }
    if cm is not None:
        out["confusion"] = cm.view(nc, nc).cpu()
    return out
