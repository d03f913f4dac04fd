"""Figures of the application runs (issues 16 and 18), drawn from their best checkpoints on test data.

- ``detection.png`` / ``segmentation.png``: test scenes, the ground truth above and the run's prediction
  below: boxes drawn by matplotlib with small labels (ground truth: the class alone; detections: class and
  score, :func:`reslab.tasks.detection.box_texts`) / opaque class colours, the legend's.
- ``video.png``: test clips of Moving Fashion-MNIST, one row each (every frame), titled with the true label
  and each given run's prediction (garment, direction): ``--video`` repeated compares nets on one clip.
- ``super_resolution_example.png``: the centre of each test photograph: the low-resolution input
  (nearest), bicubic upsampling, the network, the original; PSNR of the whole photograph in the titles.
- ``super_resolution.png`` (``--sr-runs``): the ablation from the runs' ``eval.json``, no checkpoint needed.

    python bench/task_figures.py [--detection RUN] [--segmentation RUN] [--video RUN ...] [--sr RUN] [--sr-runs DIR]
        [--out docs/results/tasks] [--count 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")


def dense_figure(run: str, out: Path, count: int) -> None:
    """Ground truth (top) and prediction (bottom) on the first ``count`` test scenes."""
    import matplotlib.pyplot as plt

    from reslab.config import TrainConfig
    from reslab.models.dense import load_dense
    from reslab.tasks import SCENE_TASKS
    from reslab.tasks.detection import DetectionTask
    from reslab.tasks.scene_config import SceneOptions, load_splits

    model, meta = load_dense(run)
    config = {k: v for k, v in meta["config"].items() if k not in ("data", "precision")}
    cfg = TrainConfig.from_dict(config, source=f"{run} config")
    ops = SCENE_TASKS[cfg.task].ops
    data, scenes = load_splits(SceneOptions.from_config(cfg, ops), cfg)
    test, task = scenes["test"], ops()
    classes = list(data.classes)
    model = model.float().eval()
    fig, axes = plt.subplots(2, count, figsize=(2.4 * count, 5.2), layout="constrained")
    panel = (
        boxes_panel if isinstance(task, DetectionTask) else mask_panel
    )  # the task's output: boxes or a map
    for i in range(count):
        image = test.images[i]
        truth = task.batch(test, [i]).targets[0]  # the task's own target format (ground truth has no scores)
        pred = task.predict(model, image.float().div(255)[None])[0]
        shown = "prediction (score ≥ 0.5)" if panel is boxes_panel else "prediction"
        for row, (target, title) in enumerate(((truth, "truth"), (pred, shown))):
            panel(axes[row, i], image, target, classes, task)
            axes[row, i].set_title(f"test scene {i}: {title}", fontsize=7.5)
    from matplotlib.patches import Patch

    handles = [Patch(color=class_colour(c), label=classes[c]) for c in range(1, len(classes))]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=7.5, frameon=False)
    fig.suptitle(f"{cfg.task}: {model.spec.get('arch')} on {cfg.model}, best checkpoint of {Path(run).name}",
                 fontsize=9)  # fmt: skip
    _save(fig, out / f"{cfg.task}.png")
    plt.close(fig)


def class_colour(label: int) -> tuple[float, ...]:
    """The colour of class ``label`` (1 = the first non-background class), as ``reslab predict`` draws it."""
    from reslab.tasks.scenes import PALETTE

    return tuple(v / 255 for v in PALETTE[(label - 1) % len(PALETTE)])


def mask_panel(ax, image: torch.Tensor, class_map: torch.Tensor, classes, task) -> None:
    """A class map in opaque class colours (the legend's colours, not blended with the image)."""
    ax.imshow(task.draw(image, class_map.cpu(), len(classes), alpha=1.0).permute(1, 2, 0).numpy())
    ax.axis("off")


def boxes_panel(ax, image: torch.Tensor, boxes: dict, classes, task=None, threshold: float = 0.5) -> None:
    """``image`` with ``boxes`` drawn by matplotlib (not burnt into the pixels): thin boxes in their
    class's colour and small labels inside each box's top-left corner, clipped to the panel;
    :func:`reslab.tasks.detection.box_texts` decides which boxes and what text (ground truth: the class
    alone; detections: "class score" at or above ``threshold``)."""
    from matplotlib.patches import Rectangle

    from reslab.tasks.detection import box_texts

    a = image.permute(1, 2, 0).numpy()
    ax.imshow(a if a.shape[-1] == 3 else a[..., 0], cmap="gray", vmin=0, vmax=255)
    boxes = {k: v.cpu() for k, v in boxes.items()}
    keep, texts = box_texts(boxes, classes, threshold)
    for (x0, y0, x1, y1), c, t in zip(boxes["boxes"][keep].tolist(), boxes["labels"][keep].tolist(), texts):
        col = class_colour(int(c))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=col, lw=1.2))
        ax.text(x0 + 0.5, y0 + 0.5, t, fontsize=6.5, va="top", ha="left", clip_on=True,
                bbox={"fc": col, "ec": "none", "pad": 0.5, "alpha": 0.85})  # fmt: skip
    ax.axis("off")


