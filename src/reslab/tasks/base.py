"""The seam between the training loop and what is trained: one :class:`Task` protocol, and what every
task shares.

The loop (:mod:`reslab.train.engine`) knows schedules, optimizers, meters, checkpoints and ranks; it
knows nothing about images, labels or metrics. Everything specific to a task sits behind the members of
:class:`Task`, and a new task plugs in by providing them, without touching the loop:

- **data**: ``loader`` (training batches with the :class:`reslab.data.DeviceLoader` interface: ``len`` =
  batches per epoch, ``batches()``, ``batch_size`` (per rank), ``state_dict()`` / ``load_state_dict()``
  with ``epoch`` and ``position``: exact resume), ``info`` (JSON stored in every checkpoint: at least
  ``task`` and ``dataset``; ``input_size``, ``mean``, ``std``, ``classes`` where the task has them, and
  whatever evaluation, prediction and export need to rebuild the preprocessing) and :meth:`Task.describe`;
- **model**: :meth:`Task.build_model` (the raw module whose weights are saved);
- **step**: :meth:`Task.forward` (one batch -> mean loss, count of wrong predictions, batch size;
  called under the run's autocast); ``counts_errors`` says whether that count means anything (if not,
  the ``error`` / ``train_error`` columns of ``train_log.csv`` / ``metrics.csv`` stay empty);
- **evaluation**: ``eval_splits``, ``metric_names`` and :meth:`Task.evaluate` (one split -> one value per
  name, reduced over the ranks); ``metrics.csv`` has a column ``<split>_<metric>`` for each
  (:func:`reslab.train.rundir.metrics_columns`); classification's one metric is ``error`` (percent:
  a metric named ``error`` or ``*_error`` is a percentage, and progress lines print it so);
- **model selection**: :meth:`Task.select` (which number picks ``checkpoints/best``), compared by the
  loop in the direction ``higher_is_better`` (of the first, primary metric), and ``selection`` (how the
  summary names the rule).

Optional: ``weights_metadata`` (a dict, read after :meth:`Task.build_model`): extra top-level metadata of
every weights file (the dense tasks store ``spec`` there, from which :func:`reslab.models.dense.load_dense`
rebuilds the model).

A task is made from the config and the :class:`Runtime` (where and how the run executes: device, ranks
(:class:`Dist`), memory format, autocast dtype). Video and super-resolution share :class:`LoaderTask`
(a model of a registered family, a resumable loader, a loss and evaluation callables per split).
Also here, for every task: :func:`build_model` / :func:`load_init` (the config's model, initialized from
pretrained weights), :func:`eval_arrays` (in-memory evaluation splits, sharded over the ranks),
:func:`reduce_error`, and where a checkpoint's evaluation goes (:func:`eval_dir`).

Dependencies: this package uses :mod:`reslab.config`, :mod:`reslab.data` and :mod:`reslab.models`; the
loop (:mod:`reslab.train`) uses it, never the other way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.errors import ConfigError


@dataclass
class Dist:
    """Data-parallel rank/world: one process, or the process group :func:`init_distributed` set up from
    torchrun's environment. ``ctrl`` is the group for host-side agreement (gloo; ``None``: the default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the default group (and destroys it at the end)
    ctrl: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier(group=self.ctrl)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a host-side all-reduce on the gloo group)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.ctrl)
        return bool(t.item())

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes: the device, the ranks, the memory format and the autocast dtype
    (``None``: fp32)."""

    device: torch.device
    dist: Dist
    channels_last: bool
    amp_dtype: torch.dtype | None


@dataclass(frozen=True)
class EvalRequest:
    """How ``reslab eval`` evaluates a trained network: where ``eval.json`` goes (default: the run
    directory), the data folder (default: the run's), the device, the batch size (default: the task's),
    test-time augmentation and the splits."""

    out_dir: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    tta: str = "none"
    splits: tuple[str, ...] = ("val", "test")
    episodes: int | None = None  # reinforcement learning: episodes played (None: the task's default)


@dataclass(frozen=True)
class PredictRequest:
    """How ``reslab predict`` runs a trained network on image files: the device, the classes shown per
    image (``topk``), the polarity rule of grey classifiers (``invert``) and the detectors' score threshold."""

    device: str = "auto"
    topk: int = 5
    invert: str = "auto"
    score_threshold: float = 0.5


