"""Provenance: where a result came from. The git revision of the code, the library versions and the
device, recorded by the training engine (``summary.json``), the experiment reports and the benchmarks.

One home for these (STYLE.md habit 9): each caller formats them as it needs, none re-derives them.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
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


# ------------------------------------------------------------------- paths as a published record holds them

ELIDED = "…"  # what stands for the part of a path only the machine that wrote it knew
# an absolute POSIX path inside a text; the kernel's files (/proc/cpuinfo) name the same thing everywhere
_ABSOLUTE = re.compile(r"(?<![\w.~:/…-])/(?!(?:proc|sys|dev)/)[^\s'\"`,;)\]]+")


def public_path(path: str | Path, root: str | Path | None = None, anchor: str | Path | None = None) -> str:
    """``path`` as a published record (a report, ``experiment.json``, a summary) holds it; one rule
    everywhere, since the machine's folders mean nothing to a reader of the record elsewhere:

    1. a relative path stays as it was written (relative to the directory the command ran from);
    2. an absolute path inside ``anchor`` (the folder the record describes, e.g. the run folder of an
       ``eval.json``) is written relative to it (``checkpoints/best.safetensors``; ``.`` for the folder);
    3. an absolute path inside ``root`` (default: the current directory, where commands run from: the
       repository's root) is written relative to it (``docs/results/depth-standard``);
    4. any other absolute path keeps only its last three components, at most all but its first, after
       ``…/`` (``/work/runs/degradation-standard/runs/plain20-s0`` is ``…/degradation-standard/runs/plain20-s0``).
    """
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    for base in (anchor, Path.cwd() if root is None else root):
        if base is None:
            continue
        with contextlib.suppress(ValueError):
            return p.relative_to(Path(base).absolute()).as_posix() or "."
    parts = p.parts[1:]
    return f"{ELIDED}/" + "/".join(parts[-min(3, max(1, len(parts) - 1)) :])


def public_text(text: str, root: str | Path | None = None, anchor: str | Path | None = None) -> str:
    """``text`` (a command line, a sentence, a JSON or YAML file's text) with every absolute path in it
    written by :func:`public_path` (relative to ``anchor`` or ``root``); a command whose program is a path
    to reslab's ``__main__.py`` is ``reslab ...``."""
    head, sep, rest = text.partition(" ")
    if head.endswith("/__main__.py"):
        text = "reslab" + sep + rest
    return _ABSOLUTE.sub(lambda m: public_path(m.group(0), root, anchor), text)


def public_record(value: Any, root: str | Path | None = None) -> Any:
    """A JSON-like record (a session entry of ``experiment.json``) with :func:`public_text` applied to every
    string in it, keys kept."""
    if isinstance(value, dict):
        return {k: public_record(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [public_record(v, root) for v in value]
    return public_text(value, root) if isinstance(value, str) else value
