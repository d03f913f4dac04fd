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
