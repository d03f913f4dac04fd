"""The baselines reslab is measured against, and the loops the sweep runs: the conventional PyTorch loop
(a torchvision-style ``Dataset`` of uint8 HWC images, ``DataLoader`` workers with per-image PIL
transforms, fp32, eager, NCHW), :class:`ComponentLoop` (reslab's hot path from its public pieces, without
the engine's logging/evaluation), and the concurrent runners (CUDA streams in threads, worker processes)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gpu_bench.harness import ROOT, Suite, macs_per_image, sync, timed_steps

SUITE = ROOT / "bench" / "gpu_suite.py"  # the worker processes run it with --_worker


def conventional(suite: Suite, ds: Any) -> dict[str, float]:
    """The conventional loop for every CIFAR model, sharing one DataLoader (persistent workers). One
    function on purpose: the loader, its batch pump and the per-model rows share the workers, which must
    be shut down here however a row ends."""
    import multiprocessing as mp

    import numpy as np
    import torchvision.transforms as T

    from reslab.models import create_model

    s, dev = suite.s, suite.device
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

                iters, dt = timed_steps(
                    step, dev, warmup=s.conv_warmup, max_iters=s.conv_max_iters, max_s=s.conv_max_s
                )
                ips = iters * s.cifar_batch / dt
                out[name] = ips
                macs = macs_per_image(name, s.cifar_hw)
                return {
                    "model": name,
                    "loop": "conventional (DataLoader + per-image transforms, fp32, eager)",
                    "images_per_s": ips,
                    "mfu": suite.mfu(macs, ips, True),
                    "macs_per_image": macs,
                    "batch": s.cifar_batch,
                    "timed_steps": iters,
                    "timed_s": round(dt, 3),
                    "workers": s.conv_workers,
                    "precision": "fp32",
                    "channels_last": False,
                }

            suite.guarded(f"cifar {name} train: conventional loop", "cifar", one)
    finally:
        state.clear()
        with contextlib.suppress(Exception):  # shut the persistent workers down now
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
        gc.collect()
    return out


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


def run_streams(specs: list[dict[str, Any]], dev: torch.device) -> tuple[float, dict[str, float]]:
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


def run_workers(
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
                    [sys.executable, str(SUITE), "--_worker", json.dumps(spec)],
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


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec["device"] == "cpu":
        torch.set_num_threads(1)
    dev = torch.device(spec["device"])
    loop = ComponentLoop(spec)
    for _ in range(int(spec["warmup"])):
        loop.step()
    sync(dev)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    t = time.perf_counter()
    for _ in range(int(spec["iters"])):
        loop.step()
    sync(dev)
    dt = time.perf_counter() - t
    print("RESULT " + json.dumps({"model": spec["model"], "seconds": dt}), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------- main