@dataclass
class Found:
    """What a trained network made of one image file: ``record`` (its JSON), ``lines`` (its text, the
    first naming the file) and ``png`` (an image to write: a drawing, an upscaled photograph; ``None``)."""

    file: str
    record: dict[str, Any]
    lines: list[str]
    png: bytes | None = None


@dataclass
class Sample:
    """An input ``reslab predict`` takes for a task's runs (``reslab data sample``): ``image`` uint8 (H, W)
    or (H, W, 3), and what it is in words."""

    image: Any
    description: str

    @staticmethod
    def check(index: int, n: int, what: str) -> int:
        """``index`` of ``n`` test inputs (``what``), checked (one line otherwise)."""
        if not 0 <= index < n:
            raise ConfigError(f"--index {index}: there are {n} {what} (0 to {n - 1})")
        return index


class FilePredictor(Protocol):
    """A trained network loaded for ``reslab predict``: what it writes per image (``output``: the suffix of
    the file each image gets, as in ``<stem>_<output>.png``; ``None``: nothing, ``--out`` is refused),
    whether ``--out`` is required, a JSON preamble (``header``) and, per file, what it found or the one-line
    error that file gave (the others are still predicted)."""

    output: str | None
    output_required: bool
    header: dict[str, Any]
    warnings: list[str]

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]: ...


class Embedder(Protocol):
    """A trained network loaded for ``reslab features RUN IMAGE ...``: each readable image's vector, the
    network's own representation (``what``, in words: a face run's L2-normalized embedding, a classifier's
    pooled features before its classifier), through the run's own preprocessing; ``header`` is the JSON
    preamble. ``embed`` returns ``(files read, array (N, D) float32 or None when none was read, [(file, one-line
    error)])``."""

    what: str
    header: dict[str, Any]

    def embed(self, files: Sequence[str]) -> tuple[list[str], Any, list[tuple[str, str]]]: ...


class Task(Protocol):
    """What the loop needs from a task (see the module docstring), and what the commands on a trained
    network of the task need (``reslab eval`` / ``predict`` / ``export`` / ``features``: the class methods
    and ``refuses``)."""

    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    metric_names: tuple[str, ...]
    higher_is_better: bool
    counts_errors: bool
    selection: str

    def describe(self) -> str:
        """One line: the data (for the first progress line)."""
        ...

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        """The model to train; ``init``: a fresh run (load ``cfg.init_from``), else a resume."""
        ...

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(mean loss, wrong predictions, batch size)`` of one training batch; the loss is the one
        to differentiate, the count stays on the device (a zero tensor when not ``counts_errors``)."""
        ...

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        """``{name: value for name in metric_names}`` of ``model`` on ``split`` (every rank calls it; the
        result is reduced over the ranks)."""
        ...

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        """``(name, value)`` deciding ``checkpoints/best`` at an evaluation, from this evaluation's
        ``metrics`` (split -> name -> value) and the training error of the interval (``None`` when not
        ``counts_errors``); the loop keeps the best value in the direction of ``higher_is_better``."""
        ...

    recipe: ClassVar[str]  # the recipe `reslab train --task NAME` starts from (src/reslab/train/recipes/)
    # Optional: ``recipe_for(settings) -> str`` (a static method), the recipe for the flags and ``--set``
    # values given, where the task's algorithms need different ones (rl: PPO's and DQN's minibatch).

    # A trained network of the task, on the command line (class methods: no training set-up needed).
    # command ("predict", "export", "features", "analyze", "sample") -> the one-line refusal
    refuses: ClassVar[dict[str, str]]

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        """``reslab eval``: the run's or checkpoint's metrics on its own data rebuilt from its metadata,
        written to ``eval.json``; the result names ``eval_json``. Refuses (one line) what the task cannot
        honour in ``request`` (e.g. test-time augmentation)."""
        ...

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        """What ``reslab eval`` prints of :meth:`evaluate_checkpoint`'s result."""
        ...

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> FilePredictor:
        """The trained network loaded for ``reslab predict`` (or one line refusing: ``refuses["predict"]``)."""
        ...

    # Optional: a task whose library owns the training loop (stable-baselines3's algorithms) provides
    # ``drive(cfg, run, report, *, resume) -> summary`` (a class method): ``reslab train`` calls it in place of
    # the loop, inside the same run-directory checks, lock and marker (``run``: the
    # :class:`reslab.train.rundir.RunDir`, ``report``: its :class:`reslab.train.progress.Progress`), and it
    # writes the run's files by the same conventions (config.yaml, metrics.csv, summary.json, curves.png,
    # checkpoints/). A task that plays an environment instead of reading image files sets
    # ``plays_episodes = True`` and provides ``play(checkpoint, files, request, *, out, overwrite)`` for
    # ``reslab predict``.

    @classmethod
    def embedder(cls, checkpoint: str, request: PredictRequest) -> Embedder:
        """The trained network loaded for ``reslab features RUN IMAGE ...`` (or one line refusing:
        ``refuses["embed"]``)."""
        ...

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """``reslab data sample``: test input number ``index`` of the data ``cfg`` (the task's recipe, as
        a run of it would be) trains on, as an image file for ``reslab predict`` (or one line refusing:
        ``refuses["sample"]``)."""
        ...


