"""The super-resolution task: bicubic-downsampled photographs (:mod:`reslab.data.sr`) upscaled by SRResNet /
EDSR-baseline.

Default model (as the ``super_resolution`` recipe's): ``edsr_baseline_x4`` (x4, the factor both papers
headline) with its 16 units at 32 channels instead of 64 (a quarter of the cost per step on a CPU). Batches:
:class:`~reslab.data.sr.PatchSampler` (LR patches of ``patch`` pixels, default 24, i.e. SRResNet's 96-pixel
HR crops at x4; random flips and rotations). Loss: L1 (Lim et al. 2017, Sec. 4.2; Ledig et al.'s SRResNet
uses MSE: ``loss="mse"``). Validation: the bottom :data:`VAL_ROWS` rows of each training photograph, cut off
before downsampling (:mod:`reslab.data.sr` says why), so that choosing a checkpoint never looks at the test
photographs. Evaluation: PSNR and SSIM on Y with the scale shaved from every border (:mod:`reslab.tasks.metrics`)
for the model and for bicubic upsampling, on each image of a split and on their mean.

For ``reslab predict`` / ``reslab eval``: :func:`upscale` (a uint8 image through a model, in tiles for
large images), :func:`reslab.tasks.upscaling.upscale_file` (an image file, grey or colour, to an upscaled PNG) and
:func:`evaluate_sr_run` (a run or checkpoint on its validation band and the test photographs, against
bicubic).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.config import TrainConfig
from reslab.data.sr import PatchSampler, SRData, bicubic_up, sr_data
from reslab.errors import CheckpointError, ConfigError
from reslab.tasks.base import EvalRequest, PredictRequest, Sample, eval_dir, run_config
from reslab.tasks.loader_task import LoaderTask
from reslab.tasks.metrics import psnr, ssim
from reslab.tasks.upscaling import Upscaler, upscale

VAL_ROWS = 96  # HR rows of each training photograph held out for validation (a multiple of 2, 3, 4 and 8)
OPTIONS = ("scale", "patch", "loss", "val_rows")  # the task's options (a training config's task_kwargs)
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def load_data(
    data_dir: Any = None, download: bool = False, *, scale: int = 4, val_rows: int = VAL_ROWS, **kw: Any
) -> SRData:
    """The bundled photographs at ``scale`` with the validation band of ``val_rows`` rows (no files,
    nothing to download: ``data_dir`` is unused)."""
    return sr_data(scale, val_rows=val_rows, **kw)


def train_loader(
    data: SRData,
    batch_size: int,
    *,
    device: Any = "cpu",
    seed: int = 0,
    patch: int = 24,
    augment: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> PatchSampler:
    """(LR, HR) float patch batches on the 0-1 scale (``batch_size`` per rank of ``shard``)."""
    return PatchSampler(data, patch, batch_size, device=device, seed=seed, augment=augment, shard=shard)


def sr_loss(output: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    if kind not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    return LOSSES[kind](output, target)


def evaluate(
    model: nn.Module,
    data: SRData,
    *,
    device: Any = "cpu",
    batch_size: int = 1,
    split: str = "test",
    tile: int | None = None,
) -> dict[str, float]:
    """``psnr``/``ssim`` (mean over the images of ``split``: ``"test"`` or ``"val"``),
    ``bicubic_psnr``/``bicubic_ssim``, and ``psnr/<name>`` etc. per image. ``batch_size`` is unused (the
    images differ in size)."""
    if split not in ("val", "test"):
        raise ConfigError(f"split must be 'val' or 'test', got {split!r}")
    names = getattr(data, f"{split}_names")
    if not names:
        raise ConfigError(f"the data has no {split} images (val_rows=0?)")
    s = data.scale
    out: dict[str, float] = {}
    for name, hr, lr in zip(names, getattr(data, f"{split}_hr"), getattr(data, f"{split}_lr")):
        sr, bic = upscale(model, lr, device, tile=tile), bicubic_up(lr, s)
        out[f"psnr/{name}"], out[f"ssim/{name}"] = psnr(sr, hr, s), ssim(sr, hr, s)
        out[f"bicubic_psnr/{name}"], out[f"bicubic_ssim/{name}"] = psnr(bic, hr, s), ssim(bic, hr, s)
    for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
        out[key] = float(np.mean([out[f"{key}/{n}"] for n in names]))
    return out


def describe(data: SRData) -> dict[str, Any]:
    """Checkpoint metadata: scale, channels, the training and test photographs and their source."""
    return {
        "dataset": "skimage-photographs",
        "scale": data.scale,
        "in_chans": data.in_chans,
        "train_images": list(data.train_names),
        "val_images": list(data.val_names),
        "test_images": list(data.test_names),
        "source": data.source,
        "sha256": data.sha256(),
    }


def evaluate_sr_run(
    path: str | os.PathLike,
    *,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    tile: int | None = None,
) -> dict[str, Any]:
    """``reslab eval`` of a super-resolution run (its ``checkpoints/best``) or checkpoint file: PSNR / SSIM
    against bicubic upsampling on the validation band and the test photographs, per image and mean, with
    the model's gain over bicubic; the data rebuilt from the checkpoint's metadata (``data_matches``: the
    same bytes as in training). Writes ``eval.json`` beside the run (or into ``out_dir``)."""
    from reslab._device import resolve_device
    from reslab._io import write_json
    from reslab.models.weights import load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    model, meta = load_model(ckpt)
    if not hasattr(model, "scale"):
        raise CheckpointError(f"{ckpt} holds {meta.get('model')}, not a super-resolution model")
    _, info = run_config(meta)
    scale = int(info.get("scale", model.scale))  # type: ignore[attr-defined]
    data = load_data(
        scale=scale,
        val_rows=int(info.get("val_rows", VAL_ROWS)),
        **{k: tuple(info[f"{k}_images"]) for k in ("train", "test") if f"{k}_images" in info},
    )
    dev = resolve_device(device)
    model = model.to(dev).float().eval()
    results: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "model": meta.get("model"),
        "step": int(meta.get("step", -1)),
        "scale": scale,
        "data_matches": info.get("sha256") in (None, data.sha256()),
    }
    for split in ("val", "test"):
        if getattr(data, f"{split}_names"):
            r = evaluate(model, data, device=dev, split=split, tile=tile)
            r["psnr_gain_over_bicubic"] = r["psnr"] - r["bicubic_psnr"]
            results[split] = r
    out = eval_dir(ckpt, out_dir)
    write_json(out / "eval.json", results)
    return results | {"eval_json": str(out / "eval.json")}


METRICS = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
DEFAULT_PATCH = 24  # LR pixels: SRResNet's 96-pixel HR crops at x4


class SuperResolution(LoaderTask):
    """Super-resolution through the loop's seam (:class:`~reslab.tasks.base.Task`).

    - **options** (``cfg.task_kwargs``): ``scale`` (default and only allowed value: the model's),
      ``patch`` (LR patch side, default :data:`DEFAULT_PATCH`), ``loss`` (``l1`` or ``mse``) and
      ``val_rows`` (default :data:`VAL_ROWS`); ``cfg.augment`` switches the flips and rotations.
    - **validation**: always the bottom ``val_rows`` rows of each training photograph
      (:mod:`reslab.data.sr` says why), so ``val_rows`` below the scale is refused.
    - **metrics**: ``psnr``, ``ssim`` (on Y, the scale shaved) and the same for bicubic upsampling as a
      reference: higher is better; the step counts no errors. Evaluation runs in fp32 (PSNR is read off
      8-bit output) on every rank alike (a few whole photographs, no communication).
    """

    name = "super-resolution"
    recipe = "super_resolution"
    model_task = "super-resolution"
    metric_names = METRICS
    higher_is_better = True
    counts_errors = False
    refuses: ClassVar[dict[str, str]] = {
        "features": "reslab features lists the stages of an image backbone (reslab models); a "
        "super-resolution network keeps its resolution and has none to list",
        "analyze": "reslab analyze measures image classifiers on their images; a super-resolution run is "
        "measured against bicubic upsampling with reslab eval",
    }

    @classmethod
    def evaluate_run(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        return evaluate_sr_run(checkpoint, device=request.device, out_dir=request.out_dir)

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        """PSNR / SSIM against bicubic upsampling per split, then per image."""
        r = result
        lines = [
            f"checkpoint: {r['checkpoint']} (step {r['step']}; super-resolution x{r['scale']}, {r['model']})"
        ]
        for split in (s for s in ("val", "test") if s in r):
            s = r[split]
            lines.append(f"{split}: PSNR {s['psnr']:.2f} dB (bicubic {s['bicubic_psnr']:.2f}, "
                         f"{s['psnr_gain_over_bicubic']:+.2f})  SSIM {s['ssim']:.4f} (bicubic {s['bicubic_ssim']:.4f})")  # fmt: skip
            for name in (k.split("/", 1)[1] for k in s if k.startswith("psnr/")):
                lines.append(f"  {name:>18s}  PSNR {s['psnr/' + name]:.2f} dB (bicubic {s['bicubic_psnr/' + name]:.2f})  "
                             f"SSIM {s['ssim/' + name]:.4f}")  # fmt: skip
        return [*lines, f"results: {r['eval_json']}"]

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> Upscaler:
        return Upscaler(checkpoint, request)

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """Test photograph ``index`` at low resolution (bicubic, 1/scale of ``cfg.model``'s): what the model
        upscales back."""
        from reslab.models import create_model

        with torch.device("meta"):
            scale = int(create_model(cfg.model, **cfg.model_kwargs).scale)  # type: ignore[attr-defined]
        data = load_data(scale=scale)
        lr = data.test_lr[Sample.check(index, len(data.test_lr), "test photographs")].numpy()
        name = data.test_names[index]
        return Sample(lr.transpose(1, 2, 0), f"test photograph {index} ({name}) at 1/{scale} resolution")

    def _set_up(self, cfg: TrainConfig, options: dict[str, Any]) -> None:
        from reslab.models import create_model

        rt, dist = self.rt, self.rt.dist
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown super-resolution option {unknown[0]!r}; choose from {', '.join(OPTIONS)}"
            )
        for key in ("val_split", "num_classes", "label_smoothing"):
            if getattr(cfg, key, None):
                raise ConfigError(
                    f"{key} does not apply to super-resolution (validation: task_kwargs val_rows, "
                    f"default {VAL_ROWS})"
                )
        with torch.device("meta"):
            scale = int(create_model(cfg.model, **cfg.model_kwargs).scale)  # type: ignore[attr-defined]
        if int(options.get("scale", scale)) != scale:
            raise ConfigError(f"scale {options['scale']} does not match {cfg.model} (x{scale})")
        patch, kind = int(options.get("patch", DEFAULT_PATCH)), str(options.get("loss", "l1"))
        val_rows = int(options.get("val_rows", VAL_ROWS))
        if val_rows < scale:
            raise ConfigError(
                f"val_rows={val_rows}: super-resolution chooses checkpoints on a validation band of at least "
                f"{scale} rows (model selection must not use the test photographs)"
            )
        sr_loss(torch.zeros(1), torch.zeros(1), kind)  # an unknown loss fails here, in one line
        data = load_data(scale=scale, val_rows=val_rows)
        self.fixed_kwargs = {"in_chans": data.in_chans}
        self._loss = lambda out, hr: sr_loss(out, hr, kind)
        c = data.in_chans
        self.info = describe(data) | {
            "task": "super-resolution",
            "val_rows": val_rows,
            "patch": patch,
            "loss": kind,
            "input_size": [c, patch, patch],
            "mean": [0.0] * c,  # the models take 0-1 images; EDSR subtracts its own mean inside
            "std": [1.0] * c,
            "classes": [],
        }
        self.loader = train_loader(
            data, self.batch_size, device=rt.device, seed=cfg.seed, patch=patch, augment=cfg.augment,
            shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        self.selection = (
            f"val_psnr (highest; validation: the bottom {val_rows} rows of each training photograph)"
        )
        for split in ("val", "test") if cfg.eval_test else ("val",):
            self._evals[split] = self._evaluation(data, split)

    def describe(self) -> str:
        i = self.info
        return (
            f"{i['dataset']} x{i['scale']} (train {', '.join(i['train_images'])} in {i['patch']}-pixel "
            f"LR patches; val their bottom {i['val_rows']} rows; test {', '.join(i['test_images'])})"
        )

    def _evaluation(self, data: SRData, split: str) -> Callable[[nn.Module], dict[str, float]]:
        def run(model: nn.Module) -> dict[str, float]:
            r = evaluate(model, data, device=self.rt.device, split=split)
            return {k: r[k] for k in METRICS}

        return run
