"""Options several commands share, declared once so they read and behave the same everywhere."""

from __future__ import annotations

import argparse
import re

DEVICE_HELP = "auto (default: CUDA where available, else the CPU), cpu, cuda or cuda:N"


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; whether the device exists is checked when it is used
    (:func:`reslab._device.resolve_device`), so ``--help`` needs no torch."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, cpu, cuda or cuda:N")
    return text


def add_device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device`` as every command has it."""
    p.add_argument("--device", default=default, type=device, help=DEVICE_HELP)
