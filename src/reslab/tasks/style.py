"""The feed-forward style task: Johnson et al.'s transformation network (:mod:`reslab.models.johnson`)
trained for one style with the perceptual loss (:mod:`reslab.tasks.perceptual`), through the engine
(``reslab train --task style --set task_kwargs.style_image=skimage:immunohistochemistry``).

Johnson, Alahi and Fei-Fei 2016 (ECCV), Sec. 3 and 4.1, train on the 80k COCO images (256 x 256, batch 4,
40k iterations of Adam at lr 1e-3) with VGG-16's ``relu2_2`` for content and ``relu1_2`` ... ``relu4_3`` for
style. What this task does instead, a **demonstration of the pipeline**, not that training:

- **content images**: scikit-image's bundled photographs (:mod:`reslab.data.photos`): training
  ``astronaut``, ``rocket``, ``motorcycle`` (longer side ``content_size``, default 256), random crops of
  ``crop`` pixels (default 128) with random horizontal flips (``augment``); validation ``coffee``, test
  ``chelsea``, whole (at ``content_size``). Three photographs cannot teach a network to stylize every
  picture as 80k can; it learns the style's textures and colours and shows how the losses fall.
- **loss network**: a reslab classifier (``loss_network``, default ``resnet18``) read at its stages, with
  ``loss_init`` ``"torchvision"`` (ImageNet weights from the torch.hub cache, as Johnson's VGG-16), a run
  of the user's, or random weights seeded by ``loss_seed`` (the default here: no ImageNet weights on this
  machine) whose BN statistics are set from the style and training images (module
  :mod:`~reslab.tasks.perceptual`). Layers and weights: ``content_layer``, ``style_layers`` (comma
  separated), ``content_weight``, ``style_weight``, ``tv_weight``.
- **metrics** (``reslab eval`` too): the perceptual loss and its three raw terms on each held-out
  photograph, lower is better; ``checkpoints/best`` by the validation photograph's loss.
- ``reslab predict RUN img.png --out out.png``: the stylized image at the input's size, with the seconds
  the forward pass took (fast inference: one pass, no optimization).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.data.loader import epoch_seed
from reslab.data.photos import PREFIX, photo_sha256, read_photo, resize_to
from reslab.errors import ConfigError, DataError
from reslab.tasks.base import EvalRequest, Found, PredictRequest, Sample, eval_dir, run_config
from reslab.tasks.loader_task import LoaderTask
from reslab.tasks.perceptual import DEFAULT_STYLE, PerceptualLoss, Weights, describe_weights, loss_network

TRAIN, VAL, TEST = ("astronaut", "rocket", "motorcycle"), ("coffee",), ("chelsea",)
DEFAULT_STYLE_IMAGE = f"{PREFIX}immunohistochemistry"
METRICS = ("loss", "content", "style", "tv")
OPTIONS = ("style_image", "content_size", "style_size", "crop", "loss_network", "loss_init", "loss_seed",
           "content_layer", "style_layers", "content_weight", "style_weight", "tv_weight")  # fmt: skip
MAX_PIXELS = 4096 * 4096  # what reslab predict stylizes at most


class CropSampler:
    """Random ``crop`` x ``crop`` crops of the content images, flipped at random (``augment``): float
    batches ``(x, x)`` on the 0-1 scale (the target is the content itself). Batch ``k`` is a pure function
    of ``(seed, k)``, so ``state_dict()`` is one integer (exact resume); ``shard=(rank, world)`` keeps this
    rank's slice of global batch ``k``."""

    def __init__(self, images: Sequence[torch.Tensor], crop: int, batch_size: int, *, device: Any, seed: int,
                 augment: bool = True, shard: tuple[int, int] = (0, 1)) -> None:  # fmt: skip
        small = [tuple(im.shape[-2:]) for im in images if min(im.shape[-2:]) < crop]
        if crop < 8 or small:
            raise ConfigError(f"crop {crop} must be >= 8 and fit every content image (smallest {small[:1]})")
        self.images = [im.to(device) for im in images]
        self.crop, self.batch_size, self.seed, self.augment = crop, batch_size, seed, augment
        self.rank, self.world_size = shard
        self.step = 0
        pixels = sum(im.shape[-1] * im.shape[-2] for im in images)
        self._per_epoch = max(1, -(-pixels // (crop * crop * batch_size * self.world_size)))

    def __len__(self) -> int:
        return self._per_epoch

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, k))
        b = self.batch_size * self.world_size
        idx, u = torch.randint(len(self.images), (b,), generator=g), torch.rand(b, 3, generator=g)
        out = []
        for i in range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size):
            im = self.images[int(idx[i])]
            y, x = (int(u[i, j] * (im.shape[j - 2] - self.crop + 1)) for j in (0, 1))
            c = im[:, y : y + self.crop, x : x + self.crop]
            out.append(c.flip(-1) if self.augment and u[i, 2] < 0.5 else c)
        x = torch.stack(out)
        return x, x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            self.step += 1
            yield self.batch(self.step - 1)

    batches = __iter__

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.step // self._per_epoch, "position": self.step % self._per_epoch,
                "seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ConfigError(
                f"sampler state is for batch_size={state['batch_size']}, this one has {self.batch_size}"
            )
        self.seed = int(state.get("seed", self.seed))
        self.step = int(state["epoch"]) * self._per_epoch + int(state["position"])


