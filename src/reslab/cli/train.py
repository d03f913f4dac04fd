"""``reslab train``: its flags are generated from :class:`~reslab.config.TrainConfig`'s field
metadata (a field's help text is written once, beside the field); ``--resume`` follows
:data:`~reslab.config.RESUME_KEYS`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from reslab.errors import ReslabError

# ``reslab train``'s flags: each is a TrainConfig field whose help text lives in the field's metadata;
# a tuple is a group of mutually exclusive fields.
TRAIN_GROUPS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "what to train": (
        "task",
        "model",
        "dataset",
        "data_dir",
        "download",
        "subset",
        "val_split",
        "env",
        "algo",
    ),
    "budget and optimization": (("epochs", "iterations"), "batch_size", "lr", "weight_decay", "seed"),
    "machine": ("device", "sync_bn"),
    "fine-tuning": ("init_from", "freeze", "freeze_backbone", "num_classes", "backbone_lr_scale"),
}


def _add_field_flag(group: argparse._ActionsContainer, name: str) -> None:
    """``--name-with-dashes`` for TrainConfig field ``name``: help and metavar from its metadata, the
    argument type from its annotation (values are checked by the config itself, as ``--set`` ones are)."""
    import typing

    from reslab.config import TrainConfig, config_fields

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


def add_train(sub: argparse._SubParsersAction) -> None:
    from reslab.config import RESUME_KEYS

    p = sub.add_parser(
        "train",
        help="train a model (the main job); `reslab train` alone runs the fashion_mnist recipe",
        description=(
            "Train a model into a run directory (config.yaml, metrics.csv, train_log.csv, summary.json, "
            "curves.png, checkpoints/). Settings come from a recipe (YAML), then from these flags, then "
            "from --set key=value. With no arguments: the fashion_mnist recipe on the best device."
        ),
    )
    for title, names in TRAIN_GROUPS.items():
        g = p.add_argument_group(title)
        if title == "what to train":
            g.add_argument("--recipe", default=None, help="recipe name (fashion_mnist [default], fashion_mnist_demo, "
                           "cifar_paper, imagenet_paper, detection, segmentation, ...) or a path to a YAML file; "
                           "default: the recipe named after --task, else fashion_mnist")  # fmt: skip
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
    g.add_argument("--accept-change", action="append", default=[], metavar="KEY",
                   help="with --resume: accept a deliberate change of KEY (iterations or epochs) in the run's "
                   "config.yaml or on this command line; recorded in the run's history (repeatable)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out (only the files "
                   "reslab wrote there; a folder holding anything else is refused)")  # fmt: skip
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument("--print-config", action="store_true", help="print the resolved config as YAML, each value "
                   "with where it came from (default, recipe, flag, --set), and stop without training")  # fmt: skip
    p.set_defaults(func=_cmd_train)


def _train_flag_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given as flags (``None``: not given)."""
    names = [n for ns in TRAIN_GROUPS.values() for n in ns]
    fields = [f for n in names for f in (n if isinstance(n, tuple) else (n,))]
    return {f: getattr(args, f) for f in fields if getattr(args, f) is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    given = _train_flag_values(args)
    summary = _resume(args, given) if args.resume else _start(args, given)
    if summary is None:  # --print-config
        return 0
    if not args.quiet and os.environ.get("RANK", "0") in ("", "0"):  # torchrun: rank 0 alone reports
        _print_train_result(summary)
    return 0


def _start(args: argparse.Namespace, given: dict) -> dict | None:
    """A new run: the recipe (``--recipe``, else :func:`task_recipe`), the flags, ``--set``; the config
    and its task are checked before anything is written (``--print-config``: printed, nothing trained)."""
    from pathlib import Path

    from reslab.tasks import task_class
    from reslab.train import parse_set, train
    from reslab.train.recipe import resolve_config
    from reslab.train.rundir import default_run_dir

    if args.accept_change:
        raise ReslabError("--accept-change goes with --resume (a change to a resumed run's config)")
    sets = parse_set(args.set)
    resolved = resolve_config(args.recipe or task_recipe(given.get("task"), given | sets), given, sets)
    cfg = resolved.cfg
    task_class(cfg.validate().task)  # a recipe's or --set's unknown task: one line naming the registered ones
    resolved.sources["recipe"] = "--recipe" if args.recipe else "--task" if "task" in given else "default"
    if args.print_config:
        print(config_listing(cfg, resolved.sources, resolved.notes))
        return None
    for note in resolved.notes if not args.quiet else ():
        print(f"reslab: note: {note}", file=sys.stderr)
    out = Path(args.out) if args.out else default_run_dir(cfg)
    return train(cfg, out, overwrite=args.overwrite, progress=not args.quiet)


def _resume(args: argparse.Namespace, given: dict) -> dict | None:
    """``--resume RUN_DIR``: the run's stored config, changed only in :data:`~reslab.config.RESUME_KEYS`."""
    from pathlib import Path

    from reslab.train import RESUME_KEYS, apply_overrides, parse_set, train

    sets = parse_set(args.set)
    accept = set(args.accept_change)
    refused = [f"--{k.replace('_', '-')}" for k in given if k not in RESUME_KEYS and k not in accept]
    refused += [f"--set {k}" for k in sets if k.split(".")[0] not in RESUME_KEYS]
    refused += ["--recipe"] if args.recipe else []
    if refused:
        raise ReslabError(f"--resume continues a run with its stored config; {refused[0]} cannot be changed")
    if args.out and Path(args.out) != Path(args.resume):
        raise ReslabError("--resume RUN_DIR and --out name different directories; give just --resume")
    run = Path(args.resume)
    if not (run / "config.yaml").is_file():
        raise ReslabError(f"--resume: {run} is not a reslab run directory (no config.yaml)")
    cfg = None
    if given or sets or args.print_config:
        from reslab.train.rundir import stored_config

        cfg = stored_config(run)
        apply_overrides(cfg, given, source="command line")
        apply_overrides(cfg, sets, source="--set")
    if args.print_config:
        sources = {k: f"{run / 'config.yaml'}" for k in cfg.to_dict()}
        sources |= {k: f"--{k.replace('_', '-')}" for k in given} | {k: "--set" for k in sets}
        print(config_listing(cfg, sources, []))
        return None
    return train(
        cfg, run, resume=True, overwrite=args.overwrite, progress=not args.quiet, accept_changes=accept
    )


def config_listing(cfg: Any, sources: dict[str, str], notes: list[str]) -> str:
    """``--print-config``: the config as YAML (a recipe ``--recipe FILE`` reads back), each field with where
    its value came from as a comment; a dict field's keys each with theirs where they differ."""
    import yaml

    lines = [f"# {note}" for note in notes]
    for key, value in cfg.to_dict().items():
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()[1:-1]
        where = sources.get(key, "default")
        if isinstance(value, dict) and value:
            parts = {sources.get(f"{key}.{k}", where) for k in value}
            if len(parts) > 1 or where not in parts:
                where = ", ".join(f"{k}: {sources.get(f'{key}.{k}', where)}" for k in value)
            else:
                where = parts.pop()
        lines.append(f"{text}  # {where}")
    return "\n".join(lines)


def task_recipe(task: str | None, settings: dict | None = None) -> str:
    """The recipe ``reslab train --task TASK`` starts from without ``--recipe``: the task's own
    (:attr:`reslab.tasks.base.Task.recipe`, or its ``recipe_for(settings)`` where the task has one for
    each of its algorithms: ``settings`` are the flags and ``--set`` values given); without ``--task``,
    the default recipe (a classifier's)."""
    from reslab.tasks import TASKS
    from reslab.train import DEFAULT_RECIPE

    if task is None:
        return DEFAULT_RECIPE
    if task not in TASKS:
        raise ReslabError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    choose = getattr(TASKS[task], "recipe_for", None)
    return choose(settings or {}) if choose else TASKS[task].recipe


def _print_train_result(summary: dict) -> None:
    from pathlib import Path

    final = summary.get("final", {})
    test = final.get("test_error")
    line = f"done: {summary.get('steps')} iterations in {summary.get('wall_time_s', 0):.0f} s"
    if test is not None:
        line += f"; test error {test:.2f}% (accuracy {100 - test:.2f}%)"
    if final.get("val_error") is not None:
        line += f"; val error {final['val_error']:.2f}%"
    metric = (summary.get("metric_names") or ["error"])[0]
    if metric != "error":  # another task's primary metric (mAP@.5, mIoU, ...)
        for split in ("test", "val"):
            v = final.get(f"{split}_{metric}")
            if v is not None:
                line += f"; {split} {metric} {v:.4f}"
    print(line)
    run_dir = summary.get("run_dir")
    print(f"run:     {run_dir}")
    print(f"figure:  {summary.get('curves')}")
    print(f"summary: {Path(run_dir) / 'summary.json'}")
