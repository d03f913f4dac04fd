"""Crash-safe file writing and safe loading shared by every package.

Every file reslab writes goes through :func:`atomic_write`: the bytes go to a temporary file in the same
directory, are flushed and fsync'ed, and only then renamed over the target, so a reader (or a resumed run)
sees either the old file or the new one, never a torn one. The file gets the mode ``open()`` would give it
(the umask's: 0644 typically), not the temporary file's 0600.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reslab.errors import CheckpointError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), ordinary_mode())  # mkstemp makes 0600: the umask's mode, as open() gives
            os.fsync(f.fileno())
        fault_point("write")  # test hook: a crash between the temporary write and the rename
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def ordinary_mode() -> int:
    """The mode a new file gets from ``open()`` under this process's umask (0644 under the usual 022):
    what every file reslab writes gets, though it is staged through :func:`tempfile.mkstemp` (0600)."""
    with _UMASK_LOCK:  # reading the umask sets it: one thread at a time (checkpoints write from a pool)
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


_UMASK_LOCK = threading.Lock()


_FAULT_COUNTS: dict[str, int] = {}  # occurrences of each fault point in this process (test hook only)


def fault_point(kind: str, n: int | None = None) -> bool:
    """TEST HOOK for the reliability suite (``tests/reliability``); a no-op unless ``RESLAB_FAULT`` is set.

    ``RESLAB_FAULT="KIND:N[:ACTION],..."`` fires at fault point ``KIND`` when its number is ``N``: the
    training step for ``step`` (after the backward pass, before the optimizer step) and ``eval``
    (during an evaluation), the N-th occurrence in this process for ``write`` (an atomic write between
    the temporary file and the rename). ``ACTION`` is ``SIGKILL`` (default), ``SIGINT`` or ``SIGTERM``
    (sent to this process), or ``nan``: returns True, and the caller makes the loss NaN.
    """
    spec = os.environ.get("RESLAB_FAULT")
    if not spec:
        return False
    if n is None:
        n = _FAULT_COUNTS[kind] = _FAULT_COUNTS.get(kind, 0) + 1
    for item in spec.split(","):
        k, _, rest = item.strip().partition(":")
        num, _, action = rest.partition(":")
        if k != kind or not num.strip().isdigit() or int(num) != n:
            continue
        action = action.strip() or "SIGKILL"
        if action == "nan":
            return True
        import signal

        os.kill(os.getpid(), getattr(signal, action))
    return False


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`; ``obj`` must be loadable with ``weights_only=True``."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def _unsafe_global(e: BaseException) -> str:
    """`` (GLOBAL name)`` that PyTorch's refusal names, if it names one (its text, with its advice to turn
    the check off, is not passed on)."""
    import re

    m = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*)", re.sub(r"\x1b\[[0-9;]*m", "", str(e)))
    return f" ({m.group(1)})" if m else ""


def torch_load(path: str | os.PathLike, map_location: Any = "cpu", *, data: bytes | None = None) -> Any:
    """Load a torch file with ``weights_only=True``: tensors, dicts, lists, numbers and strings only.

    A file that would need arbitrary unpickling (and so could run code) is refused with a
    :class:`CheckpointError`, as is a missing, truncated or corrupt file. With ``data``, those bytes are
    loaded (already read and verified by the caller) and ``path`` only names them in messages.
    """
    import pickle

    import torch

    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        src = io.BytesIO(data) if data is not None else path
        return torch.load(src, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects beyond tensors and plain containers"
            f"{_unsafe_global(e)}, which unpickling could run as code; reslab loads only weights-only files"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"cannot read {path}: corrupt or truncated ({type(e).__name__})") from None


def truncate_log(path: Path, cols: tuple[str, ...], step: int) -> int:
    """Rewrite the CSV log ``path`` (a missing file stays missing) with its sound rows whose ``step`` is at
    most ``step`` (a run resumed from the checkpoint of ``step`` recomputes the rest) under the header
    ``cols``, reslab's own; returns how many rows were damaged and dropped (:func:`read_log_rows`)."""
    if not path.exists():
        return 0
    keep, damaged = read_log_rows(path, cols, step)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    write_text(path, buf.getvalue())
    return damaged


def read_log_rows(path: Path, cols: tuple[str, ...], step: int) -> tuple[list[dict[str, str]], int]:
    """The sound rows of log ``path`` up to ``step`` (as dicts over ``cols``) and how many rows were
    damaged (undecodable bytes, NULs, a wrong number of fields, a step that is no number). The last row
    torn by a kill mid-append is not damage. A damaged header is read as ``cols`` (reslab wrote it)."""
    lines = [ln for ln in path.read_bytes().decode("utf-8", errors="replace").split("\n") if ln]
    if not lines:
        return [], 0

    def damaged_bytes(line: str) -> bool:
        return "\ufffd" in line or "\x00" in line

    header = next(csv.reader([lines[0].replace("\x00", "")]))
    damaged = 0
    if "step" not in header or damaged_bytes(lines[0]):
        # read as reslab's own header; a damaged first line longer than it swallowed a row or more
        damaged += len(lines[0]) > len(",".join(cols))
        header = list(cols)
    keep: list[dict[str, str]] = []
    for i, line in enumerate(lines[1:], 1):
        r = next(csv.reader([line.replace("\x00", "")]), [])
        if len(r) != len(header) and i == len(lines) - 1 and not damaged_bytes(line):
            break  # the torn tail of an append a kill interrupted
        row = dict(zip(header, r))
        try:
            if damaged_bytes(line) or len(r) != len(header) or any(c not in row for c in cols):
                raise ValueError
            row_step = int(float(row["step"]))
        except (KeyError, ValueError):
            damaged += 1
            continue
        if row_step <= step:
            keep.append({c: row[c] for c in cols})
    return keep, damaged
