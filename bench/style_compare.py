"""Style transfer, optimization against feed-forward (issue 35): the same content and style photographs
through Gatys et al.'s optimization of the image (L-BFGS and Adam, ``reslab stylize``'s defaults) and
through a trained style run (Johnson et al.'s network, ``reslab train --task style``), with the seconds
each takes per image on this machine.

Writes ``OUT/style_compare.png`` (the pictures, and the time per image as bars on a log axis) and
``OUT/style_compare.json`` (the times, the loss terms, threads, torch version, CPU).

    OMP_NUM_THREADS=1 python bench/style_compare.py RUN [--content skimage:chelsea]
        [--style skimage:immunohistochemistry] [--size 256] [--threads 1] [--out docs/results/style]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from reslab.data.photos import read_photo, resize_to
from reslab.deploy.stylize import stylize
from reslab.experiments import figstyle
from reslab.models.weights import load_model
from reslab.tasks.style import stylize_tensor

OPTIMIZERS = (("lbfgs", 100), ("adam", 200))  # steps: reslab stylize's default; Adam needs more


def _as_image(x: torch.Tensor):
    return x.permute(1, 2, 0).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="trained style runs (feed-forward)")
    p.add_argument("--content", default="skimage:chelsea")
    p.add_argument("--style", default="skimage:immunohistochemistry")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("docs/results/style"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pictures, seconds, losses = {}, {}, {}
    for opt, steps in OPTIMIZERS:
        r = stylize(args.content, args.style, size=args.size, steps=steps, optimizer=opt)
        key = f"Gatys, {'L-BFGS' if opt == 'lbfgs' else 'Adam'} ({steps} steps)"
        pictures[key], seconds[key] = r.image, r.seconds
        losses[key] = {"first": r.history[0], "last": r.history[-1], "evaluations": r.evaluations}
    content = (resize_to(read_photo(args.content), args.size) * 255).round().to(torch.uint8)
    runs = {}
    for run in args.runs:
        model, meta = load_model(run)
        stylize_tensor(model, content)  # warm-up
        times = []
        for _ in range(5):
            out, s = stylize_tensor(model, content)
            times.append(s)
        sw = float(meta["config"]["data"]["options"]["style_weight"])
        key = f"Johnson, feed-forward (style weight {sw:g}, step {meta.get('step')})"
        pictures[key], seconds[key], runs[key] = (
            out,
            statistics.median(times),
            {"run": Path(run).name, "seconds": times},
        )
    _figure(args, content, pictures, seconds)
    record = {"content": args.content, "style": args.style, "size": args.size, "threads": args.threads,
              "seconds_per_image": seconds, "feed_forward": runs, "losses": losses,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    (args.out / "style_compare.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(seconds, indent=2))


def _figure(args: argparse.Namespace, content: torch.Tensor, pictures: dict, seconds: dict) -> None:
    import matplotlib.pyplot as plt

    style = (resize_to(read_photo(args.style), args.size) * 255).round().to(torch.uint8)
    panels = {f"content ({args.content})": content, f"style ({args.style})": style, **pictures}
    colours = [figstyle.BLUE, figstyle.SKY, figstyle.VERMILLION, figstyle.ORANGE]
    with figstyle.style():
        fig = plt.figure(figsize=(2.6 * len(panels), 5.6), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=(2.2, 1))
        for ax, (title, im) in zip(top.subplots(1, len(panels)), panels.items()):
            ax.imshow(_as_image(im))
            ax.set_title(title.replace(" (", "\n(").replace(", step", ",\nstep"), fontsize=8)
            ax.axis("off")
        ax = bottom.subplots()
        names = list(seconds)
        ax.barh(names, [seconds[n] for n in names], color=colours[: len(names)])
        ax.set_xscale("log")
        ax.invert_yaxis()
        for y, n in enumerate(names):
            ax.text(seconds[n] * 1.15, y, f"{seconds[n]:.3g} s", va="center", fontsize=8)
        ax.set_xlim(min(seconds.values()) / 3, max(seconds.values()) * 6)
        ax.set_xlabel(f"seconds per {args.size}-pixel image (log scale; {args.threads} CPU thread, machine busy; "
                      "feed-forward: median of 5 passes)")  # fmt: skip
        fig.suptitle("Style transfer with a random-weight ResNet-18 as the loss network: optimizing the image "
                     "(Gatys et al. 2016) vs one pass of a trained network (Johnson et al. 2016)", fontsize=9)  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        figstyle.save(fig, args.out / "style_compare.png")


if __name__ == "__main__":
    main()
