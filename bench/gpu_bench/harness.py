"""The benchmark harness: the suite's sizes (:class:`Settings`), its bookkeeping (:class:`Suite`: the time
budget, guarded rows, the JSON, the table) and the helpers every measurement uses (timing, MACs, a
``reslab.train.train`` run into a scratch directory and the images/s of its last window).

Measurements are functions ``fn(suite)`` in the sibling modules; ``bench/gpu_suite.py`` runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import json
import math
import os
import platform
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
SWEEP_MODELS = ("plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44", "resnet56")

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
# ------------------------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def timed_steps(
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
    sync(device)
    n_cal = max(1, min(3, max_iters))
    t = time.perf_counter()
    for _ in range(n_cal):
        step()
    sync(device)
    per = max((time.perf_counter() - t) / n_cal, 1e-6)
    iters = int(min(max_iters, max(min_iters, max_s / per)))
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters, time.perf_counter() - t0


def safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"[:200]


def macs_per_image(name: str, hw: int) -> int:
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


def synthetic_spec(hw: int, num_classes: int, train_size: int, test_size: int) -> dict[str, Any]:
    """``TrainConfig.data_kwargs`` of synthetic data: ``train_size`` + ``test_size`` random uint8 images of
    3 x ``hw`` x ``hw`` (the same images for the same arguments)."""
    return {
        "shape": [3, hw, hw],
        "num_classes": num_classes,
        "train_size": train_size,
        "test_size": test_size,
    }


def synthetic_data(spec: dict[str, Any]) -> Any:
    """The data set ``reslab.train.train`` trains on for ``data_kwargs=spec`` (for the baselines)."""
    from reslab.data import load_dataset

    return load_dataset("synthetic", **spec)


def train_config(fields: dict[str, Any]) -> Any:
    """A validated ``TrainConfig`` from ``fields`` on top of the defaults."""
    from reslab.train import TrainConfig

    cfg = TrainConfig()
    cfg.update(fields, source="gpu_suite")
    return cfg.validate()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    rows = []
    with open(run_dir / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) if v not in ("", None) else math.nan for k, v in r.items()})
    return rows


def train_run(cfg: Any, tmp: Path, tag: str) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """``reslab.train.train(cfg)`` into a fresh directory; (summary, metrics.csv rows); directory removed."""
    from reslab.train import train

    run_dir = tmp / f"{tag}-{time.monotonic_ns()}"
    try:
        summary = train(cfg, run_dir, progress=False)
        return summary, read_metrics(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def window_rate(rows: list[dict[str, float]], batch: int, single: bool = False) -> tuple[float, int, float]:
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
        from reslab.provenance import device_name, git_revision

        dev = self.device
        m: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": argv,
            "git_revision": git_revision(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": safe(torch.backends.cudnn.version),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": safe(lambda: torch.backends.cudnn.allow_tf32),
            "matmul_allow_tf32": safe(lambda: torch.backends.cuda.matmul.allow_tf32),
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
            m["device_name"] = device_name(dev)
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
        tmp = self.out.with_name(f".{self.out.name}.tmp")  # atomic: the watchdog may fire mid-write
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

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
            cleanup(self.device)
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
        cleanup(self.device)
        self.write()
        return row if "error" not in row else None

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
