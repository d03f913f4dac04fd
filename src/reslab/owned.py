"""What reslab owns on disk, and the rule that nothing else is ever deleted or replaced.

A run directory is recognized by a *marker* only reslab writes, never by file names a user may also
have (an experiment folder by its ``experiment.json``, a plan reslab wrote:
:func:`reslab.experiments.plan.check_experiment_folder`)::

    <folder>/reslab-run.json   {"format": "reslab-run", "version": 1, "id": "...", "created": "...",
                                "files": ["config.yaml", "checkpoints", ...], "history": [...]}

``files`` lists the top-level names reslab wrote there (:func:`claim` adds a name before the first write
of it), so ``--overwrite`` removes exactly those and refuses a folder holding anything else, naming the
first foreign entry (:func:`foreign_entries`). Inside a folder reslab claimed whole (``checkpoints/``,
``tensorboard/``) only the file names reslab itself writes there count as its own.

A temporary file of :func:`reslab._io.atomic_write` left by a killed process is ``.<name>.<8 chars>.tmp``
for a name reslab writes (:func:`is_own_temporary`); a user's ``.draft.tmp`` is not one.

Drawings reslab writes (``reslab predict --out``) carry a PNG text chunk ``Software: reslab``
(:data:`PNG_TEXT`); ``--overwrite`` replaces only such a file (:func:`png_written_by_reslab`).

This module sits at the bottom of the package graph beside :mod:`reslab._io` (every package may use it).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from reslab._io import write_json
from reslab.errors import ReslabError

VERSION = 1
MARKERS = {"run": "reslab-run.json"}
PNG_TEXT = ("Software", "reslab")  # the tEXt chunk of every PNG reslab draws for a user's --out

# File names reslab writes inside a folder it claims whole (what --overwrite may remove there).
OWN_INSIDE: dict[str, tuple[str, ...]] = {
    "checkpoints": ("last.*", "prev.*", "best.*", ".*.tmp"),
    "tensorboard": ("events.out.tfevents.*",),
    "runs": (),  # an experiment's run directories: each is checked as a run directory of its own
    "logs": ("*.log",),
}
_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def marker_path(folder: Path, kind: str) -> Path:
    return Path(folder) / MARKERS[kind]


def read_marker(folder: Path, kind: str) -> dict[str, Any] | None:
    """The marker of ``folder`` (``None``: none, or not one reslab wrote: a damaged marker vouches for
    nothing, so the folder counts as not reslab's)."""
    try:
        body = json.loads(marker_path(folder, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    ok = (
        isinstance(body, dict)
        and body.get("format") == f"reslab-{kind}"
        and isinstance(body.get("id"), str)
        and isinstance(body.get("files"), list)
        and all(isinstance(f, str) for f in body["files"])
    )
    return body if ok else None


def new_marker(folder: Path, kind: str, files: Iterable[str] = (), ident: str | None = None) -> dict:
    """Write a fresh marker for ``folder`` (claiming ``files``); returns it."""
    body = {
        "format": f"reslab-{kind}",
        "version": VERSION,
        "id": ident or uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": sorted(set(files) | {MARKERS[kind]}),
        "history": [],
    }
    write_json(marker_path(folder, kind), body)
    return body


def claim(folder: Path, kind: str, *names: str) -> None:
    """Record ``names`` as written by reslab in ``folder``'s marker (before the first write of each); a
    folder without a marker is left alone (a file written outside a reslab folder owns nothing)."""
    body = read_marker(folder, kind)
    if body is None or set(names) <= set(body["files"]):
        return
    body["files"] = sorted(set(body["files"]) | set(names))
    write_json(marker_path(folder, kind), body)


def record(folder: Path, kind: str, event: dict[str, Any]) -> None:
    """Append ``event`` (with the time) to the marker's history: what changed in the folder's life."""
    body = read_marker(folder, kind)
    if body is None:
        return
    body.setdefault("history", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event})
    write_json(marker_path(folder, kind), body)


def is_own_temporary(name: str, own: Iterable[str] = ()) -> bool:
    """Whether ``name`` is a temporary file :func:`reslab._io.atomic_write` left for one of ``own``."""
    m = _TMP.match(name)
    return m is not None and m.group("name") in set(own)


def foreign_entries(folder: Path, owned: Iterable[str], ignore: Iterable[str] = ()) -> list[str]:
    """The entries of ``folder`` reslab did not write, as relative paths, sorted: top-level names not in
    ``owned`` (nor ``ignore``, nor reslab's temporary files of owned names), and inside an owned folder
    of :data:`OWN_INSIDE` the files that match none of its patterns."""
    folder = Path(folder)
    owned, ignore = set(owned), set(ignore)
    out: list[str] = []
    for p in sorted(folder.iterdir()):
        if p.name in ignore or is_own_temporary(p.name, owned):
            continue
        if p.name not in owned:
            out.append(p.name + ("/" if p.is_dir() and not p.is_symlink() else ""))
            continue
        patterns = OWN_INSIDE.get(p.name)
        if patterns is None or not p.is_dir() or p.is_symlink() or p.name == "runs":
            continue
        for q in sorted(p.iterdir()):
            if q.is_symlink() or q.is_dir() or not any(fnmatch(q.name, pat) for pat in patterns):
                out.append(f"{p.name}/{q.name}")
    return out


def remove_own_files(folder: Path) -> None:
    """Remove the files reslab writes in ``folder`` (a claimed folder of :data:`OWN_INSIDE`), then the
    folder if nothing else is left; anything else in it stays."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    patterns = OWN_INSIDE.get(folder.name, ())
    for p in folder.iterdir():
        if p.is_file() and not p.is_symlink() and any(fnmatch(p.name, pat) for pat in patterns):
            p.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def refuse_foreign(folder: Path, foreign: list[str], what: str, hint: str) -> None:
    """One line naming the first foreign entry (and how many more), when there is one."""
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ReslabError(f"{folder} {what}: it holds {foreign[0]}{more}, which reslab did not write; {hint}")


def png_written_by_reslab(path: Path) -> bool:
    """Whether ``path`` is a PNG reslab drew (its :data:`PNG_TEXT` chunk)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(PNG_TEXT[0], "").startswith(PNG_TEXT[1])
    except (OSError, ValueError):
        return False


def png_info() -> Any:
    """The ``pnginfo`` to pass to ``PIL.Image.save`` for a drawing reslab writes."""
    from importlib.metadata import PackageNotFoundError, version

    from PIL.PngImagePlugin import PngInfo

    try:
        text = f"{PNG_TEXT[1]} {version('reslab')}"
    except PackageNotFoundError:  # run from a source tree
        text = PNG_TEXT[1]
    info = PngInfo()
    info.add_text(PNG_TEXT[0], text)
    return info


def png_bytes(image: Any) -> bytes:
    """``image`` (a PIL image, or a uint8 tensor (C, H, W)) as PNG bytes carrying reslab's text chunk
    (:func:`png_written_by_reslab`: ``--overwrite`` replaces only such files)."""
    import io

    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = image.permute(1, 2, 0).contiguous().numpy()
        image = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info())
    return buf.getvalue()
