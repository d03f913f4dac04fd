"""Foreign checkpoints: recognize their convention from their contents, convert, or say what was assumed.

A state dict is a bag of named tensors; some conventions of the network that produced it are visible in
the names and shapes, others are not. What :func:`to_reslab` checks and what it cannot:

- **Checked**: the names (torchvision's ``conv1 / layerK.J.convN / downsample / fc``, akamaster's
  ``linear``, wrapper prefixes ``module.`` / ``_orig_mod.``), every tensor's shape against the model
  (:func:`reslab.models.weights.load_pretrained` names the first mismatch), the number of units.
- **Recognized and converted**: akamaster/pytorch_resnet_cifar10 (Idelbayev 2018), the most used
  pretrained CIFAR ResNet-20/32/44/56: keys ``linear.*`` and option-A units without shortcut tensors.
  Its option-A shortcut pads ``planes // 4`` zero channels on *both* sides of the input's channels;
  reslab's :class:`~reslab.models.blocks.ShortcutA` appends them after. The two differ by a fixed
  permutation of the channels of the residual stream after every downsampling unit, so
  :func:`akamaster_to_reslab` permutes the affected weights (the output channels of each unit's last
  conv and BN, the input channels of the next convs and of ``fc``) and the same network results, with
  reslab's one shortcut implementation (tests: the original code's logits within 1e-5).
- **Cannot be told**: where option A's zeros go in a checkpoint with reslab/torchvision names (renaming
  akamaster's ``linear`` to ``fc`` makes it indistinguishable: it then loads and is wrong), whether a
  bottleneck's stride sits in the 1x1 (the paper, Caffe) or the 3x3 (torchvision's "V1.5"), and the
  input normalization. For such files :func:`to_reslab` returns a :class:`Convention` whose ``note``
  says what was assumed; ``reslab eval`` and ``--init-from`` print it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models.blocks import Bottleneck, ShortcutA
from reslab.models.hub import cached_weights

# akamaster/pytorch_resnet_cifar10, pretrained_models/ (BSD 2-clause): file -> full SHA-256.
AKAMASTER_BASE = (
    "https://raw.githubusercontent.com/akamaster/pytorch_resnet_cifar10/master/pretrained_models/"
)
AKAMASTER_FILES: dict[str, tuple[str, str]] = {
    "resnet20": ("resnet20-12fca82f.th", "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
    "resnet32": ("resnet32-d509ac18.th", "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850"),
    "resnet44": ("resnet44-014dd654.th", "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4"),
    "resnet56": ("resnet56-4bfd9763.th", "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"),
}
AKAMASTER = "akamaster"  # the value of ``pretrained=`` / ``--init-from`` that selects these weights
# Its training data: CIFAR-10 normalized with ImageNet's statistics (its trainer.py).
AKAMASTER_MEAN = (0.485, 0.456, 0.406)
AKAMASTER_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_AKAMASTER_KEY = re.compile(r"^(conv1|bn1|linear|layer[1-3]\.\d+\.(conv[12]|bn[12]))\.")


@dataclass(frozen=True)
class Convention:
    """How a checkpoint's tensors were read: ``name`` ("reslab", "akamaster", "foreign") and one line
    saying what was recognized, converted or assumed."""

    name: str
    note: str


def akamaster_url(name: str) -> tuple[str, str]:
    """(URL, SHA-256) of akamaster's CIFAR-10 checkpoint for ``name`` (a :class:`ConfigError` if none)."""
    if name not in AKAMASTER_FILES:
        raise ConfigError(
            f"no akamaster CIFAR-10 weights for model {name!r}; they exist for {', '.join(AKAMASTER_FILES)}"
        )
    filename, sha = AKAMASTER_FILES[name]
    return AKAMASTER_BASE + filename, sha


