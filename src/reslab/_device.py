"""Device selection and the autocast context, shared by training, evaluation, analysis and prediction."""

from __future__ import annotations

import contextlib

import torch

from reslab.errors import ConfigError


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) picks CUDA when available, else the CPU; an unknown or unavailable device is a
    :class:`ConfigError` with one line."""
    if isinstance(name, torch.device):
        return name
    name = "auto" if name in (None, "") else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"bad device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
    return dev


def autocast_ctx(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """The run's autocast on ``device`` (``amp_dtype`` None: fp32, no autocast)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)