def video_figure(runs: list[str], out: Path, count: int) -> None:
    """``count`` test clips, every frame, titled with the true label and each run's prediction (several
    runs, e.g. the per-frame 2D net and the (2+1)D one: on the same clips, what each reads). The clips are
    the first run's test data; every run must have been trained on the same clips."""
    import matplotlib.pyplot as plt

    from reslab.models.weights import load_model
    from reslab.tasks.base import run_config
    from reslab.tasks.video import load_data, predict_clips

    loaded = [load_model(r) for r in runs]
    config, info = run_config(loaded[0][1])
    data = load_data(config.get("data_dir"), val_split=info.get("val_split") or 0,
                     split_seed=int(info.get("split_seed", 0)), **info["clip_spec"])  # fmt: skip
    x, y = data.test_x[:count], data.test_y[:count]
    preds = []
    for model, meta in loaded:
        _, own = run_config(meta)
        preds.append(predict_clips(model.float(), x, y, mean=own["mean"], std=own["std"])[0])
    names = [video_name(meta) for _, meta in loaded]
    frames = x.shape[2]
    fig, axes = plt.subplots(count, frames, figsize=(max(1.3 * frames, 7.5), 1.75 * count), squeeze=False)
    for i in range(count):
        for t in range(frames):
            axes[i, t].imshow(x[i, 0, t].numpy(), cmap="gray", vmin=0, vmax=255)
            axes[i, t].axis("off")
        said = "   ".join(
            f"{n}: {data.classes[int(p[i])]} ({'correct' if int(p[i]) == int(y[i]) else 'wrong'})"
            for n, p in zip(names, preds)
        )
        axes[i, 0].set_title(f"true: {data.classes[int(y[i])]}   {said}", fontsize=7.5, loc="left")
    fig.suptitle(f"video, Moving Fashion-MNIST test clips (every frame): {', '.join(names)}; best checkpoints of "
                 f"{', '.join(Path(r).name for r in runs)}", fontsize=8.5)  # fmt: skip
    _save(fig, out / "video.png")
    plt.close(fig)


def video_name(meta: dict) -> str:
    """A video run's network in words: "2D per frame", "(2+1)D", "3D" (its ``conv`` setting), not a dict."""
    conv = str((meta.get("model_kwargs") or {}).get("conv", ""))
    return {"2d": "2D per frame", "2plus1d": "(2+1)D", "3d": "3D"}.get(conv, conv or str(meta.get("model")))


def sr_figure(run: str, out: Path, crop: int = 96) -> None:
    """The centre of each test photograph: input, bicubic, network, original."""
    import matplotlib.pyplot as plt

    from reslab.models.weights import load_model
    from reslab.tasks.base import run_config
    from reslab.tasks.super_resolution import VAL_ROWS, bicubic_up, load_data, psnr
    from reslab.tasks.upscaling import upscale

    model, meta = load_model(run)
    _, info = run_config(meta)
    s = int(info.get("scale", model.scale))
    data = load_data(scale=s, val_rows=int(info.get("val_rows", VAL_ROWS)),
                     **{k: tuple(info[f"{k}_images"]) for k in ("train", "test") if f"{k}_images" in info})  # fmt: skip
    names = data.test_names
    fig, axes = plt.subplots(len(names), 4, figsize=(10, 2.7 * len(names)), squeeze=False)
    for row, (name, hr, lr) in enumerate(zip(names, data.test_hr, data.test_lr)):
        sr, bic = upscale(model.float(), lr), bicubic_up(lr, s)
        near = np.repeat(np.repeat(np.asarray(lr), s, axis=-2), s, axis=-1)
        h, w = np.asarray(hr).shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        panels = (("input (nearest)", near, None), ("bicubic", bic, psnr(bic, hr, s)),
                  ("network", sr, psnr(sr, hr, s)), ("original", hr, None))  # fmt: skip
        for col, (title, img, value) in enumerate(panels):
            a = np.asarray(img)[..., top : top + crop, left : left + crop]
            a = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
            ax = axes[row, col]
            ax.imshow(a, cmap=None if a.ndim == 3 else "gray", vmin=0, vmax=255)
            ax.set_title(f"{name}: {title}" + (f" {value:.2f} dB" if value is not None else ""), fontsize=8)
            ax.axis("off")
    fig.suptitle(
        f"super-resolution x{s}: {meta.get('model')} ({Path(run).name}); PSNR of the whole photograph",
        fontsize=9,
    )
    _save(fig, out / "super_resolution_example.png")
    plt.close(fig)


