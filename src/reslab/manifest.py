"""Checksum manifests: a checkpoint generation that can tell whether its bytes are the ones written.

A *generation* ``<name>`` (``last``, ``prev``, ``best``) in a checkpoint folder is up to two data files,
named by role: ``<name>.safetensors`` (``weights``) and ``<name>.state.pt`` (``state``), and its manifest
``<name>.manifest.json``, written after the data files (atomically, fsync'ed: :func:`reslab._io.write_bytes`)::

    {"format": "reslab-manifest", "version": 1, "step": 48, "checkpoint_id": "...", "run_id": "...",
     "files": {"weights": {"sha256": "...", "size": 123}, "state": {"sha256": "...", "size": 456}},
     "manifest_sha256": "..."}

The manifest names roles, not files, so the same manifest bytes describe a generation under any name
(``last`` rotated to ``prev`` is a hard link of each file). ``manifest_sha256`` covers the manifest's own
other fields, so a damaged manifest is told apart from a damaged data file.

A folder with no manifest at all was written by an older reslab: its files are *legacy*, usable
unverified (with a note). In a folder that has manifests, a generation without one is not sound (its save
was interrupted, or the manifest was lost). Nothing here deletes a file.

This module sits beside :mod:`reslab._io` at the bottom of the package graph: the model loaders
(:mod:`reslab.models.weights`) and the training checkpoints (:mod:`reslab.train.checkpoint`) both use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab._io import write_bytes
from reslab.errors import CheckpointError

FORMAT = "reslab-manifest"
VERSION = 1
ROLES = {"weights": ".safetensors", "state": ".state.pt"}
MANIFEST_SUFFIX = ".manifest.json"
INTERRUPTED = "a save was interrupted"  # in a problem's text: a crash mid-save, not damage


def sha256(data: bytes | memoryview) -> str:
    """The SHA-256 of ``data`` as hex (hashlib releases the GIL and uses the CPU's SHA extensions)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path`` as hex, read in 4 MiB chunks (a file larger than memory is fine)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}{MANIFEST_SUFFIX}"


def role_path(directory: Path, name: str, role: str) -> Path:
    return Path(directory) / f"{name}{ROLES[role]}"


def split_name(path: Path) -> tuple[str, str] | None:
    """``(generation, role)`` of a checkpoint data file (``best.safetensors`` -> ``("best", "weights")``)."""
    for role, suffix in ROLES.items():
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)], role
    return None


def has_manifests(directory: Path) -> bool:
    """Whether ``directory`` was written by a reslab that records checksums (it holds any manifest)."""
    d = Path(directory)
    return d.is_dir() and any(d.glob(f"*{MANIFEST_SUFFIX}"))


@dataclass
class Manifest:
    step: int
    checkpoint_id: str
    run_id: str
    files: dict[str, dict[str, Any]]  # role -> {"sha256": hex, "size": bytes}

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "step": self.step,
            "checkpoint_id": self.checkpoint_id,
            "run_id": self.run_id,
            "files": self.files,
        }
        body["manifest_sha256"] = sha256(_canonical(body))
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "manifest_sha256"}, sort_keys=True).encode()


def write_manifest(directory: Path, name: str, manifest: Manifest) -> None:
    """Write ``<name>.manifest.json`` atomically; call it after the data files it describes are in place."""
    write_bytes(manifest_path(directory, name), manifest.to_bytes())


def read_manifest(directory: Path, name: str) -> Manifest | None:
    """The manifest of generation ``name``; ``None`` if there is none; :class:`CheckpointError` if damaged."""
    path = manifest_path(directory, name)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_bytes())
        ok = (
            isinstance(body, dict)
            and body.get("format") == FORMAT
            and body.get("manifest_sha256") == sha256(_canonical(body))
        )
        if ok:
            files = body["files"]
            ok = isinstance(files, dict) and all(
                r in ROLES and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
                for r, e in files.items()
            )
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path} is damaged (not a manifest its own checksum vouches for)")
    return Manifest(int(body["step"]), str(body["checkpoint_id"]), str(body["run_id"]), dict(body["files"]))


