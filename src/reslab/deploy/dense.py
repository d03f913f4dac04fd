"""ONNX export of the dense models (:mod:`reslab.models.dense`), checked with onnxruntime.

- **Segmenters** (DeepLabV3 / FCN): ``torch.onnx.export(dynamo=True)``, the ``torch.export``-based
  exporter, with a dynamic batch; the graph takes normalized images (B, C, H, W) and returns the
  ``"out"`` logits (B, classes, H, W). Checked at batch sizes 1 and 3 against PyTorch.
- **Detectors** (Faster R-CNN / Mask R-CNN / RetinaNet), one image (C, H, W) in [0, 1] -> ``boxes``
  (N, 4), ``scores`` (N,), ``labels`` (N,) (+ ``masks`` (N, 1, H, W)). On torch 2.14 / torchvision 0.29
  the dynamo exporter cannot take them: ``torch.export`` stops at a data-dependent branch in
  torchvision's ``batched_nms`` (``boxes.numel() > 4000`` on a number of boxes known only at run time,
  ``GuardOnDataDependentSymNode``). The TorchScript-based exporter (``dynamo=False``, deprecated by
  PyTorch but the one torchvision's own detection ONNX tests use) traces them; that fallback is taken and
  the result's ``notes`` say why. The check runs the exported graph and PyTorch on the given images and
  compares the detections (same count, labels equal, boxes and scores within ``atol``).

Files are written beside the target and moved into place only once checked (see
:mod:`reslab.deploy.export`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.deploy.export import ExportError, ExportResult, _check_diff, _quiet, _staged
from reslab.errors import ConfigError, first_line
from reslab.models.dense import SEGMENTERS, is_dense_spec

__all__ = ["DenseExportResult", "export_dense_onnx"]


class _SegmentationLogits(nn.Module):
    """``model(x)["out"]``: a tensor, not a dict, for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class _Detections(nn.Module):
    """One image (C, H, W) -> the detector's tensors, in a fixed order."""

    def __init__(self, model: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model, self.keys = model, tuple(keys)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model([image])[0]
        return tuple(out[k] for k in self.keys)


def _export_reason(e: BaseException) -> str:
    """The cause inside a ``TorchExportError`` (its "Exception summary" and "Caused by" lines)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    cause = re.search(r"^<class '([\w.]+)'>: (.*)$", text, re.MULTILINE)
    where = re.search(r"^Caused by: (.*)$", text, re.MULTILINE)
    if not cause:
        return f"{type(e).__name__}: {first_line(e, 200)}"
    reason = f"{cause.group(1).rsplit('.', 1)[-1]}: {cause.group(2).strip()[:160]}"
    return reason + (f"; caused by {where.group(1).strip()[:120]}" if where else "")


@contextlib.contextmanager
def _silent() -> Iterator[None]:
    """The exporters' warnings, prints and graph dumps (stdout and stderr) swallowed."""
    with _quiet(), contextlib.redirect_stderr(io.StringIO()):
        yield


@dataclasses.dataclass
class DenseExportResult(ExportResult):
    """:class:`~reslab.deploy.export.ExportResult` of a dense model; ``per_image``: the graph takes one
    image (detectors) rather than a batch."""

    per_image: bool = False
    compared: str = ""  # what the check compared

    def summary(self) -> str:
        c, h, w = self.input_size
        shape = f"one image {c}x{h}x{w}" if self.per_image else f"Nx{c}x{h}x{w}, dynamic batch"
        lines = [f"exported onnx -> {self.out} ({self.bytes / 1e6:.2f} MB, {self.exporter}, input {shape})"]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(
            f"verification (onnxruntime): {self.compared}, max abs diff {self.max_abs_diff:.3g} (< {self.atol:g}: ok)"
        )
        return "\n".join(lines)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export_segmenter(
    model: nn.Module, tmp: Path, input_size: Sequence[int], atol: float
) -> tuple[str, float]:
    wrapped = _SegmentationLogits(model).eval()
    example = torch.randn(2, *input_size)
    try:
        with _silent():
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                input_names=["image"],
                output_names=["logits"],
                external_data=False,
            )
    except Exception as e:
        raise ExportError(
            f"ONNX export of the segmenter failed: {type(e).__name__}: {first_line(e, 200)}"
        ) from None
    sess = _session(tmp)
    g = torch.Generator().manual_seed(0)
    diff = 0.0
    with torch.no_grad():
        for b in (1, 3):
            x = torch.randn(b, *input_size, generator=g)
            got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
            want = wrapped(x)
            if got.shape != want.shape:
                raise ExportError(f"ONNX logits have shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
            diff = max(diff, (got - want).abs().max().item())
    _check_diff(diff, atol, "the ONNX segmenter (onnxruntime)")
    return "torch.onnx.export(dynamo=True)", diff


def _export_detector(
    model: nn.Module, tmp: Path, images: torch.Tensor, atol: float, notes: list[str]
) -> tuple[str, float, int]:
    keys = ["boxes", "scores", "labels"] + (["masks"] if model.spec.get("arch") == "maskrcnn" else [])
    wrapped = _Detections(model, keys).eval()
    names = {"input_names": ["image"], "output_names": keys}
    exporter = "torch.onnx.export(dynamo=True)"
    try:
        with _silent():
            torch.onnx.export(wrapped, (images[0],), str(tmp), dynamo=True, external_data=False, **names)
    except Exception as e:
        notes.append(
            f"the dynamo ONNX exporter cannot export this detector ({_export_reason(e)}); "
            "used the TorchScript-based exporter (dynamo=False), deprecated by PyTorch"
        )
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        exporter = "torch.onnx.export(dynamo=False, TorchScript)"
        axes = {"image": {1: "height", 2: "width"}, **{k: {0: "detections"} for k in keys}}
        try:
            with _silent():
                torch.onnx.export(
                    wrapped,
                    (images[0],),
                    str(tmp),
                    dynamo=False,
                    opset_version=17,
                    dynamic_axes=axes,
                    **names,
                )
        except Exception as e2:
            raise ExportError(
                f"ONNX export of the detector failed with both exporters: {type(e2).__name__}: {first_line(e2, 200)}"
            ) from None
    sess = _session(tmp)
    diff, count = 0.0, 0
    with torch.no_grad():
        for i, image in enumerate(images):
            got = sess.run(None, {sess.get_inputs()[0].name: image.numpy()})
            want = wrapped(image)
            for k, g, w in zip(keys, got, want):
                g = torch.from_numpy(g)
                if g.shape != w.shape:
                    raise ExportError(
                        f"image {i}: the ONNX detector gives {k} of shape {tuple(g.shape)}, PyTorch "
                        f"{tuple(w.shape)}; output not written"
                    )
                if k == "labels":
                    if not torch.equal(g, w):
                        raise ExportError(f"image {i}: the ONNX detector's labels differ from PyTorch's")
                elif g.numel():
                    diff = max(diff, (g.float() - w.float()).abs().max().item())
            count += int(want[0].shape[0])
    _check_diff(diff, atol, "the ONNX detector (onnxruntime)")
    return exporter, diff, count


def _segmenter_onnx(
    model: nn.Module, tmp: Path, input_size: Sequence[int] | None, atol: float
) -> tuple[tuple[int, ...], str, float, tuple[int, ...], str]:
    if input_size is None:
        raise ConfigError("exporting a segmenter needs input_size=(C, H, W)")
    size = tuple(int(s) for s in input_size)
    exporter, diff = _export_segmenter(model, tmp, size, atol)
    return size, exporter, diff, (1, 3), "logits at batch sizes 1 and 3"


def _detector_onnx(
    model: nn.Module, tmp: Path, images: torch.Tensor | None, atol: float, notes: list[str]
) -> tuple[tuple[int, ...], str, float, tuple[int, ...], str]:
    if images is None or images.ndim != 4:
        raise ConfigError("exporting a detector needs images (B, C, H, W) in [0, 1] to check it on")
    exporter, diff, count = _export_detector(model, tmp, images.detach().cpu().float(), atol, notes)
    size = tuple(int(s) for s in images.shape[1:])
    return size, exporter, diff, (1,) * len(images), f"{count} detections on {len(images)} images"


def export_dense_onnx(
    model: nn.Module,
    out: str | Path,
    *,
    images: torch.Tensor | None = None,
    input_size: Sequence[int] | None = None,
    overwrite: bool = False,
    atol: float = 1e-3,
) -> DenseExportResult:
    """Export a detector or segmenter of :mod:`reslab.models.dense` to ONNX and check it with onnxruntime.

    Segmenters need ``input_size`` (C, H, W); detectors need ``images`` (B, C, H, W) in [0, 1], real
    ones (e.g. test scenes) so that the comparison covers actual detections; the graph takes one image.
    ``atol`` bounds the absolute difference of logits, boxes (pixels) and scores.
    """
    spec = getattr(model, "spec", None)
    if not is_dense_spec(spec):
        raise ConfigError("export_dense_onnx takes a model built by reslab.models.dense (it has no .spec)")
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'reslab[onnx]'") from None
    out = Path(out)
    notes: list[str] = []
    segmenter = spec["arch"] in SEGMENTERS  # else a detector: one image in, its detections out
    was = model.training
    model.eval()
    try:
        with _staged(out, overwrite, ".onnx") as tmp:
            if segmenter:
                size, exporter, diff, checked, compared = _segmenter_onnx(model, tmp, input_size, atol)
            else:
                size, exporter, diff, checked, compared = _detector_onnx(model, tmp, images, atol, notes)
            onnx.checker.check_model(str(tmp))
    finally:
        model.train(was)
    return DenseExportResult(
        out=out,
        format="onnx",
        exporter=exporter,
        input_size=size,  # type: ignore[arg-type]
        max_abs_diff=diff,
        checked_batches=checked,
        atol=atol,
        bytes=out.stat().st_size,
        notes=notes,
        per_image=not segmenter,
        compared=compared,
    )
