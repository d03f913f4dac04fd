"""The one exception type for mistakes a user can fix (bad name, path, file or value).

The CLI turns a :class:`ReslabError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class ReslabError(Exception):
    """A user error: the message is the whole explanation, one line, no traceback needed."""


class ConfigError(ReslabError, ValueError):
    """An invalid configuration value, recipe key or model argument."""


class DataError(ReslabError):
    """A data set that is missing, truncated, corrupt or of the wrong shape."""


class CheckpointError(ReslabError):
    """A checkpoint or weight file that is missing, corrupt, unsafe or from another model."""
