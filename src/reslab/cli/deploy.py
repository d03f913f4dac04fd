"""``reslab export``, ``predict`` and ``features``: using a trained network (:mod:`reslab.deploy`)."""

from __future__ import annotations

import argparse

from reslab.cli.options import add_device
from reslab.errors import ConfigError


def add_export(sub: argparse._SubParsersAction) -> None:
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


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a trained run (its own preprocessing); detection / segmentation "
        "runs: print the detections or classes and draw them (--out); super-resolution runs: upscale (--out)",
        description="Print the top-k classes of each image, preprocessed exactly as the run was trained "
        "(channels, size, normalization from its config). Detection and segmentation runs print each "
        "image's detections (class, score, box) or its classes' share of the pixels, and with --out draw "
        "the boxes or masks on it. Unreadable files get one line each on stderr and exit code 2; the "
        "others are still predicted.",
    )
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .safetensors checkpoint")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, ...) or folders (their "
                   "image files, sorted by name); none for a reinforcement-learning run, which plays one "
                   "episode into --out (a GIF)")  # fmt: skip
    p.add_argument("--topk", type=int, default=5, metavar="K", help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_device(p)
    p.add_argument("--invert", choices=("auto", "never", "always"), default="auto",
                   help="grey models: invert images whose polarity is the opposite of the training "
                   "images' (auto, from the image border: a dark garment on a light background), "
                   "never, or always (default auto)")  # fmt: skip
    g = p.add_argument_group("detection, segmentation and super-resolution runs")
    g.add_argument("--out", metavar="PATH", help="draw the boxes or masks, or write the upscaled image: the "
                   "PNG file for one image; for several images a directory, one PATH/<stem>_<task>.png "
                   "(super-resolution: <stem>_x<scale>.png) each (an existing file is refused without "
                   "--overwrite)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="replace PNG files reslab wrote")
    g.add_argument("--score-threshold", type=float, default=0.5, metavar="S",
                   help="detections scoring at least S are printed and drawn (default 0.5)")  # fmt: skip
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from reslab.deploy.predict import run_predict
    from reslab.tasks import PredictRequest

    request = PredictRequest(
        device=args.device, topk=args.topk, invert=args.invert, score_threshold=args.score_threshold
    )
    return run_predict(
        args.checkpoint, args.images, request, out=args.out, overwrite=args.overwrite, as_json=args.json
    )


# --------------------------------------------------------------------------------------- features


def add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="a model's feature maps (stage outputs: name, shape, stride, channels); with images, a trained "
        "network's vector for each (a face run's normalized embedding, a classifier's pooled features)",
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help="a model name (`reslab models`) or a run/checkpoint")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders to embed (needs a run "
                   "or checkpoint of a classifier or a face network)")  # fmt: skip
    p.add_argument("--input-size", metavar="C,H,W", help="input size, C,T,H,W for a video model (default: the "
                   "model's or the run's); stages only")  # fmt: skip
    p.add_argument("--out", metavar="FILE.npz", help="with images: write files and embeddings (numpy.load)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file this command wrote")
    add_device(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args: argparse.Namespace) -> int:
    from reslab.deploy.features import run_features

    if not args.images:
        if args.out or args.overwrite:
            raise ConfigError("--out and --overwrite write embeddings: give image files after the run")
        print(run_features(args.model, args.input_size, as_json=args.json))
        return 0
    if args.input_size:
        raise ConfigError("--input-size sizes the stage listing; images are read at the run's own input size")
    from reslab.deploy.embed import run_embed
    from reslab.tasks.base import PredictRequest

    request = PredictRequest(device=args.device)
    return run_embed(
        args.model, args.images, request, out=args.out, overwrite=args.overwrite, as_json=args.json
    )
