"""``reslab eval``: a run or checkpoint on its validation and test sets (classification: errors,
per-class accuracy, confusion matrices; detection / segmentation: the task's metrics, per class)."""

from __future__ import annotations

import argparse

from reslab.cli.options import add_device


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run or checkpoint: top-1/top-5 error, per-class accuracy, confusion matrix; "
        "detection: COCO mAP, mAP@.5, AP per class; segmentation: mIoU, IoU per class",
    )
    p.add_argument("path", help="run directory (checkpoints/best, else last), a .safetensors file or a "
                   "recognized foreign checkpoint (akamaster's CIFAR ResNets)")  # fmt: skip
    p.add_argument("--out", help="where eval.json and confusion_<split>.png go (default: the run directory)")
    p.add_argument("--data-dir", help="folder holding the data set (default: the run's, else searched)")
    p.add_argument("--split", choices=("val", "test", "both"), default="both", help="which sets to evaluate")
    p.add_argument("--tta", choices=("none", "flip"), default="none", help="test-time augmentation")
    add_device(p)
    p.add_argument("--batch-size", type=int, default=None,
                   help="evaluation batch size (default 256; detection 16, segmentation 32)")  # fmt: skip
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from reslab.models.dense import DENSE_TASKS
    from reslab.tasks.base import checkpoint_task
    from reslab.tasks.classification import evaluate_checkpoint

    splits = ("val", "test") if args.split == "both" else (args.split,)
    task = checkpoint_task(args.path)
    if task in DENSE_TASKS:
        return _eval_dense(args, task, splits)
    if task in ("video", "super-resolution"):
        return _eval_video(args) if task == "video" else _eval_sr(args)
    r = evaluate_checkpoint(
        args.path, out_dir=args.out, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size or 256, tta=args.tta, splits=splits,
    )  # fmt: skip
    print(f"checkpoint: {r['checkpoint']} (step {r['step']})")
    if r.get("convention"):
        print(f"convention: {r['convention']}")
    for split in ("val", "test"):
        if split not in r:
            continue
        s = r[split]
        print(f"{split}: top-1 error {s['top1_error']:.2f}%  top-5 error {s['top5_error']:.2f}%  "
              f"loss {s['loss']:.4f}  ({s['n']} images)")  # fmt: skip
        for name, acc in s["per_class_accuracy"].items():
            print(f"  {name:>16s}  {acc:6.2f}%")
        print(f"  confusion matrix: {s['confusion_png']}")
    print(f"results: {r['eval_json']}")
    return 0


def _eval_dense(args: argparse.Namespace, task: str, splits: tuple[str, ...]) -> int:
    """``reslab eval`` of a detection / segmentation run: every metric, then one line per class."""
    from reslab.errors import ConfigError
    from reslab.tasks import SCENE_TASKS

    if args.tta != "none":
        raise ConfigError("--tta applies to classification; detection and segmentation evaluate as trained")
    r = SCENE_TASKS[task].evaluate_checkpoint(
        args.path, out_dir=args.out, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, splits=splits,
    )  # fmt: skip
    print(f"checkpoint: {r['checkpoint']} (step {r['step']}; {r['task']}, {r['arch']} on {r['backbone']})")
    for split in ("val", "test"):
        if split not in r:
            continue
        s = r[split]
        values = "  ".join(f"{k} {_fmt(v)}" for k, v in s.items() if k not in ("per_class", "n"))
        print(f"{split}: {values}  ({s['n']} scenes)")
        for name, per in s["per_class"].items():
            print(f"  {name:>16s}  " + "  ".join(f"{k} {_fmt(v)}" for k, v in per.items()))
    print(f"results: {r['eval_json']}")
    return 0


def _fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:.4f}"


def _loader_task_flags(args: argparse.Namespace, task: str) -> None:
    from reslab.errors import ConfigError

    if args.tta != "none":
        raise ConfigError(f"--tta applies to classification; a {task} run evaluates as trained")
    if args.split != "both":
        raise ConfigError(f"a {task} run is evaluated on its validation and test sets together (no --split)")


def _eval_video(args: argparse.Namespace) -> int:
    """``reslab eval`` of a video run: top-1, garment and direction error per split, accuracy per garment."""
    from reslab.tasks.video import evaluate_video_run

    _loader_task_flags(args, "video")
    r = evaluate_video_run(args.path, device=args.device, out_dir=args.out, data_dir=args.data_dir,
                           batch_size=args.batch_size or 64)  # fmt: skip
    print(f"checkpoint: {r['checkpoint']} (step {r['step']}; video, {r['model']})")
    for split in ("val", "test"):
        if split in r:
            s = r[split]
            print(f"{split}: error {s['error']:.2f}%  garment accuracy {s['garment_accuracy']:.2f}%  "
                  f"direction accuracy {s['direction_accuracy']:.2f}%  ({s['clips']} clips)")  # fmt: skip
            for name, acc in s["per_garment_accuracy"].items():
                print(f"  {name:>16s}  {_pct(acc)}")
    if not r.get("data_matches", True):
        print("note: the clips rebuilt here differ from the training run's (another cache or version)")
    print(f"results: {r['eval_json']}")
    return 0


def _eval_sr(args: argparse.Namespace) -> int:
    """``reslab eval`` of a super-resolution run: PSNR / SSIM against bicubic upsampling, per image."""
    from reslab.tasks.super_resolution import evaluate_sr_run

    _loader_task_flags(args, "super-resolution")
    r = evaluate_sr_run(args.path, device=args.device, out_dir=args.out)
    print(f"checkpoint: {r['checkpoint']} (step {r['step']}; super-resolution x{r['scale']}, {r['model']})")
    for split in ("val", "test"):
        if split in r:
            s = r[split]
            print(f"{split}: PSNR {s['psnr']:.2f} dB (bicubic {s['bicubic_psnr']:.2f}, "
                  f"{s['psnr_gain_over_bicubic']:+.2f})  SSIM {s['ssim']:.4f} (bicubic {s['bicubic_ssim']:.4f})")  # fmt: skip
            for name in (k.split("/", 1)[1] for k in s if k.startswith("psnr/")):
                print(f"  {name:>18s}  PSNR {s['psnr/' + name]:.2f} dB (bicubic {s['bicubic_psnr/' + name]:.2f})  "
                      f"SSIM {s['ssim/' + name]:.4f}")  # fmt: skip
    print(f"results: {r['eval_json']}")
    return 0


def _pct(v: float | None) -> str:
    return "   -   " if v is None else f"{v:6.2f}%"