@dataclass
class Generation:
    """What a check of one generation found. ``sound``: every file its manifest names matches it."""

    name: str
    manifest: Manifest | None
    problems: list[str] = field(default_factory=list)
    legacy: bool = False  # no manifest anywhere in the folder: written by an older reslab, unverified
    data: dict[str, bytes] = field(default_factory=dict)  # role -> the verified bytes (when kept)

    @property
    def sound(self) -> bool:
        return self.manifest is not None and not self.problems

    @property
    def step(self) -> int | None:
        return self.manifest.step if self.manifest is not None else None

    def describe(self) -> str:
        if self.legacy:
            return "no checksums (written by an older reslab)"
        return "sound" if self.sound else "; ".join(self.problems)


def check_generation(directory: Path, name: str, *, keep: tuple[str, ...] = ()) -> Generation:
    """Hash every file of generation ``name`` against its manifest. The bytes of roles in ``keep`` are
    returned in ``Generation.data`` (read once: what was hashed is what the caller loads).

    In a folder without manifests a generation is *legacy* (an older reslab's, usable unverified) only
    where none of its files carries a run id: one that does was written by a reslab that records
    checksums, so its missing manifest makes it unverifiable, not old."""
    directory = Path(directory)
    if not has_manifests(directory):
        present = [r for r in ROLES if role_path(directory, name, r).is_file()]
        claimed = [
            role_path(directory, name, r).name
            for r in present
            if (ident := _file_identity(role_path(directory, name, r))) is not None and ident[0]
        ]
        gen = Generation(name, None, legacy=bool(present) and not claimed)
        if not present:
            gen.problems.append("missing")
        elif claimed:
            gen.problems.append(
                f"{', '.join(claimed)}: written by a reslab that records checksums, but no manifest vouches "
                "for it"
            )
        return gen
    try:
        manifest = read_manifest(directory, name)
    except CheckpointError:
        return Generation(name, None, [f"{manifest_path(directory, name).name}: damaged"])
    if manifest is None:
        files = [role_path(directory, name, r).name for r in ROLES if role_path(directory, name, r).is_file()]
        what = f"{', '.join(files)}: no manifest ({INTERRUPTED}, or it was removed)"
        return Generation(name, None, [what if files else "missing"])
    gen = Generation(name, manifest)

    def check(role: str) -> tuple[str, str | None, bytes | None]:
        path = role_path(directory, name, role)
        try:
            data = path.read_bytes()
        except OSError as e:
            return role, f"{path.name}: {'missing' if not path.exists() else e.strerror}", None
        return role, file_problem(path, data, manifest.files[role], manifest), data

    # the files are read and hashed in parallel (both release the GIL): a verified resume costs ~ the
    # largest file, not the sum
    with ThreadPoolExecutor(max_workers=len(manifest.files) or 1) as pool:
        for role, problem, data in pool.map(check, list(manifest.files)):
            if problem:
                gen.problems.append(problem)
            elif role in keep and data is not None:
                gen.data[role] = data
    return gen


def file_problem(path: Path, data: bytes, entry: dict[str, Any], manifest: Manifest) -> str | None:
    """``None`` if ``data`` is what ``entry`` records; else what is wrong, in a few words."""
    if len(data) == entry["size"] and sha256(data) == entry["sha256"]:
        return None
    ident = _identity(path, data)
    if ident is not None:
        run_id, ckpt_id, step = ident
        if run_id and run_id != manifest.run_id:
            return f"{path.name}: from another run (checksum mismatch)"
        if ckpt_id and ckpt_id != manifest.checkpoint_id and isinstance(step, int) and step > manifest.step:
            return f"{path.name}: of step {step}, newer than its manifest ({INTERRUPTED})"
        if ckpt_id and ckpt_id != manifest.checkpoint_id:
            return f"{path.name}: of another checkpoint (step {step}; checksum mismatch)"
    if len(data) != entry["size"]:
        return f"{path.name}: {len(data)} bytes where {entry['size']} were written (truncated or damaged)"
    return f"{path.name}: checksum mismatch (its bytes changed after they were written)"


