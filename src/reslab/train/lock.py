"""The run directory's lock: two processes never train into one run directory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError


class RunLock:
    """An exclusive ``fcntl.flock`` on ``<run>/train.lock``: two processes never train into one run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "train.lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.pread(fd, 64, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
            who = f" (pid {other})" if other else ""
            raise ReslabError(
                f"run directory {self.path.parent} is in use by another reslab process{who}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
