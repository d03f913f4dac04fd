"""reslab networks as detection and segmentation backbones, with torchvision's conventions.

He et al. 2016 (Sec. 4.3, Appendix A/B) showed the residual network as a backbone: ResNet-101 in Faster
R-CNN (Ren et al. 2015) won COCO and ImageNet detection. What the field does with it since is the feature
pyramid (Lin et al. 2017, "Feature Pyramid Networks for Object Detection"): every stage output C2..C5
gets a lateral 1x1 conv and a top-down path, and a detector head reads each level. For segmentation,
FCN (Long et al. 2015) and DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution") keep the last
stages at a higher resolution by replacing their stride with dilation ("atrous" convolution).

This module turns any reslab :class:`~reslab.models.zoo.ResNet` (ImageNet or CIFAR style, shortcut
option A, B or C, pre-activation, plain, highway, wide, ResNeXt) into the backbones torchvision's heads
take, without touching those heads:

- :class:`~reslab.models.features.ResNetFeatures` (in :mod:`reslab.models.features`, re-exported here):
  the network's stem and stages, ``forward(x) -> OrderedDict`` of the stage outputs named by
  ``return_layers`` (torchvision's ``IntermediateLayerGetter`` contract, e.g. ``{"layer4": "out",
  "layer3": "aux"}`` for ``DeepLabV3`` / ``FCN``). It calls the model's public ``forward_stages``, so it
  does not depend on the order in which modules were registered.
- :class:`ResNetFPN`: the same plus ``torchvision.ops.FeaturePyramidNetwork``; ``out_channels`` as
  ``FasterRCNN`` / ``RetinaNet`` / ``MaskRCNN`` expect. Its state dict has exactly the keys of
  torchvision's ``BackboneWithFPN`` (``body.conv1.weight``, ``body.layer1.0.conv1.weight``,
  ``fpn.inner_blocks.0.0.weight``, ...), so a torchvision ``resnet_fpn_backbone`` checkpoint loads into the
  matching reslab backbone with ``strict=True`` (tested).
- :func:`resnet_fpn_backbone` / :func:`resnet_backbone`: build either from a model name, a model, or a
  reslab weight file / classification run (``init_from``, read by :mod:`reslab.models.weights`), with
  ``trainable_layers`` freezing as torchvision's ``resnet_fpn_backbone`` and ``output_stride`` dilation
  as torchvision's ``replace_stride_with_dilation``.

Deviations, named:

- Pre-activation networks (He et al. 2016b) leave every stage output un-normalized (the sum of the
  shortcut and the branch); the network's own ``final_bn``-ReLU is applied to the *last* stage when it is
  returned (so it equals ``forward_features``), the earlier levels go to the FPN's lateral 1x1 convs as
  they are.
- CIFAR networks have no down-sampling stem: their stages are at strides 1, 2, 4 of the input, and the FPN
  levels sit there (the pyramid is just finer; a 128x128 scene gives a 128x128 first level).
- The classifier (``fc``) is removed (``reset_classifier(0)``) so that no parameter goes unused (DDP).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from reslab.errors import ConfigError
from reslab.models.blocks import ShortcutA
from reslab.models.factory import create_model
from reslab.models.features import ResNetFeatures, require_stages, stage_channels, stage_strides
from reslab.models.weights import load_model

__all__ = [
    "ResNetFPN",
    "ResNetFeatures",
    "build_body",
    "dilate",
    "freeze",
    "frozen_batchnorm",
    "resnet_backbone",
    "resnet_fpn_backbone",
    "stage_channels",
    "stage_strides",
]


# ----------------------------------------------------------------------------------------- dilation


def _unstride(unit: nn.Module) -> None:
    """Stride 1 for every strided module of ``unit`` (branch convs, projection, option A, highway gate)."""
    for m in unit.modules():
        if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
            m.stride = (1, 1)
        elif isinstance(m, ShortcutA):
            m.stride = 1


def _set_rates(unit: nn.Module, before: int, after: int) -> None:
    """Dilate the 3x3 convs of ``unit.residual``: rate ``before`` up to and including its strided conv
    (if any), ``after`` behind it (padding = rate: the size is kept)."""
    convs = [m for m in unit.residual.modules() if isinstance(m, nn.Conv2d)]
    # the index of the first strided conv; -1 (none): the whole unit is behind the removed stride
    strided = next((i for i, m in enumerate(convs) if m.stride != (1, 1)), -1)
    for i, m in enumerate(convs):
        if m.kernel_size == (3, 3):
            rate = before if i <= strided else after
            m.dilation, m.padding = (rate, rate), (rate, rate)


def dilate(model: nn.Module, output_stride: int) -> list[str]:
    """Replace the stride of the last stages by dilation until the output stride is ``output_stride``.

    torchvision's ``replace_stride_with_dilation`` applied after construction, and the "atrous"
    algorithm of Chen et al. 2017 (DeepLabV3, Sec. 3.1): in each dilated stage the stride-2 modules of
    the first unit (a branch conv, the projection or option-A subsampling of the shortcut, a highway
    gate) get stride 1; every 3x3 conv *behind* the removed stride gets twice the previous rate, the ones
    before it (and the strided 3x3 itself) keep the previous rate, with padding = rate. So the dilated
    network computes exactly the original feature map on a denser grid: its output, subsampled by
    ``native / output_stride``, equals the undilated output (tested for every family). For torchvision's
    Bottleneck (stride in the 3x3) this is torchvision's rule ("the first block keeps the previous
    dilation"); torchvision's BasicBlock refuses dilation, reslab's basic, pre-activation, plain and
    highway units and ``stride_in_1x1`` bottlenecks follow the same rule. Weights are unchanged.

    ImageNet networks (output stride 32): 16 dilates ``layer4`` (rate 2); 8 dilates ``layer3`` (rate 2)
    and ``layer4`` (rate 4), DeepLab's setting; 4 also ``layer2``. CIFAR networks (strides 1, 2, 4) are
    at output stride 4 already; 2 or 1 dilate ``layer3`` / ``layer2``. The stem is never dilated. Returns
    the names of the dilated stages; ``output_stride`` must be reachable exactly (else ``ConfigError``),
    and the network must not be dilated already.
    """
    if any(isinstance(m, nn.Conv2d) and m.dilation != (1, 1) for m in model.modules()):
        raise ConfigError("this network is dilated already; dilate a freshly built one")
    strides = stage_strides(model)
    names = list(model.stage_names)
    native = strides[-1]
    # the stages that halve the resolution (their first unit has stride 2), in forward order
    downsampling = [i for i in range(1, len(names)) if strides[i] == 2 * strides[i - 1]]
    reachable = [native // 2**k for k in range(len(downsampling) + 1)]
    if output_stride not in reachable:
        raise ConfigError(
            f"output_stride {output_stride} is not reachable for {getattr(model, 'model_name', 'this model')}"
            f" (native {native}); choose from {', '.join(map(str, reachable))}"
        )
    k = reachable.index(output_stride)
    chosen = downsampling[len(downsampling) - k :] if k else []
    for n, i in enumerate(chosen, start=1):
        rate = 2**n  # the first unit's branch keeps rate // 2 up to its strided conv
        for j, unit in enumerate(getattr(model, names[i])):
            _set_rates(unit, rate // 2 if j == 0 else rate, rate)
        _unstride(getattr(model, names[i])[0])  # after _set_rates, which finds the strided conv
    return [names[i] for i in chosen]


# ----------------------------------------------------------------------------------------- freezing


def frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by torchvision's ``FrozenBatchNorm2d`` (same statistics
    and affine values, as buffers: they never change, in train mode too). Returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen.to(next(child.buffers()).device))
        else:
            frozen_batchnorm(child)
    return module


def _layer_groups(model: nn.Module) -> list[list[str]]:
    """Freezable groups, input first: the stem, then one per stage (``final_bn`` goes with the last)."""
    groups = [list(model.stem_names)] + [[s] for s in model.stage_names]
    if isinstance(getattr(model, "final_bn", None), nn.Module):
        groups[-1].append("final_bn")
    return groups


def freeze(model: nn.Module, trainable_layers: int) -> list[str]:
    """Freeze all but the last ``trainable_layers`` groups (torchvision's ``trainable_layers``).

    The groups are the stem (``model.stem_names``) and each stage, so for an ImageNet network 0 freezes
    everything, 3 trains ``layer2..layer4`` (torchvision's default with pretrained weights) and 5 trains
    everything; a CIFAR network has 4 groups. Frozen groups get ``requires_grad=False`` and their BNs
    become ``FrozenBatchNorm2d`` (torchvision freezes every BN with pretrained weights instead; see
    :func:`frozen_batchnorm`), so that ``model.train()`` cannot move their statistics either. Returns the
    names of the trainable groups' modules.
    """
    groups = _layer_groups(model)
    if not 0 <= trainable_layers <= len(groups):
        raise ConfigError(
            f"trainable_layers must be in [0, {len(groups)}] for this model (stem + {len(groups) - 1} "
            f"stages), got {trainable_layers}"
        )
    train = [n for g in groups[len(groups) - trainable_layers :] for n in g]
    frozen = [n for g in groups[: len(groups) - trainable_layers] for n in g]
    for name, p in model.named_parameters():
        if not any(name == t or name.startswith(t + ".") for t in train):
            p.requires_grad_(False)
    for name in frozen:
        sub = getattr(model, name)
        if isinstance(sub, nn.BatchNorm2d):
            setattr(model, name, frozen_batchnorm(nn.Sequential(sub))[0])
        else:
            frozen_batchnorm(sub)
    return train


# ------------------------------------------------------------------------------------------ modules


class ResNetFPN(ResNetFeatures):
    """:class:`ResNetFeatures` + ``torchvision.ops.FeaturePyramidNetwork`` (Lin et al. 2017, Sec. 3):
    torchvision's ``BackboneWithFPN`` for a reslab network, with its state-dict keys (``body.*``,
    ``fpn.*``) and ``out_channels``. ``extra_blocks`` defaults to ``LastLevelMaxPool`` (the "pool" level
    P6 of Faster R-CNN with FPN, Lin et al. 2017 Sec. 4.1)."""

    def __init__(
        self,
        model: nn.Module,
        return_layers: Mapping[str, str],
        out_channels: int = 256,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__(model, return_layers)
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=self.channels,
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(super().forward(x))


# ----------------------------------------------------------------------------------------- builders


def build_body(
    backbone: str | nn.Module = "resnet18",
    *,
    init_from: str | os.PathLike | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The reslab network a backbone is made of, and the ``(name, kwargs)`` that rebuild it.

    ``backbone`` is a registered name (built with ``model_kwargs``, e.g. ``in_chans=1, shortcut="B"``)
    or a reslab model. ``init_from`` is a reslab weight file or run directory (a classification run):
    the network is rebuilt from its metadata and its weights loaded by :func:`reslab.models.weights.
    load_model`; a ``backbone`` name must then be the run's model, and ``model_kwargs`` the run's. Returns
    ``(model, {"backbone": name, "backbone_kwargs": kwargs})``: enough to build the same network again
    without the file (the weights then come from the detector's own checkpoint).
    """
    if init_from is not None:
        model, meta = load_model(init_from)
        model.train()
        name = meta["model"]
        kwargs = dict(meta.get("model_kwargs") or {})
        if isinstance(backbone, str) and backbone != name:
            raise ConfigError(f"init_from {init_from} holds a {name}, not the requested backbone {backbone}")
        for k, v in model_kwargs.items():
            if k in kwargs and kwargs[k] != v:
                raise ConfigError(f"init_from {init_from} has {k}={kwargs[k]!r}, not the requested {v!r}")
            if k not in kwargs and v is not None:
                raise ConfigError(f"init_from {init_from}: {k} is fixed by the weights; drop it")
    elif isinstance(backbone, nn.Module):
        model = backbone
        name = getattr(model, "model_name", None) or type(model).__name__
        kwargs = dict(getattr(model, "model_kwargs", {}) or {})
    else:
        model = create_model(backbone, **model_kwargs)
        name, kwargs = backbone, dict(model.model_kwargs)
    require_stages(model)
    kwargs.pop("pretrained", None)
    return model, {"backbone": name, "backbone_kwargs": kwargs}


def _prepare(
    model: nn.Module, trainable_layers: int | None, frozen_bn: bool | None, pretrained: bool
) -> dict[str, Any]:
    """Freeze as asked (defaults as torchvision's); returns the resolved values, for the spec."""
    groups = len(_layer_groups(model))
    if trainable_layers is None:
        trainable_layers = min(3, groups) if pretrained else groups
    if frozen_bn is None:
        frozen_bn = pretrained
    freeze(model, trainable_layers)
    if frozen_bn:
        frozen_batchnorm(model)
    return {"trainable_layers": int(trainable_layers), "frozen_bn": bool(frozen_bn)}


def resnet_fpn_backbone(
    backbone: str | nn.Module = "resnet18",
    *,
    init_from: str | os.PathLike | None = None,
    trainable_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    out_channels: int = 256,
    frozen_bn: bool | None = None,
    norm_layer: type[nn.Module] | None = None,
    pretrained: bool | None = None,
    **model_kwargs: Any,
) -> ResNetFPN:
    """A reslab network with a feature pyramid, for ``FasterRCNN`` / ``RetinaNet`` / ``MaskRCNN``.

    torchvision's ``resnet_fpn_backbone`` / ``_resnet_fpn_extractor`` for reslab networks:

    - ``returned_layers``: 1-based stage indices (default: every stage, ``[1, 2, 3, 4]`` for ImageNet
      networks, ``[1, 2, 3]`` for CIFAR ones); the maps are named ``"0"``, ``"1"``, ... as torchvision's;
    - ``trainable_layers``: how many groups, counted from the last stage, stay trainable (the stem is one
      group); default every group from scratch and 3 with ``init_from`` (torchvision's defaults);
    - ``frozen_bn``: every BN becomes ``FrozenBatchNorm2d``; default on with ``init_from``, as
      torchvision does with pretrained weights (detection batches are too small for batch statistics);
    - ``extra_blocks``, ``out_channels``, ``norm_layer``: passed to ``FeaturePyramidNetwork``;
    - ``pretrained``: whether the network carries trained weights, for the two defaults above (default:
      ``init_from`` is given; pass it when ``backbone`` is a model you loaded yourself).

    ``backbone``, ``init_from`` and ``model_kwargs``: see :func:`build_body`. The returned module has
    ``.spec``: JSON-able values (backbone name and kwargs, resolved freezing) that rebuild the same
    architecture without ``init_from``.
    """
    model, spec = build_body(backbone, init_from=init_from, **model_kwargs)
    n = len(model.stage_names)
    layers = list(returned_layers) if returned_layers is not None else list(range(1, n + 1))
    if not layers or min(layers) < 1 or max(layers) > n or sorted(set(layers)) != layers:
        raise ConfigError(f"returned_layers must be increasing stage indices in [1, {n}], got {layers}")
    pretrained = init_from is not None if pretrained is None else pretrained
    frozen = _prepare(model, trainable_layers, frozen_bn, pretrained)
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(layers)}
    out = ResNetFPN(model, return_layers, out_channels, extra_blocks, norm_layer)
    out.spec = {**spec, **frozen, "returned_layers": layers, "out_channels": out_channels}
    return out


