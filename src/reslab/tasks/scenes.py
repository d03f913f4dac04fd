"""What detection and segmentation share: the Fashion-MNIST scenes, behind the loop's seam.

:class:`SceneTraining` is the :class:`reslab.tasks.base.Task` of both (``reslab.tasks.detection.Detection``
and ``reslab.tasks.segmentation.Segmentation`` name their model operations, ``ops``); beside it the
operations both share (:class:`Batch`, :class:`SceneOps`: data, rebuild from a ``spec``), the config's
options (:class:`SceneOptions`) and ``reslab eval`` of such a run (:meth:`SceneTraining.evaluate_checkpoint`).
The training batches come from :class:`reslab.data.scenes.SceneLoader` (resumable).

How a :class:`~reslab.config.TrainConfig` reads for these tasks (``task: detection`` or
``segmentation``):

- ``model`` / ``model_kwargs``: the **backbone**, any registered image-classification network with
  stages (ImageNet-style ``resnet18`` ... or CIFAR-style ``resnet20`` ..., plain, pre-activation, ...);
  the head is ``task_kwargs.arch`` (detection: ``fasterrcnn`` | ``retinanet`` | ``maskrcnn``;
  segmentation: ``deeplabv3`` | ``fcn``), torchvision's, built by :mod:`reslab.models.dense`.
- ``task_kwargs`` (:data:`SCENE_OPTIONS`, :data:`MODEL_OPTIONS`; any other key is refused): the scenes
  (``train_size``, ``test_size``, ``scene_seed``, ``size``, ``min_objects``, ``max_objects``,
  ``min_scale``, ``max_scale``; with ``size`` alone the garment scales follow it, 20-56 px per 128), the
  freezing of the backbone (``trainable_layers``, ``frozen_bn``) and the head's options.
- ``dataset`` must be ``fashion-mnist`` (the scenes are drawn from it; ``data_dir`` finds it);
  ``val_split`` (required: it picks ``checkpoints/best``) holds the *last* N (or that fraction) of the
  ``train_size`` training scenes out; ``augment`` flips scenes horizontally (boxes and masks with them);
  ``init_from`` a reslab classification run or checkpoint for the backbone (a resumed run reads it again
  for the architecture; the weights come from the checkpoint); ``eval_subset`` evaluates the first N
  scenes of each split; ``eval_batch_size`` (auto: 16 detection, 32 segmentation).
- Refused, with the option that does it here: ``num_classes`` (the scenes fix them), ``subset``
  (``task_kwargs.train_size``), ``freeze`` / ``freeze_backbone`` (``task_kwargs.trainable_layers``),
  ``cutout``, ``label_smoothing`` (the losses are torchvision's), ``init_from: torchvision|akamaster``
  (3-channel or CIFAR weights; the scenes are grey).

The metrics (``metric_names``, higher is better, the first selects ``checkpoints/best`` on the validation
scenes): detection ``map_50``, ``map``, ``map_75``, ``mar_100`` (COCO, box; Mask R-CNN adds
``mask_map_50``, ``mask_map``), segmentation ``miou``, ``miou_fg``, ``pixel_acc``. The step counts no
wrong predictions (``counts_errors = False``). Every rank evaluates the whole split (mAP is no sum over
samples); the training batches are sharded by rank as :class:`reslab.data.DeviceLoader` shards them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.data.scenes import SceneConfig, SceneDataset, SceneLoader, Scenes, load_scenes
from reslab.errors import CheckpointError, ConfigError, DataError, ReslabError, first_line
from reslab.models.dense import build_from_spec, is_dense_spec
from reslab.models.weights import unwrap
from reslab.tasks.base import EvalRequest, Found, PredictRequest, Refusals, Runtime, Sample, eval_dir
from reslab.tasks.scene_config import SceneOptions, build_scene_model, check_scene_config, load_splits


@dataclasses.dataclass
class Batch:
    """Images on the device and their targets: float (B, C, H, W) in [0, 1] (detection: the detector
    normalizes) or normalized (segmentation); targets a list of torchvision target dicts (detection) or
    a class map int64 (B, H, W) (segmentation)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]] | torch.Tensor
    index: torch.Tensor


def spec_of(model: nn.Module) -> dict[str, Any]:
    """``model.spec`` of a dense model, also through DDP / ``torch.compile`` wrappers."""
    spec = getattr(unwrap(model), "spec", None)
    if not is_dense_spec(spec):
        raise ConfigError("not a detection / segmentation model of reslab.models.dense (it has no .spec)")
    return spec