class Refusals:
    """The commands a task's trained networks do not support, each refused in one line naming what
    does (:attr:`Task.refuses`); :meth:`predictor` and :meth:`embedder` refuse unless the task defines one."""

    refuses: ClassVar[dict[str, str]] = {}

    @classmethod
    def refuse(cls, command: str) -> None:
        """A :class:`ConfigError` (one line) if the task's networks do not support ``command``."""
        if command in cls.refuses:
            raise ConfigError(cls.refuses[command])

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> FilePredictor:
        cls.refuse("predict")
        raise ConfigError(f"reslab predict does not support {cls.__name__} runs")

    @classmethod
    def embedder(cls, checkpoint: str, request: PredictRequest) -> Embedder:
        cls.refuse("embed")
        raise ConfigError(
            f"reslab features embeds images with classifier and face runs, not {cls.__name__} runs; "
            "without images it lists this run's stages: reslab features RUN"
        )

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        cls.refuse("sample")
        raise ConfigError(f"reslab data sample has no input for {cls.__name__} runs")


def reduce_error(r: dict[str, Any], dist: Dist, device: torch.device) -> float:
    """Top-1 error (percent) over all ranks from each rank's :func:`evaluate` result on its shard."""
    n, wrong = int(r["n"]), round(r["top1_error"] * r["n"] / 100.0)  # the integer count back
    if dist.enabled:
        t = torch.tensor([n, wrong], dtype=torch.float64, device=device)  # nccl: a device tensor
        torch.distributed.all_reduce(t)
        n, wrong = (int(v) for v in t.tolist())
    return 100.0 * wrong / max(n, 1)


