"""The ``reslab`` command line: one sub-command per job, each a thin layer over the Python API.

Every user error ends as one line on stderr and exit code 2 (see :mod:`reslab.errors`); a bug keeps
its traceback. Heavy imports (torch, the packages) happen inside the handlers so ``reslab --help`` is fast.

Layout: for each sub-command ``X`` there is ``_add_X(subparsers)`` that declares its arguments and
``_cmd_X(args) -> int`` that runs it. Dependencies point one way: cli -> experiments -> analysis/train
-> data/models.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reslab.errors import ReslabError

# ----------------------------------------------------------------------------------------- models


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model's details")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names (default: all)")
    p.add_argument("--info", metavar="NAME", help="print one model's details")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from reslab.errors import ConfigError
    from reslab.models.registry import format_count, get_entry, list_models, model_info

    if args.info:
        info = model_info(args.info)
        for key, value in info.items():
            if key in ("params", "macs"):
                value = f"{value:,} ({format_count(value)})"
            elif key == "input_size":
                value = "x".join(map(str, value))
            print(f"{key:<12} {'-' if value is None else value}")
        return 0
    names = list_models(args.pattern)
    if not names and not any(c in args.pattern for c in "*?["):
        get_entry(args.pattern)  # an unknown name: the error names the closest ones
    if not names:
        raise ConfigError(f"no model matches {args.pattern!r}; see `reslab models`")
    rows = [("name", "family", "depth", "params", "MACs", "paper error %")]
    for name in names:
        i = model_info(name)
        counts = (str(i["depth"]), format_count(i["params"]), format_count(i["macs"]))
        rows.append((name, i["family"], *counts, i["paper_error"] or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        cells = [r[c].rjust(widths[c]) if c in (2, 3, 4) else r[c].ljust(widths[c]) for c in range(len(r))]
        print("  ".join(cells).rstrip())
    return 0


# ------------------------------------------------------------------------------------------ train


# ``reslab train``'s flags: each is a TrainConfig field whose help text lives in the field's metadata;
# a tuple is a group of mutually exclusive fields.
_TRAIN_GROUPS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "what to train": ("model", "dataset", "data_dir", "download", "subset", "val_split"),
    "budget and optimization": (("epochs", "iterations"), "batch_size", "lr", "weight_decay", "seed"),
    "machine": ("device", "sync_bn"),
    "fine-tuning": ("init_from", "freeze", "freeze_backbone", "num_classes", "backbone_lr_scale"),
}


def _add_field_flag(group: argparse._ActionsContainer, name: str) -> None:
    """``--name-with-dashes`` for TrainConfig field ``name``: help and metavar from its metadata, the
    argument type from its annotation (values are checked by the config itself, as ``--set`` ones are)."""
    import typing

    from reslab.train.config import TrainConfig, config_fields

    meta = config_fields()[name].metadata
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kw: dict = {"help": meta["help"], "default": None}
    if args == [bool]:
        kw["action"] = "store_true"
    else:
        kw["metavar"] = meta.get("metavar")
        if args in ([int], [float]):
            kw["type"] = args[0]
    group.add_argument("--" + name.replace("_", "-"), **kw)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from reslab.train.config import RESUME_KEYS

    p = sub.add_parser(
        "train",
        help="train a model (the main job); `reslab train` alone runs the fashion_mnist recipe",
        description=(
            "Train a model into a run directory (config.yaml, metrics.csv, train_log.csv, summary.json, "
            "curves.png, checkpoints/). Settings come from a recipe (YAML), then from these flags, then "
            "from --set key=value. With no arguments: the fashion_mnist recipe on the best device."
        ),
    )
    for title, names in _TRAIN_GROUPS.items():
        g = p.add_argument_group(title)
        if title == "what to train":
            g.add_argument("--recipe", default=None, help="recipe name (fashion_mnist [default], fashion_mnist_demo, "
                           "cifar_paper, imagenet_paper) or a path to a YAML file")  # fmt: skip
        for name in names:
            if isinstance(name, tuple):
                exclusive = g.add_mutually_exclusive_group()
                for n in name:
                    _add_field_flag(exclusive, n)
            else:
                _add_field_flag(g, name)
        if title == "budget and optimization":
            g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="any other config field, value parsed as YAML (repeatable), e.g. --set "
                           "schedule=cosine --set milestones=[30,60] --set model_kwargs.shortcut=B "
                           "--set ema_decay=0.999")  # fmt: skip
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default: runs/<model>-<dataset>-<time>)")
    changeable = ", ".join(sorted(RESUME_KEYS))
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint "
                   f"with its stored config (only these may change: {changeable})")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)


def _train_flag_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given as flags (``None``: not given)."""
    names = [n for ns in _TRAIN_GROUPS.values() for n in ns]
    fields = [f for n in names for f in (n if isinstance(n, tuple) else (n,))]
    return {f: getattr(args, f) for f in fields if getattr(args, f) is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reslab.train import DEFAULT_RECIPE, RESUME_KEYS, apply_overrides, load_recipe, parse_set, train
    from reslab.train.rundir import default_run_dir

    given = _train_flag_values(args)
    if args.resume:
        sets = parse_set(args.set)
        refused = [f"--{k.replace('_', '-')}" for k in given if k not in RESUME_KEYS]
        refused += [f"--set {k}" for k in sets if k.split(".")[0] not in RESUME_KEYS]
        refused += ["--recipe"] if args.recipe else []
        if refused:
            raise ReslabError(
                f"--resume continues a run with its stored config; {refused[0]} cannot be changed"
            )
        if args.out and Path(args.out) != Path(args.resume):
            raise ReslabError("--resume RUN_DIR and --out name different directories; give just --resume")
        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise ReslabError(f"--resume: {run} is not a reslab run directory (no config.yaml)")
        cfg = None
        if given or sets:
            from reslab.train.rundir import stored_config

            cfg = stored_config(run)
            apply_overrides(cfg, given, source="command line")
            apply_overrides(cfg, sets, source="--set")
        summary = train(cfg, run, resume=True, overwrite=args.overwrite, progress=not args.quiet)
    else:
        cfg = load_recipe(args.recipe or DEFAULT_RECIPE)
        apply_overrides(cfg, given, source="command line")
        apply_overrides(cfg, parse_set(args.set), source="--set")
        cfg.validate()
        out = Path(args.out) if args.out else default_run_dir(cfg)
        summary = train(cfg, out, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet and os.environ.get("RANK", "0") in ("", "0"):  # torchrun: rank 0 alone reports
        _print_train_result(summary)
    return 0


def _print_train_result(summary: dict) -> None:
    from pathlib import Path

    final = summary.get("final", {})
    test = final.get("test_error")
    line = f"done: {summary.get('steps')} iterations in {summary.get('wall_time_s', 0):.0f} s"
    if test is not None:
        line += f"; test error {test:.2f}% (accuracy {100 - test:.2f}%)"
    if final.get("val_error") is not None:
        line += f"; val error {final['val_error']:.2f}%"
    print(line)
    run_dir = summary.get("run_dir")
    print(f"run:     {run_dir}")
    print(f"figure:  {summary.get('curves')}")
    print(f"summary: {Path(run_dir) / 'summary.json'}")


# ------------------------------------------------------------------------------------------- eval


def _add_eval(sub: argparse._SubParsersAction) -> None:
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


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from reslab.experiments.specs import BUDGETS

    p = sub.add_parser(
        "reproduce",
        help="re-run one of the paper's experiments (degradation, depth, shortcuts, highway, relatives)",
        description=(
            "Train the experiment's networks (a rerun skips finished runs and continues interrupted ones), "
            "then draw its figure and write report.md beside the paper's numbers. Budgets: smoke (plumbing, "
            "<1 min), quick (~20 min on 2 CPU cores, shows the effect on Fashion-MNIST), standard (5 epochs per "
            "network, several seeds: hours on a CPU, decides what the quick budget cannot), paper (the paper's "
            "64k-iteration schedule; a GPU job)."
        ),
    )
    p.add_argument(
        "name", choices=("degradation", "depth", "shortcuts", "highway", "relatives"), help="the experiment"
    )
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        choices=("fashion-mnist", "cifar10", "cifar100", "synthetic"),
        help="data set (default: fashion-mnist)",
    )
    p.add_argument("--budget", default="quick", choices=tuple(BUDGETS), help="default: quick")
    p.add_argument(
        "--seeds",
        default=None,
        help="number of seeds (3 -> 0,1,2) or a comma list (default: the budget's, else 1)",
    )
    p.add_argument("--depths", default=None, help="comma list of depths (default: the experiment's)")
    p.add_argument("--out", default=None, help="experiment folder (default: experiments/NAME-DATASET-BUDGET)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once in worker processes (default: 1 on CPU, several per GPU on CUDA)",
    )
    p.add_argument("--data-dir", default=None, help="where the data set lives (default: the usual places)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training config field for every run (repeatable)",
    )
    p.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="committed results (e.g. docs/results/NAME-BUDGET): skip runs finished there with the same "
        "config, copy each finished run's curves there, write the report there",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs and their state) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from reslab.experiments import plan_experiment, run_experiment, run_states
    from reslab.train.recipe import parse_set

    plan = plan_experiment(
        args.name,
        dataset=args.dataset,
        budget=args.budget,
        seeds=args.seeds,
        depths=args.depths,
        out=args.out,
        device=args.device,
        data_dir=args.data_dir,
        overrides=parse_set(args.overrides),
    )
    if args.dry_run:
        print(f"{plan.experiment} on {plan.dataset}, {plan.budget} budget -> {plan.out}")
        states = run_states(plan, args.publish)
        for r in plan.runs:
            cfg = plan.configs[r.name]
            print(f"  {r.name:<16} {states[r.name]:<9} {cfg.get('model')} {cfg.get('model_kwargs') or ''}")
        return 0
    result = run_experiment(plan, jobs=args.jobs, progress=not args.quiet, publish=args.publish)
    print(f"report: {result['report']}")
    for fig in result.get("figures", []):
        print(f"figure: {fig}")
    for c in result.get("claims", []):
        print(f"  [{c.verdict}] {c.claim}")
    return 0


