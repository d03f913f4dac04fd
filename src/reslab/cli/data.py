"""``reslab data sample``: an input for ``reslab predict`` of a task's runs, from the data the task trains
on (a Fashion-MNIST test image, a test scene, a test photograph at low resolution), through the task
registry (:meth:`reslab.tasks.base.Task.sample_input`)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Write test input number --index of the data a task's recipe trains on as a PNG (classification: a "
    "Fashion-MNIST test image; detection / segmentation: a test scene; super-resolution: a test photograph "
    "at low resolution), for `reslab predict RUN FILE`."
)


def add_data(sub: argparse._SubParsersAction) -> None:
    what = "sample: write a test input of a task's data as a PNG, to try `reslab predict` on"
    p = sub.add_parser("data", help=what, description=DESCRIPTION)
    p.add_argument("action", choices=("sample",), help="what to do (sample: write one input)")
    p.add_argument("--task", default=None, metavar="TASK", help="the task whose data to sample (default: "
                   "classification); its recipe's data, or --recipe's")  # fmt: skip
    p.add_argument("--recipe", help="recipe whose data to sample (default: the task's)")
    p.add_argument("--index", type=int, default=0, metavar="N", help="which test input (default 0)")
    p.add_argument("--data-dir", help="folder holding the data set (default: the recipe's, else searched)")
    p.add_argument("--out", required=True, metavar="FILE", help="the PNG file to write")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from reslab._io import write_bytes
    from reslab.cli.train import task_recipe
    from reslab.errors import ConfigError
    from reslab.owned import png_bytes
    from reslab.tasks import task_class
    from reslab.train import load_recipe

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: reslab data sample writes a PNG file (FILE.png)")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a FILE.png")
    cfg = load_recipe(args.recipe or task_recipe(args.task))
    if args.task is not None:
        cfg.task = args.task
    if args.data_dir:
        cfg.data_dir = args.data_dir
    sample = task_class(cfg.task).sample_input(cfg, args.index)
    image = np.asarray(sample.image)
    image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    write_bytes(out, png_bytes(Image.fromarray(np.ascontiguousarray(image))))
    print(f"{out}: {sample.description}")
    return 0