def eval_arrays(ds: Any, cfg: TrainConfig, rt: Runtime) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation splits of an in-memory data set ``ds`` (``val_x``/``val_y``, ``test_x``/``test_y``;
    ``val`` only if held out, ``test`` only with ``eval_test``): cut to ``eval_subset``, this rank's
    contiguous share (every sample counted once over the ranks, no padding), on the device once."""
    sets = {"val": (ds.val_x, ds.val_y), "test": (ds.test_x, ds.test_y) if cfg.eval_test else (None, None)}
    out = {}
    for split, (x, y) in sets.items():
        if x is None:
            continue
        x, y = x[: cfg.eval_subset], y[: cfg.eval_subset]
        if rt.dist.enabled:
            x, y = (torch.tensor_split(t, rt.dist.world_size)[rt.dist.rank] for t in (x, y))
        out[split] = (x.to(rt.device), y.to(rt.device))
    return out


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, *, init: bool = True) -> nn.Module:
    """The model of ``cfg``; with ``init`` (a fresh run), loaded from ``cfg.init_from`` if set. A resumed
    run skips that (its checkpoint holds every weight), so it needs neither the file nor a download."""
    from reslab.models import create_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.init_from and init:
        model = create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **kwargs)
        load_init(model, cfg.init_from, download=cfg.download)
        if model.num_classes != num_classes:  # type: ignore[attr-defined]
            model.reset_classifier(num_classes)  # type: ignore[operator]  (updates model_kwargs too)
        return model
    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **kwargs)


def load_init(model: nn.Module, path: str, *, download: bool = False) -> None:
    """Load pretrained weights (reslab run/checkpoint or a state dict, akamaster's CIFAR ResNets converted;
    ``"torchvision"`` / ``"akamaster"``: their published weights for the model from the torch.hub cache,
    fetched only if ``download``).
    A classifier of another size is loaded at the checkpoint's size and then replaced by the caller
    (``num_classes``)."""
    from reslab.models.convert import to_reslab
    from reslab.models.weights import load_checkpoint, read_state_dict, resolve_checkpoint

    if path == "torchvision":
        from reslab.models.hub import torchvision_weights

        file = torchvision_weights(model.model_name, download=download)  # type: ignore[attr-defined]
    elif path == "akamaster":
        from reslab.models.convert import akamaster_weights

        file = akamaster_weights(model.model_name, download=download)  # type: ignore[attr-defined]
    else:
        file = resolve_checkpoint(path)
    cls_name = classifier_name(model)
    if cls_name:  # the file's classifier size, read in reslab's key names (a foreign file is converted)
        w = to_reslab(read_state_dict(file), model)[0].get(f"{cls_name}.weight")
        if w is not None and w.ndim == 2 and w.shape[0] != model.num_classes:  # type: ignore[attr-defined]
            model.reset_classifier(int(w.shape[0]))  # type: ignore[operator]
    convention = load_checkpoint(model, file)
    if convention.name != "reslab":  # a foreign file: say what was recognized or assumed (one line)
        print(f"--init-from {file}: {convention.note}", file=sys.stderr)


def classifier_name(model: nn.Module) -> str | None:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, mod in model.named_modules():
        if mod is head:
            return name
    return None


def run_config(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, data info)`` a training run stored in a checkpoint's metadata (``{}`` where absent)."""
    config = meta.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else config
    config = config if isinstance(config, dict) else {}
    info = config.get("data")
    return config, info if isinstance(info, dict) else {}


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run directory of ``checkpoint``: a run directory, or a file in its ``checkpoints/``."""
    p = Path(checkpoint)
    return p.parent.parent if p.is_file() and p.parent.name == "checkpoints" else p


def eval_dir(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Where ``eval.json`` of ``checkpoint`` goes: ``out_dir``, else its run directory (the folder above
    ``checkpoints/``), else the checkpoint's folder."""
    if out_dir:
        return Path(out_dir)
    folder = Path(checkpoint).parent
    if folder.name != "checkpoints":
        return folder
    from reslab.owned import claim

    # the run directory's marker learns the files an evaluation writes there (``--overwrite`` removes them)
    claim(folder.parent, "run", "eval.json", *(f"confusion_{split}.png" for split in ("val", "test")))
    return folder.parent


def checkpoint_task(path_or_run: str | os.PathLike) -> str:
    """The task a run or weights file was trained for: a detection / segmentation model's ``spec`` (also
    a model saved from Python, without a training config), else its config's ``task``;
    ``"classification"`` for a file without reslab metadata (a foreign checkpoint) or one that cannot be
    read (its own reader reports that). Reads the metadata once."""
    from reslab.errors import ReslabError
    from reslab.models.dense import is_dense_spec
    from reslab.models.weights import read_metadata, resolve_checkpoint

    try:
        path = resolve_checkpoint(path_or_run)
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    except ReslabError:
        return "classification"
    if is_dense_spec(meta.get("spec")):
        return str(meta["spec"]["task"])
    return str(run_config(meta)[0].get("task") or "classification")
