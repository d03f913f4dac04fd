"""The process's random number generators as a training state: captured into every checkpoint, restored on
resume, so that a resumed run draws what the uninterrupted one would have drawn.

:func:`rng_state` holds torch's CPU generator, CUDA's (every device, where CUDA is initialized), numpy's
legacy global ``RandomState`` and Python's ``random``, as plain tensors, ints, floats and lists, so that the
state loads with ``torch.load(weights_only=True)`` (no pickled generator objects). :func:`set_rng_state`
puts them back; a CUDA state saved on more GPUs than there are now is skipped.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The state of every generator, as plain values (see the module's docstring)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`'s dict."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # fewer GPUs now than when saved
            torch.cuda.set_rng_state_all(state["cuda"])
