"""``reslab eval``: a run or checkpoint on its validation and test sets (classification: errors,
per-class accuracy, confusion matrices; detection / segmentation: the task's metrics, per class)."""

from __future__ import annotations

import argparse


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
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=None,
                   help="evaluation batch size (default 256; detection 16, segmentation 32)")  # fmt: skip
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from reslab.models.dense import dense_spec
    from reslab.train.evaluate import evaluate_checkpoint

    splits = ("val", "test") if args.split == "both" else (args.split,)
    if dense_spec(args.path) is not None:
        return _eval_dense(args, splits)
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


# -------------------------------------------------------------------------------------- reproduce


def _eval_dense(args: argparse.Namespace, splits: tuple[str, ...]) -> int:
    """``reslab eval`` of a detection / segmentation run: every metric, then one line per class."""
    from reslab.errors import ConfigError
    from reslab.train.dense_task import evaluate_dense_checkpoint

    if args.tta != "none":
        raise ConfigError("--tta applies to classification; detection and segmentation evaluate as trained")
    r = evaluate_dense_checkpoint(
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