# ten saturated, distinguishable colours, one per Fashion-MNIST class (Trubetskoy's "20 distinct colours")
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) uint8 or [0, 1] float -> RGB uint8 (3, H, W) on the CPU (grey repeated)."""
    x = image.detach().cpu()
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ConfigError(f"expected an image (1 or 3, H, W), got {tuple(image.shape)}")
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _flip_mask(
    n: int, augment: bool, generator: torch.Generator | None, flips: torch.Tensor | None = None
) -> torch.Tensor:
    if flips is not None:  # drawn by the caller (a training loader's plan)
        flips = torch.as_tensor(flips, dtype=torch.bool).reshape(-1).cpu()
        if len(flips) != n:
            raise ConfigError(f"flips holds {len(flips)} values for {n} scenes")
        return flips
    if not augment:
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=generator) < 0.5


class SceneOps:
    """The model operations of a scene task (:mod:`reslab.tasks.detection`, :mod:`reslab.tasks.segmentation`):
    the data, rebuilding a model from its ``spec``; subclasses add build, batch, loss, predict, draw,
    evaluate."""

    name: ClassVar[str]
    archs: ClassVar[tuple[str, ...]]  # the heads, the first the default
    metrics: ClassVar[tuple[str, ...]]  # the first selects checkpoints/best
    eval_batch: ClassVar[int]  # scenes per evaluation batch (``eval_batch_size: auto``)

    def load_data(
        self,
        train_size: int = 4000,
        test_size: int = 1000,
        *,
        seed: int = 0,
        config: SceneConfig | None = None,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> SceneDataset:
        """The Fashion-MNIST scenes (:func:`reslab.data.scenes.load_scenes`), the data of both tasks."""
        return load_scenes(
            train_size, test_size, seed=seed, config=config, data_dir=data_dir, cache_dir=cache_dir, **kwargs
        )

    def rebuild(self, spec: dict[str, Any]) -> nn.Module:
        """The model of ``spec`` (as ``model.spec`` / a checkpoint holds it), freshly initialized."""
        if spec.get("task") != self.name:
            raise ConfigError(f"the checkpoint is a {spec.get('task')} model, not {self.name}")
        return build_from_spec(spec)

    @staticmethod
    def create(arch: str, backbone: str, size: int, **kwargs: Any) -> nn.Module:
        """The model with head ``arch`` on ``backbone`` for scenes of ``size`` pixels (``kwargs``: the
        options of :func:`reslab.models.dense.create_detector` / ``create_segmenter``)."""
        raise NotImplementedError

    def train_batch(
        self, scenes: Scenes, index: torch.Tensor, *, device: torch.device, flips: torch.Tensor, arch: str
    ) -> Batch:
        """Scenes ``index`` as a training batch of a run with head ``arch``, flipped where ``flips``."""
        raise NotImplementedError

    def evaluate_per_class(
        self, model: nn.Module, scenes: Scenes, classes: Sequence[str], *, device: Any, batch_size: int
    ) -> dict[str, Any]:
        """Every metric of the task on ``scenes`` and ``per_class``: the per-class ones by class name."""
        raise NotImplementedError

    def found(
        self, model: nn.Module, image: torch.Tensor, classes: Sequence[str], request: PredictRequest
    ) -> tuple[dict[str, Any], list[str], torch.Tensor]:
        """``(record, text lines, drawing)`` of one uint8 image (C, H, W), for ``reslab predict``."""
        raise NotImplementedError

    @staticmethod
    def _images(
        scenes: Scenes, index: torch.Tensor, flip: torch.Tensor, device: torch.device | str
    ) -> torch.Tensor:
        x = scenes.images[index].to(device, non_blocking=True).float().div_(255)
        if flip.any():
            x[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
        return x


DATASET = "fashion-mnist-scenes"


class SceneTraining(Refusals):
    """Detection or segmentation of ``cfg`` for the loop (:class:`reslab.tasks.base.Task`); checks the
    config, then loads the scenes, when made. A subclass names its model operations (``ops``). See the
    module docstring."""

    name: ClassVar[str]
    ops: ClassVar[type[SceneOps]]
    refuses: ClassVar[dict[str, str]] = {
        "export": "reslab export takes classifiers; export a detector or segmenter in Python with "
        "reslab.deploy.dense.export_dense_onnx(load_dense(run)[0], out, ...) (docs/dense.md, Export)",
        "features": "reslab features lists a backbone's stages: give the backbone's name (reslab features "
        "resnet18), not a detection or segmentation run",
        "analyze": "reslab analyze measures classifiers' residual units on their images; analyze the "
        "backbone as a classifier (reslab analyze NAME --model BACKBONE --init), not a detection or "
        "segmentation run",
    }
    higher_is_better = True
    counts_errors = False
    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    selection: str
    metric_names: tuple[str, ...]

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        self.opts = check_scene_config(cfg, self.ops)
        self.rt = rt
        self.task = self.ops()
        self.metric_names = self.ops.metrics + (
            ("mask_map_50", "mask_map") if self.opts.arch == "maskrcnn" else ()
        )
        self.selection = f"val_{self.metric_names[0]} (higher is better)"
        self.eval_batch_size = cfg.eval_batch_size or self.ops.eval_batch
        self.data, splits = load_splits(self.opts, cfg)
        self.train_scenes = splits["train"]
        self._evals = {"val": splits["val"], **({"test": splits["test"]} if cfg.eval_test else {})}
        if cfg.eval_subset:
            self._evals = {k: v.subset(min(cfg.eval_subset, len(v))) for k, v in self._evals.items()}
        self.eval_splits = tuple(self._evals)
        dist = rt.dist
        per_rank = cfg.batch_size // dist.world_size
        self.loader = SceneLoader(
            self._batch, len(self.train_scenes), per_rank, seed=cfg.seed, augment=cfg.augment,
            shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        d, size = self.data, self.opts.scenes.size
        self.info: dict[str, Any] = {
            "task": cfg.task,
            "dataset": DATASET,
            "arch": self.opts.arch,
            "input_size": [d.in_chans, size, size],
            "mean": list(d.mean),
            "std": list(d.std),
            "classes": list(d.classes),
            "num_classes": d.num_classes,
            "flip": True,
            "num_train": len(self.train_scenes),
            "num_val": len(splits["val"]),
            "num_test": len(splits["test"]),
            "val_split": cfg.val_split,
            "scenes": {
                "train_size": self.opts.train_size,
                "test_size": self.opts.test_size,
                "seed": self.opts.scene_seed,
                "config": dataclasses.asdict(self.opts.scenes),
                "source": d.source,
            },
        }
        self.weights_metadata: dict[str, Any] = {}
        self._zero = torch.zeros((), device=rt.device)

    # ------------------------------------------------------------------------------ the seam

    def describe(self) -> str:
        i, s = self.info, self.opts.scenes.size
        return (
            f"Fashion-MNIST scenes {s}x{s} ({i['num_train']} train, {i['num_val']} val, {i['num_test']} test), "
            f"{self.opts.arch} {self.opts.task}"
        )

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        d = self.data
        model = build_scene_model(
            self.opts, cfg, num_classes=d.num_classes, in_chans=d.in_chans, mean=list(d.mean), std=list(d.std),
            init_from=cfg.init_from,  # a resume too: the file gives the backbone's architecture
        )  # fmt: skip
        self.weights_metadata = {"spec": model.spec}
        return model

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        loss, _ = self.task.loss(model, batch)
        return loss, self._zero, len(batch.index)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        m = self.task.evaluate(
            model, self._evals[split], device=self.rt.device, batch_size=self.eval_batch_size
        )
        return {k: float(m[k]) for k in self.metric_names}

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        primary = self.metric_names[0]
        return f"val_{primary}", metrics["val"][primary]

    # ------------------------------------------------------------------------------ data

    def _batch(self, index: torch.Tensor, flips: torch.Tensor) -> Any:
        return self.task.train_batch(
            self.train_scenes, index, device=self.rt.device, flips=flips, arch=self.opts.arch
        )

    # ------------------------------------------------------------------------------ a trained network

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        """``reslab eval`` of a detection / segmentation run or checkpoint: the run's own scenes rebuilt from
        its config, every metric of the task and the per-class ones (detection: box AP and AP@.5 per class;
        segmentation: IoU per class), written to ``eval.json`` (in ``out_dir``, default the run directory)."""
        from reslab._device import resolve_device
        from reslab._io import write_json
        from reslab.models.dense import load_dense
        from reslab.models.weights import resolve_checkpoint

        if request.tta != "none":
            raise ConfigError(
                "--tta applies to classification; detection and segmentation evaluate as trained"
            )
        ckpt = Path(resolve_checkpoint(checkpoint))
        model, meta = load_dense(ckpt)
        config = meta.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{ckpt} has no training config in its metadata; evaluate it in Python")
        cfg = TrainConfig.from_dict(
            {k: v for k, v in config.items() if k not in ("data", "precision")}, source=f"{ckpt} config"
        )
        cfg.data_dir = request.data_dir or cfg.data_dir
        opts = SceneOptions.from_config(cfg, cls.ops)
        data, scenes = load_splits(opts, cfg)
        dev = resolve_device(request.device)
        model = model.to(dev).float().eval()
        results: dict[str, Any] = {"checkpoint": str(ckpt), "step": int(meta.get("step", -1)), "task": cfg.task,
                                   "arch": opts.arch, "backbone": cfg.model}  # fmt: skip
        for split in (s for s in request.splits if s in scenes):
            r = cls.ops().evaluate_per_class(
                model,
                scenes[split],
                data.classes,
                device=dev,
                batch_size=request.batch_size or cls.ops.eval_batch,
            )
            results[split] = {k: _num(v) if isinstance(v, float) else v for k, v in r.items()} | {
                "n": len(scenes[split])
            }
        out = eval_dir(ckpt, request.out_dir)
        write_json(out / "eval.json", results)
        return results | {"eval_json": str(out / "eval.json")}

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        r = result
        lines = [
            f"checkpoint: {r['checkpoint']} (step {r['step']}; {r['task']}, {r['arch']} on {r['backbone']})"
        ]
        for split in (s for s in ("val", "test") if s in r):
            values = "  ".join(f"{k} {_fmt(v)}" for k, v in r[split].items() if k not in ("per_class", "n"))
            lines.append(f"{split}: {values}  ({r[split]['n']} scenes)")
            for name, per in r[split]["per_class"].items():
                lines.append(f"  {name:>16s}  " + "  ".join(f"{k} {_fmt(v)}" for k, v in per.items()))
        return [*lines, f"results: {r['eval_json']}"]

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> ScenePredictor:
        return ScenePredictor(checkpoint, request, cls.ops)

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """Test scene ``index`` of ``cfg``'s scenes (``task_kwargs``: size, scene seed, ...), drawn alone:
        the same picture as that scene of a run of ``cfg`` (each scene has its own random stream)."""
        from reslab.data.datasets import load_dataset
        from reslab.data.scenes import build_scenes

        opts = SceneOptions.from_config(cfg, cls.ops)
        Sample.check(index, opts.test_size, "test scenes")
        ds = load_dataset("fashion-mnist", cfg.data_dir, cfg.download)
        scenes = build_scenes(
            ds.test_x, ds.test_y, index + 1, seed=opts.scene_seed, split="test", config=opts.scenes
        )
        a, b = (int(v) for v in scenes.offsets[index : index + 2])
        names = ", ".join(ds.classes[int(k) - 1] for k in scenes.labels[a:b])
        size = opts.scenes.size
        return Sample(scenes.images[index, 0].numpy(), f"test scene {index} ({size}x{size}): {names}")


class ScenePredictor:
    """A detector or segmenter loaded for ``reslab predict`` (:class:`reslab.tasks.base.FilePredictor`):
    each image read in the model's channels and scaled to [0, 1], nothing else (a detector normalizes and
    resizes inside; a segmenter's input is resized to its training size and its class map back), then
    what the task's :meth:`SceneOps.found` makes of it, drawn as ``<stem>_<task>.png`` with ``--out``."""

    output_required = False

    def __init__(self, checkpoint: str, request: PredictRequest, ops: type[SceneOps]) -> None:
        from reslab._device import resolve_device
        from reslab.models.dense import load_dense

        if not 0.0 <= request.score_threshold <= 1.0:
            raise ConfigError(f"--score-threshold must be in [0, 1], got {request.score_threshold}")
        model, meta = load_dense(checkpoint)
        self.model = model.to(resolve_device(request.device)).float().eval()
        spec = self.model.spec
        self.output, self.ops = ops.name, ops()
        self.classes = meta.get("classes") or [str(i) for i in range(int(spec["num_classes"]))]
        self.channels = int(spec.get("backbone_kwargs", {}).get("in_chans", 3))
        self.request, self.warnings = request, []
        self.header = {"checkpoint": checkpoint, "task": spec["task"]}

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        from reslab.owned import png_bytes

        for file in files:
            try:
                image = read_uint8(file, self.channels)
            except ReslabError as e:
                yield file, str(e)
                continue
            record, lines, drawing = self.ops.found(self.model, image, self.classes, self.request)
            yield Found(
                file, {"file": file, **record}, [f"{file}: {lines[0]}", *lines[1:]], png_bytes(drawing)
            )


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _num(v: float) -> float | None:
    """A metric for JSON: NaN (nothing to measure) as null."""
    return None if v is None or math.isnan(v) else round(float(v), 6)


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:.4f}"


def read_uint8(path: str | os.PathLike, channels: int) -> torch.Tensor:
    """An image file as it is, uint8 (C, H, W) in the model's ``channels`` (1: grey, 3: RGB): what a
    detector or segmenter takes (no resizing, no normalization: they do that inside)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            w, h = im.size
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({first_line(e, 120)})") from None
    return data.view(h, w, channels).permute(2, 0, 1).contiguous()
