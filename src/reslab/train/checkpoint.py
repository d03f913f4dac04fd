"""Checkpoints, their generations and checksums, and the checks a resume needs.

A checkpoint generation ``<name>`` is three files in ``<run>/checkpoints/``:

- ``<name>.safetensors``: the weights to use (the EMA weights when EMA is on), the bytes of
  :func:`reslab.models.weights.weights_bytes`, with metadata ``config`` (the resolved config as JSON,
  including ``data``: input size, mean, std, class names), ``step``, ``checkpoint_id`` and ``run_id``.
- ``<name>.state.pt``: everything needed to continue exactly: the raw model weights, the EMA weights,
  optimizer, step, RNG states (torch CPU/CUDA, numpy, python), loader position, best-so-far, running
  sums of the log windows, elapsed time. Plain tensors/containers only (loads with ``weights_only=True``).
- ``<name>.manifest.json``: the SHA-256 and size of both, written last (:mod:`reslab.manifest`).

The generations: ``last`` (the newest), ``prev`` (the ``last`` before it, kept as the fallback) and
``best`` (the best evaluation so far). A save of ``last`` first turns the current ``last`` into ``prev``
(hard links, manifest last), then writes weights, state and manifest, each atomically (temporary file,
fsync, rename). At every instant one of ``last``/``prev`` is sound, and a crash at any point leaves at
worst a ``last`` whose files do not match its manifest, which resume passes over for ``prev``.
:class:`Checkpointer` is the one writer and the resume-side reader; :mod:`reslab.train.verify` reports
on a whole run directory.

The bytes are hashed in memory before they are written, and a reader hashes the bytes it then loads
(never the file twice), so what is used is what was written.

The generators' states a checkpoint holds come from :mod:`reslab.train.rng`, the run directory's lock from
:mod:`reslab.train.lock`; both are re-exported here (``ckpt.rng_state``, ``ckpt.RunLock``), where they
used to live.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from reslab._io import fsync_dir, torch_load, write_bytes
from reslab.errors import CheckpointError, ReslabError
from reslab.manifest import (
    INTERRUPTED,
    ROLES,
    Manifest,
    check_generation,
    has_manifests,
    manifest_path,
    role_path,
    sha256,
    write_manifest,
)
from reslab.train.lock import RunLock as RunLock
from reslab.train.rng import rng_state as rng_state
from reslab.train.rng import set_rng_state as set_rng_state

CKPT_DIR = "checkpoints"
GENERATIONS = ("last", "prev", "best")  # newest first for resume: last, then prev


def weights_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CKPT_DIR / f"{name}.safetensors"


def state_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CKPT_DIR / f"{name}.state.pt"


def new_checkpoint_id() -> str:
    return uuid.uuid4().hex


class Checkpointer:
    """The checkpoints of one run directory: writes generations with their manifests, keeps the previous
    ``last`` as ``prev``, and on resume loads the newest sound generation.

    ``main=False`` (the other ranks of a distributed run): reads only, never writes. After
    :meth:`load_resume_state`, ``note`` holds the one line to show the user (a fallback, a run from an
    older reslab), or ``None``.
    """

    def __init__(self, run_dir: str | os.PathLike, *, main: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / CKPT_DIR
        self.main = main
        self.run_id = uuid.uuid4().hex  # kept across resumes: a file of another run is told apart
        self.note: str | None = None
        self.resumed_from: str | None = None  # "last" or "prev"
        self.saves = 0  # checkpoints this run has written (kept across resumes, in the state)
        self._last_sound = False  # `last` on disk is a sound generation: the next save keeps it as `prev`

    # ------------------------------------------------------------------------------------- resume

    def load_resume_state(self) -> dict[str, Any] | None:
        """The training state to continue from (``None``: nothing saved yet, a fresh run).

        Verifies ``last`` against its manifest; if damaged, falls back to ``prev`` (and says so in
        ``note``). A run directory without manifests (an older reslab) is loaded unverified and its
        files are checksummed now. Where no generation is sound: :class:`CheckpointError`, nothing
        changed."""
        if not has_manifests(self.dir):
            return self._load_unverified()
        problems: list[str] = []
        last_step = ""
        for name in ("last", "prev"):
            gen = check_generation(self.dir, name, keep=("state",))
            if gen.sound and "state" in gen.data:
                path = state_path(self.run_dir, name)
                state = _checked_state(path, torch_load(path, data=gen.data["state"]))
                self._resume_from(name, state, gen.manifest.run_id)  # type: ignore[union-attr]
                if problems:
                    self.note = (
                        f"{self.dir}/last{last_step} is not sound: {problems[0]}; "
                        f"resuming from the previous checkpoint (step {state['step']})"
                    )
                return state
            if name == "last":
                last_step = f" (step {gen.step})" if gen.step is not None else ""
            problems.append(gen.describe() if gen.problems else "no training state")
        raise CheckpointError(
            f"no sound checkpoint in {self.dir} (last: {problems[0]}; prev: {problems[1]}); nothing was "
            f"changed{self._best_hint()}; see: reslab verify {self.run_dir}"
        )

    def _resume_from(self, name: str, state: dict[str, Any], run_id: str | None) -> None:
        self.run_id = str(run_id or state.get("run_id") or self.run_id)
        self.resumed_from = name
        self.saves = int(state.get("save_index", 0))
        self._last_sound = name == "last"

    def _best_hint(self) -> str:
        """Where ``last`` and ``prev`` are both unusable: whether ``best`` holds a sound training state."""
        if not has_manifests(self.dir):
            return ""
        best = check_generation(self.dir, "best")
        if not (best.sound and "state" in best.manifest.files):  # type: ignore[union-attr]
            return ""
        return (
            f"; checkpoint best (step {best.step}) is sound: to continue from it, copy "
            f"{self.dir}/best.{{safetensors,state.pt,manifest.json}} over last.* and resume"
        )

    def _load_unverified(self) -> dict[str, Any] | None:
        """A checkpoint folder without manifests. An older reslab's run (its states carry no run id) is
        used unverified, ``last`` else ``prev``, and checksummed from now on. A state this reslab wrote
        (it carries a run id) is trusted only as the run's first save, interrupted before its manifest:
        the run starts again from step 0 (it loses at most that first checkpoint's steps); otherwise its
        manifests were removed and its bytes cannot be vouched for: refused, nothing changed."""
        problems: list[str] = []
        for name in ("last", "prev"):
            try:
                state = load_state(self.run_dir, name)
            except CheckpointError as e:
                problems.append(f"{name}: {e}")
                continue
            if state is None:
                continue
            if state.get("run_id"):
                first = name == "last" and state.get("save_index") == 1
                if first and not state_path(self.run_dir, "prev").exists():
                    self.note = (
                        f"{self.dir}: the run's first checkpoint (step {state['step']}) was interrupted "
                        "before its manifest, so it is not trusted; starting again from step 0"
                    )
                    return None
                raise CheckpointError(
                    f"{state_path(self.run_dir, name)} (step {state['step']}) was written by a reslab that "
                    "records checksums, but no manifest vouches for it (they were removed, or damaged "
                    "files put back): its bytes cannot be trusted; nothing was changed; see: reslab "
                    f"verify {self.run_dir}"
                )
            self._resume_from(name, state, None)
            fallback = f" ({'; '.join(problems)}; used prev)" if problems else ""
            self.note = (
                f"{self.dir}: checkpoints from an older reslab (no checksums) accepted as they are"
                f"{fallback}; checksummed from now on"
            )
            if self.main:
                for gen in (name, "best"):
                    self._adopt(gen)
            return state
        if problems:
            raise CheckpointError(
                f"no usable checkpoint in {self.dir} ({'; '.join(problems)}); nothing was changed"
            )
        return None

    def _adopt(self, name: str) -> None:
        """Write a manifest for generation ``name`` as it is (a run from an older reslab); the weights
        are included only if they belong to the same checkpoint as the state."""
        spath, wpath = state_path(self.run_dir, name), weights_path(self.run_dir, name)
        if not spath.is_file():
            return
        sdata = spath.read_bytes()
        state = torch_load(spath, data=sdata)
        if not isinstance(state, dict) or "step" not in state:
            return
        files = {"state": _entry(sdata)}
        if wpath.is_file():
            wdata = wpath.read_bytes()
            if _weights_checkpoint_id(wdata) == state.get("checkpoint_id"):
                files["weights"] = _entry(wdata)
        ckpt_id = str(state.get("checkpoint_id") or new_checkpoint_id())
        write_manifest(self.dir, name, Manifest(int(state["step"]), ckpt_id, self.run_id, files))

    def repair_best(
        self, state: dict[str, Any], rebuild: Callable[[dict[str, Any], Manifest], bytes] | None = None
    ) -> str | None:
        """Make ``best`` sound again on resume; returns what was done, in one line (``None``: nothing).

        A crash between writing ``last`` and ``best`` leaves ``best`` behind (or torn): when the resumed
        state is itself the best, its generation is copied to ``best``. Otherwise a damaged ``best`` is
        repaired from its own sound half: its weights rebuilt from ``best.state.pt`` by ``rebuild(state,
        manifest)`` (the bytes a save writes), or a damaged ``best.state.pt`` dropped from the generation
        when its weights are sound; else re-selected from a sound ``last``/``prev`` of the best step; else
        removed, and the caller forgets the best so far (the next evaluation writes ``best`` again: the
        returned line then starts with ``"removed"``)."""
        if not self.main or not has_manifests(self.dir):
            return None
        record_step = state["best"].get("step")
        best = check_generation(self.dir, "best", keep=tuple(ROLES))  # hashed once, for both checks
        if record_step == state["step"]:
            m = best.manifest
            if not (
                best.sound
                and m is not None
                and (m.checkpoint_id == state.get("checkpoint_id") or m.step > state["step"])
            ):  # not already this checkpoint, nor a later best the resumed run will write again
                self._copy_generation(self.resumed_from or "last", "best")
                return None
        if best.sound or best.problems == ["missing"] or all(INTERRUPTED in p for p in best.problems):
            return None
        where = f"{self.dir}/best (step {best.step if best.step is not None else '?'})"
        m = best.manifest
        if m is not None and "state" in best.data and rebuild is not None:
            spath = state_path(self.run_dir, "best")
            data = rebuild(_checked_state(spath, torch_load(spath, data=best.data["state"])), m)
            write_bytes(weights_path(self.run_dir, "best"), data)
            if sha256(data) != m.files.get("weights", {}).get("sha256"):
                write_manifest(self.dir, "best", Manifest(m.step, m.checkpoint_id, m.run_id,
                                                          m.files | {"weights": _entry(data)}))  # fmt: skip
            return f"{where} was damaged ({best.describe()}); its weights were rebuilt from best.state.pt"
        if m is not None and "weights" in best.data:
            state_path(self.run_dir, "best").unlink(missing_ok=True)
            write_manifest(self.dir, "best", Manifest(m.step, m.checkpoint_id, m.run_id,
                                                      {"weights": m.files["weights"]}))  # fmt: skip
            return f"{where}: best.state.pt was damaged and is dropped; best.safetensors is sound and kept"
        for src in ("last", "prev"):
            gen = check_generation(self.dir, src)
            if gen.sound and gen.step == record_step:
                self._copy_generation(src, "best")
                return f"{where} was damaged ({best.describe()}); re-selected from {src} of the same step"
        for role in ROLES:
            role_path(self.dir, "best", role).unlink(missing_ok=True)
        manifest_path(self.dir, "best").unlink(missing_ok=True)
        return (
            f"removed {where}: damaged ({best.describe()}) with no sound copy; the next evaluation "
            "writes best again"
        )

    def _copy_generation(self, src: str, dst: str) -> None:
        for role in ROLES:
            if role_path(self.dir, src, role).is_file():
                write_bytes(role_path(self.dir, dst, role), role_path(self.dir, src, role).read_bytes())
        if manifest_path(self.dir, src).is_file():
            write_bytes(manifest_path(self.dir, dst), manifest_path(self.dir, src).read_bytes())

    # --------------------------------------------------------------------------------------- save

    def save(
        self,
        names: list[str],
        weights_model: torch.nn.Module,
        metadata: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        """Write generation(s) ``names`` (``["last"]`` or ``["last", "best"]``): weights, state, manifest."""
        from reslab.models.weights import weights_bytes

        if not self.main:
            return
        ckpt_id = new_checkpoint_id()
        step = int(state["step"])
        self.saves += 1
        meta = dict(metadata) | {"checkpoint_id": ckpt_id, "step": step, "run_id": self.run_id}
        state = dict(state) | {"checkpoint_id": ckpt_id, "run_id": self.run_id, "save_index": self.saves}
        buf = io.BytesIO()
        torch.save(state, buf)
        blobs = {"weights": weights_bytes(weights_model, meta), "state": buf.getvalue()}
        # the (immutable) bytes are hashed in a second thread while they are written and fsync'ed: the
        # manifest, written last, waits for it
        with ThreadPoolExecutor(max_workers=1) as pool:
            entries = pool.submit(lambda: {r: _entry(b) for r, b in blobs.items()})
            for name in names:
                if name == "last" and self._last_sound:
                    self._rotate("last", "prev")
                for role, data in blobs.items():
                    write_bytes(role_path(self.dir, name, role), data)
                write_manifest(self.dir, name, Manifest(step, ckpt_id, self.run_id, entries.result()))
                if name == "last":
                    self._last_sound = True

    def _rotate(self, src: str, dst: str) -> None:
        """Make generation ``dst`` a copy of ``src`` (hard links where the file system has them): its
        manifest goes first and comes back last, so a crash in between leaves ``dst`` without one."""
        old = manifest_path(self.dir, dst)
        if old.exists():
            old.unlink()
            fsync_dir(self.dir)
        for role in ROLES:
            if role_path(self.dir, src, role).is_file():
                _link(role_path(self.dir, src, role), role_path(self.dir, dst, role))
        _link(manifest_path(self.dir, src), old)
        fsync_dir(self.dir)


def _entry(data: bytes) -> dict[str, Any]:
    return {"sha256": sha256(data), "size": len(data)}


def _link(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` atomically: a hard link renamed into place, else a copy."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(src, tmp)
    except OSError:  # no hard links here (some network or FUSE file systems): copy
        write_bytes(dst, src.read_bytes())
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _weights_checkpoint_id(data: bytes) -> Any:
    try:
        n = int.from_bytes(data[:8], "little")
        raw = json.loads(data[8 : 8 + n]).get("__metadata__", {}).get("checkpoint_id")
        return json.loads(raw) if raw else None
    except (ValueError, AttributeError, TypeError):
        return None


def resume_point(run_dir: Path) -> str:
    """Where a resume of ``run_dir`` would continue, in words (for error messages; never raises)."""
    try:
        state = Checkpointer(run_dir, main=False).load_resume_state()
    except ReslabError:
        return "none sound"
    return f"step {state['step']}" if state is not None else "none written yet"


def recorded_config(state: dict[str, Any], run_dir: Path, name: str) -> dict[str, Any]:
    """The config the training state ``state`` (of generation ``name``) was trained with: its own record,
    else (a state saved before it kept one) its weights file's metadata; ``{}`` where neither says."""
    config = state.get("config")
    if isinstance(config, dict):
        return config
    try:
        config = read_weights_metadata(weights_path(run_dir, name)).get("config")
    except ReslabError:
        return {}
    return config if isinstance(config, dict) else {}


def _checked_state(path: Path, state: Any) -> dict[str, Any]:
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a reslab training state")
    return state


def load_state(run_dir: Path, name: str = "last") -> dict[str, Any] | None:
    """The training state of checkpoint ``name`` as stored, unverified (``None`` if there is none);
    resuming goes through :meth:`Checkpointer.load_resume_state`, which checks it first."""
    path = state_path(run_dir, name)
    if not path.exists():
        return None
    return _checked_state(path, torch_load(path))


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
    name = getattr(model, "model_name", None)  # None: a model without one (a detector): shapes only
    if name is not None and state.get("model_name") not in (None, name):
        raise CheckpointError(
            f"{run_dir}: the checkpoint is of model {state.get('model_name')!r}, this run builds {name!r}"
        )
    own = model.state_dict()
    for k, v in state["model"].items():
        if k not in own or own[k].shape != v.shape:
            raise CheckpointError(f"{run_dir}: checkpoint tensor {k!r} does not fit model {name!r}")