def resnet_backbone(
    backbone: str | nn.Module = "resnet18",
    *,
    return_layers: Mapping[str, str] | None = None,
    output_stride: int | None = None,
    init_from: str | os.PathLike | None = None,
    trainable_layers: int | None = None,
    frozen_bn: bool | None = None,
    pretrained: bool | None = None,
    **model_kwargs: Any,
) -> ResNetFeatures:
    """A reslab network as a dilated backbone for torchvision's ``FCN`` / ``DeepLabV3``.

    ``output_stride`` (see :func:`dilate`; default 8 where the network is coarser, DeepLabV3's and FCN's
    setting in torchvision, else the network's own) and ``return_layers`` (default ``{last stage: "out"}``;
    add ``{second-last: "aux"}`` for an auxiliary head). Freezing, ``init_from`` and ``pretrained`` as
    :func:`resnet_fpn_backbone`.
    """
    model, spec = build_body(backbone, init_from=init_from, **model_kwargs)
    if output_stride is None:
        output_stride = min(8, stage_strides(model)[-1])
    dilate(model, output_stride)
    pretrained = init_from is not None if pretrained is None else pretrained
    frozen = _prepare(model, trainable_layers, frozen_bn, pretrained)
    out = ResNetFeatures(model, return_layers or {model.stage_names[-1]: "out"})
    out.spec = {**spec, **frozen, "output_stride": output_stride}
    return out
