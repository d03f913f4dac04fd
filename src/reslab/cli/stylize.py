"""``reslab stylize CONTENT STYLE --out OUT``: Gatys et al.'s style transfer by optimizing the image
(:mod:`reslab.deploy.stylize`)."""

from __future__ import annotations

import argparse

from reslab.cli.options import add_device


def add_stylize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize",
        help="paint CONTENT in the style of STYLE by optimizing the image (Gatys et al. 2016) against a "
        "reslab network's features",
        description="Optimize a picture whose features at --content-layer match CONTENT's and whose Gram "
        "matrices at --style-layers match STYLE's (Gatys et al. 2016). Images: files, or scikit-image's "
        "bundled ones as skimage:NAME (astronaut, chelsea, coffee, rocket, motorcycle, immunohistochemistry, "
        "hubble_deep_field, retina, colorwheel, brick, grass, gravel). The loss network: --model with random "
        "weights (default), --init-from torchvision (ImageNet weights from the torch.hub cache; downloaded only "
        "with --download) or --init-from RUN (a run of your own). docs/style.md says what to expect of each.",
    )
    p.add_argument("content", metavar="CONTENT", help="content image: a file or skimage:NAME")
    p.add_argument("style", metavar="STYLE", help="style image: a file or skimage:NAME")
    p.add_argument(
        "--out", required=True, metavar="PNG", help="the picture (PNG; an existing file needs --overwrite)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a PNG reslab wrote")
    p.add_argument("--size", type=int, default=256, help="longer side of the picture in pixels (default 256)")
    p.add_argument(
        "--model",
        help="loss network: a reslab image classifier (default resnet18; a run's own with --init-from RUN)",
    )
    p.add_argument(
        "--init-from", metavar="torchvision|RUN", help="the loss network's weights (default: random, seeded)"
    )
    p.add_argument("--download", action="store_true", help="with --init-from torchvision: fetch the weights "
                   "into the torch.hub cache if they are not there (SHA-256 checked); otherwise never")  # fmt: skip
    p.add_argument(
        "--content-layer", default="layer2", help="stage whose features keep the content (default layer2)"
    )
    p.add_argument("--style-layers", default="stem,layer1,layer2,layer3", help="stages whose Gram matrices carry the "
                   "style, comma separated: stem, layer1, ... (default stem,layer1,layer2,layer3)")  # fmt: skip
    p.add_argument("--content-weight", type=float, default=1.0, help="default 1")
    p.add_argument("--style-weight", type=float, default=1e3, help="default 1000")
    p.add_argument("--tv-weight", type=float, default=100.0, help="total variation (default 100)")
    p.add_argument(
        "--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="default lbfgs (the paper's)"
    )
    p.add_argument("--steps", type=int, default=100, help="L-BFGS iterations or Adam steps (default 100)")
    p.add_argument("--lr", type=float, help="step size (default 1 for L-BFGS, 0.05 for Adam, in logit units)")
    p.add_argument("--init", choices=("content", "noise"), default="content", help="start from the content "
                   "image (default) or from noise (the paper's)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random weights and noise (default 0)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_device(p)
    p.set_defaults(func=_cmd_stylize)


def _cmd_stylize(args: argparse.Namespace) -> int:
    import torch

    from reslab.deploy.predict import output_paths
    from reslab.deploy.stylize import loss_lines, parse_layers, stylize, write_stylized
    from reslab.errors import ConfigError
    from reslab.tasks.perceptual import Weights

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    output_paths([args.content], args.out, "stylized", overwrite=args.overwrite)  # refuse before the work
    weights = Weights(args.content_layer, parse_layers(args.style_layers), args.content_weight,
                      args.style_weight, args.tv_weight)  # fmt: skip
    result = stylize(args.content, args.style, size=args.size, model=args.model, init_from=args.init_from,
                     weights=weights, steps=args.steps, optimizer=args.optimizer, lr=args.lr, init=args.init,
                     seed=args.seed, device=args.device, download=args.download)  # fmt: skip
    target = write_stylized(result, args.content, args.out, overwrite=args.overwrite)
    h, w = result.image.shape[-2:]
    print(f"{target}: {w}x{h}, {args.optimizer} {args.steps} steps ({result.evaluations} loss evaluations) in "
          f"{result.seconds:.1f} s; loss network {result.network}")  # fmt: skip
    for line in loss_lines(result.history):
        print(f"  {line}")
    return 0
