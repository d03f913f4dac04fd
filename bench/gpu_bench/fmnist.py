"""``fmnist`` (optional, ``--fmnist-dir``): the ``fashion_mnist_fast`` recipe on the real data over a few
seeds: wall time of ``train()`` end to end and test accuracy."""

from __future__ import annotations

import time
from typing import Any

from gpu_bench.harness import Suite, train_run


def fmnist(suite: Suite) -> None:
    """Optional (``--only fmnist``, needs ``--fmnist-dir``): the ``fashion_mnist_fast`` recipe on the real
    data, ``--fmnist-seeds`` seeds: wall time of ``train()`` end to end and test accuracy; target 94% in
    under 15 s. ``fashion_mnist_best`` (~15 min) does not fit one call: run it with ``reslab train``
    (it resumes across calls) and record it by hand."""
    import statistics

    from reslab.train import load_recipe

    s = suite.s
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
            summary, _ = train_run(cfg, suite.tmp, f"fmnist-{seed}")
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

        suite.guarded(f"fashion_mnist_fast seed {seed}", "fmnist", one)
    if len(accs) >= 2:
        m, sd = statistics.mean(accs), statistics.stdev(accs)
        suite.add(
            {
                "name": f"fashion_mnist_fast mean over {len(accs)} seeds",
                "group": "fmnist",
                "test_accuracy_mean": m,
                "test_accuracy_std": sd,
                "wall_s_mean": statistics.mean(walls),
                "value_text": f"{m:.2f} +- {sd:.2f}% in {statistics.mean(walls):.1f} s",
            }
        )
