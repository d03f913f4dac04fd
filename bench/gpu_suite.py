"""reslab's GPU benchmark suite: every measurement in one call of under 10 minutes; a table last, JSON out.

    PYTHONPATH=src python bench/gpu_suite.py [--device cuda] [--only cifar,resnet50] [--out FILE] [--tiny]

Measurements (images/s, and MFU = the fraction of the device's *measured* bf16 matrix-product rate):

- ``peak``: bf16 ``torch.matmul`` of large square matrices (8192, 16384), best TFLOP/s. Always run: every
  MFU below divides by it. MFU of training = 3 * 2 * MACs * images/s / peak (backward ~ 2x forward), of
  inference 2 * MACs * images/s / peak; MACs per image from ``reslab.models.model_info`` (convolutions
  and ``fc``, as the paper counts them).
- ``cifar``: ResNet-20/56/110 training, batch 128, CIFAR-shaped synthetic data (50k train images):
  (a) reslab's loop, ``reslab.train.train`` itself (DeviceLoader with on-device crop/flip, bf16
  autocast, channels_last; the engine's defaults on CUDA), images/s from its own metrics row of the
  second of two windows (the first is warm-up); (b) a conventional PyTorch loop: a torchvision-style
  ``Dataset`` of uint8 HWC images, ``DataLoader`` workers doing per-image ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` on PIL images, the same model in fp32, eager,
  NCHW, the same SGD. Also the ratio (a)/(b).
- ``cifar_paper``: wall time of the whole ``cifar_paper`` recipe (64k iterations, batch 128, periodic
  evaluation on 5k val + 10k test every 2k iterations, checkpoints) for ResNet-20 on synthetic CIFAR-shaped
  data (50k train, 5k of them held out, 10k test), through ``train(load_recipe("cifar_paper"))``. A prefix
  of 4 evaluation windows runs first; the full schedule is extrapolated from it (measured prefix wall time
  + remaining iterations at the steady per-iteration time + remaining evaluations at the measured
  per-evaluation cost) and, at the end of the suite, run for real when the extrapolation fits the time box
  (``--paper-full-max-s``). The row says ``measured`` or ``EXTRAPOLATED``.
- ``resnet50``: 224x224, batch 256, synthetic ImageNet-shaped data, bf16 autocast + channels_last:
  training through reslab's ``train()``, reslab's model in a plain AMP loop, torchvision's ``resnet50`` in
  the same plain AMP loop (one preloaded batch); inference through ``reslab.tasks.classification.evaluate``
  (uint8 images on the device) and in plain ``inference_mode`` loops.
- ``sweep``: the paper's depth sweep (plain/ResNet-20/32/44/56, Fig. 6), batch 128, a fixed number of
  steps each: one after another in this process vs all at once in 8 worker processes (timed from a common
  start signal after each has warmed up) vs 8 CUDA streams in 8 threads of this process. The step is
  reslab's hot path built from its public pieces (``DeviceLoader`` + ``create_model`` + bf16 autocast +
  channels_last + SGD).

Optional (``--only options``): ResNet-20 through ``train()`` with one engine option changed per row
(optimizer kernels, cuDNN autotuning, channels_last, fp32, 4x the batch, the ``torch.compile`` modes), each
as a ratio to the defaults. Optional (``--only fmnist --fmnist-dir DIR``): the ``fashion_mnist_fast``
recipe on the real data over 3 seeds, wall time and test accuracy.

Every measurement is time-boxed and guarded: a failure is recorded in the JSON (``error``) and the suite
goes on. The JSON (``--out``, default ``bench_results/gpu_suite.json``) is rewritten after every
measurement; a watchdog writes it and prints the table if the whole call overruns (``--budget`` + 45 s).
``--tiny`` runs everything on small models/images/batches in seconds (used by the CPU smoke test; ResNet-18
at 32x32 stands in for ResNet-50, and the 64k schedule is only extrapolated).

Layout: this script (arguments, the order of the groups, the watchdog); ``bench/gpu_bench/``:
``harness.py`` (settings, the suite's bookkeeping, timing helpers), ``baselines.py`` (the conventional
loop, reslab's step from its public pieces, the concurrent runners) and one module per group (``peak``,
``cifar`` + ``options``, ``cifar_paper``, ``resnet50``, ``sweep``, ``fmnist``). Synthetic data of any size
comes through ``TrainConfig.data_kwargs``; only public reslab API is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_bench, also when loaded by path (tests)
from gpu_bench.harness import ROOT


def _ensure_reslab() -> None:
    """Make ``import reslab`` work without PYTHONPATH (the repository's ``src``), for workers too."""
    try:
        import reslab  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


_ensure_reslab()

import torch  # noqa: E402

from gpu_bench import cifar, cifar_paper, fmnist, peak, resnet50, sweep  # noqa: E402
from gpu_bench.baselines import worker_main  # noqa: E402
from gpu_bench.cifar_paper import extrapolate_schedule  # noqa: E402, F401  (tests call it from here)
from gpu_bench.harness import Settings, Suite  # noqa: E402

MEASUREMENTS = ("peak", "cifar", "cifar_paper", "resnet50", "sweep")  # the default set, in this order
OPTIONAL = ("options", "fmnist")  # only with --only (torch.compile takes minutes; fmnist needs the data)
# (group, measurement, seconds of budget it needs to start), in the order they run
GROUPS = (
    ("peak", peak.peak, 0),
    ("cifar", cifar.cifar, 30),
    ("cifar_paper", cifar_paper.cifar_paper, 30),
    ("resnet50", resnet50.resnet50, 30),
    ("sweep", sweep.sweep, 30),
    ("options", cifar.options, 60),
    ("fmnist", fmnist.fmnist, 20),
    ("cifar_paper_full", cifar_paper.cifar_paper_full, 0),  # last: the time left decides
)

# ----------------------------------------------------------------------------------------------- main


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument(
        "--tiny", action="store_true", help="tiny sizes, a few steps each: the whole suite in seconds"
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default: all), or the optional "
        f"{','.join(OPTIONAL)}; peak always runs",
    )
    p.add_argument("--out", default="bench_results/gpu_suite.json", help="JSON output file")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite (default 480)")
    p.add_argument(
        "--paper-full-max-s", type=float, default=180.0,
        help="run the full cifar_paper schedule only if extrapolated to at most this many seconds",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the conventional loop")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--fmnist-dir", default=None, help="Fashion-MNIST idx .gz files (for --only fmnist)")
    p.add_argument("--fmnist-seeds", type=int, default=3, help="seeds of fashion_mnist_fast (default 3)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in MEASUREMENTS + OPTIONAL]
        if bad:
            p.error(f"--only: unknown {', '.join(bad)}; choose from {', '.join(MEASUREMENTS + OPTIONAL)}")
        args.only = names
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args._worker is not None:
        return worker_main(args._worker)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: CUDA is not available here (use --device cpu, e.g. with --tiny)", file=sys.stderr)
        return 2
    if dev.type not in ("cuda", "cpu"):
        print(f"gpu_suite: unsupported device {args.device!r}", file=sys.stderr)
        return 2
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if args.tiny and dev.type == "cpu":
        torch.set_num_threads(1)  # a smoke test on a shared machine: threads only fight each other
    s = Settings.make(args)
    suite = Suite(s, Path(args.out), argv)
    only = set(args.only or MEASUREMENTS)
    print(
        f"gpu_suite: {suite.meta.get('device_name')} torch {torch.__version__}, budget {s.budget_s:.0f}s",
        flush=True,
    )

    def abort() -> None:  # the watchdog: the suite overran; leave the JSON and the table anyway
        suite.add({"name": "watchdog", "group": "suite", "error": f"aborted after {suite.elapsed():.0f}s"})
        with contextlib.suppress(Exception):
            suite.write(aborted=True)
        print(suite.table(), flush=True)
        os._exit(3)

    watchdog = threading.Timer(s.budget_s + 45.0, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        suite.write()
        for group, fn, min_s in GROUPS:  # peak always: every MFU needs it
            if group == "peak" or group.removesuffix("_full") in only:
                suite.run(group, lambda fn=fn: fn(suite), min_s)
        suite.finished = True
        suite.write()
    finally:
        watchdog.cancel()
        shutil.rmtree(suite.tmp, ignore_errors=True)
    print(suite.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
