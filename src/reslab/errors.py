"""The one exception type for mistakes a user can fix (bad name, path, file or value), and
:func:`first_line`, which turns a foreign library's error into part of such a message.

The CLI turns a :class:`ReslabError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

USER_ERROR_EXIT = 2  # the exit code of a ReslabError
INTERRUPTED_EXIT = 130  # as a shell reports a process ended by Ctrl-C: stopped at a checkpoint


class ReslabError(Exception):
    """A user error: the message is the whole explanation, one line, no traceback needed."""


class ConfigError(ReslabError, ValueError):
    """An invalid configuration value, recipe key or model argument."""


class DataError(ReslabError):
    """A data set that is missing, truncated, corrupt or of the wrong shape."""


class CheckpointError(ReslabError):
    """A checkpoint or weight file that is missing, corrupt, unsafe or from another model."""


def first_line(e: BaseException | str, limit: int | None = None, default: str | None = None) -> str:
    """The first line of ``str(e)`` (at most ``limit`` characters), else ``default`` (or the exception's
    type name): how a foreign library's error (or the reason text it carries, such as a ``URLError``'s
    ``reason``) becomes part of a one-line :class:`ReslabError`."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else (default or type(e).__name__)
    return text[:limit] if limit is not None else text


def out_of_memory(e: BaseException) -> str | None:
    """What ran out, in a few words, when ``e`` is an out-of-memory error (CPU or CUDA); else ``None``.

    PyTorch raises ``torch.OutOfMemoryError`` (a ``RuntimeError``) for CUDA and a plain ``RuntimeError``
    ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes") on the CPU; Python
    raises ``MemoryError``."""
    import re

    if isinstance(e, MemoryError):
        return "the CPU's memory"
    text = str(e)
    if type(e).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
        return "GPU memory"
    if "can't allocate memory" in text or "not enough memory" in text:
        m = re.search(r"allocate (\d+) bytes", text)
        return f"the CPU could not allocate {int(m.group(1)) / 2**30:.1f} GiB" if m else "the CPU's memory"
    return None
