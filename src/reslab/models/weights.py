"""Model weights on disk: safetensors files that carry what is needed to rebuild the model.

A reslab weight file is a safetensors file with torchvision's tensor names (the model's ``state_dict``)
and string metadata: ``format = "reslab"``, ``model`` (the registered name), ``model_kwargs`` (JSON) and
any extra entries, each JSON-encoded (a training run stores its resolved ``config`` there). Writes are
atomic (:func:`reslab._io.write_bytes`); nothing is unpickled on load. A file inside a checkpoint folder
that has checksum manifests is verified against its manifest before use (:func:`reslab.manifest.verify_file`).
:func:`load_model` rebuilds the network a file names from the registry
(:meth:`reslab.models.registry.ModelEntry.build`); ``create_model(name, pretrained=...)``
(:mod:`reslab.models.factory`) loads files through this module, never the other way round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab._io import torch_load, write_bytes
from reslab.errors import CheckpointError, ConfigError, first_line
from reslab.manifest import read_verified
from reslab.models.convert import Convention, foreign_architecture, to_reslab
from reslab.models.registry import get_entry

FORMAT = "reslab"
_RAW_KEYS = ("format", "model")  # stored as plain strings; every other value is JSON
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        for attr in ("_orig_mod", "module"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model``'s weights (wrapper prefixes removed) and ``metadata`` to a safetensors file, atomically.

    ``metadata`` values must be JSON-serializable; ``format``, ``model`` and ``model_kwargs`` are reserved
    (taken from the model, as set by ``create_model``).
    """
    write_bytes(path, weights_bytes(model, metadata))


def weights_bytes(model: nn.Module, metadata: dict[str, Any] | None = None) -> bytes:
    """The bytes :func:`save_weights` writes (a checkpoint hashes them before writing)."""
    from safetensors.torch import save

    inner = unwrap(model)
    meta = {"format": FORMAT}
    name = getattr(inner, "model_name", None)
    if name:
        meta["model"] = name
        meta["model_kwargs"] = json.dumps(getattr(inner, "model_kwargs", {}), sort_keys=True)
    for k, v in (metadata or {}).items():
        if k in ("format", "model", "model_kwargs"):
            raise ConfigError(f"metadata key {k!r} is reserved: it is taken from the model")
        try:
            meta[str(k)] = json.dumps(v, sort_keys=True)
        except TypeError as e:
            raise ConfigError(f"metadata {k!r} is not JSON-serializable: {e}") from None
    state = _strip_prefixes(inner.state_dict())
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return save(tensors, metadata=meta)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    data = read_verified(
        path
    )  # inside a checkpoint folder with manifests: the bytes must be the ones written
    try:
        tensors = load(data)
        n = int.from_bytes(data[:8], "little")  # the header of the bytes just verified and loaded
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except Exception as e:  # safetensors raises its own error types for a torn or foreign file
        raise _unreadable(path, e) from None
    return tensors, meta


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot read {path}: corrupt or truncated safetensors file ({first_line(e, 160)})"
    )


