"""``peak``: the device's bf16 matrix-product rate (large square ``torch.matmul``, best TFLOP/s). Always
run first: every MFU divides by it."""

from __future__ import annotations

import torch

from gpu_bench.harness import Suite, cleanup, timed_steps


def peak(suite: Suite) -> None:
    dev, best, per = suite.device, 0.0, {}
    for n in suite.s.matmul_sizes:
        try:
            a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)

            def step(a=a, b=b, c=c) -> None:
                torch.matmul(a, b, out=c)

            iters, dt = timed_steps(step, dev, warmup=3, max_iters=200, max_s=1.5, min_iters=3)
            rate = 2.0 * n**3 * iters / dt
            per[str(n)] = round(rate / 1e12, 2)
            best = max(best, rate)
            del a, b, c
        except Exception as e:  # e.g. out of memory at the largest size: keep the others
            per[str(n)] = f"{type(e).__name__}: {e}"[:200]
        cleanup(dev)
    if best <= 0:
        raise RuntimeError(f"no matmul size succeeded: {per}")
    suite.peak_flops = best
    suite.add(
        {
            "name": "peak bf16 matmul",
            "group": "peak",
            "tflops": round(best / 1e12, 2),
            "per_size_tflops": per,
            "value_text": f"{best / 1e12:.4g} TFLOP/s",
        }
    )
