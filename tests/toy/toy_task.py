"""A new task in one file (issue 29's "toy task"): which half of a 16 x 16 noise image holds a bright bar.

It is what docs/design.md walks through: a class with the :class:`reslab.tasks.base.Task` members, one
registry line (``TASKS["bars"] = Bars``, done by the test) and one recipe (``bars.yaml`` beside this
file). Nothing else in reslab knows it, yet ``reslab train``, ``--resume``, ``eval`` and ``predict`` run it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reslab.config import TrainConfig
from reslab.data import DeviceLoader
from reslab.tasks.base import EvalRequest, Found, PredictRequest, Refusals, Runtime, eval_dir

MEAN, STD, CLASSES = (0.3,), (0.3,), ("top", "bottom")


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images (n, 1, 16, 16) of noise with a bright bar in the top or bottom half; the label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 100, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    rows = torch.randint(1, 7, (n,), generator=g) + 8 * y
    x[torch.arange(n), 0, rows] = 250
    return x, y


def _error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        out = model((x.float() / 255 - MEAN[0]) / STD[0])
    return 100.0 * float((out.argmax(1) != y).float().mean())


class Bars(Refusals):
    name = "bars"
    recipe = str(Path(__file__).with_name("bars.yaml"))
    metric_names = ("error",)
    higher_is_better = False
    counts_errors = True
    selection = "val_error"
    eval_splits = ("val",)
    refuses: ClassVar[dict[str, str]] = {"features": "a bars run has no backbone stages worth listing"}

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        x, y = bars(640, seed=0)
        self.val = (x[512:].to(rt.device), y[512:].to(rt.device))
        self.loader = DeviceLoader(x[:512], y[:512], cfg.batch_size, device=rt.device, mean=MEAN, std=STD,
                                   augment=False, seed=cfg.seed)  # fmt: skip
        self.info = {"task": "bars", "dataset": "bars", "input_size": [1, 16, 16], "mean": list(MEAN),
                     "std": list(STD), "classes": list(CLASSES), "num_classes": 2}  # fmt: skip

    def describe(self) -> str:
        return "bars (512 train, 128 val)"

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        from reslab.models import create_model

        return create_model(cfg.model, num_classes=2, in_chans=1, **cfg.model_kwargs)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        out = model(x)
        return F.cross_entropy(out.float(), y), (out.argmax(1) != y).sum(), len(y)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        return {"error": _error(model, *self.val)}

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        return "val_error", metrics["val"]["error"]

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        from reslab._io import write_json
        from reslab.models.weights import load_model, resolve_checkpoint

        path = resolve_checkpoint(checkpoint)
        model, meta = load_model(path)
        x, y = bars(640, seed=0)
        result = {
            "checkpoint": str(path),
            "step": meta.get("step"),
            "val": {"error": _error(model, x[512:], y[512:])},
        }
        out = eval_dir(path, request.out_dir)
        write_json(out / "eval.json", result)
        return result | {"eval_json": str(out / "eval.json")}

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        return [f"val: error {result['val']['error']:.2f}%", f"results: {result['eval_json']}"]

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> BarFiles:
        return BarFiles(checkpoint)


class BarFiles:
    """``reslab predict`` of a bars run: each 16 x 16 grey PNG's half."""

    output = None
    output_required = False
    warnings: ClassVar[list[str]] = []

    def __init__(self, checkpoint: str) -> None:
        from reslab.models.weights import load_model

        self.model, _ = load_model(checkpoint)
        self.header = {"checkpoint": checkpoint}

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        from PIL import Image

        for file in files:
            try:
                with Image.open(file) as im:
                    x = torch.frombuffer(bytearray(im.convert("L").tobytes()), dtype=torch.uint8).view(
                        1, 1, 16, 16
                    )
            except (OSError, ValueError) as e:
                yield file, f"cannot read {file}: {e}"
                continue
            with torch.no_grad():
                half = CLASSES[int(self.model((x.float() / 255 - MEAN[0]) / STD[0]).argmax(1))]
            yield Found(file, {"file": file, "half": half}, [f"{file}: {half}"])
