"""Face recognition behind the loop's seam: a network trained as a classifier of the training identities
with a margin head, used as an embedder, verified on identities it never saw.

- **Data** (:mod:`reslab.data.faces`): ``dataset: olivetti`` (``--data-dir``: ``olivettifaces.mat`` or its
  folder) or ``faces-folder`` (``--data-dir ROOT`` of identity sub-folders, LFW's layout). The
  *identities* are split (``task_kwargs``: ``val_identities``, ``test_identities``, ``split_seed``):
  training identities, validation identities (model selection: ``checkpoints/best`` has the highest
  validation ROC AUC) and test identities never seen in training (only reported).
- **Input** (:func:`prepare`): the 64 x 64 grey photographs are resized (bilinear, antialiased) to
  ``image_size`` and the grey channel replicated to ``in_chans`` (e.g. 112 x 112 x 3 for the IR-ResNets,
  160 x 160 x 3 for InceptionResnetV1); normalized by the training images' mean and std. Training
  augmentation: horizontal flips and random crops with ``pad`` pixels of zero padding.
- **Model**: any registered image model, built with ``num_classes`` = the training identities; its
  classifier weight is the head's class weight, its pooled features / embedding output
  (``forward_head(..., pre_logits=True)``), L2-normalized, is the face embedding.
- **Head** (``task_kwargs.head``, :mod:`reslab.models.margins`): ``softmax`` (the default: the plain linear
  classifier; it verified best in docs/results/faces/), ``arcface`` (s 64, m 0.5; ``easy_margin``) or
  ``cosface`` (s 64, m 0.35); ``s`` and ``m`` override.
  The loss is cross-entropy on the head's fp32 logits; the training error counts the cosine (softmax:
  logit) arg-max, without the margin.
- **Evaluation** (:mod:`reslab.tasks.verification`): per split, the LFW protocol's 10-fold verification
  accuracy, ROC AUC, TAR at FAR = 1 %, 1-shot identification top-1. ``reslab eval`` adds the ROC figure
  and the threshold chosen on the validation pairs; ``reslab predict RUN a.png b.png`` prints cosine
  similarities and same / different at that threshold (from the run's ``eval.json``, else measured on its
  validation faces), and ``--json`` each image's normalized embedding. ``reslab features RUN a.png ...``
  gives the embeddings (``--out FILE.npz``); ``reslab features RUN`` alone lists the stages.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.config import TrainConfig
from reslab.errors import CheckpointError, ConfigError, ReslabError
from reslab.tasks.base import (
    EvalRequest,
    Found,
    PredictRequest,
    Refusals,
    Runtime,
    Sample,
    run_config,
)
from reslab.tasks.verification import make_pairs, verification

OPTIONS: dict[str, Any] = {
    "head": "softmax",
    "s": None,  # the head's scale (default: its paper's 64)
    "m": None,  # the head's margin (default: arcface 0.5, cosface 0.35)
    "easy_margin": False,
    "image_size": 64,
    "in_chans": 1,
    "val_identities": 5,
    "test_identities": 10,
    "split_seed": 0,
    "pair_seed": 0,
}
NATIVE_SIZE = 64  # photographs are read at 64 x 64 (Olivetti's size; a folder's images are resized to it)


def face_options(task_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``task_kwargs`` over :data:`OPTIONS` (one line for an unknown key or a bad value)."""
    from reslab.models.margins import make_margin

    opts = dict(OPTIONS)
    unknown = set(task_kwargs or {}) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown face option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    opts.update(task_kwargs or {})
    make_margin(opts["head"], opts["s"], opts["m"], opts["easy_margin"])  # checks head, s, m
    if int(opts["image_size"]) < 8 or int(opts["in_chans"]) not in (1, 3):
        raise ConfigError(f"face image_size must be >= 8 and in_chans 1 or 3, got {opts['image_size']}, "
                          f"{opts['in_chans']}")  # fmt: skip
    return opts


@functools.lru_cache(maxsize=2)
def _faces(source: str, path: str | None) -> Any:
    from reslab.data.faces import load_faces

    return load_faces(source, path, NATIVE_SIZE)


