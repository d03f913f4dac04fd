"""``sweep``: the paper's depth sweep (plain/ResNet-20/32/44/56, Fig. 6), a fixed number of steps each: one
after another in this process vs all at once in worker processes vs CUDA streams in threads."""

from __future__ import annotations

import time
from typing import Any

from gpu_bench.baselines import ComponentLoop, run_streams, run_workers
from gpu_bench.harness import Suite, cleanup, macs_per_image, sync


def sweep_spec(suite: Suite, name: str, seed: int) -> dict[str, Any]:
    s = suite.s
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


def sweep(suite: Suite) -> None:
    s, dev = suite.s, suite.device
    specs = [sweep_spec(suite, m, i) for i, m in enumerate(s.sweep_models)]
    macs = {m: macs_per_image(m, s.cifar_hw) for m in s.sweep_models}
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
            "mfu": work / wall / suite.peak_flops if suite.peak_flops else None,
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
            sync(dev)
            t = time.perf_counter()
            for _ in range(spec["iters"]):
                loop.step()
            sync(dev)
            per[spec["model"]] = time.perf_counter() - t
            del loop
            cleanup(dev)
        return row("sequential", sum(per.values()), {"per_model_s": {k: round(v, 3) for k, v in per.items()}})

    def processes() -> dict[str, Any]:
        wall, per = run_workers(specs, s.sweep_ready_timeout_s, s.sweep_run_timeout_s, suite.tmp)
        return row(f"{len(specs)} processes", wall, {"per_model_s": per})

    def streams() -> dict[str, Any]:
        wall, per = run_streams(specs, dev)
        return row(f"{len(specs)} CUDA streams (threads)", wall, {"per_model_s": per})

    suite.guarded(f"sweep {len(specs)} models: sequential", "sweep", sequential)
    suite.guarded(f"sweep {len(specs)} models: concurrent processes", "sweep", processes)
    if dev.type == "cuda":
        suite.guarded(f"sweep {len(specs)} models: concurrent CUDA streams", "sweep", streams)
