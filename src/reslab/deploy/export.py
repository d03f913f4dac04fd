"""Export a trained network: ONNX, ``torch.export`` (.pt2) or plain safetensors weights, each verified.

Every format is written to a temporary file beside the target, checked, and only then moved into place
(an existing file is never replaced unless ``overwrite=True``), so a failed or interrupted export leaves
nothing behind.

- ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter; needs
  ``onnxscript``), with a dynamic batch dimension. If it fails, the deprecated TorchScript-based exporter
  (``dynamo=False``) is tried and the result says so. The file is checked with ``onnx.checker`` and run
  with onnxruntime on random inputs at batch sizes 1 and 3 against PyTorch (max abs diff < ``atol``).
  The input preprocessing (size, mean/std, class names) is stored in the model's ``metadata_props``.
- ``torch-export``: ``torch.export.export`` with a dynamic batch dimension, saved with
  ``torch.export.save``; checked by ``torch.export.load`` at batch sizes 1 and 3.
- ``safetensors``: the weights with reslab's metadata (model name, kwargs, training config), loadable by
  :func:`reslab.models.weights.load_model`; checked by loading it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab._io import ordinary_mode
from reslab.errors import ConfigError, ReslabError, first_line
from reslab.tasks import refuse_task

FORMATS = ("onnx", "torch-export", "safetensors")
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2", "safetensors": ".safetensors"}
CHECK_BATCHES = (1, 3)
DEFAULT_ATOL = 1e-4


class ExportError(ReslabError):
    """An export that failed or whose output does not match the PyTorch model."""


@dataclasses.dataclass
class ExportResult:
    out: Path
    format: str
    exporter: str  # e.g. "torch.onnx dynamo", "torch.onnx torchscript (fallback)", "torch.export"
    input_size: tuple[int, int, int]
    max_abs_diff: float | None  # over CHECK_BATCHES; None when not verified
    checked_batches: tuple[int, ...]
    atol: float
    bytes: int
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        c, h, w = self.input_size
        batch = "" if self.format == "safetensors" else ", dynamic batch"
        lines = [
            f"exported {self.format} -> {self.out} ({self.bytes / 1e6:.2f} MB, {self.exporter}, "
            f"input Nx{c}x{h}x{w}{batch})"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.max_abs_diff is None:
            lines.append("verification: skipped")
        else:
            batches = ", ".join(str(b) for b in self.checked_batches)
            lines.append(
                f"verification: max abs diff vs PyTorch {self.max_abs_diff:.3g} at batch sizes {batches} "
                f"(< {self.atol:g}: ok)"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ atomic output


@contextlib.contextmanager
def _staged(out: Path, overwrite: bool, suffix: str) -> Iterator[Path]:
    """A temporary path beside ``out`` ending in the format's ``suffix``; when the block succeeds it
    becomes ``out``, else it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # The format's suffix, whatever ``out``'s: torch.export.save, the ONNX exporter and the safetensors
    # reader that verifies the file look at it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, ordinary_mode())  # mkstemp makes 0600; give the file ordinary permissions
        _publish(tmp, out, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)  # atomic, and fails if `out` appeared meanwhile
        except FileExistsError:
            raise ExportError(f"{out} exists; pass --overwrite to replace it") from None
        except OSError:  # a filesystem without hard links
            if out.exists():
                raise ExportError(f"{out} exists; pass --overwrite to replace it") from None
            os.replace(tmp, out)
    _fsync(out.parent)


# ------------------------------------------------------------------------------------------ helpers


def _random_inputs(input_size: tuple[int, int, int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *input_size, generator=g) for b in CHECK_BATCHES]


@torch.no_grad()
def _compare(reference: nn.Module, run: Callable[[torch.Tensor], Any], inputs: list[torch.Tensor]) -> float:
    diff = 0.0
    for x in inputs:
        want = reference(x).float()
        got = torch.as_tensor(run(x)).float()
        if got.shape != want.shape:
            raise ExportError(
                f"exported model gives shape {tuple(got.shape)} at batch {x.shape[0]}, want {tuple(want.shape)}"
            )
        diff = max(diff, (got - want).abs().max().item())
    return diff


def _check_diff(diff: float, atol: float, what: str) -> None:
    if not diff < atol:  # also catches NaN
        raise ExportError(
            f"{what} differs from PyTorch: max abs diff {diff:.3g} >= {atol:g}; output not written"
        )


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=65536)


