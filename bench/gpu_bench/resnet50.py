"""``resnet50``: 224x224, batch 256, ImageNet-shaped synthetic data, bf16 autocast + channels_last: training
through ``train()``, reslab's and torchvision's models in a plain AMP loop; inference through
``reslab.tasks.classification.evaluate`` and in plain ``inference_mode`` loops."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gpu_bench.harness import (
    Suite,
    macs_per_image,
    sync,
    synthetic_spec,
    timed_steps,
    train_config,
    train_run,
    window_rate,
)

TARGET_R50_TRAIN = 3500.0  # images/s (the target, H100)
TARGET_R50_INFER = 3 * TARGET_R50_TRAIN


class _ResNet50:
    """The rows of the ``resnet50`` group: one method each, sharing the sizes and the training rate."""

    def __init__(self, suite: Suite) -> None:
        s = suite.s
        self.suite, self.s, self.dev = suite, s, suite.device
        self.arch, self.hw, self.batch = s.r50_model, s.r50_hw, s.r50_batch
        self.macs = macs_per_image(self.arch, self.hw)
        self.amp = torch.bfloat16 if self.dev.type == "cuda" else None
        self.common = {
            "batch": self.batch,
            "image_size": self.hw,
            "macs_per_image": self.macs,
            "precision": "bf16 autocast" if self.amp is not None else "fp32 (cpu)",
            "channels_last": True,
        }
        self.train_ips: dict[str, float] = {}

    def model(self, which: str) -> torch.nn.Module:
        """reslab's or torchvision's ``arch`` on the device, channels_last, fresh weights."""
        import torchvision

        from reslab.models import create_model

        if which == "torchvision":
            model = getattr(torchvision.models, self.arch)(weights=None)
        else:
            model = create_model(self.arch)
        return model.to(self.dev).to(memory_format=torch.channels_last)

    def autocast(self) -> Any:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dev.type, dtype=self.amp)

    def reslab_train(self) -> dict[str, Any]:
        s, arch, hw, batch = self.s, self.arch, self.hw, self.batch
        cfg = train_config(
            {
                "recipe": "gpu_suite",
                "model": arch,
                "dataset": "synthetic",
                "data_kwargs": synthetic_spec(hw, 1000, 4 * batch, batch),
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
            }
        )
        _, rows = train_run(cfg, self.suite.tmp, arch)
        ips, steps, secs = window_rate(rows, batch, single=s.tiny)
        self.train_ips["reslab"] = ips
        return {
            "loop": "reslab train()",
            "images_per_s": ips,
            "mfu": self.suite.mfu(self.macs, ips, True),
            "timed_steps": steps,
            "timed_s": round(secs, 3),
            "target": f">= {TARGET_R50_TRAIN:,.0f} img/s",
            "target_met": ips >= TARGET_R50_TRAIN,
            "note": "synthetic data augmented reslab's way (pad-4 crop + flip on device), not ImageNet's",
            **self.common,
        }

    def plain_train(self, which: str) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            s, dev, arch, hw, batch = self.s, self.dev, self.arch, self.hw, self.batch
            model = self.model(which).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
            x = torch.randn(batch, 3, hw, hw, device=dev).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 1000, (batch,), device=dev)

            def step() -> None:
                with self.autocast():
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            iters, dt = timed_steps(
                step, dev, warmup=s.r50_warmup, max_iters=s.r50_max_iters, max_s=s.r50_max_s
            )
            ips = iters * batch / dt
            self.train_ips[which] = ips
            return {
                "loop": "plain AMP loop (one preloaded batch)",
                "model": f"{which} {arch}",
                "images_per_s": ips,
                "mfu": self.suite.mfu(self.macs, ips, True),
                "timed_steps": iters,
                "timed_s": round(dt, 3),
                **self.common,
            }

        return fn

    def reslab_infer(self) -> dict[str, Any]:
        from reslab.models import create_model
        from reslab.tasks.classification import evaluate

        s, dev, arch, hw, batch = self.s, self.dev, self.arch, self.hw, self.batch
        model = create_model(arch).to(dev).to(memory_format=torch.channels_last)
        n = max(batch, s.r50_infer_images // batch * batch)
        x = torch.randint(0, 256, (n, 3, hw, hw), dtype=torch.uint8, device=dev)  # made on the device
        y = torch.randint(0, 1000, (n,), device=dev)
        kw = {
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "batch_size": batch,
            "device": dev,
            "amp_dtype": self.amp,
            "channels_last": True,
            "num_classes": 1000,
        }
        evaluate(model, x[: batch * min(4, n // batch)], y[: batch * min(4, n // batch)], **kw)  # warm-up
        sync(dev)
        t = time.perf_counter()
        evaluate(model, x, y, **kw)
        sync(dev)
        dt = time.perf_counter() - t
        ips = n / dt
        return {
            "loop": "reslab.tasks.classification (uint8 on device, normalize, top-1/top-5)",
            "images_per_s": ips,
            "mfu": self.suite.mfu(self.macs, ips, False),
            "images": n,
            "timed_s": round(dt, 3),
            "target": f">= {TARGET_R50_INFER:,.0f} img/s (3x the training target)",
            "target_met": ips >= TARGET_R50_INFER,
            "x_reslab_training": round(ips / self.train_ips["reslab"], 2)
            if self.train_ips.get("reslab")
            else None,
            **self.common,
        }

    def plain_infer(self, which: str) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            s, dev, arch, hw, batch = self.s, self.dev, self.arch, self.hw, self.batch
            model = self.model(which).eval()
            x = torch.randn(batch, 3, hw, hw, device=dev).contiguous(memory_format=torch.channels_last)

            def step() -> None:
                with torch.inference_mode(), self.autocast():
                    model(x)

            iters, dt = timed_steps(
                step, dev, warmup=s.r50_warmup, max_iters=3 * s.r50_max_iters, max_s=s.r50_max_s
            )
            ips = iters * batch / dt
            return {
                "loop": "plain inference_mode loop (one preloaded batch)",
                "model": f"{which} {arch}",
                "images_per_s": ips,
                "mfu": self.suite.mfu(self.macs, ips, False),
                "timed_steps": iters,
                "timed_s": round(dt, 3),
                **self.common,
            }

        return fn


def resnet50(suite: Suite) -> None:
    r = _ResNet50(suite)
    suite.guarded(f"{r.arch} train: reslab train()", "resnet50", r.reslab_train)
    suite.guarded(f"{r.arch} train: reslab model, plain AMP loop", "resnet50", r.plain_train("reslab"))
    suite.guarded(f"{r.arch} train: torchvision, plain AMP loop", "resnet50", r.plain_train("torchvision"))
    suite.guarded(f"{r.arch} infer: reslab evaluate()", "resnet50", r.reslab_infer)
    suite.guarded(f"{r.arch} infer: reslab model, plain loop", "resnet50", r.plain_infer("reslab"))
    suite.guarded(f"{r.arch} infer: torchvision, plain loop", "resnet50", r.plain_infer("torchvision"))
