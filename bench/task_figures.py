"""Figures of the application runs (issues 16 and 18), drawn from their best checkpoints on test data.

- ``detection.png`` / ``segmentation.png``: test scenes, the ground truth above and the run's prediction
  below (boxes with class and score / class maps), through :meth:`reslab.tasks.scenes.SceneOps.found`,
  the function ``reslab predict`` draws with.
- ``video.png``: test clips of Moving Fashion-MNIST, one row each (every frame), titled with the true and the
  predicted label (garment, direction).
- ``super_resolution.png``: the centre of each test photograph: the low-resolution input (nearest), bicubic
  upsampling, the network, the original; PSNR of the whole photograph in the titles.

    python bench/task_figures.py [--detection RUN] [--segmentation RUN] [--video RUN] [--sr RUN]
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
    from reslab.tasks import SCENE_TASKS, PredictRequest
    from reslab.tasks.scene_config import SceneOptions, load_splits

    model, meta = load_dense(run)
    config = {k: v for k, v in meta["config"].items() if k not in ("data", "precision")}
    cfg = TrainConfig.from_dict(config, source=f"{run} config")
    ops = SCENE_TASKS[cfg.task].ops
    data, scenes = load_splits(SceneOptions.from_config(cfg, ops), cfg)
    test, task = scenes["test"], ops()
    classes = list(data.classes)
    model = model.float().eval()
    fig, axes = plt.subplots(2, count, figsize=(2.6 * count, 5.6))
    for i in range(count):
        image = test.images[i]
        lo, hi = int(test.offsets[i]), int(test.offsets[i + 1])
        if cfg.task == "detection":
            truth = {"boxes": test.boxes[lo:hi], "labels": test.labels[lo:hi], "scores": torch.ones(hi - lo)}
            gt = task.draw(image, truth, classes)  # classes[0] is the background
        else:
            class_map = torch.zeros_like(test.instances[i], dtype=torch.long)
            for k in range(hi - lo):
                class_map[test.instances[i] == k + 1] = int(test.labels[lo + k])
            gt = task.draw(image, class_map, len(classes))
        _, _, drawn = task.found(model, image, meta.get("classes") or classes, PredictRequest())
        for row, (picture, title) in enumerate(((gt, "truth"), (drawn, "prediction"))):
            ax = axes[row, i]
            ax.imshow(picture.permute(1, 2, 0).numpy())
            ax.set_title(f"test scene {i}: {title}", fontsize=8)
            ax.axis("off")
    if cfg.task == "segmentation":  # the colour of each class (detection writes the names on the boxes)
        from matplotlib.patches import Patch

        from reslab.tasks.scenes import PALETTE

        rgb = [tuple(v / 255 for v in PALETTE[(c - 1) % len(PALETTE)]) for c in range(1, len(classes))]
        handles = [Patch(color=rgb[c - 1], label=classes[c]) for c in range(1, len(classes))]
        fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"{cfg.task}: {model.spec.get('arch')} on {cfg.model} ({Path(run).name})", fontsize=9)
    _save(fig, out / f"{cfg.task}.png")
    plt.close(fig)


def video_figure(run: str, out: Path, count: int) -> None:
    """``count`` test clips, every frame, with the true and the predicted label."""
    import matplotlib.pyplot as plt

    from reslab.models.weights import load_model
    from reslab.tasks.base import run_config
    from reslab.tasks.video import load_data, predict_clips

    model, meta = load_model(run)
    config, info = run_config(meta)
    data = load_data(config.get("data_dir"), val_split=info.get("val_split") or 0,
                     split_seed=int(info.get("split_seed", 0)), **info["clip_spec"])  # fmt: skip
    x, y = data.test_x[:count], data.test_y[:count]
    pred, _ = predict_clips(model.float(), x, y, mean=info["mean"], std=info["std"])
    frames = x.shape[2]
    fig, axes = plt.subplots(count, frames, figsize=(1.3 * frames, 1.6 * count), squeeze=False)
    for i in range(count):
        for t in range(frames):
            ax = axes[i, t]
            ax.imshow(x[i, 0, t].numpy(), cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
        ok = "correct" if int(pred[i]) == int(y[i]) else "WRONG"
        axes[i, 0].set_title(f"true: {data.classes[int(y[i])]}   predicted: {data.classes[int(pred[i])]} ({ok})",
                             fontsize=8, loc="left")  # fmt: skip
    fig.suptitle(
        f"video: {meta.get('model')} {meta.get('model_kwargs') or ''} ({Path(run).name})", fontsize=9
    )
    _save(fig, out / "video.png")
    plt.close(fig)


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
    _save(fig, out / "super_resolution.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for task in ("detection", "segmentation", "video", "sr"):
        p.add_argument(f"--{task}", metavar="RUN", help=f"a finished {task} run")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
