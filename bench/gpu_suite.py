"""reslab's GPU benchmark suite: every measurement in one call of under 10 minutes; a table last, JSON out.

    PYTHONPATH=src python bench/gpu_suite.py [--device cuda] [--only cifar,resnet50] [--out FILE] [--tiny]

Measurements (images/s, and MFU = the fraction of the device's *measured* bf16 matrix-product rate):

- ``peak``: bf16 ``torch.matmul`` of large square matrices (8192, 16384), best TFLOP/s. Always run: every
  MFU below divides by it. MFU of training = 3 * 2 * MACs * images/s / peak (backward ~ 2x forward), of
  inference 2 * MACs * images/s / peak; MACs per image from ``reslab.models.model_info`` (convolutions
  and ``fc``, as the paper counts them).
- ``cifar``: ResNet-20/56/110 training, batch 128, CIFAR-shaped synthetic data (50k train images):
  (a) reslab's loop, ``reslab.train.train`` itself (DeviceLoader with on-device crop/flip, bf16
  autocast, channels_last; the engine's defaults on CUDA), images/s from its own metrics row of the
  second of two windows (the first is warm-up); (b) a conventional PyTorch loop: a torchvision-style
  ``Dataset`` of uint8 HWC images, ``DataLoader`` workers doing per-image ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` on PIL images, the same model in fp32, eager,
  NCHW, the same SGD. Also the ratio (a)/(b).
- ``cifar_paper``: wall time of the whole ``cifar_paper`` recipe (64k iterations, batch 128, periodic
  evaluation on 5k val + 10k test every 2k iterations, checkpoints) for ResNet-20 on synthetic CIFAR-shaped
  data (50k train, 5k of them held out, 10k test), through ``train(load_recipe("cifar_paper"))``. A prefix
  of 4 evaluation windows runs first; the full schedule is extrapolated from it (measured prefix wall time
  + remaining iterations at the steady per-iteration time + remaining evaluations at the measured
  per-evaluation cost) and, at the end of the suite, run for real when the extrapolation fits the time box
  (``--paper-full-max-s``). The row says ``measured`` or ``EXTRAPOLATED``.
- ``resnet50``: 224x224, batch 256, synthetic ImageNet-shaped data, bf16 autocast + channels_last:
  training through reslab's ``train()``, reslab's model in a plain AMP loop, torchvision's ``resnet50`` in
  the same plain AMP loop (one preloaded batch); inference through ``reslab.train.evaluate.evaluate``
  (uint8 images on the device) and in plain ``inference_mode`` loops.
- ``sweep``: the paper's depth sweep (plain/ResNet-20/32/44/56, Fig. 6), batch 128, a fixed number of
  steps each: one after another in this process vs all at once in 8 worker processes (timed from a common
  start signal after each has warmed up) vs 8 CUDA streams in 8 threads of this process. The step is
  reslab's hot path built from its public pieces (``DeviceLoader`` + ``create_model`` + bf16 autocast +
  channels_last + SGD).

Optional (``--only options``): ResNet-20 through ``train()`` with one engine option changed per row
(optimizer kernels, cuDNN autotuning, channels_last, fp32, 4x the batch, the ``torch.compile`` modes), each
as a ratio to the defaults. Optional (``--only fmnist --fmnist-dir DIR``): the ``fashion_mnist_fast``
recipe on the real data over 3 seeds, wall time and test accuracy.

Every measurement is time-boxed and guarded: a failure is recorded in the JSON (``error``) and the suite
goes on. The JSON (``--out``, default ``bench_results/gpu_suite.json``) is rewritten after every
measurement; a watchdog writes it and prints the table if the whole call overruns (``--budget`` + 45 s).
``--tiny`` runs everything on small models/images/batches in seconds (used by the CPU smoke test; ResNet-18
at 32x32 stands in for ResNet-50, and the 64k schedule is only extrapolated).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import itertools
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ("peak", "cifar", "cifar_paper", "resnet50", "sweep")  # the default set, in this order
OPTIONAL = ("options", "fmnist")  # only with --only (torch.compile takes minutes; fmnist needs the data)
SWEEP_MODELS = ("plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44", "resnet56")

# The targets (H100).
TARGET_PAPER_S = 60.0  # ResNet-20, cifar_paper 64k iterations, whole schedule
TARGET_PAPER_IPS = 140_000
TARGET_SPEEDUP = 5.0  # reslab loop / conventional loop, ResNet-20
TARGET_R50_TRAIN = 3500.0
TARGET_R50_INFER = 3 * TARGET_R50_TRAIN


def _ensure_reslab() -> None:
    """Make ``import reslab`` work without PYTHONPATH (the repository's ``src``), for workers too."""
    try:
        import reslab  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


_ensure_reslab()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ------------------------------------------------------------------------------------------ settings


@dataclass
class Settings:
    """Sizes of every measurement: the GPU defaults, or ``--tiny`` (CPU, seconds)."""

    tiny: bool = False
    device: str = "cuda"
    budget_s: float = 480.0
    matmul_sizes: tuple[int, ...] = (8192, 16384)
    # cifar
    cifar_models: tuple[str, ...] = ("resnet20", "resnet56", "resnet110")
    cifar_hw: int = 32
    cifar_batch: int = 128
    cifar_train: int = 50_000
    cifar_test: int = 10_000
    cifar_window: dict[str, int] = field(
        default_factory=lambda: {"resnet20": 300, "resnet56": 200, "resnet110": 100}
    )
    cifar_eval_subset: int = 1000
    conv_workers: int = 8
    conv_warmup: int = 15
    conv_max_iters: int = 400
    conv_max_s: float = 8.0
    # cifar_paper
    paper_iterations: int | None = None  # None: the recipe's (64k); else a scaled-down schedule (tiny)
    paper_eval_every: int | None = None
    paper_val_split: int = 5000
    paper_window: int = 500  # prefix: 4 windows of this many iterations (adapted to the measured rate)
    paper_full_max_s: float = 180.0
    # resnet50
    r50_model: str = "resnet50"  # reslab's and torchvision's name (tiny: resnet18)
    r50_hw: int = 224
    r50_batch: int = 256
    r50_window: int = 30  # reslab train(): 2 windows
    r50_warmup: int = 8
    r50_max_iters: int = 60
    r50_max_s: float = 6.0
    r50_infer_images: int = 256 * 60
    # sweep
    sweep_models: tuple[str, ...] = SWEEP_MODELS
    sweep_batch: int = 128
    sweep_iters: int = 150
    sweep_warmup: int = 15
    sweep_images: int = 128 * 80  # 80 steps per epoch: epoch plans (a host sync each) stay rare
    sweep_ready_timeout_s: float = 180.0
    sweep_run_timeout_s: float = 120.0
    # fmnist (optional)
    fmnist_dir: str | None = None
    fmnist_seeds: int = 3

    @classmethod
    def make(cls, args: argparse.Namespace) -> Settings:
        cpu = max(1, os.cpu_count() or 1)
        if not args.tiny:
            s = cls(device=args.device, budget_s=args.budget, paper_full_max_s=args.paper_full_max_s)
            s.conv_workers = args.workers if args.workers is not None else max(1, min(8, cpu - 2))
            s.fmnist_dir, s.fmnist_seeds = args.fmnist_dir, args.fmnist_seeds
            return s
        return cls(
            tiny=True,
            device=args.device,
            budget_s=args.budget,
            matmul_sizes=(128,),
            cifar_models=("resnet20",),
            cifar_hw=16,
            cifar_batch=8,
            cifar_train=256,
            cifar_test=64,
            cifar_window={"resnet20": 2},
            cifar_eval_subset=16,
            conv_workers=args.workers if args.workers is not None else 1,
            conv_warmup=1,
            conv_max_iters=3,
            conv_max_s=1.0,
            paper_val_split=32,
            paper_window=2,
            paper_iterations=32,  # the recipe scaled down: 32 iterations, evaluations every 8
            paper_eval_every=8,
            paper_full_max_s=120.0,
            r50_model="resnet18",
            r50_hw=32,
            r50_batch=2,
            r50_window=1,
            r50_warmup=1,
            r50_max_iters=2,
            r50_max_s=1.0,
            r50_infer_images=4,
            sweep_models=("plain20", "resnet20"),
            sweep_batch=4,
            sweep_iters=2,
            sweep_warmup=1,
            sweep_images=16,
            sweep_ready_timeout_s=120.0,
            sweep_run_timeout_s=60.0,
            fmnist_dir=args.fmnist_dir,
            fmnist_seeds=min(args.fmnist_seeds, 2),
        )


# ------------------------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def _timed_steps(
    step: Callable[[], Any],
    device: torch.device,
    *,
    warmup: int,
    max_iters: int,
    max_s: float,
    min_iters: int = 2,
) -> tuple[int, float]:
    """Warm up, calibrate on a few steps, then time as many steps as fit ``max_s`` (within
    [min_iters, max_iters]) with one synchronize at each end. Returns (steps, seconds)."""
    for _ in range(warmup):
        step()
    _sync(device)
    n_cal = max(1, min(3, max_iters))
    t = time.perf_counter()
    for _ in range(n_cal):
        step()
    _sync(device)
    per = max((time.perf_counter() - t) / n_cal, 1e-6)
    iters = int(min(max_iters, max(min_iters, max_s / per)))
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return iters, time.perf_counter() - t0


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"[:200]