SR_VARIANTS = (("residual-global-skip", "residual units,\nglobal skip"),
               ("residual-no-global-skip", "residual units,\nno global skip"),
               ("plain-global-skip", "plain units,\nglobal skip"))  # fmt: skip


def sr_ablation_figure(runs: Path, out: Path) -> None:
    """The ablation the super-resolution claim rests on, from the runs' committed ``eval.json`` (no
    checkpoint needed): each variant's test PSNR gain over bicubic, one dot per seed and the mean, and
    per test photograph. Colours: residual blue, residual without the global skip sky blue, plain
    vermillion (the project's families, :mod:`reslab.figstyle`)."""
    import json

    import matplotlib.pyplot as plt

    from reslab import figstyle

    colours = dict(zip((v for v, _ in SR_VARIANTS), (figstyle.BLUE, figstyle.SKY, figstyle.VERMILLION)))
    with figstyle.style():
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), layout="constrained")
        photos: list[str] = []
        for i, (variant, _) in enumerate(SR_VARIANTS):
            tests = [json.loads(f.read_text())["test"] for f in sorted(runs.glob(f"{variant}-s*/eval.json"))]
            gains = [t["psnr"] - t["bicubic_psnr"] for t in tests]
            c = colours[variant]
            axes[0].scatter(
                [i + (k - (len(gains) - 1) / 2) * 0.06 for k in range(len(gains))],
                gains,
                color=c,
                s=24,
                zorder=3,
            )
            if gains:
                axes[0].hlines(float(np.mean(gains)), i - 0.15, i + 0.15, colors=c, lw=2.2)
            photos = (
                sorted(k.split("/", 1)[1] for k in tests[0] if k.startswith("psnr/")) if tests else photos
            )
            for j, name in enumerate(photos):
                per = [t[f"psnr/{name}"] - t[f"bicubic_psnr/{name}"] for t in tests]
                x = j + (i - 1) * 0.22
                axes[1].scatter(
                    [x] * len(per),
                    per,
                    color=c,
                    s=20,
                    zorder=3,
                    label=SR_VARIANTS[i][1].replace("\n", " ") if j == 0 else None,
                )
        axes[0].set_xticks(range(len(SR_VARIANTS)), [lbl for _, lbl in SR_VARIANTS])
        axes[0].set_title("test set (2 photographs)")
        axes[1].set_xticks(range(len(photos)), photos)
        axes[1].set_title("per test photograph")
        for ax in axes:
            ax.set_ylabel("PSNR gain over bicubic (dB)")
            ax.axhline(0, color="0.5", lw=0.8)
            ax.grid(False, axis="x")
        handles = [*axes[1].get_legend_handles_labels()[0]]
        from matplotlib.lines import Line2D

        handles += [Line2D([], [], color="0.3", lw=2.2, label="mean over seeds"),
                    Line2D([], [], color="0.5", lw=0.8, label="0: bicubic")]  # fmt: skip
        figstyle.legend_outside(fig, handles, "one dot per seed (2 seeds)")
        fig.suptitle("x4 super-resolution ablation, 800 iterations, best checkpoint by validation; "
                     "INCONCLUSIVE: Welch p = 0.060 against no global skip, 0.25 against plain (2 seeds each)", fontsize=8.5)  # fmt: skip
        _save(fig, out / "super_resolution.png")
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for task in ("detection", "segmentation", "sr"):
        p.add_argument(f"--{task}", metavar="RUN", help=f"a finished {task} run")
    p.add_argument(
        "--video", metavar="RUN", action="append", help="a finished video run (repeat: side by side)"
    )
    p.add_argument("--sr-runs", metavar="DIR", help="the super-resolution ablation's runs (their eval.json)")
    p.add_argument("--out", default="docs/results/tasks", help="where the PNGs go")
    p.add_argument("--count", type=int, default=4, help="scenes / clips shown (default 4)")
    args = p.parse_args(argv)
    out = Path(args.out)
    import matplotlib

    matplotlib.use("Agg")
    for task in ("detection", "segmentation"):
        if getattr(args, task):
            dense_figure(getattr(args, task), out, args.count)
    if args.video:
        video_figure(args.video, out, args.count)
    if args.sr:
        sr_figure(args.sr, out)
    if args.sr_runs:
        sr_ablation_figure(Path(args.sr_runs), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