# ------------------------------------------------------------------------------------------- plot


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="redraw an experiment's or run's figures from its CSV logs")
    p.add_argument("path", help="an experiment folder (figures + report.md) or a run directory (curves.png)")
    p.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="copy the finished runs' curves to DIR and write the report and figures there (PATH is only read)",
    )
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from reslab.experiments import publish, redraw

    result = redraw(args.path) if args.publish is None else publish(args.path, args.publish)
    for fig in result.get("figures", []):
        print(f"figure: {fig}")
    if result.get("report"):
        print(f"report: {result['report']}")
    return 0


# ---------------------------------------------------------------------------------------- analyze


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="take a network apart: gradients, responses, lesion, paths, landscape, ode",
        description="Measure trained runs / checkpoints or fresh models (--model NAME[,NAME] --init); writes "
        "a PNG figure, the raw numbers (CSV/NPZ) and summary.md into --out.",
    )
    p.add_argument("analysis", choices=("gradients", "responses", "lesion", "paths", "landscape", "ode"))
    p.add_argument(
        "targets", nargs="*", metavar="RUN_OR_CHECKPOINT", help="run directories or .safetensors files"
    )
    p.add_argument(
        "--model", action="append", metavar="NAME[,NAME]", help="zoo models to build (with --init)"
    )
    p.add_argument("--init", action="store_true", help="analyze freshly initialized --model networks")
    p.add_argument(
        "--dataset", help="fashion-mnist (default; a checkpoint's own data set), cifar10, synthetic[:CxHxW]"
    )
    p.add_argument("--data-dir", help="where the data set lies (default: the usual places)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="data split (default test)")
    p.add_argument("--batch-size", type=int, help="batch size (gradients/paths: the one measured batch)")
    p.add_argument("--samples", "--subset", dest="samples", type=int, help="images in the fixed data subset")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for subsets, directions, sampled paths (default 0)"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--out", help="output directory (default analysis/<name>-<time>); landscape resumes in it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("gradients / paths / ode")
    g.add_argument(
        "--bn", choices=("with", "without", "both"), help="BN as is, replaced by identity, or both"
    )
    g.add_argument(
        "--bn-mode", choices=("train", "eval"), default="train", help="BN statistics (default train)"
    )
    g.add_argument("--path-samples", type=int, default=10, help="sampled paths per length (default 10)")
    g = p.add_argument_group("lesion")
    g.add_argument("--lesion-samples", type=int, default=10, help="random sets per k (default 10)")
    g.add_argument("--max-k", type=int, help="largest number of deleted units (default all)")
    g = p.add_argument_group("landscape")
    g.add_argument(
        "--mode", choices=("plane", "direction", "line"), default="plane", help="2-D, 1-D or between two"
    )
    g.add_argument("--resolution", type=int, default=21, help="points per axis (default 21)")
    g.add_argument("--span", type=float, default=1.0, help="grid over [-span, span] (default 1)")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from reslab.analysis.command import run

    return run(args)


# ----------------------------------------------------------------------------------------- export


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run or checkpoint to ONNX, torch.export or safetensors (verified against PyTorch)",
        description="Export a run directory or checkpoint. The output is verified (ONNX with onnxruntime, "
        ".pt2 with torch.export.load, at batch sizes 1 and 3: max abs diff printed) and written atomically.",
    )
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .safetensors checkpoint")
    p.add_argument("--format", dest="fmt", choices=("onnx", "torch-export", "safetensors"), default="onnx")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (.onnx / .pt2 / .safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.add_argument("--input-size", metavar="C,H,W", help="input size (default: the run's config)")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from reslab.deploy.export import export_model
    from reslab.deploy.features import parse_input_size

    result = export_model(
        args.checkpoint,
        args.fmt,
        args.out,
        overwrite=args.overwrite,
        input_size=parse_input_size(args.input_size) if args.input_size else None,
        atol=args.atol,
        verify=not args.no_verify,
        opset=args.opset,
    )
    print(result.summary())
    return 0


# ---------------------------------------------------------------------------------------- predict


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a trained run (its own preprocessing)",
        description="Print the top-k classes of each image, preprocessed exactly as the run was trained "
        "(channels, size, normalization from its config). Unreadable files get one line each on stderr "
        "and exit code 2; the others are still predicted.",
    )
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .safetensors checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--invert", choices=("auto", "never", "always"), default="auto",
                   help="grey models: invert images whose polarity is the opposite of the training "
                   "images' (auto, from the image border: a dark garment on a light background), "
                   "never, or always (default auto)")  # fmt: skip
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from reslab.deploy.predict import run_predict

    return run_predict(
        args.checkpoint,
        args.images,
        topk=args.topk,
        as_json=args.json,
        device=args.device,
        invert=args.invert,
    )