def prepare(images: np.ndarray | torch.Tensor, size: int, chans: int) -> torch.Tensor:
    """Grey uint8 photographs (N, H, W) -> uint8 network input (N, chans, size, size): bilinear
    (antialiased) resize, the grey channel replicated."""
    x = torch.as_tensor(np.array(images, dtype=np.uint8)).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, chans, -1, -1).contiguous()


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The L2-normalized embedding of normalized input ``x``: the model's pooled features / embedding."""
    from reslab.models.weights import unwrap

    m = unwrap(model)
    return F.normalize(m.forward_head(m.forward_features(x), pre_logits=True).float(), dim=1)


@torch.no_grad()
def embed_images(
    model: nn.Module, x: torch.Tensor, mean: Sequence[float], std: Sequence[float], batch: int = 64
) -> np.ndarray:
    """Embeddings (N, D) of uint8 inputs ``x`` (N, C, H, W), in eval mode, on the model's device."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    m = torch.tensor(mean, device=dev).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, device=dev).view(1, -1, 1, 1) * 255
    out = [embed(model, (x[k : k + batch].to(dev).float() - m) / s).cpu() for k in range(0, len(x), batch)]
    model.train(was)
    return torch.cat(out).numpy()


class FaceData:
    """A face run's data rebuilt from its config: prepared inputs, identities and pairs per split."""

    def __init__(self, dataset: str, data_dir: str | None, opts: dict[str, Any]) -> None:
        from reslab.data.faces import split_identities

        faces = _faces(dataset, data_dir)
        self.source, self.sha256 = faces.source, faces.sha256
        self.ids = split_identities(faces.num_identities, int(opts["val_identities"]),
                                    int(opts["test_identities"]), int(opts["split_seed"]))  # fmt: skip
        size, chans = int(opts["image_size"]), int(opts["in_chans"])
        self.x, self.identity, self.pairs, self.raw = {}, {}, {}, {}
        for split, ids in self.ids.items():
            keep = np.isin(faces.identity, ids)
            self.raw[split] = faces.images[keep]
            self.x[split] = prepare(faces.images[keep], size, chans)
            self.identity[split] = faces.identity[keep]
            if split != "train":
                self.pairs[split] = make_pairs(self.identity[split], seed=int(opts["pair_seed"]))
        self.labels = torch.as_tensor(np.searchsorted(self.ids["train"], self.identity["train"]))
        train = self.x["train"].float() / 255
        self.mean = (float(train.mean()),) * chans
        self.std = (float(train.std()),) * chans

    def metrics(self, split: str, model: nn.Module, batch: int = 64) -> dict[str, Any]:
        emb = embed_images(model, self.x[split], self.mean, self.std, batch)
        return verification(emb, self.identity[split], self.pairs[split])


def load_run(
    checkpoint: str, data_dir: str | None = None
) -> tuple[nn.Module, dict[str, Any], FaceData, Path]:
    """A face run's ``(model, metadata, data, checkpoint path)``; the data from the run's config (or
    ``data_dir``)."""
    from reslab.models.weights import load_model, resolve_checkpoint

    path = Path(resolve_checkpoint(checkpoint))
    model, meta = load_model(path)
    config, _ = run_config(meta)
    if not config.get("dataset"):
        raise CheckpointError(f"{path} has no training config; a face run's data cannot be rebuilt")
    opts = face_options(config.get("task_kwargs"))
    return (
        model.float().eval(),
        meta,
        FaceData(config["dataset"], data_dir or config.get("data_dir"), opts),
        path,
    )


