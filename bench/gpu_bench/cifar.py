"""``cifar``: ResNet-20/56/110 training on CIFAR-shaped synthetic data, reslab's loop (``train()`` itself)
against the conventional loop (:func:`gpu_bench.baselines.conventional`); ``options`` (optional): ResNet-20
through ``train()`` with one engine option changed per row, as a ratio to the defaults."""

from __future__ import annotations

from typing import Any

from gpu_bench.baselines import conventional
from gpu_bench.harness import (
    Suite,
    macs_per_image,
    synthetic_data,
    synthetic_spec,
    train_config,
    train_run,
    window_rate,
)

TARGET_SPEEDUP = 5.0  # reslab loop / conventional loop, ResNet-20 (the target, H100)


def cifar_data(suite: Suite) -> dict[str, Any]:
    """``data_kwargs`` of the CIFAR-shaped synthetic data (50k train images on the GPU)."""
    s = suite.s
    return synthetic_spec(s.cifar_hw, 10, s.cifar_train, s.cifar_test)


def cifar_config(suite: Suite, model: str, window: int, **over: Any) -> Any:
    """``train()`` of ``model`` for two windows of ``window`` iterations (the first is warm-up)."""
    s = suite.s
    fields = {
        "recipe": "gpu_suite",
        "model": model,
        "dataset": "synthetic",
        "data_kwargs": cifar_data(suite),
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
    return train_config(fields)


def cifar(suite: Suite) -> None:
    s, dev = suite.s, suite.device
    reslab_ips: dict[str, float] = {}
    for name in s.cifar_models:

        def one(name: str = name) -> dict[str, Any]:
            window = s.cifar_window.get(name, 100)
            summary, rows = train_run(cifar_config(suite, name, window), suite.tmp, name)
            ips, steps, secs = window_rate(rows, s.cifar_batch)
            reslab_ips[name] = ips
            macs = macs_per_image(name, s.cifar_hw)
            return {
                "model": name,
                "loop": "reslab train()",
                "images_per_s": ips,
                "mfu": suite.mfu(macs, ips, True),
                "macs_per_image": macs,
                "batch": s.cifar_batch,
                "timed_steps": steps,
                "timed_s": round(secs, 3),
                "precision": "bf16 autocast" if dev.type == "cuda" else "fp32",
                "channels_last": True,
                "wall_time_s": summary.get("wall_time_s"),
            }

        suite.guarded(f"cifar {name} train: reslab loop", "cifar", one)
    if "resnet20" in reslab_ips:
        suite.facts["resnet20_reslab_ips"] = reslab_ips["resnet20"]
    conv_ips = conventional(suite, synthetic_data(cifar_data(suite)))
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
            suite.add(row)


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


def options(suite: Suite) -> None:
    """Optional (``--only options``): reslab's loop for ResNet-20 with one engine option changed per
    row; the ratio to the defaults row says whether the option pays. The compile rows' first window
    holds the compilation (``wall_time_s_incl_compile``); their rate is from the second window."""
    s, dev = suite.s, suite.device
    variants = option_variants(s.cifar_batch)
    if dev.type != "cuda":  # CPU smoke test: the compile modes need a C++ toolchain and minutes
        variants = tuple(v for v in variants if "compile" not in v[1])
    base: dict[str, float] = {}
    for label, over in variants:

        def one(label: str = label, over: dict[str, Any] = over) -> dict[str, Any]:
            batch = over.get("batch_size", s.cifar_batch)
            window = max(1, s.cifar_window.get("resnet20", 100) * s.cifar_batch // batch)
            cfg = cifar_config(suite, "resnet20", window, **over)
            summary, rows = train_run(cfg, suite.tmp, "option")
            ips, steps, secs = window_rate(rows, batch)
            if label == "defaults":
                base["ips"] = ips
            macs = macs_per_image("resnet20", s.cifar_hw)
            ratio = ips / base["ips"] if base.get("ips") else None
            return {
                "model": "resnet20",
                "option": label,
                "overrides": over,
                "images_per_s": ips,
                "mfu": suite.mfu(macs, ips, True),
                "batch": batch,
                "timed_steps": steps,
                "timed_s": round(secs, 3),
                "ratio_to_defaults": round(ratio, 3) if ratio else None,
                "value_text": f"{ratio:.2f}x defaults" if ratio else "",
                "wall_time_s_incl_compile": summary.get("wall_time_s"),
            }

        suite.guarded(f"option resnet20 {label}", "options", one)