def akamaster_weights(
    name: str, *, download: bool = False, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """The cached akamaster checkpoint for ``name`` (torch.hub's cache, full SHA-256 checked), fetched
    from the repository's raw files only with ``download=True``: as :func:`~reslab.models.hub.torchvision_weights`."""
    url, sha = akamaster_url(name)
    return cached_weights(
        url,
        sha256=sha,
        download=download,
        cache_dir=cache_dir,
        progress=progress,
        what=f"akamaster weights for {name}",
    )


def is_akamaster(state: dict[str, torch.Tensor]) -> bool:
    """akamaster's CIFAR ResNet: ``linear.*`` (not ``fc.*``), only its own layer names, no shortcut tensors."""
    return (
        "linear.weight" in state and "fc.weight" not in state and all(_AKAMASTER_KEY.match(k) for k in state)
    )


def akamaster_to_reslab(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """akamaster's state dict (prefixes removed) -> reslab's option-A CIFAR ResNet, exactly.

    ``perm[i]`` is the akamaster channel that reslab's channel ``i`` of the residual stream holds. A
    downsampling unit maps ``cin`` to ``planes`` channels; akamaster puts its input at channels
    ``pad .. pad + cin - 1`` (``pad = planes // 4``), reslab at ``0 .. cin - 1``, so after it
    ``perm = [pad + p for p in perm] + [the zero channels 0 .. pad - 1, pad + cin .. planes - 1]``.
    A unit's last conv and BN produce the stream (output channels permuted), the next unit's first conv
    and ``fc`` read it (input channels permuted). ``linear`` becomes ``fc``; BN step counters, which
    the files (PyTorch < 0.4.1) lack, are added as 0 (they only matter with ``momentum=None``).
    """
    out = {k: v for k, v in state.items() if not k.startswith("linear.")}
    units = sorted(
        {
            tuple(int(v) for v in k.split(".")[0][5:] + k.split(".")[1:2]) if False else _unit(k)
            for k in state
            if k.startswith("layer")
        }
    )
    perm = torch.arange(state["conv1.weight"].shape[0])
    for s, j in units:
        p = f"layer{s}.{j}."
        w1 = state[p + "conv1.weight"]
        planes, cin = int(w1.shape[0]), int(w1.shape[1])
        out[p + "conv1.weight"] = w1[:, perm]
        if planes != cin:
            pad = planes // 4
            if cin + 2 * pad != planes:
                raise CheckpointError(
                    f"{p}: {cin} -> {planes} channels is not akamaster's option A (planes // 4 each side)"
                )
            zeros = torch.cat([torch.arange(pad), torch.arange(pad + cin, planes)])
            perm = torch.cat([perm + pad, zeros])
        for k in ("conv2.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var"):
            out[p + k] = state[p + k][perm]
    out["fc.weight"] = state["linear.weight"][:, perm]
    out["fc.bias"] = state["linear.bias"]
    for k in [k for k in out if k.endswith(".running_mean")]:  # saved by PyTorch < 0.4.1: no BN step count
        out.setdefault(k.replace("running_mean", "num_batches_tracked"), torch.tensor(0))
    return out


def _unit(key: str) -> tuple[int, int]:
    stage, index = key.split(".")[:2]
    return int(stage[len("layer") :]), int(index)


def akamaster_depth(state: dict[str, torch.Tensor]) -> int:
    """6n + 2 from the number of units of the first stage."""
    return 6 * len({_unit(k) for k in state if k.startswith("layer1.")}) + 2


def _option_a_downsampling(model: nn.Module) -> bool:
    return any(
        isinstance(b.shortcut, ShortcutA) and b.shortcut.cout > b.shortcut.cin and b.has_shortcut
        for b in getattr(model, "blocks", ())
    )


def to_reslab(
    state: dict[str, torch.Tensor], model: nn.Module, *, reslab_file: bool = False
) -> tuple[dict[str, torch.Tensor], Convention]:
    """``state`` in ``model``'s convention, and what was recognized or assumed (one line).

    ``reslab_file``: the tensors come from a reslab weight file (``format = "reslab"``): nothing to assume.
    """
    if reslab_file:
        return state, Convention("reslab", "reslab weight file: reslab's own conventions")
    if is_akamaster(state):
        return akamaster_to_reslab(state), Convention(
            "akamaster",
            "recognized akamaster/pytorch_resnet_cifar10 (keys 'linear.*', option A without tensors): its zeros "
            "padded on both sides of the channels, converted exactly to reslab's option A; inputs normalized "
            f"with mean {AKAMASTER_MEAN}, std {AKAMASTER_STD}",
        )
    assumed = []
    if _option_a_downsampling(model):
        assumed.append(
            "option-A zeros appended after the input's channels (reslab's; a checkpoint trained with them on both "
            "sides, e.g. akamaster's renamed to 'fc', loads but computes a different network)"
        )
    bottlenecks = [b for b in getattr(model, "blocks", ()) if isinstance(b, Bottleneck)]
    if bottlenecks and any(b.residual.conv1.stride != (1, 1) for b in bottlenecks):
        assumed.append("bottleneck stride in the first 1x1 (the paper's, as this model was built)")
    elif bottlenecks:
        assumed.append("bottleneck stride in the 3x3 (torchvision's 'V1.5')")
    text = "; ".join(assumed) if assumed else "the model's layout (names and shapes checked)"
    return state, Convention(
        "foreign", f"foreign state dict, convention not recorded in the file; assumed {text}"
    )


def foreign_architecture(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(model name, builder kwargs, metadata in reslab's form) of a recognized foreign checkpoint, else
    ``None``: akamaster's is ``resnet{6n+2}`` trained on CIFAR-10 with ImageNet's normalization, so
    ``reslab eval``, ``analyze`` and ``export`` take such a file as they take a reslab one."""
    if not is_akamaster(state):
        return None
    depth = akamaster_depth(state)
    name, kwargs = f"resnet{depth}", {"num_classes": int(state["linear.weight"].shape[0]), "in_chans": 3}
    if name not in AKAMASTER_FILES:
        name, kwargs = "resnet", {**kwargs, "depth": depth}
    data = {
        "dataset": "cifar10",
        "input_size": [3, 32, 32],
        "mean": list(AKAMASTER_MEAN),
        "std": list(AKAMASTER_STD),
    }
    config = {
        "model": name,
        "model_kwargs": kwargs,
        "dataset": "cifar10",
        "data": {**data, "classes": CIFAR10_CLASSES},
    }
    return (
        name,
        kwargs,
        {"format": AKAMASTER, "model": name, "model_kwargs": kwargs, "config": config, **data},
    )