def style_options(options: dict[str, Any]) -> dict[str, Any]:
    """The task's options (``task_kwargs``) with their defaults; one line for an unknown one."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown style option {unknown[0]!r}; choose from {', '.join(OPTIONS)}")
    w = Weights()
    layers = options.get("style_layers", ",".join(DEFAULT_STYLE))
    return {
        "style_image": str(options.get("style_image", DEFAULT_STYLE_IMAGE)),
        "content_size": int(options.get("content_size", 256)),
        "style_size": int(options.get("style_size", 256)),
        "crop": int(options.get("crop", 128)),
        "loss_network": options.get("loss_network"),
        "loss_init": options.get("loss_init"),
        "loss_seed": int(options.get("loss_seed", 0)),
        "weights": Weights(
            str(options.get("content_layer", w.content_layer)),
            tuple(layers)
            if isinstance(layers, (list, tuple))
            else tuple(s.strip() for s in str(layers).split(",")),
            float(options.get("content_weight", w.content_weight)),
            float(options.get("style_weight", w.style_weight)),
            float(options.get("tv_weight", w.tv_weight)),
        ),
    }


def _photos(names: Sequence[str], size: int) -> list[torch.Tensor]:
    return [resize_to(read_photo(f"{PREFIX}{n}"), size) for n in names]


def perceptual_loss(
    opts: dict[str, Any], device: Any, style_sha: str | None = None, download: bool = False
) -> PerceptualLoss:
    """The task's loss from its options: the loss network (random weights: BN statistics from the style
    and training images), the style image's Gram matrices. ``style_sha``: the run's style image must
    still be the same bytes (one line otherwise)."""
    raw = read_photo(opts["style_image"])
    if style_sha is not None and photo_sha256(raw) != style_sha:
        raise DataError(
            f"style image {opts['style_image']} is not the one the run was trained with (SHA-256 differs)"
        )
    style = resize_to(raw, opts["style_size"]).to(device)
    net = loss_network(opts["loss_network"], opts["loss_init"], seed=opts["loss_seed"], download=download)
    net = net.to(device)
    if opts["loss_init"] is None:
        net.calibrate([style, *(x.to(device) for x in _photos(TRAIN, opts["content_size"]))])
    return PerceptualLoss.for_style(net, opts["weights"], style)


@torch.no_grad()
def evaluate(
    model: nn.Module, loss: PerceptualLoss, names: Sequence[str], size: int, device: Any
) -> dict[str, float]:
    """The loss terms on each photograph of ``names`` (``<metric>/<name>``) and their means."""
    was = model.training
    model.eval()
    out: dict[str, float] = {}
    for name, x in zip(names, _photos(names, size)):
        x = x[None].to(device)
        terms = loss(model(x).float(), loss.content_features(x))
        out.update({f"{k}/{name}": float(v) for k, v in terms.items()})
    model.train(was)
    return out | {k: sum(out[f"{k}/{n}"] for n in names) / len(names) for k in METRICS}


def evaluate_style_run(
    path: str | os.PathLike, *, device: str = "auto", out_dir: Any = None
) -> dict[str, Any]:
    """``reslab eval`` of a style run: the perceptual loss on the validation and test photographs, the loss
    rebuilt from the run's options (``eval.json`` beside the run or in ``out_dir``)."""
    from reslab._device import resolve_device
    from reslab._io import write_json
    from reslab.models.weights import load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    model, meta = load_model(ckpt)
    _, info = run_config(meta)
    if "style_image" not in info:
        raise ConfigError(f"{ckpt} is not a style run (no style image in its config)")
    dev = resolve_device(device)
    opts = style_options(info["options"])
    loss = perceptual_loss(opts, dev, info.get("style_sha256"))
    model = model.to(dev).float()
    result: dict[str, Any] = {"checkpoint": str(ckpt), "model": meta.get("model"), "step": int(meta.get("step", -1)),
                              "style_image": info["style_image"], "loss_network": loss.net.source}  # fmt: skip
    for split, names in (("val", VAL), ("test", TEST)):
        result[split] = evaluate(model, loss, names, opts["content_size"], dev)
    out = eval_dir(ckpt, out_dir)
    write_json(out / "eval.json", result)
    return result | {"eval_json": str(out / "eval.json")}