# --------------------------------------------------------------------------------------- features


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="print the multi-scale feature maps (stage outputs) of a model: name, shape, stride, channels",
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help="a model name (`reslab models`) or a run/checkpoint")
    p.add_argument("--input-size", metavar="C,H,W", help="input size (default: the model's or the run's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args: argparse.Namespace) -> int:
    from reslab.deploy.features import run_features

    print(run_features(args.model, args.input_size, as_json=args.json))
    return 0


# ----------------------------------------------------------------------------------------- verify


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a run directory: checkpoint checksums, config, logs; say what resume would do",
        description="Check every checkpoint generation (last, prev, best) against its SHA-256 manifest, the "
        "config and the logs against the checkpoints, and say what `reslab train --resume` would do. Reads "
        "only. Exit code 0: everything sound; 1: something is damaged; 2: not a run directory.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run directory")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from reslab.train.verify import verify_run

    report = verify_run(args.run)
    print("\n".join(report.lines()))
    return 0 if report.sound else 1


# --------------------------------------------------------------------------------------------- main

_COMMANDS = (
    _add_models,
    _add_train,
    _add_eval,
    _add_reproduce,
    _add_plot,
    _add_analyze,
    _add_export,
    _add_predict,
    _add_features,
    _add_verify,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab",
        description="Deep residual networks: build, train, reproduce and take apart ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reslab")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reslab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `reslab models | head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