def _identity(path: Path, data: bytes) -> tuple[Any, Any, Any] | None:
    """``(run_id, checkpoint_id, step)`` a mismatching file claims, if it parses (diagnosis only)."""
    try:
        if path.name.endswith(".safetensors"):
            n = int.from_bytes(data[:8], "little")
            if not 0 < n <= min(len(data) - 8, 100_000_000):
                return None
            meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
            return _json(meta.get("run_id")), _json(meta.get("checkpoint_id")), _json(meta.get("step"))
        import io

        import torch

        s = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return (s.get("run_id"), s.get("checkpoint_id"), s.get("step")) if isinstance(s, dict) else None
    except Exception:  # a damaged file: no identity to report
        return None


def _file_identity(path: Path) -> tuple[Any, Any, Any] | None:
    try:
        return _identity(path, path.read_bytes())
    except OSError:
        return None


def _json(v: Any) -> Any:
    try:
        return json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return v


def verify_file(path: Path, data: bytes) -> None:
    """For a reader of a checkpoint file: raise :class:`CheckpointError` unless ``data`` (the file's bytes,
    as read) is what its generation's manifest records. A file with no manifest beside it is used as is:
    outside a checkpoint folder silently (an exported or downloaded file), in a folder without manifests
    (an older reslab's run) with a note on stderr."""
    path = Path(path)
    parts = split_name(path)
    directory = path.parent
    if parts is None or not has_manifests(directory):
        if parts is None or directory.name != "checkpoints":
            return
        ident = _identity(path, data)
        if ident is not None and ident[0]:  # a run id: written by a reslab that records checksums
            raise CheckpointError(
                f"{path} was written by a reslab that records checksums, but no manifest vouches for it "
                f"(removed, or the save was interrupted): refusing to use it; see: reslab verify {directory.parent}"
            )
        if (directory.parent / "config.yaml").is_file():
            note(f"{path} has no checksum record (written by an older reslab); used unverified")
        return
    name, role = parts
    manifest = read_manifest(directory, name)
    if manifest is None:
        raise CheckpointError(
            f"{path} has no manifest ({name}{MANIFEST_SUFFIX}): its save was interrupted or the manifest was "
            f"removed, so its bytes cannot be vouched for; see: reslab verify {directory.parent}"
        )
    entry = manifest.files.get(role)
    if entry is None:
        raise CheckpointError(f"{path} is not covered by its manifest ({name}{MANIFEST_SUFFIX})")
    problem = file_problem(path, data, entry, manifest)
    if problem:
        raise CheckpointError(
            f"{directory / problem}; refusing to use it; see: reslab verify {directory.parent}"
        )


def read_verified(path: Path, tries: int = 20, wait_s: float = 0.15) -> bytes:
    """The bytes of ``path``, verified by :func:`verify_file`. A reader can meet a generation mid-save
    (its data files written, its manifest not yet, or the previous manifest taken away for a rotation):
    such a look is retried for up to ``tries * wait_s`` seconds before it is refused, and a refusal while
    a training process holds the run says so instead of calling the save interrupted."""
    import time

    path = Path(path)
    for attempt in range(tries):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
        try:
            verify_file(path, data)
            return data
        except CheckpointError as e:
            mid_save = INTERRUPTED in str(e) or "has no manifest" in str(e)
            if not mid_save:
                raise
            if attempt == tries - 1:
                pid = _training_pid(path.parent.parent)
                if pid is None:
                    raise
                raise CheckpointError(
                    f"{path}: a save is in progress (reslab process {pid} is training into "
                    f"{path.parent.parent}); try again when it has finished writing"
                ) from None
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def _training_pid(run_dir: Path) -> int | None:
    """The pid in ``run_dir/train.lock`` when that process is alive (it empties the file on exit)."""
    import os

    try:
        pid = int((run_dir / "train.lock").read_text().strip() or 0)
        if pid > 0:
            os.kill(pid, 0)
            return pid
    except (OSError, ValueError):
        pass
    return None


_NOTED: set[str] = set()


def note(message: str) -> None:
    """One ``reslab: note:`` line on stderr, once per message per process."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"reslab: note: {message}", file=sys.stderr, flush=True)
