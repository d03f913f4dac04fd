"""Issue 18's measurements: video and super-resolution networks trained through ``reslab train``.

Two comparisons, each at one budget (the same number of iterations per run), over ``--seeds`` seeds:

- **video** (recipe ``video``: Moving Fashion-MNIST clips of 8 x 48 x 48, ``video_resnet`` depth 10, width
  8): ``model_kwargs.conv`` = ``2d`` (a 2D ResNet applied to every frame, its features averaged over time:
  blind to frame order, so at most 50% direction accuracy), ``3d`` (3x3x3 convolutions, R3D) and
  ``2plus1d`` (each 3x3x3 factorized into 1x3x3 and 3x1x1, R(2+1)D, the recipe's). Reported: top-1 test
  error, garment and direction error, validation error, parameters, seconds per iteration.
- **super-resolution** (recipe ``super_resolution``: ``edsr_baseline_x4`` with 16 units of 32 channels):
  the same network with its residual units and the global skip around the body (EDSR), without the
  global skip, with plain units (``residual: false``: y = F(x)) and with neither (a plain 37-layer
  network). Reported: test PSNR / SSIM, the gain over bicubic upsampling, validation PSNR.

- **transfer** (issue 16; recipe ``detection``: Faster R-CNN on a ResNet-18 FPN backbone, Fashion-MNIST
  scenes): the backbone initialized from a reslab Fashion-MNIST classification run (``--backbone-run``;
  trained first with the ``fashion_mnist_demo`` recipe when it is not there) or from scratch, with the
  stem and ``layer1`` frozen (``trainable_layers=3``) or everything trainable (``5``); BN statistics train
  in all four (``frozen_bn=false``), so only the two factors differ; 2 evaluations per run. Reported: test mAP@.5 and mAP@[.5:.95],
  validation mAP@.5.

Each run trains ``--video-iterations`` / ``--sr-iterations`` / ``--transfer-iterations`` steps (defaults 800 / 1,200: ~5-8 minutes each
on one core at ``threads=1``, 2/5 of the recipes' budgets with their schedule shape; 4 evaluations) into
``OUT/<task>/<variant>-s<seed>/``. The numbers are those of the run's best checkpoint (chosen on the
validation split) as :func:`reslab.tasks.video.evaluate_video_run` / :func:`reslab.tasks.super_resolution.evaluate_sr_run`
measure them (``eval.json`` in the run); seconds per iteration is ``summary.json``'s wall time over its
steps (evaluations included). Resumable: a finished run (``summary.json`` with ``finished``) is not run
again, an interrupted one continues with ``reslab train --resume``. Prints a markdown table (mean ± std over
the seeds) and writes it to ``OUT/table.md`` and everything to ``OUT/results.json`` (each run named by its folder
relative to ``OUT``: ``sr/residual-global-skip-s0``, as ``docs/results/tasks/runs/`` holds it).

    python bench/task_runs.py [--out runs/task-runs] [--only video|sr|transfer] [--seeds 0,1] [--jobs 1]
        [--video-iterations 800] [--sr-iterations 1200] [--transfer-iterations 400]
        [--backbone-run RUN] [--video-seeds 0] [--skip VARIANT ...] [--set KEY=VALUE ...] [--dry-run]

``--set`` is passed to every ``reslab train`` (e.g. ``--set device=cuda``); ``threads=1`` is the default.
About 1.5 hours on one core for both comparisons at 2 seeds (``--jobs 2`` on two free cores). Measured
per step with the other core busy: (2+1)D ~0.46 s, 3D ~1.7x that, 2D per frame ~0.8x; SR ~0.29 s. A probe
of the fully plain SR network (400 steps) stayed at 13.6 dB (a constant image), far below bicubic's 28.3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One network of a comparison: its name in the table and its ``--set`` overrides of the recipe."""

    task: str
    name: str
    sets: tuple[str, ...]


VIDEO = (
    Variant("video", "2d-per-frame", ("model_kwargs.conv=2d",)),
    Variant("video", "3d", ("model_kwargs.conv=3d",)),
    Variant("video", "2plus1d", ("model_kwargs.conv=2plus1d",)),
)
SR = (
    Variant("sr", "residual+global-skip", ("model_kwargs.residual=true", "model_kwargs.global_skip=true")),
    Variant(
        "sr", "residual, no global skip", ("model_kwargs.residual=true", "model_kwargs.global_skip=false")
    ),
    Variant("sr", "plain+global-skip", ("model_kwargs.residual=false", "model_kwargs.global_skip=true")),
    Variant("sr", "plain, no global skip", ("model_kwargs.residual=false", "model_kwargs.global_skip=false")),
)
_NO_BN_FREEZE = "task_kwargs.frozen_bn=false"
TRANSFER = (
    Variant("transfer", "fmnist init, stem+layer1 frozen",
            ("init_from={backbone}", "task_kwargs.trainable_layers=3", _NO_BN_FREEZE)),
    Variant("transfer", "fmnist init, all trainable",
            ("init_from={backbone}", "task_kwargs.trainable_layers=5", _NO_BN_FREEZE)),
    Variant("transfer", "scratch, stem+layer1 frozen", ("task_kwargs.trainable_layers=3", _NO_BN_FREEZE)),
    Variant("transfer", "scratch, all trainable", ("task_kwargs.trainable_layers=5", _NO_BN_FREEZE)),
)  # fmt: skip
RECIPES = {"video": "video", "sr": "super_resolution", "transfer": "detection"}
TASKS = ("video", "sr", "transfer")