def _git_revision() -> str | None:
    """The revision the engine records in its summaries (``git rev-parse`` + ``-dirty``); without a git
    binary, the ref read from ``.git`` by hand."""
    from reslab.train.engine import _git_revision as engine_revision

    rev = engine_revision()
    if rev is not None:
        return rev
    head = ROOT / ".git" / "HEAD"  # no git binary: read the ref by hand
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (ROOT / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _macs(name: str, hw: int) -> int:
    """Multiply-adds per image of reslab's ``name`` at ``hw`` x ``hw`` (model_info at the default size)."""
    from reslab.models import create_model, model_info

    info = model_info(name)
    h, w = info["input_size"][1:]
    if (h, w) == (hw, hw):
        return int(info["macs"])
    with torch.device("meta"):
        m = create_model(name)
    if hasattr(m, "count_macs"):
        return int(m.count_macs((hw, hw)))
    return int(info["macs"] * hw * hw / (h * w))


def _synthetic(**spec: Any) -> Any:
    from reslab.data import load_dataset

    return load_dataset("synthetic", **spec)


@contextlib.contextmanager
def _engine_sees(ds: Any) -> Iterator[None]:
    """Make ``train()`` load ``ds`` for ``dataset: synthetic``.

    ``TrainConfig`` has no field for the synthetic data's size (the engine loads the default 1024 images),
    so the engine's dataset loader is patched for the duration (restored afterwards)."""
    from reslab.train import engine

    orig = getattr(engine, "_load_dataset", None)
    if orig is None:
        raise RuntimeError("reslab.train.engine._load_dataset is gone: cannot size the synthetic data")

    def patched(name: str, *args: Any, **kwargs: Any) -> Any:
        return ds if name == "synthetic" else orig(name, *args, **kwargs)

    engine._load_dataset = patched  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._load_dataset = orig  # type: ignore[assignment]


def _read_metrics(run_dir: Path) -> list[dict[str, float]]:
    rows = []
    with open(run_dir / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) if v not in ("", None) else math.nan for k, v in r.items()})
    return rows