def _decode(meta: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if k in _RAW_KEYS:
            out[k] = v
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v  # written by another tool: keep the string
    return out


def read_metadata(path_or_run: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a weight file (or a run's checkpoint), JSON values decoded; reads the header only."""
    path = resolve_checkpoint(path_or_run)
    data = read_verified(path)
    try:  # the header of the bytes just verified
        n = int.from_bytes(data[:8], "little")
        if not 0 < n <= len(data) - 8:
            raise ValueError("header length out of range")
        header = json.loads(data[8 : 8 + n])
        return _decode(header.get("__metadata__") or {})
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise _unreadable(path, e) from None


def resolve_checkpoint(path_or_run: str | os.PathLike) -> Path:
    """A weight file itself, or for a run directory ``checkpoints/best.safetensors`` (else ``last``)."""
    path = Path(path_or_run)
    if path.is_file():
        return path
    if path.is_dir():
        for d in (path / "checkpoints", path):
            for stem in ("best", "last"):
                if (d / f"{stem}.safetensors").is_file():
                    return d / f"{stem}.safetensors"
        raise CheckpointError(f"{path} holds no checkpoints/best.safetensors or checkpoints/last.safetensors")
    raise CheckpointError(f"no such checkpoint or run directory: {path}")


def load_model(path_or_run: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_weights` (file or run directory) and load its weights.

    Returns ``(model, metadata)`` with the metadata's JSON values decoded; the model is in eval mode on
    ``map_location``. A foreign checkpoint whose architecture :mod:`reslab.models.convert` recognizes
    (akamaster's CIFAR ResNets) is rebuilt and converted too; its metadata says so (``convention``).
    """
    path = resolve_checkpoint(path_or_run)
    if path.suffix != ".safetensors":
        state = read_state_dict(path)
        found = foreign_architecture(state)
        if found is None:
            raise CheckpointError(
                f"{path} is not a reslab model file and its architecture cannot be told from its tensors; "
                "load it into a model you build: create_model(NAME, pretrained=PATH) or --init-from"
            )
        name, kwargs, meta = found
        model = get_entry(name).build(**kwargs)
        state, convention = to_reslab(state, model)
        _load_checked(model, state, path)
        return model.to(map_location).eval(), {**meta, "convention": convention.note}
    tensors, raw = _read_safetensors(path)
    meta = _decode(raw)
    if meta.get("format") != FORMAT or "model" not in meta:
        raise CheckpointError(f"{path} is not a reslab model file (no model name); use load_pretrained")
    kwargs = meta.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: model_kwargs metadata is not a JSON object")
    model = get_entry(meta["model"]).build(**kwargs)
    _load_checked(model, tensors, path)
    return model.to(map_location).eval(), meta


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a reslab ``.safetensors`` file or a torchvision-format ``.pth``/``.pt`` state dict
    (also one nested under a ``"state_dict"`` or ``"model"`` key), wrapper prefixes removed."""
    return _read_tensors(Path(path))[0]


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """(tensors, whether the file is a reslab weight file)."""
    reslab_file = False
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        reslab_file = meta.get("format") == FORMAT
    else:
        state = torch_load(path)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return _strip_prefixes(state), reslab_file


def _load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    inner = unwrap(model)
    expected = inner.state_dict()
    for k, v in expected.items():
        if k not in state:
            raise CheckpointError(f"{path} does not fit {_name(inner)}: missing tensor {k}")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path} does not fit {_name(inner)}: {k} has shape {tuple(state[k].shape)}, "
                f"the model expects {tuple(v.shape)}"
            )
    for k in sorted(state):
        if k not in expected:
            raise CheckpointError(f"{path} does not fit {_name(inner)}: unexpected tensor {k}")
    inner.load_state_dict(state, strict=True)


def _name(model: nn.Module) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a reslab ``.safetensors`` or torchvision-format state-dict file into ``model``, strictly.

    Every tensor must be there with the model's shape: otherwise a :class:`CheckpointError` names the
    first missing, mismatching or unexpected tensor. A recognized foreign convention (akamaster's CIFAR
    ResNets) is converted first (:func:`load_checkpoint` also says what was assumed). Returns ``model``.
    """
    load_checkpoint(model, path)
    return model


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> Convention:
    """:func:`load_pretrained`, returning the :class:`~reslab.models.convert.Convention` the file was read
    with: reslab's own, a recognized foreign one (converted), or what was assumed (``.note``, one line)."""
    state, reslab_file = _read_tensors(Path(path))
    state, convention = to_reslab(state, unwrap(model), reslab_file=reslab_file)
    _load_checked(model, state, Path(path))
    return convention


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """A first convolution's weights (out, in, k...) for ``in_chans`` input channels: timm's
    ``adapt_input_conv(in_chans, conv_weight, base_chans)`` (timm 1.0.31, ``timm/models/_manipulate.py``)
    with ``base_chans`` the file's input channels.

    One channel: the sum over the file's input channels (a grey image ``g`` then gives what the RGB
    network gave for ``(g, g, g)``). Other counts: the file's channels repeated
    ``ceil(in_chans / base)`` times, cut to ``in_chans`` and scaled by ``base / in_chans`` (a constant
    input keeps its response). Computed in fp32, returned in the file's dtype. Deviations from timm:
    3-D (video) kernels are adapted the same way (timm takes 4-D only); there is no space-to-depth
    stem in reslab, so no such case.
    """
    base = int(weight.shape[1])
    if in_chans == base:
        return weight
    if in_chans < 1:
        raise ConfigError(f"in_chans must be positive, got {in_chans}")
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // base)
        w = w.repeat(1, reps, *([1] * (w.ndim - 2)))[:, :in_chans] * (base / in_chans)
    return w.to(weight.dtype)


def load_adapted(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """:func:`load_pretrained` into a model whose classifier or input channels differ from the file's, as
    timm's ``load_pretrained`` (``timm/models/_builder.py``) does; returns what was adapted, one phrase
    each (empty: the file fitted as it is).

    - The classifier (``model.classifier_attr``: ``fc``, DenseNet's ``classifier``): where its shape
      differs from the file's, the file's is not loaded and the model's freshly initialized one is kept;
      a model without one (``num_classes=0``) takes everything but the file's.
    - The first convolution (the first ``Conv2d``/``Conv3d`` of the model: ``conv1``, ``features.conv0``):
      with other input channels than the file's, its weights are adapted by :func:`adapt_input_conv`.

    Every other tensor must fit exactly, as in :func:`load_pretrained` (a :class:`CheckpointError` names
    the first that does not); recognized foreign conventions are converted first.
    """
    path = Path(path)
    inner = unwrap(model)
    state, reslab_file = _read_tensors(path)
    state, _ = to_reslab(state, inner, reslab_file=reslab_file)
    expected = inner.state_dict()
    notes = []
    head = getattr(inner, "classifier_attr", None)
    ours = [k for k in expected if head and k.startswith(head + ".")]
    theirs = [k for k in state if head and k.startswith(head + ".")]
    if theirs and any(k not in expected or state[k].shape != expected[k].shape for k in theirs):
        w = state.get(f"{head}.weight")
        classes = f"{w.shape[0]} classes in the file" if w is not None and w.ndim == 2 else "the file's"
        for k in theirs:
            del state[k]
        state.update({k: expected[k] for k in ours})  # the model's own, freshly initialized head
        if ours:  # (a model without a classifier, num_classes=0, asked for none: nothing to say)
            notes.append(f"{head} not loaded ({classes}, {inner.num_classes} here): freshly initialized")
    first = next((n for n, m in inner.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    key = f"{first}.weight"
    if first and key in state and key in expected and state[key].shape[1] != expected[key].shape[1]:
        cin, want = int(state[key].shape[1]), int(expected[key].shape[1])
        state[key] = adapt_input_conv(want, state[key])
        rule = "summed over them" if want == 1 else "repeated and rescaled"
        notes.append(f"{first} adapted from {cin} to {want} input channels ({rule}: timm's adapt_input_conv)")
    _load_checked(model, state, path)
    return notes
