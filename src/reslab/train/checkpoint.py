"""Checkpoints, the run directory's lock, and the checks and repair a resume needs.

A checkpoint ``<name>`` (``last`` or ``best``) is two files in ``<run>/checkpoints/``:

- ``<name>.safetensors``: the weights to use (the EMA weights when EMA is on), written by
  :func:`reslab.models.weights.save_weights`, with metadata ``config`` (the resolved config as JSON,
  including ``data``: input size, mean, std, class names), ``step`` and ``checkpoint_id``.
- ``<name>.state.pt``: everything needed to continue exactly: the raw model weights, the EMA weights,
  optimizer, step, RNG states (torch CPU/CUDA, numpy, python), loader position, best-so-far, running
  sums of the log windows, elapsed time. Plain tensors/containers only (loads with ``weights_only=True``).

Both are written atomically (temporary file, fsync, rename), weights first, then state. Resuming reads
only the state file, which is self-contained (it holds the raw weights itself), so a crash between the two
writes can never pair a new state with old weights: at worst ``last.safetensors`` is one checkpoint ahead
of ``last.state.pt``, and the resumed run recomputes and rewrites it. Both files carry the same
``checkpoint_id`` so a reader can tell whether they belong together (:func:`pair_matches`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab._io import torch_load, torch_save, write_bytes
from reslab.errors import CheckpointError, ReslabError

CKPT_DIR = "checkpoints"


def weights_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CKPT_DIR / f"{name}.safetensors"


def state_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CKPT_DIR / f"{name}.state.pt"


def new_checkpoint_id() -> str:
    return uuid.uuid4().hex


def save_checkpoint(
    run_dir: Path,
    names: list[str],
    weights_model: torch.nn.Module,
    metadata: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Write ``<name>.safetensors`` then ``<name>.state.pt`` for each name (e.g. ``["last", "best"]``)."""
    from reslab.models.weights import save_weights

    ckpt_id = new_checkpoint_id()
    meta = dict(metadata)
    meta["checkpoint_id"] = ckpt_id
    meta["step"] = int(state["step"])
    state = dict(state)
    state["checkpoint_id"] = ckpt_id
    for name in names:
        save_weights(weights_model, weights_path(run_dir, name), meta)
        torch_save(state, state_path(run_dir, name))


def load_state(run_dir: Path, name: str = "last") -> dict[str, Any] | None:
    """The training state of checkpoint ``name``, or ``None`` if there is none yet."""
    path = state_path(run_dir, name)
    if not path.exists():
        return None
    state = torch_load(path)
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a reslab training state")
    return state


def read_weights_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a weights file, JSON values decoded (as ``save_weights`` encodes them)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}") from None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def pair_matches(run_dir: Path, name: str = "last") -> bool:
    """Whether ``<name>.safetensors`` and ``<name>.state.pt`` come from the same checkpoint write."""
    w, s = weights_path(run_dir, name), state_path(run_dir, name)
    if not (w.exists() and s.exists()):
        return False
    try:
        return read_weights_metadata(w).get("checkpoint_id") == torch_load(s).get("checkpoint_id")
    except ReslabError:
        return False


# ------------------------------------------------------------------------------------ RNG states


def rng_state() -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------- lock


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


# ------------------------------------------------------------------------------------------- resume


def checkpoint_step(run_dir: Path, name: str = "last") -> int | str:
    """The step stored in ``<name>.safetensors`` (``"?"`` when unreadable), for messages."""
    try:
        return int(read_weights_metadata(weights_path(run_dir, name)).get("step", "?"))
    except (ReslabError, ValueError):
        return "?"


def check_state_fits(state: dict[str, Any], model: torch.nn.Module, run_dir: Path) -> None:
    """Raise :class:`CheckpointError` unless the training state was saved from a model like ``model``
    (same name, every tensor present with the same shape)."""
    name = getattr(model, "model_name", None)
    if state.get("model_name") not in (None, name):
        raise CheckpointError(
            f"{run_dir}: the checkpoint is of model {state.get('model_name')!r}, this run builds {name!r}"
        )
    own = model.state_dict()
    for k, v in state["model"].items():
        if k not in own or own[k].shape != v.shape:
            raise CheckpointError(f"{run_dir}: checkpoint tensor {k!r} does not fit model {name!r}")


def repair_best(run_dir: Path, state: dict[str, Any]) -> None:
    """A crash between writing ``last`` and ``best`` leaves ``best`` one step behind: copy ``last``."""
    if state["best"].get("step") != state["step"]:
        return
    try:
        best_state = load_state(run_dir, "best")
    except ReslabError:
        best_state = None
    if best_state is None or best_state.get("checkpoint_id") != state.get("checkpoint_id"):
        for src, dst in (
            (weights_path(run_dir, "last"), weights_path(run_dir, "best")),
            (state_path(run_dir, "last"), state_path(run_dir, "best")),
        ):
            if src.exists():
                write_bytes(dst, src.read_bytes())