def _quiet() -> contextlib.ExitStack:
    """Silence the exporters' warnings and progress prints (they go to stdout in some versions)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def _deploy_metadata(model: nn.Module, metadata: dict[str, Any], spec: Any) -> dict[str, str]:
    meta = {
        "reslab.model": json.dumps(str(getattr(model, "model_name", type(model).__name__))),
        "reslab.model_kwargs": json.dumps(getattr(model, "model_kwargs", {}), default=str),
        "reslab.input_size": json.dumps(list(spec.input_size)),
        "reslab.mean": json.dumps(list(spec.mean)),
        "reslab.std": json.dumps(list(spec.std)),
        "reslab.classes": json.dumps(list(spec.classes)),
        "reslab.resize_crop": json.dumps(spec.resize_crop),
    }
    if spec.resize_crop:
        meta["reslab.resize_size"] = json.dumps(spec.resize_size)
    return meta


# --------------------------------------------------------------------------------------------- onnx


def _onnx_export(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int | None
) -> tuple[str, list[str]]:
    """Write ``path``; returns (exporter name, notes). Dynamo first, the TorchScript exporter second."""
    notes: list[str] = []
    kw: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if opset is not None:
        kw["opset_version"] = opset
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)

        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes=({0: _batch_dim()},),
                external_data=False,
                verbose=False,
                **kw,
            )
        return "torch.onnx.export(dynamo=True)", notes
    except Exception as e:  # any failure of the new exporter: fall back, and say why
        first = first_line(e, 200)
        notes.append(
            f"the dynamo ONNX exporter failed ({type(e).__name__}: {first}); "
            "fell back to the deprecated TorchScript-based exporter (dynamo=False)"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                **kw,
            )
    except Exception as e:
        first = first_line(e, 200)
        raise ExportError(f"ONNX export failed with both exporters: {type(e).__name__}: {first}") from None
    return "torch.onnx.export(dynamo=False, TorchScript fallback)", notes


def _export_onnx(model, spec, metadata, tmp: Path, atol: float, verify: bool, opset: int | None):
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'reslab[onnx]'") from None
    if verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ExportError(
                "verifying an ONNX export needs onnxruntime: pip install 'reslab[onnx]' (or pass --no-verify)"
            ) from None
    example = torch.randn(2, *spec.input_size)
    exporter, notes = _onnx_export(model, example, tmp, opset)
    # Embed the preprocessing, then run the ONNX checker over the final file.
    proto = onnx.load(str(tmp))
    for key, value in _deploy_metadata(model, metadata, spec).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    try:
        onnx.checker.check_model(str(tmp))
    except Exception as e:
        raise ExportError(f"the exported ONNX model fails onnx.checker: {first_line(e, 200)}") from None
    _check_dynamic_batch(proto)
    diff = None
    if verify:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        diff = _compare(
            model, lambda x: sess.run(None, {in_name: x.numpy()})[0], _random_inputs(spec.input_size)
        )
        _check_diff(diff, atol, "the ONNX model (onnxruntime)")
    return exporter, notes, diff


def _check_dynamic_batch(proto: Any) -> None:
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param and dim.dim_value != 0:
        raise ExportError(f"the ONNX input has a fixed batch size {dim.dim_value}, not a dynamic one")


# ------------------------------------------------------------------------------------ torch.export


def _export_pt2(model, spec, tmp: Path, atol: float, verify: bool):
    example = torch.randn(2, *spec.input_size)  # batch 2: export would specialize a batch of 1
    try:
        with _quiet():
            ep = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    except Exception as e:
        first = first_line(e, 200)
        raise ExportError(f"torch.export failed: {type(e).__name__}: {first}") from None
    extra = _deploy_metadata(model, {}, spec)
    torch.export.save(ep, str(tmp), extra_files=extra)
    diff = None
    if verify:
        loaded = torch.export.load(str(tmp)).module()
        diff = _compare(model, loaded, _random_inputs(spec.input_size))
        _check_diff(diff, atol, "the torch.export program")
    return "torch.export.export + torch.export.save", [], diff


# ------------------------------------------------------------------------------------- safetensors


def _export_safetensors(model, spec, metadata, tmp: Path, verify: bool):
    from reslab.models.weights import load_model, save_weights

    # load_model decoded the JSON values; save_weights encodes them again (format/model/kwargs: reserved).
    extra = {k: v for k, v in metadata.items() if k not in ("format", "model", "model_kwargs")}
    save_weights(model, tmp, extra)
    diff = None
    if verify:
        reloaded, _ = load_model(tmp)
        reloaded.float().eval()
        diff = _compare(model, reloaded, _random_inputs(spec.input_size))
        _check_diff(diff, 1e-6, "the reloaded safetensors model")
    return "reslab.models.weights.save_weights", [], diff


# ------------------------------------------------------------------------------------------- main


def export_model(
    model_or_run: str | os.PathLike | nn.Module,
    fmt: str,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    input_size: tuple[int, int, int] | None = None,
    atol: float = DEFAULT_ATOL,
    verify: bool = True,
    opset: int | None = None,
) -> ExportResult:
    """Export a run directory, a checkpoint file or a model to ``out`` in format ``fmt`` (see module doc).

    The output is written atomically and only after it has been verified (unless ``verify=False``);
    an existing ``out`` is an error unless ``overwrite``.
    """
    from reslab.tasks.inputs import input_spec, load

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give the output file name")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; pass --overwrite to replace it")
    if isinstance(model_or_run, nn.Module):
        model, metadata = model_or_run.float().eval(), dict(metadata or {})
    else:
        refuse_task(model_or_run, "export")
        model, metadata = load(model_or_run)
    spec = input_spec(model, metadata)
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=tuple(int(s) for s in input_size))
    model = model.cpu().float().eval()
    notes: list[str] = []
    if out.suffix != SUFFIXES[fmt]:
        notes.append(f"{fmt} files usually end in {SUFFIXES[fmt]}")
    with _staged(out, overwrite, SUFFIXES[fmt]) as tmp:
        if fmt == "onnx":
            exporter, more, diff = _export_onnx(model, spec, metadata, tmp, atol, verify, opset)
        elif fmt == "torch-export":
            exporter, more, diff = _export_pt2(model, spec, tmp, atol, verify)
        else:
            exporter, more, diff = _export_safetensors(model, spec, metadata, tmp, verify)
        size = tmp.stat().st_size
    return ExportResult(
        out=out,
        format=fmt,
        exporter=exporter,
        input_size=spec.input_size,
        max_abs_diff=diff,
        checked_batches=CHECK_BATCHES if verify else (),
        atol=1e-6 if fmt == "safetensors" else atol,
        bytes=size,
        notes=notes + more,
    )
