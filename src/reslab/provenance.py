"""Provenance: where a result came from. The git revision of the code, the library versions and the
device, recorded by the training engine (``summary.json``), the experiment reports and the benchmarks.

One home for these (STYLE.md habit 9): each caller formats them as it needs, none re-derives them.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


@functools.cache
def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the checkout reslab is imported from, with ``-dirty`` when tracked files
    differ from it; without a git binary, the ref read from ``.git`` by hand; ``None`` outside a checkout
    (an installed wheel)."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(_HERE), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(_HERE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except FileNotFoundError:  # no git binary
        return _read_git_head()
    except (OSError, subprocess.SubprocessError):
        return None


def _read_git_head() -> str | None:
    for root in (_HERE, *_HERE.parents):
        head = root / ".git" / "HEAD"
        if head.is_file():
            try:
                ref = head.read_text().strip()
                return (root / ".git" / ref[5:]).read_text().strip() if ref.startswith("ref: ") else ref
            except OSError:
                return None
    return None


def versions() -> dict[str, str]:
    """``python``, ``torch``, ``numpy``, ``reslab`` (the installed distribution's version) and, where a
    GPU is visible, ``cuda`` (the CUDA version torch was built with)."""
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        out["reslab"] = version("reslab")
    except Exception:
        out["reslab"] = "unknown"
    if torch.cuda.is_available() and torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


def device_name(device: Any) -> str:
    """``cuda (<GPU name>)`` or ``cpu (<processor>, <N> threads)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'s' * (n != 1)})"
