"""A reslab network's intermediate feature maps: their geometry, and the modules that return them.

Every reslab network has ``forward_stages(x)`` (the output of each stage, ``model.stage_names``); the
image networks (:class:`~reslab.models.zoo.ResNet`, :class:`~reslab.models.densenet.DenseNet`) also give
the stem's output first with ``forward_stages(x, stem=True)``. This module builds on that one method:

- :func:`stage_channels`, :func:`stage_shapes`, :func:`stage_strides`: channels, shapes and strides of the
  stages, from the layers or a shape-only pass on the ``meta`` device.
- :class:`ResNetFeatures`: the stem and stages, ``forward(x) -> OrderedDict`` of the maps named by
  ``return_layers`` (torchvision's ``IntermediateLayerGetter`` contract; :data:`STEM` names the stem's
  output). :mod:`reslab.models.backbones` puts torchvision's FPN and heads on it.
- :class:`FeatureListNet`: timm's ``create_model(name, features_only=True, out_indices=...)`` for a reslab
  network: ``forward(x) -> list`` of the maps at ``out_indices``, with ``feature_info``.

timm's convention, kept here (``timm/models/resnet.py``: ``feature_info`` starts with
``dict(num_chs=64, reduction=2, module='act1')``, then one entry per ``layerN``; ``timm/models/_builder.py``:
``feature_cfg.setdefault('out_indices', (0, 1, 2, 3, 4))``): index 0 is the stem's output *before* its
max-pool (conv1-BN-ReLU, stride 2 on ImageNet networks), index ``i >= 1`` is stage ``i`` (``layer{i}``,
conv{i+1}_x of He et al. 2016, Table 1); the default is every index. A CIFAR network (He et al. 2016,
Sec. 4.2) has no pooling stem and three stages: indices 0..3 at strides 1, 1, 2, 4.

Deviations from timm, named: the maps come from ``forward_stages``, not from hooks or a flattened module
list, so a :class:`FeatureListNet`'s state-dict keys carry the prefix ``body.`` (timm's have none); a
pre-activation network's last stage is returned after its ``final_bn``-ReLU (as timm's ResNetV2 returns
its final ``norm``), its stem without BN-ReLU (it has none); a DenseNet's maps are its dense blocks'
outputs (before the transitions and ``norm5``).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError

__all__ = [
    "STEM",
    "FeatureInfo",
    "FeatureListNet",
    "ResNetFeatures",
    "stage_channels",
    "stage_shapes",
    "stage_strides",
]

STEM = "stem"  # the stem's output before its pooling, in ``return_layers``: timm's index 0 ("act1")


def require_stages(model: nn.Module) -> None:
    """A :class:`ConfigError` unless ``model`` exposes what a reslab network does (``forward_stages``...)."""
    for attr in ("forward_stages", "stage_names", "stem_names", "blocks"):
        if not hasattr(model, attr):
            raise ConfigError(f"{type(model).__name__} has no {attr}: not a reslab network")


def has_stem_output(model: nn.Module) -> bool:
    """Whether ``model.forward_stages`` takes ``stem=True`` (the image networks' stem output)."""
    return "stem" in inspect.signature(model.forward_stages).parameters


def stage_channels(model: nn.Module) -> list[int]:
    """Output channels of each stage: the last convolution of the residual branch of its last unit."""
    require_stages(model)
    out = []
    for name in model.stage_names:
        last = getattr(model, name)[-1]
        convs = [m for m in last.residual.modules() if isinstance(m, nn.Conv2d)]
        out.append(convs[-1].out_channels)
    return out


@torch.no_grad()
def stage_shapes(model: nn.Module, probe: int = 256, *, stem: bool = False) -> list[tuple[int, ...]]:
    """The shape of each stage output (first the stem's, with ``stem``) for one ``probe`` x ``probe`` image,
    from a shape-only pass on the ``meta`` device.

    The parameters and buffers are swapped for ``meta`` tensors with ``torch.func.functional_call``: no
    copy of the model, no arithmetic, no BN running statistics touched.
    """
    require_stages(model)
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    state = {"m." + k: torch.empty_like(v, device="meta") for k, v in tensors}
    dtype = next(model.parameters()).dtype
    x = torch.empty(1, int(getattr(model, "in_chans", 3)), probe, probe, device="meta", dtype=dtype)
    outs = torch.func.functional_call(_StagesOnly(model, stem), state, (x,), tie_weights=False)
    return [tuple(f.shape) for f in outs]


def stage_strides(model: nn.Module, probe: int = 256) -> list[int]:
    """Input size / output size of each stage (:func:`stage_shapes`)."""
    return [probe // s[-1] for s in stage_shapes(model, probe)]


class _StagesOnly(nn.Module):
    """``forward`` = the wrapped model's ``forward_stages`` (what ``functional_call`` can call)."""

    def __init__(self, model: nn.Module, stem: bool = False) -> None:
        super().__init__()
        self.m, self.stem = model, stem

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.m.forward_stages(x, stem=True) if self.stem else self.m.forward_stages(x)


def _drop_stages_after(model: nn.Module, stages: list[str], last: int) -> None:
    """Delete the stages after ``stages[last]`` (all of them for ``last = -1``) and what only they feed:
    ``final_bn`` of a pre-activation network; for stages inside a container (DenseNet's
    ``features.denseblockN``), every later module of that container (transitions, ``norm5``)."""
    parent, _, child = stages[max(last, 0)].rpartition(".")
    if parent:
        holder = model.get_submodule(parent)
        order = list(holder._modules)
        for later in order[order.index(child) + (last >= 0) :]:
            delattr(holder, later)
    else:
        for name in stages[last + 1 :]:
            delattr(model, name)
        if hasattr(model, "final_bn"):
            del model.final_bn
    model.stage_names = tuple(stages[: last + 1])


class ResNetFeatures(nn.Module):
    """A reslab network's stem and stages; ``forward(x)`` -> ``OrderedDict(return name -> feature map)``.

    ``return_layers`` maps stage names (and :data:`STEM`, the stem's output before its pooling) to output
    names, as torchvision's ``IntermediateLayerGetter`` (``{"layer3": "aux", "layer4": "out"}``). Stages
    after the last returned one are removed (no unused parameters, no wasted compute). ``channels`` and
    ``strides`` list each returned map's channels and stride, in the order of the network. ``body`` is the
    reslab network itself: it is taken over, not copied (its classifier is removed with
    ``reset_classifier(0)``, later stages deleted).
    """

    def __init__(self, model: nn.Module, return_layers: Mapping[str, str]) -> None:
        super().__init__()
        require_stages(model)
        stem = STEM in return_layers
        if stem and not has_stem_output(model):
            raise ConfigError(f"{_name(model)} gives no stem output (forward_stages has no stem=True)")
        names = [STEM] * stem + list(model.stage_names)
        if not return_layers or not set(return_layers) <= set(names):
            raise ConfigError(
                f"return_layers {sorted(return_layers)} must name stages of this model: {names}"
            )
        probe = 256
        shapes = stage_shapes(model, probe, stem=stem)
        last = max(names.index(k) for k in return_layers) - stem  # the last stage kept (-1: none)
        if last < len(model.stage_names) - 1:  # drop the stages after the last returned one
            _drop_stages_after(model, names[stem:], last)
        if getattr(model, "num_classes", 0):
            model.reset_classifier(0)
        self.body = model
        self.with_stem = stem
        order = [n for n in names if n in return_layers]
        self.return_layers = OrderedDict((n, str(return_layers[n])) for n in order)
        self.channels = [shapes[names.index(n)][1] for n in order]
        self.strides = [probe // shapes[names.index(n)][-1] for n in order]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body.forward_stages(x, stem=True) if self.with_stem else self.body.forward_stages(x)
        final_bn = getattr(self.body, "final_bn", None)
        if final_bn is not None:  # pre-activation: the last stage as forward_features gives it
            maps[-1] = torch.relu(final_bn(maps[-1]))
        named = dict(zip([STEM] * self.with_stem + list(self.body.stage_names), maps))
        return OrderedDict((out, named[name]) for name, out in self.return_layers.items())


def _name(model: nn.Module) -> str:
    return getattr(model, "model_name", None) or type(model).__name__


class FeatureInfo:
    """timm's ``model.feature_info`` for the maps a :class:`FeatureListNet` returns: one dict per map
    (``num_chs``, ``reduction``: its stride, ``module``: its stage name, ``index``: its out index), and
    ``channels()``, ``reduction()``, ``module_name()`` (all maps, or the one at ``idx``) as timm's."""

    def __init__(self, info: Sequence[dict[str, Any]]) -> None:
        self.info = [dict(i) for i in info]
        self.out_indices = tuple(i["index"] for i in self.info)

    def get(self, key: str, idx: int | None = None) -> Any:
        return [i[key] for i in self.info] if idx is None else self.info[idx][key]

    def channels(self, idx: int | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | None = None) -> Any:
        return self.get("module", idx)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.info[idx]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


class FeatureListNet(ResNetFeatures):
    """timm's ``features_only`` model (``timm.models.FeatureListNet``) for a reslab network:
    ``forward(x)`` -> the list of feature maps at ``out_indices``, in the network's order.

    Index 0 is the stem's output before its pooling (:data:`STEM`), index ``i`` the output of stage ``i``
    (``model.stage_names[i - 1]``), as timm counts for its ResNets (see the module docstring); default:
    every index. ``feature_info`` (:class:`FeatureInfo`) gives each map's channels and stride
    (``reduction``). Built on :class:`ResNetFeatures`: the classifier and the stages after the last
    selected one are removed.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        require_stages(model)
        names = [STEM, *model.stage_names]
        indices = tuple(range(len(names))) if out_indices is None else tuple(out_indices)
        valid = all(isinstance(i, int) and 0 <= i < len(names) for i in indices)
        if not indices or not valid or list(indices) != sorted(set(indices)):
            raise ConfigError(
                f"out_indices must be increasing integers in [0, {len(names) - 1}] for {_name(model)} "
                f"(0: the stem, i: {model.stage_names[0]}..{model.stage_names[-1]}), got {list(indices)}"
            )
        super().__init__(model, {names[i]: str(i) for i in indices})
        self.out_indices = indices
        self.feature_info = FeatureInfo(
            [
                {"num_chs": c, "reduction": s, "module": names[i], "index": i}
                for c, s, i in zip(self.channels, self.strides, indices)
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return list(super().forward(x).values())
