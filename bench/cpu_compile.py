"""``torch.compile`` on the CPU: what it costs to compile and what it buys per step, fp32 and bf16.

For each model (default ResNet-20 and ResNet-56) and precision (fp32; bf16 autocast), in one process:
the eager training step (forward, backward, SGD) on one preloaded batch of 28x28 grey images at batch 128,
channels-last, then the same step under ``torch.compile`` (inductor): the wall time of the first
compiled steps (compilation included) and the steady-state images/s after them. The break-even is the
number of steps after which compiling has paid for itself:
``compile_s / (1/eager_step_s - 1/compiled_step_s)`` in steps (never, if compiled steps are not faster).

    python bench/cpu_compile.py [--models resnet20,resnet56] [--precisions fp32,bf16] [--threads N]
        [--iters 30] [--out compile.json]

bf16 is measured with fewer iterations on a CPU without native bf16 (it is emulated, ~10x slower).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reslab.models import create_model
from reslab.precision import cpu_has_native_bf16


def _step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, dtype: torch.dtype | None):
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _rate(step, x, y, iters: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
        step(x, y)
    return iters * x.shape[0] / (time.perf_counter() - t0)


def measure(name: str, dtype: torch.dtype | None, iters: int, warmup: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def fresh():
        m = create_model(name, num_classes=10, in_chans=1).to(memory_format=torch.channels_last).train()
        return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)

    model, opt = fresh()
    eager = _step_fn(model, opt, dtype)
    for _ in range(warmup):
        eager(x, y)
    eager_ips = _rate(eager, x, y, iters)

    torch._dynamo.reset()
    model, opt = fresh()
    cmodel = torch.compile(model)
    compiled = _step_fn(cmodel, opt, dtype)
    t0 = time.perf_counter()
    for _ in range(warmup):  # the first call compiles forward and backward
        compiled(x, y)
    first_s = time.perf_counter() - t0
    compiled_ips = _rate(compiled, x, y, iters)
    step_eager, step_comp = batch / eager_ips, batch / compiled_ips
    compile_s = first_s - warmup * step_comp
    saved_per_step = step_eager - step_comp
    return {
        "eager_img_s": round(eager_ips, 1),
        "compiled_img_s": round(compiled_ips, 1),
        "speedup": round(compiled_ips / eager_ips, 3),
        "compile_s": round(compile_s, 1),
        "break_even_steps": round(compile_s / saved_per_step) if saved_per_step > 0 else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet20,resnet56")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--iters", type=int, default=30, help="timed steps per measurement (bf16 emulated: /5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    native = cpu_has_native_bf16()
    results = {
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": native,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": [],
    }
    print(f"{torch.get_num_threads()} threads, native bf16: {native}, batch {args.batch_size}")
    print(
        f"{'model':<10} {'prec':<5} {'eager':>8} {'compiled':>9} {'x':>6} {'compile s':>10} {'break-even':>11}"
    )
    for name in args.models.split(","):
        for prec in args.precisions.split(","):
            dtype = torch.bfloat16 if prec == "bf16" else None
            iters = args.iters if (dtype is None or native) else max(3, args.iters // 5)
            r = measure(name, dtype, iters, args.warmup, args.batch_size)
            results["rows"].append({"model": name, "precision": prec, **r})
            be = "never" if r["break_even_steps"] is None else f"{r['break_even_steps']} steps"
            print(
                f"{name:<10} {prec:<5} {r['eager_img_s']:8.1f} {r['compiled_img_s']:9.1f} {r['speedup']:6.2f} "
                f"{r['compile_s']:10.1f} {be:>11}",
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