def run_dir(out: Path, v: Variant, seed: int) -> Path:
    slug = v.name.replace(", ", "-").replace("+", "-").replace(" ", "-")
    return out / v.task / f"{slug}-s{seed}"


def finished(run: Path) -> bool:
    try:
        return bool(json.loads((run / "summary.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def command(
    run: Path, v: Variant, seed: int, iterations: int, extra: list[str], backbone: Path | None = None
) -> list[str]:
    """The ``reslab train`` command of one run: fresh, or ``--resume`` after an interruption."""
    base = [sys.executable, "-m", "reslab", "train", "--quiet"]
    if (run / "config.yaml").is_file() and (run / "checkpoints").is_dir():
        return [*base, "--resume", str(run)]
    own = [x.format(backbone=backbone) for x in v.sets]
    evals = 2 if v.task == "transfer" else 4  # a detector's evaluation costs as much as ~60 steps
    sets = [f"eval_every={max(1, iterations // evals)}", "threads=1", *own, *extra]
    return [
        *base, "--recipe", RECIPES[v.task], "--out", str(run), "--overwrite", "--seed", str(seed),
        "--iterations", str(iterations), *(a for s in sets for a in ("--set", s)),
    ]  # fmt: skip


def train(run: Path, cmd: list[str]) -> None:
    run.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(run.parent / f"{run.name}.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    took = time.perf_counter() - started
    print(f"{'done' if rc == 0 else f'FAILED (exit {rc})'}: {run} ({took / 60:.1f} min)", flush=True)


def _video_row(ev: dict[str, Any]) -> dict[str, Any]:
    t = ev["test"]
    return {"test_error": t["error"], "garment_error": 100 - t["garment_accuracy"],
            "direction_error": 100 - t["direction_accuracy"], "val_error": ev["val"]["error"]}  # fmt: skip


def _transfer_row(ev: dict[str, Any]) -> dict[str, Any]:
    t = ev["test"]
    return {"test_map_50": t["map_50"], "test_map": t["map"], "val_map_50": ev["val"]["map_50"]}


def _sr_row(ev: dict[str, Any]) -> dict[str, Any]:
    t = ev["test"]
    return {"test_psnr": t["psnr"], "test_ssim": t["ssim"], "gain_over_bicubic_db": t["psnr_gain_over_bicubic"],
            "val_psnr": ev["val"]["psnr"], "bicubic_test_psnr": t["bicubic_psnr"]}  # fmt: skip


ROWS = {"video": _video_row, "transfer": _transfer_row, "sr": _sr_row}  # a sweep's numbers from its eval.json


def evaluate(run: Path, group: str, summary: dict[str, Any]) -> dict[str, Any]:
    """``eval.json`` of a run of sweep ``group`` (made here when missing)."""
    from reslab.tasks import SCENE_TASKS
    from reslab.tasks.super_resolution import evaluate_sr_run
    from reslab.tasks.video import evaluate_video_run

    evaluators = {
        "video": lambda: evaluate_video_run(run, device="cpu"),
        "sr": lambda: evaluate_sr_run(run, device="cpu"),
        "transfer": lambda: SCENE_TASKS[summary["task"]].evaluate_checkpoint(run, device="cpu", splits=("val", "test")),
    }  # fmt: skip
    return evaluators[group]()


def measure(run: Path, v: Variant) -> dict[str, Any]:
    """The run's best checkpoint evaluated (``eval.json``, made once) and its summary's cost."""
    summary = json.loads((run / "summary.json").read_text())
    path = run / "eval.json"
    ev = json.loads(path.read_text()) if path.is_file() else evaluate(run, v.task, summary)
    row: dict[str, Any] = {
        "params": summary.get("params"),
        "steps": summary.get("steps"),
        "s_per_iteration": summary["wall_time_s"] / max(1, summary["steps"]),
        "best_step": ev.get("step"),
    }
    return row | ROWS[v.task](ev)


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


COLUMNS = {
    "video": (("test_error", "test error %", 2), ("garment_error", "garment error %", 2),
              ("direction_error", "direction error %", 2), ("val_error", "val error %", 2),
              ("s_per_iteration", "s / iteration", 3)),
    "sr": (("test_psnr", "test PSNR dB", 2), ("gain_over_bicubic_db", "gain over bicubic dB", 2),
           ("test_ssim", "test SSIM", 4), ("val_psnr", "val PSNR dB", 2), ("s_per_iteration", "s / iteration", 3)),
    "transfer": (("test_map_50", "test mAP@.5", 3), ("test_map", "test mAP@[.5:.95]", 3),
                 ("val_map_50", "val mAP@.5", 3), ("s_per_iteration", "s / iteration", 3)),
}  # fmt: skip
TITLES = {
    "video": "Video (Moving Fashion-MNIST 8x48x48)",
    "sr": "Super-resolution x4",
    "transfer": "Detection transfer (Faster R-CNN, ResNet-18 FPN, Fashion-MNIST scenes)",
}


def ensure_backbone(run: Path) -> None:
    """The Fashion-MNIST classification run the transfer variants start from (trained if missing)."""
    if finished(run):
        return
    cmd = [sys.executable, "-m", "reslab", "train", "--quiet", "--model", "resnet18", "--recipe",
           "fashion_mnist_demo", "--set", "threads=1"]  # fmt: skip
    cmd += ["--resume", str(run)] if (run / "checkpoints").is_dir() else ["--out", str(run), "--overwrite"]
    train(run, cmd)


def table(task: str, results: dict[str, list[dict[str, Any]]]) -> str:
    cols = COLUMNS[task]
    lines = [
        "| network | params | seeds | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---:|---:|" + "---:|" * len(cols),
    ]
    for name, rows in results.items():
        if not rows:
            continue
        cells = [_cell([r[k] for r in rows], d) for k, _, d in cols]
        lines.append(f"| {name} | {rows[0]['params']:,} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/task-runs", help="root of the run directories")
    p.add_argument("--only", choices=TASKS, help="one comparison only")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    p.add_argument("--video-seeds", default=None, help="seeds of the video comparison (default: --seeds)")
    p.add_argument("--video-iterations", type=int, default=800)
    p.add_argument("--sr-iterations", type=int, default=1200)
    p.add_argument("--transfer-iterations", type=int, default=400)
    p.add_argument("--backbone-run", default=None,
                   help="the Fashion-MNIST ResNet-18 run (default OUT/transfer/fmnist-resnet18)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each with threads=1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    p.add_argument("--skip", action="append", default=[], metavar="VARIANT",
                   help="leave out a variant by its name in the table (repeatable)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the commands of the runs still to do")
    args = p.parse_args(argv)
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",") if s.strip()]
    video_seeds = [int(s) for s in (args.video_seeds or args.seeds).split(",") if s.strip()]
    task_seeds = {"video": video_seeds, "sr": seeds, "transfer": seeds}
    known = {v.name for v in (*VIDEO, *SR, *TRANSFER)}
    if unknown := set(args.skip) - known:
        p.error(f"unknown variant {sorted(unknown)[0]!r}; the variants: {', '.join(sorted(known))}")
    variants = [
        v for v in (*VIDEO, *SR, *TRANSFER) if args.only in (None, v.task) and v.name not in args.skip
    ]
    budget = {"video": args.video_iterations, "sr": args.sr_iterations, "transfer": args.transfer_iterations}
    backbone = Path(args.backbone_run) if args.backbone_run else out / "transfer" / "fmnist-resnet18"
    todo = [
        (run, command(run, v, s, budget[v.task], args.set, backbone))
        for v in variants
        for s in task_seeds[v.task]
        if not finished(run := run_dir(out, v, s))
    ]
    if args.dry_run:
        print("\n".join(" ".join(cmd) for _, cmd in todo) or "every run is finished")
        return 0
    if any(v.task == "transfer" for v in variants) and not args.dry_run:
        ensure_backbone(backbone)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda job: train(*job), todo))

    results: dict[str, Any] = {"seeds": task_seeds, "iterations": budget, "runs": {}}
    text = []
    for task in TASKS:
        per_variant: dict[str, list[dict[str, Any]]] = {}
        for v in (x for x in variants if x.task == task):
            per_variant[v.name] = []
            for s in task_seeds[task]:
                run = run_dir(out, v, s)
                if finished(run):
                    where = run.relative_to(out).as_posix()  # as docs/results/tasks/runs/ holds it
                    row = measure(run, v) | {"seed": s, "run": where}
                    per_variant[v.name].append(row)
        if any(per_variant.values()):
            results["runs"][task] = per_variant
            text.append(f"### {TITLES[task]}, {budget[task]} iterations, best checkpoint by validation\n")
            text.append(table(task, per_variant) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(text))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
