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
                   help="evaluation batch size (default: the task's; 256 for a classifier)")  # fmt: skip
    p.add_argument("--episodes", type=int, default=None, metavar="N",
                   help="reinforcement-learning runs: episodes to play with the deterministic policy (default 10)")  # fmt: skip
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    """Through the run's task (:meth:`reslab.tasks.base.Task.evaluate_checkpoint`), which refuses in one
    line what it cannot honour (``--tta`` for a non-classifier, ``--split`` for video)."""
    from reslab.tasks import EvalRequest, task_class
    from reslab.tasks.base import checkpoint_task

    request = EvalRequest(
        out_dir=args.out, data_dir=args.data_dir, device=args.device, batch_size=args.batch_size, tta=args.tta,
        splits=("val", "test") if args.split == "both" else (args.split,), episodes=args.episodes,
    )  # fmt: skip
    cls = task_class(checkpoint_task(args.path))
    print("\n".join(cls.evaluation_lines(cls.evaluate_checkpoint(args.path, request))))
    return 0