def _train_run(cfg: Any, tmp: Path, tag: str) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """``reslab.train.train(cfg)`` into a fresh directory; (summary, metrics.csv rows); directory removed."""
    from reslab.train import train

    run_dir = tmp / f"{tag}-{time.monotonic_ns()}"
    try:
        summary = train(cfg, run_dir, progress=False)
        return summary, _read_metrics(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _window_rate(rows: list[dict[str, float]], batch: int, single: bool = False) -> tuple[float, int, float]:
    """(images/s, steps, training seconds) of the last metrics window (the earlier ones are warm-up).
    ``single``: one window is enough (``--tiny``: its rate then includes the warm-up)."""
    if len(rows) < (1 if single else 2):
        raise RuntimeError(f"expected >= 2 evaluation rows in metrics.csv, got {len(rows)}")
    last = rows[-1]
    prev_step = rows[-2]["step"] if len(rows) > 1 else 0.0
    ips = last["images_per_s"]
    if not ips or math.isnan(ips):
        raise RuntimeError("metrics.csv has no images_per_s in its last row")
    steps = int(last["step"] - prev_step)
    return ips, steps, steps * batch / ips


def _paper_target(wall: float, scaled: bool) -> dict[str, Any]:
    """The issue's target applies to the recipe's own 64k-iteration schedule only, not a scaled-down one."""
    if scaled:
        return {"target": None, "target_met": None}
    return {
        "target": f"< {TARGET_PAPER_S:g} s (>= {TARGET_PAPER_IPS:,} img/s)",
        "target_met": wall < TARGET_PAPER_S,
    }


def extrapolate_schedule(
    rows: list[dict[str, float]], *, batch: int, total: int, every: int, prefix_wall: float
) -> dict[str, float]:
    """The wall time of a ``total``-iteration run evaluating every ``every`` iterations, from the metrics rows
    of a measured prefix (one row per evaluation: ``step``, ``images_per_s`` (training time only),
    ``elapsed``) and its whole wall time: prefix wall + remaining iterations x the steady seconds per
    iteration + remaining evaluations x the measured seconds per evaluation (evaluation plus the checkpoint
    written with it). Windows after the first are steady (the first holds warm-up and setup)."""
    if len(rows) < 2:
        raise RuntimeError(f"the prefix gave {len(rows)} evaluation rows, need >= 2")
    pairs = list(itertools.pairwise(rows))
    steps = [r["step"] - p["step"] for p, r in pairs]
    train_s = [n * batch / r["images_per_s"] for n, (_, r) in zip(steps, pairs)]
    eval_s = [(r["elapsed"] - p["elapsed"]) - ts for ts, (p, r) in zip(train_s, pairs)]
    t_iter = sum(train_s) / sum(steps)
    t_eval = max(0.0, sum(eval_s) / len(eval_s))
    done = int(rows[-1]["step"])
    evals_full = total // every + (0 if total % every == 0 else 1)
    wall = float(prefix_wall) + (total - done) * t_iter + max(0, evals_full - len(rows)) * t_eval
    return {"wall_s": wall, "s_per_iteration": t_iter, "s_per_evaluation": t_eval, "evaluations": evals_full}


# ------------------------------------------------------------------------------------------ the suite


class Suite:
    """Runs measurements in order under one time budget; each is guarded; JSON after each."""

    def __init__(self, s: Settings, out: Path, argv: list[str]) -> None:
        self.s = s
        self.device = torch.device(s.device)
        self.out = out
        self.t0 = time.perf_counter()
        self.peak_flops: float | None = None  # FLOP/s
        self.rows: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}  # values shared between measurements
        self.tmp = Path(tempfile.mkdtemp(prefix="reslab-gpu-suite-"))
        self.meta = self._meta(argv)
        self._lock = threading.Lock()
        self.finished = False

    # -- bookkeeping

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.s.budget_s - self.elapsed()

    def _meta(self, argv: list[str]) -> dict[str, Any]:
        dev = self.device
        m: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": argv,
            "git_revision": _git_revision(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": _safe(torch.backends.cudnn.version),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": _safe(lambda: torch.backends.cudnn.allow_tf32),
            "matmul_allow_tf32": _safe(lambda: torch.backends.cuda.matmul.allow_tf32),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "device": str(dev),
            "tiny": self.s.tiny,
            "settings": asdict(self.s),
        }
        with contextlib.suppress(Exception):
            import torchvision

            m["torchvision"] = torchvision.__version__
        if dev.type == "cuda":
            with contextlib.suppress(Exception):
                props = torch.cuda.get_device_properties(dev)
                m["device_name"] = props.name
                m["device_memory_gib"] = round(props.total_memory / 2**30, 1)
                m["device_capability"] = f"{props.major}.{props.minor}"
                m["device_sms"] = props.multi_processor_count
        else:
            m["device_name"] = (
                f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
            )
        return m

    def mfu(self, macs_per_image: float, ips: float | None, train: bool) -> float | None:
        if not self.peak_flops or not ips or not macs_per_image:
            return None
        return (3.0 if train else 1.0) * 2.0 * macs_per_image * ips / self.peak_flops

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("images_per_s", None)
        row.setdefault("mfu", None)
        with self._lock:
            self.rows.append(row)
        ips = row.get("images_per_s")
        what = f"{ips:,.0f} img/s" if ips else (row.get("error") or row.get("value_text") or "")
        print(f"[{self.elapsed():6.1f}s] {row['name']}: {what}", flush=True)
        return row

    def write(self, aborted: bool = False) -> None:
        from reslab._io import write_json

        with self._lock:
            doc = {
                "meta": self.meta,
                "peak_bf16_tflops": self.peak_flops / 1e12 if self.peak_flops else None,
                "results": list(self.rows),
                "total_s": round(self.elapsed(), 2),
                "finished": self.finished,
                "aborted": aborted,
            }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.out, doc)

    def run(self, group: str, fn: Callable[[], None], min_s: float) -> None:
        """Run one measurement group if ``min_s`` of budget is left; record any failure and go on."""
        if self.remaining() < min_s:
            self.add({"name": group, "group": group, "skipped": f"time budget: {self.remaining():.0f}s left"})
            self.write()
            return
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # one failure must not end the suite
            self.add(
                {
                    "name": group,
                    "group": group,
                    "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                    "traceback": traceback.format_exc(limit=8)[-3000:],
                }
            )
        finally:
            self.facts[f"{group}_seconds"] = time.perf_counter() - t
            _cleanup(self.device)
            self.write()

    def guarded(self, name: str, group: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """One row: ``fn()``'s fields, or its error; the group goes on either way."""
        t = time.perf_counter()
        try:
            row = {"name": name, "group": group, **fn()}
        except Exception as e:
            row = {
                "name": name,
                "group": group,
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                "traceback": traceback.format_exc(limit=8)[-3000:],
            }
        row["seconds"] = round(time.perf_counter() - t, 2)
        self.add(row)
        _cleanup(self.device)
        self.write()
        return row if "error" not in row else None

    # -- peak

    def peak(self) -> None:
        dev, best, per = self.device, 0.0, {}
        for n in self.s.matmul_sizes:
            try:
                a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)

                def step(a=a, b=b, c=c) -> None:
                    torch.matmul(a, b, out=c)

                iters, dt = _timed_steps(step, dev, warmup=3, max_iters=200, max_s=1.5, min_iters=3)
                rate = 2.0 * n**3 * iters / dt
                per[str(n)] = round(rate / 1e12, 2)
                best = max(best, rate)
                del a, b, c
            except Exception as e:  # e.g. out of memory at the largest size: keep the others
                per[str(n)] = f"{type(e).__name__}: {e}"[:200]
            _cleanup(dev)
        if best <= 0:
            raise RuntimeError(f"no matmul size succeeded: {per}")
        self.peak_flops = best
        self.add(
            {
                "name": "peak bf16 matmul",
                "group": "peak",
                "tflops": round(best / 1e12, 2),
                "per_size_tflops": per,
                "value_text": f"{best / 1e12:.4g} TFLOP/s",
            }
        )

    # -- cifar: reslab loop vs conventional loop

    def _cifar_cfg(self, model: str, window: int, **over: Any) -> Any:
        from reslab.train import TrainConfig

        s = self.s
        fields = {
            "recipe": "gpu_suite",
            "model": model,
            "dataset": "synthetic",
            "batch_size": s.cifar_batch,
            "iterations": 2 * window,
            "eval_every": window,
            "eval_subset": s.cifar_eval_subset,
            "val_split": 0,
            "log_every": min(100, window),
            "checkpoint_every": 10**9,  # checkpoints only at the evaluations, outside the timed windows
            "tensorboard": False,
            "device": s.device,
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "milestones": [],
        }
        fields.update(over)
        cfg = TrainConfig()
        cfg.update(fields, source="gpu_suite")
        return cfg.validate()

    def cifar(self) -> None:
        s, dev = self.s, self.device
        spec = {"shape": (3, s.cifar_hw, s.cifar_hw), "num_classes": 10}
        ds = _synthetic(**spec, train_size=s.cifar_train, test_size=s.cifar_test)
        reslab_ips: dict[str, float] = {}
        for name in s.cifar_models:

            def one(name: str = name) -> dict[str, Any]:
                window = s.cifar_window.get(name, 100)
                with _engine_sees(ds):
                    summary, rows = _train_run(self._cifar_cfg(name, window), self.tmp, name)
                ips, steps, secs = _window_rate(rows, s.cifar_batch)
                reslab_ips[name] = ips
                macs = _macs(name, s.cifar_hw)
                return {
                    "model": name,
                    "loop": "reslab train()",
                    "images_per_s": ips,
                    "mfu": self.mfu(macs, ips, True),
                    "macs_per_image": macs,
                    "batch": s.cifar_batch,
                    "timed_steps": steps,
                    "timed_s": round(secs, 3),
                    "precision": "bf16 autocast" if dev.type == "cuda" else "fp32",
                    "channels_last": True,
                    "wall_time_s": summary.get("wall_time_s"),
                }

            self.guarded(f"cifar {name} train: reslab loop", "cifar", one)
        if "resnet20" in reslab_ips:
            self.facts["resnet20_reslab_ips"] = reslab_ips["resnet20"]
        conv_ips = self._conventional(ds)
        for name in s.cifar_models:
            if name in reslab_ips and conv_ips.get(name):
                ratio = reslab_ips[name] / conv_ips[name]
                row: dict[str, Any] = {
                    "name": f"cifar {name}: reslab / conventional",
                    "group": "cifar",
                    "ratio": round(ratio, 2),
                    "value_text": f"{ratio:.2f}x",
                }
                if name == "resnet20":
                    row["target"] = f">= {TARGET_SPEEDUP:g}x"
                    row["target_met"] = ratio >= TARGET_SPEEDUP
                self.add(row)

    @staticmethod
    def option_variants(batch: int) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Each engine option that may pay on a GPU, one at a time against the defaults (ResNet-20):
        "measure each, keep what pays". On CUDA the defaults are fused SGD, cuDNN autotuning, bf16 and
        channels_last; ``batch`` is the suite's CIFAR batch (the row with 4x the batch scales it)."""
        return (
            ("defaults", {}),
            ("optimizer_impl=foreach", {"optimizer_impl": "foreach"}),
            ("optimizer_impl=loop", {"optimizer_impl": "loop"}),
            ("cudnn_benchmark=false", {"cudnn_benchmark": False}),
            ("channels_last=false", {"channels_last": False}),
            ("amp=off (fp32)", {"amp": "off"}),
            (f"batch x4 ({4 * batch})", {"batch_size": 4 * batch}),
            ("compile=default", {"compile": "default"}),
            ("compile=reduce-overhead (CUDA graphs)", {"compile": "reduce-overhead"}),
            ("compile=max-autotune-no-cudagraphs", {"compile": "max-autotune-no-cudagraphs"}),
        )

    def options(self) -> None:
        """Optional (``--only options``): reslab's loop for ResNet-20 with one engine option changed per
        row; the ratio to the defaults row says whether the option pays. The compile rows' first window
        holds the compilation (``wall_time_s_incl_compile``); their rate is from the second window."""
        s, dev = self.s, self.device
        ds = _synthetic(
            shape=(3, s.cifar_hw, s.cifar_hw),
            num_classes=10,
            train_size=s.cifar_train,
            test_size=s.cifar_test,
        )
        variants = self.option_variants(s.cifar_batch)
        if dev.type != "cuda":  # CPU smoke test: the compile modes need a C++ toolchain and minutes
            variants = tuple(v for v in variants if "compile" not in v[1])
        base: dict[str, float] = {}
        for label, over in variants:

            def one(label: str = label, over: dict[str, Any] = over) -> dict[str, Any]:
                batch = over.get("batch_size", s.cifar_batch)
                window = max(1, s.cifar_window.get("resnet20", 100) * s.cifar_batch // batch)
                with _engine_sees(ds):
                    summary, rows = _train_run(
                        self._cifar_cfg("resnet20", window, **over), self.tmp, "option"
                    )
                ips, steps, secs = _window_rate(rows, batch)
                if label == "defaults":
                    base["ips"] = ips
                macs = _macs("resnet20", s.cifar_hw)
                ratio = ips / base["ips"] if base.get("ips") else None
                return {
                    "model": "resnet20",
                    "option": label,
                    "overrides": over,
                    "images_per_s": ips,
                    "mfu": self.mfu(macs, ips, True),
                    "batch": batch,
                    "timed_steps": steps,
                    "timed_s": round(secs, 3),
                    "ratio_to_defaults": round(ratio, 3) if ratio else None,
                    "value_text": f"{ratio:.2f}x defaults" if ratio else "",
                    "wall_time_s_incl_compile": summary.get("wall_time_s"),
                }

            self.guarded(f"option resnet20 {label}", "options", one)

    def fmnist(self) -> None:
        """Optional (``--only fmnist``, needs ``--fmnist-dir``): the ``fashion_mnist_fast`` recipe on the real
        data, ``--fmnist-seeds`` seeds: wall time of ``train()`` end to end and test accuracy; target 94% in
        under 15 s. ``fashion_mnist_best`` (~15 min) does not fit one call: run it with ``reslab train``
        (it resumes across calls) and record it by hand."""
        import statistics

        from reslab.train import load_recipe

        s = self.s
        if not s.fmnist_dir:
            raise RuntimeError("--fmnist-dir DIR (the Fashion-MNIST idx .gz files) is needed for this group")
        accs, walls = [], []
        for seed in range(s.fmnist_seeds):

            def one(seed: int = seed) -> dict[str, Any]:
                over: dict[str, Any] = {
                    "seed": seed,
                    "data_dir": s.fmnist_dir,
                    "device": s.device,
                    "tensorboard": False,
                }
                if s.tiny:
                    over |= {
                        "subset": 512,
                        "epochs": 1,
                        "batch_size": 64,
                        "warmup_iters": 2,
                        "eval_subset": 256,
                    }
                cfg = load_recipe("fashion_mnist_fast", **over)
                t = time.perf_counter()
                summary, _ = _train_run(cfg, self.tmp, f"fmnist-{seed}")
                wall = time.perf_counter() - t
                acc = summary["test_accuracy"]
                accs.append(acc)
                walls.append(wall)
                return {
                    "recipe": "fashion_mnist_fast",
                    "seed": seed,
                    "test_accuracy": acc,
                    "wall_s": round(wall, 2),
                    "train_wall_s": summary.get("wall_time_s"),
                    "value_text": f"{acc:.2f}% in {wall:.1f} s",
                    "target": "94% in < 15 s",
                    "target_met": acc >= 94.0 and wall < 15.0,
                }

            self.guarded(f"fashion_mnist_fast seed {seed}", "fmnist", one)
        if len(accs) >= 2:
            m, sd = statistics.mean(accs), statistics.stdev(accs)
            self.add(
                {
                    "name": f"fashion_mnist_fast mean over {len(accs)} seeds",
                    "group": "fmnist",
                    "test_accuracy_mean": m,
                    "test_accuracy_std": sd,
                    "wall_s_mean": statistics.mean(walls),
                    "value_text": f"{m:.2f} +- {sd:.2f}% in {statistics.mean(walls):.1f} s",
                }
            )

    def _conventional(self, ds: Any) -> dict[str, float]:
        """The conventional loop for every CIFAR model, sharing one DataLoader (persistent workers)."""
        import multiprocessing as mp

        import numpy as np
        import torchvision.transforms as T

        from reslab.models import create_model

        s, dev = self.s, self.device
        images = np.ascontiguousarray(ds.train_x.permute(0, 2, 3, 1).numpy())  # uint8 HWC, like CIFAR's
        labels = ds.train_y.numpy()
        transform = T.Compose(
            [
                T.RandomCrop(s.cifar_hw, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(tuple(ds.mean), tuple(ds.std)),
            ]
        )
        kw: dict[str, Any] = {}
        if s.conv_workers > 0:
            kw = {"persistent_workers": True, "prefetch_factor": 4, "timeout": 120}
            if "fork" in mp.get_all_start_methods():
                kw["multiprocessing_context"] = "fork"
        loader = torch.utils.data.DataLoader(
            CifarLikeDataset(images, labels, transform),
            batch_size=s.cifar_batch,
            shuffle=True,
            num_workers=s.conv_workers,
            pin_memory=dev.type == "cuda",
            drop_last=True,
            **kw,
        )
        state: dict[str, Any] = {"it": iter(loader)}

        def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                return next(state["it"])

        out: dict[str, float] = {}
        try:
            for name in s.cifar_models:

                def one(name: str = name) -> dict[str, Any]:
                    model = create_model(name).to(dev).train()
                    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

                    def step() -> None:
                        x, y = next_batch()
                        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                        loss = F.cross_entropy(model(x), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()

                    iters, dt = _timed_steps(
                        step, dev, warmup=s.conv_warmup, max_iters=s.conv_max_iters, max_s=s.conv_max_s
                    )
                    ips = iters * s.cifar_batch / dt
                    out[name] = ips
                    macs = _macs(name, s.cifar_hw)
                    return {
                        "model": name,
                        "loop": "conventional (DataLoader + per-image transforms, fp32, eager)",
                        "images_per_s": ips,
                        "mfu": self.mfu(macs, ips, True),
                        "macs_per_image": macs,
                        "batch": s.cifar_batch,
                        "timed_steps": iters,
                        "timed_s": round(dt, 3),
                        "workers": s.conv_workers,
                        "precision": "fp32",
                        "channels_last": False,
                    }

                self.guarded(f"cifar {name} train: conventional loop", "cifar", one)
        finally:
            state.clear()
            with contextlib.suppress(Exception):  # shut the persistent workers down now
                it = getattr(loader, "_iterator", None)
                if it is not None and hasattr(it, "_shutdown_workers"):
                    it._shutdown_workers()
            gc.collect()
        return out

    # -- cifar_paper: the whole 64k-iteration schedule

    def _paper_cfg(self, **over: Any) -> Any:
        from reslab.train import load_recipe

        s = self.s
        fields: dict[str, Any] = {
            "model": "resnet20",
            "dataset": "synthetic",
            "val_split": s.paper_val_split,
            "device": s.device,
            "tensorboard": False,
        }
        if s.tiny:
            fields.update(batch_size=s.cifar_batch, eval_subset=s.cifar_eval_subset)
        if s.paper_iterations:  # a scaled-down schedule: milestones at the same fractions
            base = load_recipe("cifar_paper")
            n = int(s.paper_iterations)
            every = int(s.paper_eval_every or base.eval_every or n)
            scale = n / float(base.iterations)
            fields.update(
                iterations=n,
                eval_every=every,
                checkpoint_every=every,
                milestones=sorted({max(1, min(n - 1, round(m * scale))) for m in base.milestones}),
            )
        fields.update(over)
        return load_recipe("cifar_paper", **fields)

    def _paper_spec(self) -> dict[str, Any]:
        s = self.s
        return {
            "shape": (3, s.cifar_hw, s.cifar_hw),
            "num_classes": 10,
            "train_size": s.cifar_train,
            "test_size": s.cifar_test,
        }

    def cifar_paper(self) -> None:
        s = self.s
        full = self._paper_cfg()  # the recipe as it is (64k iterations, evaluations every 2k)
        total, every, batch = (
            int(full.iterations),
            int(full.eval_every or full.iterations),
            full.batch_size,
        )
        w = s.paper_window
        if not s.tiny and self.facts.get("resnet20_reslab_ips"):  # ~6 s per window at the measured rate
            w = int(min(2000, max(200, round(6.0 * self.facts["resnet20_reslab_ips"] / batch / 100) * 100)))
        w = max(1, min(w, total // 4))
        n = 4 * w

        def prefix() -> dict[str, Any]:
            cfg = self._paper_cfg(iterations=n, eval_every=w, checkpoint_every=w, milestones=[2 * w, 3 * w])
            with _engine_sees(_synthetic(**self._paper_spec())):
                summary, rows = _train_run(cfg, self.tmp, "cifar_paper-prefix")
            ex = extrapolate_schedule(
                rows, batch=batch, total=total, every=every, prefix_wall=summary["wall_time_s"]
            )
            wall, t_iter, t_eval = ex["wall_s"], ex["s_per_iteration"], ex["s_per_evaluation"]
            wall_prefix, evals_full, evals_prefix = (
                float(summary["wall_time_s"]),
                ex["evaluations"],
                len(rows),
            )
            ips = total * batch / wall
            self.facts["paper_extrapolated_s"] = wall
            macs = _macs("resnet20", s.cifar_hw)
            return {
                "model": "resnet20",
                "recipe": "cifar_paper",
                "measured": False,
                "EXTRAPOLATED": True,
                "wall_time_s": round(wall, 2),
                "images_per_s": ips,
                "mfu": self.mfu(macs, ips, True),
                "macs_per_image": macs,
                "value_text": f"{wall:.1f} s (extrapolated)",
                "iterations": total,
                "evaluations": evals_full,
                "prefix_iterations": n,
                "prefix_evaluations": evals_prefix,
                "prefix_wall_s": round(wall_prefix, 2),
                "steady_s_per_iteration": t_iter,
                "s_per_evaluation_incl_checkpoint": round(t_eval, 4),
                "steady_train_images_per_s": batch / t_iter,
                "method": "prefix wall + remaining iterations x steady s/iter + remaining evaluations x s/eval",
                **_paper_target(wall, scaled=bool(s.paper_iterations)),
            }

        self.guarded(f"cifar_paper resnet20 {total:,} iters: EXTRAPOLATED from {n}", "cifar_paper", prefix)

    def cifar_paper_full(self) -> None:
        """The whole schedule for real, when the extrapolation fits the time box and the budget."""
        s = self.s
        est = self.facts.get("paper_extrapolated_s")
        if est is None or s.paper_full_max_s <= 0:
            return
        if est > s.paper_full_max_s or est * 1.3 + 20 > self.remaining():
            self.add(
                {
                    "name": "cifar_paper resnet20 full schedule",
                    "group": "cifar_paper",
                    "skipped": f"extrapolated {est:.0f}s vs time box {s.paper_full_max_s:.0f}s, "
                    f"{self.remaining():.0f}s of budget left",
                }
            )
            return

        def full() -> dict[str, Any]:
            cfg = self._paper_cfg()
            with _engine_sees(_synthetic(**self._paper_spec())):
                summary, _ = _train_run(cfg, self.tmp, "cifar_paper-full")
            wall = float(summary["wall_time_s"])
            ips = cfg.iterations * cfg.batch_size / wall
            macs = _macs("resnet20", s.cifar_hw)
            return {
                "model": "resnet20",
                "recipe": "cifar_paper",
                "measured": True,
                "wall_time_s": round(wall, 2),
                "images_per_s": ips,
                "mfu": self.mfu(macs, ips, True),
                "macs_per_image": macs,
                "value_text": f"{wall:.1f} s (measured)",
                "iterations": cfg.iterations,
                "extrapolated_s": round(est, 2),
                "final": summary.get("final"),
                **_paper_target(wall, scaled=bool(s.paper_iterations)),
            }

        self.guarded(
            f"cifar_paper resnet20 {self._paper_cfg().iterations:,} iters: measured",
            "cifar_paper",
            full,
        )

    # -- resnet50

    def resnet50(self) -> None:
        import torchvision

        from reslab.models import create_model
        from reslab.train import TrainConfig
        from reslab.train.evaluate import evaluate

        s, dev = self.s, self.device
        hw, batch = s.r50_hw, s.r50_batch
        arch = s.r50_model
        macs = _macs(arch, hw)
        amp = torch.bfloat16 if dev.type == "cuda" else None
        prec = "bf16 autocast" if amp is not None else "fp32 (cpu)"
        common = {
            "batch": batch,
            "image_size": hw,
            "macs_per_image": macs,
            "precision": prec,
            "channels_last": True,
        }
        train_ips: dict[str, float] = {}

        def autocast() -> Any:
            return torch.autocast(dev.type, dtype=amp) if amp is not None else contextlib.nullcontext()

        def reslab_train() -> dict[str, Any]:
            cfg = TrainConfig()
            cfg.update(
                {
                    "recipe": "gpu_suite",
                    "model": arch,
                    "dataset": "synthetic",
                    "batch_size": batch,
                    "iterations": 2 * s.r50_window,
                    "eval_every": 0 if s.tiny else s.r50_window,  # tiny: one evaluation (checkpoint) only
                    "eval_subset": batch,
                    "eval_batch_size": batch,
                    "val_split": 0,
                    "log_every": s.r50_window,
                    "checkpoint_every": 10**9,
                    "tensorboard": False,
                    "device": s.device,
                    "lr": 0.05,
                    "milestones": [],
                },
                source="gpu_suite",
            )
            spec = {"shape": (3, hw, hw), "num_classes": 1000, "train_size": 4 * batch, "test_size": batch}
            with _engine_sees(_synthetic(**spec)):
                _, rows = _train_run(cfg.validate(), self.tmp, arch)
            ips, steps, secs = _window_rate(rows, batch, single=s.tiny)
            train_ips["reslab"] = ips
            return {
                "loop": "reslab train()",
                "images_per_s": ips,
                "mfu": self.mfu(macs, ips, True),
                "timed_steps": steps,
                "timed_s": round(secs, 3),
                "target": f">= {TARGET_R50_TRAIN:,.0f} img/s",
                "target_met": ips >= TARGET_R50_TRAIN,
                "note": "synthetic data augmented reslab's way (pad-4 crop + flip on device), not ImageNet's",
                **common,
            }

        def plain_train(which: str) -> Callable[[], dict[str, Any]]:
            def fn() -> dict[str, Any]:
                if which == "torchvision":
                    model = getattr(torchvision.models, arch)(weights=None)
                else:
                    model = create_model(arch)
                model = model.to(dev).to(memory_format=torch.channels_last).train()
                opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
                x = torch.randn(batch, 3, hw, hw, device=dev).contiguous(memory_format=torch.channels_last)
                y = torch.randint(0, 1000, (batch,), device=dev)

                def step() -> None:
                    with autocast():
                        loss = F.cross_entropy(model(x).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                iters, dt = _timed_steps(
                    step, dev, warmup=s.r50_warmup, max_iters=s.r50_max_iters, max_s=s.r50_max_s
                )
                ips = iters * batch / dt
                train_ips[which] = ips
                return {
                    "loop": "plain AMP loop (one preloaded batch)",
                    "model": f"{which} {arch}",
                    "images_per_s": ips,
                    "mfu": self.mfu(macs, ips, True),
                    "timed_steps": iters,
                    "timed_s": round(dt, 3),
                    **common,
                }

            return fn

        def reslab_infer() -> dict[str, Any]:
            model = create_model(arch).to(dev).to(memory_format=torch.channels_last)
            n = max(batch, s.r50_infer_images // batch * batch)
            x = torch.randint(0, 256, (n, 3, hw, hw), dtype=torch.uint8, device=dev)  # made on the device
            y = torch.randint(0, 1000, (n,), device=dev)
            kw = {
                "mean": (0.485, 0.456, 0.406),
                "std": (0.229, 0.224, 0.225),
                "batch_size": batch,
                "device": dev,
                "amp_dtype": amp,
                "channels_last": True,
                "num_classes": 1000,
            }
            evaluate(model, x[: batch * min(4, n // batch)], y[: batch * min(4, n // batch)], **kw)  # warm-up
            _sync(dev)
            t = time.perf_counter()
            evaluate(model, x, y, **kw)
            _sync(dev)
            dt = time.perf_counter() - t
            ips = n / dt
            return {
                "loop": "reslab.train.evaluate (uint8 on device, normalize, top-1/top-5)",
                "images_per_s": ips,
                "mfu": self.mfu(macs, ips, False),
                "images": n,
                "timed_s": round(dt, 3),
                "target": f">= {TARGET_R50_INFER:,.0f} img/s (3x the training target)",
                "target_met": ips >= TARGET_R50_INFER,
                "x_reslab_training": round(ips / train_ips["reslab"], 2) if train_ips.get("reslab") else None,
                **common,
            }

        def plain_infer(which: str) -> Callable[[], dict[str, Any]]:
            def fn() -> dict[str, Any]:
                if which == "torchvision":
                    model = getattr(torchvision.models, arch)(weights=None)
                else:
                    model = create_model(arch)
                model = model.to(dev).to(memory_format=torch.channels_last).eval()
                x = torch.randn(batch, 3, hw, hw, device=dev).contiguous(memory_format=torch.channels_last)

                def step() -> None:
                    with torch.inference_mode(), autocast():
                        model(x)

                iters, dt = _timed_steps(
                    step, dev, warmup=s.r50_warmup, max_iters=3 * s.r50_max_iters, max_s=s.r50_max_s
                )
                ips = iters * batch / dt
                return {
                    "loop": "plain inference_mode loop (one preloaded batch)",
                    "model": f"{which} {arch}",
                    "images_per_s": ips,
                    "mfu": self.mfu(macs, ips, False),
                    "timed_steps": iters,
                    "timed_s": round(dt, 3),
                    **common,
                }

            return fn

        self.guarded(f"{arch} train: reslab train()", "resnet50", reslab_train)
        self.guarded(f"{arch} train: reslab model, plain AMP loop", "resnet50", plain_train("reslab"))
        self.guarded(f"{arch} train: torchvision, plain AMP loop", "resnet50", plain_train("torchvision"))
        self.guarded(f"{arch} infer: reslab evaluate()", "resnet50", reslab_infer)
        self.guarded(f"{arch} infer: reslab model, plain loop", "resnet50", plain_infer("reslab"))
        self.guarded(f"{arch} infer: torchvision, plain loop", "resnet50", plain_infer("torchvision"))

    # -- sweep: 8 small models one after another vs concurrently

    def _sweep_spec(self, name: str, seed: int) -> dict[str, Any]:
        s = self.s
        return {
            "model": name,
            "device": s.device,
            "batch": s.sweep_batch,
            "hw": s.cifar_hw,
            "images": s.sweep_images,
            "seed": seed,
            "warmup": s.sweep_warmup,
            "iters": s.sweep_iters,
        }

    def sweep(self) -> None:
        s, dev = self.s, self.device
        specs = [self._sweep_spec(m, i) for i, m in enumerate(s.sweep_models)]
        macs = {m: _macs(m, s.cifar_hw) for m in s.sweep_models}
        images_each = s.sweep_iters * s.sweep_batch
        total_images = images_each * len(specs)
        work = sum(6.0 * macs[m] * images_each for m in s.sweep_models)  # FLOPs of the whole sweep
        models = ",".join(s.sweep_models)
        results: dict[str, float] = {}

        def row(mode: str, wall: float, extra: dict[str, Any]) -> dict[str, Any]:
            ips = total_images / wall
            results[mode] = wall
            base = results.get("sequential")
            return {
                "mode": mode,
                "models": models,
                "images_per_s": ips,
                "mfu": work / wall / self.peak_flops if self.peak_flops else None,
                "wall_s": round(wall, 3),
                "steps_per_model": s.sweep_iters,
                "batch": s.sweep_batch,
                "speedup_vs_sequential": round(base / wall, 2) if base and mode != "sequential" else None,
                "value_text": f"{base / wall:.2f}x vs sequential" if base and mode != "sequential" else "",
                **extra,
            }

        def sequential() -> dict[str, Any]:
            per = {}
            for spec in specs:
                loop = ComponentLoop(spec)
                for _ in range(spec["warmup"]):
                    loop.step()
                _sync(dev)
                t = time.perf_counter()
                for _ in range(spec["iters"]):
                    loop.step()
                _sync(dev)
                per[spec["model"]] = time.perf_counter() - t
                del loop
                _cleanup(dev)
            return row(
                "sequential", sum(per.values()), {"per_model_s": {k: round(v, 3) for k, v in per.items()}}
            )

        def processes() -> dict[str, Any]:
            wall, per = _run_workers(specs, s.sweep_ready_timeout_s, s.sweep_run_timeout_s, self.tmp)
            return row(f"{len(specs)} processes", wall, {"per_model_s": per})

        def streams() -> dict[str, Any]:
            wall, per = _run_streams(specs, dev)
            return row(f"{len(specs)} CUDA streams (threads)", wall, {"per_model_s": per})

        self.guarded(f"sweep {len(specs)} models: sequential", "sweep", sequential)
        self.guarded(f"sweep {len(specs)} models: concurrent processes", "sweep", processes)
        if dev.type == "cuda":
            self.guarded(f"sweep {len(specs)} models: concurrent CUDA streams", "sweep", streams)

    # -- output

    def table(self) -> str:
        head = ("measurement", "images/s", "MFU", "value", "target", "met", "s")
        lines = []
        for r in self.rows:
            ips = r.get("images_per_s")
            mfu = r.get("mfu")
            met = r.get("target_met")
            value = r.get("value_text") or ""
            if r.get("error"):
                value = "ERROR " + r["error"]
            elif r.get("skipped"):
                value = "skipped: " + r["skipped"]
            lines.append(
                (
                    r["name"],
                    f"{ips:,.0f}" if ips else "-",
                    f"{100 * mfu:.2f}%" if mfu is not None else "-",
                    value[:70],
                    r.get("target") or "",
                    "" if met is None else ("yes" if met else "NO"),
                    f"{r['seconds']:.1f}" if isinstance(r.get("seconds"), (int, float)) else "",
                )
            )
        widths = [
            max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)
        ]
        fmt = "  ".join(f"{{:{'<' if i in (0, 3, 4) else '>'}{w}}}" for i, w in enumerate(widths))
        peak = f"{self.peak_flops / 1e12:.4g} TFLOP/s" if self.peak_flops else "not measured"
        out = [
            f"reslab GPU suite on {self.meta.get('device_name', self.device)}; torch {torch.__version__}; "
            f"git {self.meta.get('git_revision')}; {self.meta['date']}",
            f"MFU = (3 x) 2 x MACs x images/s / measured bf16 matmul peak ({peak}); training counts 3x forward",
            fmt.format(*head),
            fmt.format(*("-" * w for w in widths)),
        ]
        out += [fmt.format(*line) for line in lines]
        out.append(f"total {self.elapsed():.1f} s; JSON: {self.out}")
        return "\n".join(out)


class CifarLikeDataset(torch.utils.data.Dataset):
    """torchvision's CIFAR10 dataset, minus the files: uint8 HWC numpy images -> PIL -> ``transform``."""

    def __init__(self, images: Any, labels: Any, transform: Callable[[Any], torch.Tensor]) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class ComponentLoop:
    """reslab's training step from its public pieces, as in ``reslab.train``'s hot loop: ``DeviceLoader``
    (uint8 on the device, pad-4 crop + flip, normalization batched there), ``create_model``, bf16 autocast
    on CUDA, channels_last, SGD (momentum 0.9, weight decay 1e-4). Without the engine's logging/evaluation."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from reslab.data import DeviceLoader
        from reslab.models import create_model

        dev = torch.device(spec["device"])
        hw, n = int(spec["hw"]), int(spec["images"])
        g = torch.Generator().manual_seed(int(spec["seed"]))
        x = torch.randint(0, 256, (n, 3, hw, hw), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (n,), generator=g)
        self.loader = DeviceLoader(
            x, y, int(spec["batch"]), device=dev, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
            augment=True, flip=True, pad=4, seed=int(spec["seed"]), channels_last=True,
        )  # fmt: skip
        self.batches = self.loader.batches()
        self.model = create_model(spec["model"]).to(dev).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.amp = torch.bfloat16 if dev.type == "cuda" else None
        self.device = dev

    def step(self) -> None:
        x, y = next(self.batches)
        ctx = torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(self.model(x).float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _run_streams(specs: list[dict[str, Any]], dev: torch.device) -> tuple[float, dict[str, float]]:
    """One thread and one CUDA stream per model; all start together after warming up."""
    barrier = threading.Barrier(len(specs) + 1, timeout=300)
    per: dict[str, float] = {}
    errors: list[str] = []

    def work(spec: dict[str, Any]) -> None:
        try:
            if dev.index is not None:
                torch.cuda.set_device(dev)  # the current device is per thread
            stream = torch.cuda.Stream(dev)
            with torch.cuda.stream(stream):
                loop = ComponentLoop(spec)
                for _ in range(spec["warmup"]):
                    loop.step()
                stream.synchronize()
                barrier.wait()
                t = time.perf_counter()
                for _ in range(spec["iters"]):
                    loop.step()
                stream.synchronize()
                per[spec["model"]] = round(time.perf_counter() - t, 3)
        except Exception as e:
            errors.append(f"{spec['model']}: {type(e).__name__}: {e}")
            barrier.abort()

    threads = [threading.Thread(target=work, args=(sp,), daemon=True) for sp in specs]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join(timeout=60)
        raise RuntimeError("; ".join(errors) or "a stream thread failed before the start") from None
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=300)
    torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    if errors or len(per) != len(specs):
        raise RuntimeError("; ".join(errors) or "a stream thread did not finish")
    return wall, per


def _run_workers(
    specs: list[dict[str, Any]], ready_timeout: float, run_timeout: float, tmp: Path
) -> tuple[float, dict[str, float]]:
    """One worker process per model (this script with ``--_worker``): each warms up and says READY; when all
    have, they get GO together; the wall time runs from GO to the last RESULT."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    lines: queue.Queue[tuple[int, str]] = queue.Queue()
    procs: list[subprocess.Popen] = []
    errs = []

    def reader(i: int, stream: Any) -> None:
        for line in stream:
            lines.put((i, line.strip()))
        lines.put((i, "EOF"))

    def collect(tag: str, deadline: float) -> dict[int, str]:
        got: dict[int, str] = {}
        while len(got) < len(procs):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(
                    f"workers {sorted(set(range(len(procs))) - set(got))} gave no {tag} in time"
                )
            try:
                i, line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line == "EOF" and i not in got:
                tail = errs[i].read_text()[-800:] if errs[i].exists() else ""
                raise RuntimeError(f"worker {specs[i]['model']} exited before {tag}: {tail.strip()}")
            if line.startswith(tag):
                got[i] = line[len(tag) :].strip()
        return got

    ok = False
    try:
        for i, spec in enumerate(specs):
            errs.append(tmp / f"worker-{i}.err")
            with open(errs[i], "w") as ef:
                p = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ef, text=True, env=env, cwd=str(ROOT),
                )  # fmt: skip
            procs.append(p)
            threading.Thread(target=reader, args=(i, p.stdout), daemon=True).start()
        collect("READY", time.perf_counter() + ready_timeout)
        t0 = time.perf_counter()
        for p in procs:
            p.stdin.write("GO\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        got = collect("RESULT", time.perf_counter() + run_timeout)
        wall = time.perf_counter() - t0
        per = {specs[i]["model"]: round(json.loads(v)["seconds"], 3) for i, v in got.items()}
        ok = True
        return wall, per
    finally:
        for p in procs:  # only the processes started here, each by its handle
            with contextlib.suppress(Exception):
                if p.stdin:
                    p.stdin.close()
            if not ok:
                with contextlib.suppress(Exception):
                    p.kill()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def _worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec["device"] == "cpu":
        torch.set_num_threads(1)
    dev = torch.device(spec["device"])
    loop = ComponentLoop(spec)
    for _ in range(int(spec["warmup"])):
        loop.step()
    _sync(dev)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    t = time.perf_counter()
    for _ in range(int(spec["iters"])):
        loop.step()
    _sync(dev)
    dt = time.perf_counter() - t
    print("RESULT " + json.dumps({"model": spec["model"], "seconds": dt}), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------- main


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument(
        "--tiny", action="store_true", help="tiny sizes, a few steps each: the whole suite in seconds"
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default: all), or the optional "
        f"{','.join(OPTIONAL)}; peak always runs",
    )
    p.add_argument("--out", default="bench_results/gpu_suite.json", help="JSON output file")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite (default 480)")
    p.add_argument(
        "--paper-full-max-s", type=float, default=180.0,
        help="run the full cifar_paper schedule only if extrapolated to at most this many seconds",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the conventional loop")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--fmnist-dir", default=None, help="Fashion-MNIST idx .gz files (for --only fmnist)")
    p.add_argument("--fmnist-seeds", type=int, default=3, help="seeds of fashion_mnist_fast (default 3)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in MEASUREMENTS + OPTIONAL]
        if bad:
            p.error(f"--only: unknown {', '.join(bad)}; choose from {', '.join(MEASUREMENTS + OPTIONAL)}")
        args.only = names
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args._worker is not None:
        return _worker_main(args._worker)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: CUDA is not available here (use --device cpu, e.g. with --tiny)", file=sys.stderr)
        return 2
    if dev.type not in ("cuda", "cpu"):
        print(f"gpu_suite: unsupported device {args.device!r}", file=sys.stderr)
        return 2
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if args.tiny and dev.type == "cpu":
        torch.set_num_threads(1)  # a smoke test on a shared machine: threads only fight each other
    s = Settings.make(args)
    suite = Suite(s, Path(args.out), argv)
    only = set(args.only or MEASUREMENTS)
    print(
        f"gpu_suite: {suite.meta.get('device_name')} torch {torch.__version__}, budget {s.budget_s:.0f}s",
        flush=True,
    )

    def abort() -> None:  # the watchdog: the suite overran; leave the JSON and the table anyway
        suite.add({"name": "watchdog", "group": "suite", "error": f"aborted after {suite.elapsed():.0f}s"})
        with contextlib.suppress(Exception):
            suite.write(aborted=True)
        print(suite.table(), flush=True)
        os._exit(3)

    watchdog = threading.Timer(s.budget_s + 45.0, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        suite.write()
        suite.run("peak", suite.peak, 0)  # always: every MFU needs it
        if "cifar" in only:
            suite.run("cifar", suite.cifar, 30)
        if "cifar_paper" in only:
            suite.run("cifar_paper", suite.cifar_paper, 30)
        if "resnet50" in only:
            suite.run("resnet50", suite.resnet50, 30)
        if "sweep" in only:
            suite.run("sweep", suite.sweep, 30)
        if "options" in only:
            suite.run("options", suite.options, 60)
        if "fmnist" in only:
            suite.run("fmnist", suite.fmnist, 20)
        if "cifar_paper" in only:
            suite.run("cifar_paper_full", suite.cifar_paper_full, 0)
        suite.finished = True
        suite.write()
    finally:
        watchdog.cancel()
        shutil.rmtree(suite.tmp, ignore_errors=True)
    print(suite.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
