"""``reslab eval``: a run or checkpoint on its validation and test sets."""

from __future__ import annotations

import argparse


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a run or checkpoint: top-1/top-5 error, per-class accuracy, confusion matrix"
    )
    p.add_argument("path", help="run directory (checkpoints/best, else last), a .safetensors file or a "
                   "recognized foreign checkpoint (akamaster's CIFAR ResNets)")  # fmt: skip
    p.add_argument("--out", help="where eval.json and confusion_<split>.png go (default: the run directory)")
    p.add_argument("--data-dir", help="folder holding the data set (default: the run's, else searched)")
    p.add_argument("--split", choices=("val", "test", "both"), default="both", help="which sets to evaluate")
    p.add_argument("--tta", choices=("none", "flip"), default="none", help="test-time augmentation")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from reslab.train.evaluate import evaluate_checkpoint

    splits = ("val", "test") if args.split == "both" else (args.split,)
    r = evaluate_checkpoint(
        args.path, out_dir=args.out, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, tta=args.tta, splits=splits,
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