def stylize_tensor(model: nn.Module, image: torch.Tensor, device: Any = "cpu") -> tuple[torch.Tensor, float]:
    """uint8 (3, H, W) -> (the stylized uint8 image, seconds of the forward pass)."""
    with torch.no_grad():
        x = image.float().div(255)[None].to(device)
        t0 = time.perf_counter()
        y = model(x)
        seconds = time.perf_counter() - t0
    return y[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu(), seconds


class Stylizer:
    """A style run loaded for ``reslab predict``: each image stylized at its own size into
    ``<stem>_style.png`` (``--out`` is required), with the seconds of its forward pass."""

    output, output_required = "style", True

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        from reslab._device import resolve_device
        from reslab.models.weights import load_model

        self.model, meta = load_model(checkpoint)
        self.device = resolve_device(request.device)
        self.model = self.model.to(self.device).float().eval()
        self.warnings: list[str] = []
        self.header = {"checkpoint": checkpoint, "model": meta.get("model")}

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        from reslab.owned import png_bytes

        for file in files:
            try:
                image = read_photo(file)
            except (DataError, ConfigError) as e:
                yield file, str(e)
                continue
            if image.shape[1] * image.shape[2] > MAX_PIXELS:
                yield (
                    file,
                    f"{file}: {image.shape[2]}x{image.shape[1]} pixels; reslab predict stylizes at most 4096x4096",
                )
                continue
            out, seconds = stylize_tensor(self.model, image, self.device)
            h, w = out.shape[-2:]
            record = {"file": file, "size": [w, h], "seconds": seconds}
            yield Found(file, record, [f"{file}: stylized {w}x{h} in {seconds:.3f} s"], png_bytes(out))


class StyleTransfer(LoaderTask):
    """The style task through the loop's seam (:class:`~reslab.tasks.base.Task`; module docstring)."""

    name = "style"
    recipe = "style"
    model_task = "style-transfer"
    metric_names = METRICS
    higher_is_better = False
    counts_errors = False
    refuses: ClassVar[dict[str, str]] = {
        "features": "reslab features lists the stages of an image backbone (reslab models); a style "
        "transformation network maps images to images and has none to list",
        "analyze": "reslab analyze measures image classifiers on their images; a style run is measured by "
        "its perceptual losses with reslab eval",
    }

    @classmethod
    def evaluate_run(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        return evaluate_style_run(checkpoint, device=request.device, out_dir=request.out_dir)

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        r = result
        lines = [f"checkpoint: {r['checkpoint']} (step {r['step']}; style {r['style_image']}, loss network "
                 f"{r['loss_network']})"]  # fmt: skip
        for split in ("val", "test"):
            s = r[split]
            names = [k.split("/", 1)[1] for k in s if k.startswith("loss/")]
            lines.append(f"{split} ({', '.join(names)}): loss {s['loss']:.4g}  content {s['content']:.4g}  "
                         f"style {s['style']:.4g}  tv {s['tv']:.4g}")  # fmt: skip
        return [*lines, f"results: {r['eval_json']}"]

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> Stylizer:
        return Stylizer(checkpoint, request)

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """Held-out photograph ``index`` (validation, then test) at the run's content size."""
        names = (*VAL, *TEST)
        name = names[Sample.check(index, len(names), "held-out photographs")]
        size = style_options(dict(cfg.task_kwargs or {}))["content_size"]
        image = resize_to(read_photo(f"{PREFIX}{name}"), size).mul(255).round().to(torch.uint8)
        return Sample(
            image.permute(1, 2, 0).numpy(), f"held-out photograph {index} ({name}) at {size} pixels"
        )

    def _set_up(self, cfg: TrainConfig, options: dict[str, Any]) -> None:
        for key in ("val_split", "num_classes", "label_smoothing"):
            if getattr(cfg, key, None):
                raise ConfigError(
                    f"{key} does not apply to the style task (validation: the photograph {VAL[0]})"
                )
        opts = style_options(options)
        loss = perceptual_loss(opts, self.rt.device, download=cfg.download)
        self.perceptual = loss
        self.fixed_kwargs = {"in_chans": 3}
        self._loss = lambda out, content: loss(out, loss.content_features(content))["loss"]
        sha = photo_sha256(read_photo(opts["style_image"]))
        self.info = {
            "task": "style", "dataset": "skimage-photographs", "style_image": opts["style_image"], "style_sha256": sha,
            "options": {**{k: v for k, v in opts.items() if k != "weights"}, **describe_weights(opts["weights"])},
            "loss_network": loss.net.source, "train_images": list(TRAIN), "val_images": list(VAL),
            "test_images": list(TEST), "input_size": [3, opts["crop"], opts["crop"]], "mean": [0.0] * 3,
            "std": [1.0] * 3, "classes": [],
        }  # fmt: skip
        self.loader = CropSampler(_photos(TRAIN, opts["content_size"]), opts["crop"], self.batch_size,
                                  device=self.rt.device, seed=cfg.seed, augment=cfg.augment,
                                  shard=(self.rt.dist.rank, self.rt.dist.world_size))  # fmt: skip
        self.selection = f"val_loss (lowest; validation: the photograph {VAL[0]})"
        for split, names in (("val", VAL), ("test", TEST)) if cfg.eval_test else (("val", VAL),):
            self._evals[split] = self._evaluation(names, opts["content_size"])

    def describe(self) -> str:
        i = self.info
        return (f"style {i['style_image']} on {', '.join(i['train_images'])} ({i['input_size'][1]}-pixel crops; "
                f"val {', '.join(i['val_images'])}, test {', '.join(i['test_images'])}); loss network {i['loss_network']}")  # fmt: skip

    def _evaluation(self, names: Sequence[str], size: int) -> Callable[[nn.Module], dict[str, float]]:
        def run(model: nn.Module) -> dict[str, float]:
            r = evaluate(model, self.perceptual, names, size, self.rt.device)
            return {k: r[k] for k in METRICS}

        return run