class Face(Refusals):
    """The face task of ``cfg`` (see the module docstring)."""

    name = "face"
    recipe = "face"
    metric_names = ("accuracy", "auc", "tar_far1", "top1")
    higher_is_better = True
    counts_errors = True
    selection = "val_auc"
    eval_splits = ("val", "test")
    loader: Any
    info: dict[str, Any]
    refuses: ClassVar[dict[str, str]] = {
        "analyze": "reslab analyze measures image classifiers on their images; a face run is measured by "
        "reslab eval (verification on unseen identities)",
    }

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        from reslab.data import DeviceLoader
        from reslab.models.margins import make_margin

        for key in ("subset", "val_split", "data_kwargs", "num_classes"):
            if getattr(cfg, key, None):
                raise ConfigError(
                    f"{key} does not apply to the face task (it splits identities: task_kwargs)"
                )
        self.opts = face_options(cfg.task_kwargs)
        self.data = d = FaceData(cfg.dataset, cfg.data_dir, self.opts)
        self.margin = make_margin(self.opts["head"], self.opts["s"], self.opts["m"], self.opts["easy_margin"])
        self.num_classes = len(d.ids["train"])
        self.eval_batch_size = cfg.eval_batch_size or 64
        self.loader = DeviceLoader(
            d.x["train"], d.labels, cfg.batch_size // rt.dist.world_size, device=rt.device, mean=d.mean,
            std=d.std, augment=cfg.augment, flip=True, pad=cfg.pad, seed=cfg.seed, drop_last=True,
            shard=(rt.dist.rank, rt.dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        size, chans = int(self.opts["image_size"]), int(self.opts["in_chans"])
        self.info = {
            "task": "face", "dataset": cfg.dataset, "input_size": [chans, size, size], "mean": list(d.mean),
            "std": list(d.std), "num_classes": self.num_classes, "source": d.source, "sha256": d.sha256,
            "identities": {k: len(v) for k, v in d.ids.items()}, "head": self.opts["head"],
            "num_train": len(d.labels), "num_val": len(d.identity["val"]), "num_test": len(d.identity["test"]),
        }  # fmt: skip
        self._emb: list[torch.Tensor] = []

    def describe(self) -> str:
        i = self.info["identities"]
        return (f"{self.info['dataset']} faces ({self.info['num_train']} train images of {i['train']} people; "
                f"{i['val']} val, {i['test']} unseen test people), head {self.opts['head']}")  # fmt: skip

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        from reslab.tasks.base import build_model

        model = build_model(cfg, self.num_classes, int(self.opts["in_chans"]), init=init)
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if not isinstance(head, nn.Linear):
            raise ConfigError(
                f"{cfg.model} has no linear classifier to serve as the face head's class weight"
            )
        _check_input(model, cfg.model, self.info["input_size"])
        # the embedding entering the classifier, captured in the forward (works through DDP / compile)
        head.register_forward_pre_hook(lambda mod, args: self._emb.append(args[0]))
        return model

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        from reslab.models.margins import cosine_logits

        x, y = batch
        self._emb.clear()
        logits = model(x)
        if self.margin is None:
            scores = logits = logits.float()
        else:
            head = _classifier(model)
            scores = cosine_logits(self._emb[-1], head.weight)
            logits = self.margin(scores, y)
        self._emb.clear()
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            errors = (scores.argmax(1) != y).sum()
        return loss, errors, len(y)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        r = self.data.metrics(split, model, self.eval_batch_size)
        return {k: float(r[k]) for k in self.metric_names}

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        return "val_auc", metrics["val"]["auc"]

    # ------------------------------------------------------------------------------ a trained face network

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        if request.tta != "none":
            raise ConfigError("--tta applies to classification; a face run is evaluated as trained")
        from reslab.tasks.face_eval import evaluate_face_run

        return evaluate_face_run(checkpoint, request)

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        from reslab.tasks.face_eval import face_lines

        return face_lines(result)

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> FaceFiles:
        return FaceFiles(checkpoint, request)

    @classmethod
    def embedder(cls, checkpoint: str, request: PredictRequest) -> FaceEmbedder:
        return FaceEmbedder(checkpoint, request)

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """Photograph ``index`` of the test (unseen) identities of ``cfg``'s data, at 64 x 64."""
        d = FaceData(cfg.dataset, cfg.data_dir, face_options(cfg.task_kwargs))
        i = Sample.check(index, len(d.raw["test"]), "test photographs")
        person = int(d.identity["test"][i])
        return Sample(d.raw["test"][i], f"test photograph {index} of {cfg.dataset}: person {person}")


def _check_input(model: nn.Module, name: str, size: Sequence[int]) -> None:
    """One line, before training, if ``model`` cannot embed faces of ``size`` (C, H, W): a shape-only pass
    on the ``meta`` device (e.g. an IR-ResNet built for 112 x 112 given 64 x 64 faces)."""
    import copy

    from reslab.errors import first_line

    try:
        embed(copy.deepcopy(model).to("meta").eval(), torch.zeros(2, *size, device="meta"))
    except (RuntimeError, ValueError, ConfigError) as e:
        raise ConfigError(
            f"{name} cannot embed {'x'.join(map(str, size))} faces ({first_line(e)[:160]}); set "
            "task_kwargs.image_size / in_chans to its input, or build it for this size (model_kwargs)"
        ) from None


def _classifier(model: nn.Module) -> nn.Linear:
    from reslab.models.weights import unwrap

    return unwrap(model).get_classifier()  # type: ignore[operator,no-any-return]


class FaceNet:
    """A face run's network loaded for the commands (on ``request.device``, fp32, eval mode) and the
    reading of an image file as its training faces were read: grey, the data's native 64 x 64, then the
    run's input size and channels (:func:`prepare`)."""

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        from reslab._device import resolve_device
        from reslab.models.weights import load_model, resolve_checkpoint

        self.path = Path(resolve_checkpoint(checkpoint))
        model, meta = load_model(self.path)
        self.model = model.float().eval().to(resolve_device(request.device))
        self.input_size = [int(v) for v in meta["input_size"]]
        self.mean, self.std = list(meta["mean"]), list(meta["std"])
        self.header: dict[str, Any] = {"checkpoint": str(self.path)}
        self.warnings: list[str] = []

    def read(self, files: Sequence[str]) -> tuple[list[str], list[torch.Tensor], list[tuple[str, str]]]:
        """``(files read, their inputs, [(file, one-line error)] for the rest)``."""
        read, inputs, errors = [], [], []
        for file in files:
            try:
                inputs.append(self._read(file))
                read.append(file)
            except ReslabError as e:
                errors.append((file, str(e)))
        return read, inputs, errors

    def _read(self, file: str) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as im:
                grey = im.convert("L").resize((NATIVE_SIZE, NATIVE_SIZE), Image.BILINEAR)
        except FileNotFoundError:
            raise ReslabError(f"cannot read image {file}: no such file") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ReslabError(f"cannot read image {file}: {str(e).splitlines()[0][:120]}") from None
        chans, size = self.input_size[0], self.input_size[-1]
        return prepare(np.asarray(grey)[None], size, chans)


class FaceFiles(FaceNet):
    """``reslab predict`` of a face run: each image's normalized embedding, the cosine similarity of every
    pair of images, and same / different at the run's threshold (the best on its validation pairs)."""

    output = None
    output_required = False

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        super().__init__(checkpoint, request)
        self.threshold, where = self._threshold(self.path)
        self.header |= {"threshold": self.threshold, "threshold_from": where}

    def _threshold(self, path: Path) -> tuple[float, str]:
        """The cosine with the best accuracy on the run's validation pairs: from its ``eval.json`` (written
        by ``reslab eval`` of this checkpoint), else measured on the validation faces (the run's data)."""
        import json

        stored = path.parent.parent / "eval.json" if path.parent.name == "checkpoints" else None
        if stored is not None and stored.is_file():
            try:
                doc = json.loads(stored.read_text())
                if doc.get("checkpoint") == str(path) and "threshold" in doc:
                    return float(doc["threshold"]), str(stored)
            except (OSError, ValueError):
                pass
        try:
            _, _, data, _ = load_run(str(path))
        except ReslabError as e:
            raise ConfigError(f"the same/different threshold comes from the run's validation faces ({e}); "
                              "run reslab eval RUN --data-dir PATH once, predict then reads its eval.json") from None  # fmt: skip
        return float(data.metrics("val", self.model)["threshold"]), "validation pairs"

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        read, inputs, errors = self.read(files)
        yield from errors
        if not read:
            return
        emb = embed_images(self.model, torch.cat(inputs), self.mean, self.std)
        sims = emb @ emb.T
        t = self.threshold
        for a, file in enumerate(read):
            lines = [f"[{a}] {file}: {emb.shape[1]}-d embedding"]
            for b, other in enumerate(read):
                if b != a:
                    verdict = "same person" if sims[a, b] >= t else "different people"
                    lines.append(
                        f"    vs [{b}] {other}: cosine {sims[a, b]:+.4f} -> {verdict} (threshold {t:+.4f})"
                    )
            record = {"file": file, "embedding": [round(float(v), 6) for v in emb[a]],
                      "similarity": [round(float(v), 6) for v in sims[a]],
                      "same": [bool(v >= t) for v in sims[a]]}  # fmt: skip
            yield Found(file, record, lines)


class FaceEmbedder(FaceNet):
    """``reslab features RUN IMAGE ...`` of a face run: each image's L2-normalized embedding (the vector
    verification compares by cosine; :func:`embed`)."""

    what = "L2-normalized face embedding"

    def embed(self, files: Sequence[str]) -> tuple[list[str], np.ndarray | None, list[tuple[str, str]]]:
        read, inputs, errors = self.read(files)
        if not read:
            return read, None, errors
        return read, embed_images(self.model, torch.cat(inputs), self.mean, self.std), errors
