"""Detectors and segmenters: torchvision's heads on reslab backbones, built from a JSON-able spec.

- :func:`create_detector`: ``"fasterrcnn"`` (Ren et al. 2015, with the FPN of Lin et al. 2017),
  ``"maskrcnn"`` (He et al. 2017) or ``"retinanet"`` (Lin et al. 2017b, focal loss) from
  ``torchvision.models.detection``, on :func:`~reslab.models.backbones.resnet_fpn_backbone`.
- :func:`create_segmenter`: ``"deeplabv3"`` (Chen et al. 2017, ASPP) or ``"fcn"`` (Long et al. 2015)
  from ``torchvision.models.segmentation``, on the dilated :func:`~reslab.models.backbones.resnet_backbone`.

The heads are torchvision's, unchanged, one row each in a table (``_DETECTORS``, ``_SEGMENTERS``: the
class, where its anchors and RoI poolers go, its pyramid layout, its classifier); what reslab chooses is
stated here:

- **Anchors** default to ``(16, 32, 64, 128, 256)`` pixels, one size per pyramid level from the finest
  (three aspect ratios 0.5, 1, 2; RetinaNet adds the 2^(1/3), 2^(2/3) octave scales of its paper). That
  is half of torchvision's COCO sizes: reslab's scenes are 128-pixel images with 16-64-pixel objects,
  not COCO's 800-pixel ones. ``min_size`` / ``max_size`` (the detectors' resizing) default to 128 /
  512, so a 128x128 scene is not resized.
- **RetinaNet** takes C3-C5 plus P6/P7 made from C5 (``LastLevelP6P7``), its paper's layout; CIFAR
  networks, which have three stages, give it C2-C3 (the last two) instead.
- **ASPP rates** default to DeepLabV3's (6, 12, 18) at output stride 16, scaled by 16 / output stride
  ((12, 24, 36) at 8, as the paper doubles them); with ``image_size`` they are scaled to the feature map
  instead (:func:`aspp_rates`): a rate wider than the map degenerates to a 1x1 convolution (Chen et al.
  2017, Sec. 3.3), which is what the paper's rates would do on a 128-pixel scene.
- Detectors normalize inside (torchvision's ``GeneralizedRCNNTransform``) and take images in [0, 1];
  segmenters take normalized images, as torchvision's segmentation models do.

Every model carries ``model.spec`` (a dict of JSON values, backbone name and kwargs resolved from
``init_from``) and :func:`build_from_spec` rebuilds the same architecture from it: :func:`save_dense`
stores the spec in the safetensors metadata and :func:`load_dense` rebuilds and loads, so a checkpoint
never needs the classification run its backbone was initialized from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.segmentation import FCN, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

from reslab.errors import ConfigError
from reslab.models.backbones import (
    ResNetFeatures,
    build_body,
    resnet_backbone,
    resnet_fpn_backbone,
    stage_channels,
)


@dataclasses.dataclass(frozen=True)
class _Detector:
    """How one of torchvision's detectors sits on a reslab FPN backbone."""

    model: type[nn.Module]  # called as model(backbone, num_classes, **keywords)
    anchor_arg: str  # the keyword its AnchorGenerator goes to
    octaves: tuple[float, ...] = (1.0,)  # anchor scales per pyramid level, times the level's size
    roi_pools: tuple[tuple[str, int], ...] = ()  # (keyword, output size) of its MultiScaleRoIAlign poolers
    p6p7: bool = False  # C3-C5 and P6/P7 made from C5 (RetinaNet's layout), else every stage + max-pool P6


@dataclasses.dataclass(frozen=True)
class _Segmenter:
    """How one of torchvision's segmenters sits on a dilated reslab backbone."""

    model: type[nn.Module]  # called as model(backbone, classifier, aux_classifier)
    head: type[nn.Module]  # the classifier: head(in_channels, num_classes[, atrous_rates=...])
    aspp: bool = False  # the head takes ``atrous_rates`` (DeepLabV3's ASPP)


_DETECTORS = {
    "fasterrcnn": _Detector(FasterRCNN, "rpn_anchor_generator", roi_pools=(("box_roi_pool", 7),)),
    "maskrcnn": _Detector(
        MaskRCNN, "rpn_anchor_generator", roi_pools=(("box_roi_pool", 7), ("mask_roi_pool", 14))
    ),
    "retinanet": _Detector(
        RetinaNet, "anchor_generator", octaves=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), p6p7=True
    ),
}
_SEGMENTERS = {"deeplabv3": _Segmenter(DeepLabV3, DeepLabHead, aspp=True), "fcn": _Segmenter(FCN, FCNHead)}
DETECTORS = tuple(_DETECTORS)  # ("fasterrcnn", "maskrcnn", "retinanet")
SEGMENTERS = tuple(_SEGMENTERS)  # ("deeplabv3", "fcn")
DEFAULT_ANCHORS = (16, 32, 64, 128, 256)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_Head = TypeVar("_Head", _Detector, _Segmenter)


def _norm_stats(
    in_chans: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    if mean is None and std is None and in_chans == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if mean is None or std is None or len(mean) != in_chans or len(std) != in_chans:
        raise ConfigError(f"image_mean and image_std need {in_chans} values each (the data's statistics)")
    return [float(m) for m in mean], [float(s) for s in std]


def create_detector(
    arch: str = "fasterrcnn",
    backbone: str = "resnet18",
    *,
    num_classes: int,
    in_chans: int | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    min_size: int = 128,
    max_size: int = 512,
    anchor_sizes: Sequence[int] = DEFAULT_ANCHORS,
    returned_layers: Sequence[int] | None = None,
    fpn_channels: int = 256,
    trainable_layers: int | None = None,
    frozen_bn: bool | None = None,
    init_from: str | os.PathLike | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **head_kwargs: Any,
) -> nn.Module:
    """A torchvision detector (``arch`` in :data:`DETECTORS`) on a reslab backbone with an FPN.

    ``num_classes`` counts the background (torchvision's convention: 11 for the ten Fashion-MNIST
    classes). ``in_chans`` (default 3, or the run's with ``init_from``) and ``image_mean`` / ``image_std``
    (one per channel, required unless 3 channels: ImageNet's) set the input. Backbone arguments
    (``returned_layers``, ``trainable_layers``, ``frozen_bn``, ``init_from``, ``backbone_kwargs``) are
    :func:`~reslab.models.backbones.resnet_fpn_backbone`'s; ``head_kwargs`` go to torchvision's model
    (e.g. ``box_score_thresh``, ``rpn_batch_size_per_image``; JSON values, they enter ``model.spec``).
    """
    head = _choose(_DETECTORS, arch, "detector", num_classes)
    net = _network(backbone, init_from, backbone_kwargs, in_chans)
    layers, extra = _fpn_levels(head, net, returned_layers, fpn_channels)
    body = resnet_fpn_backbone(
        net,
        pretrained=init_from is not None,
        trainable_layers=trainable_layers,
        returned_layers=layers,
        out_channels=fpn_channels,
        frozen_bn=frozen_bn,
        extra_blocks=extra,
    )
    mean, std = _norm_stats(int(body.body.in_chans), image_mean, image_std)
    sizes = _anchor_sizes(anchor_sizes, len(body.channels) + (2 if extra else 1))
    common = {"image_mean": mean, "image_std": std, "min_size": min_size, "max_size": max_size}
    model = _detector_head(head, body, num_classes, sizes, **common, **head_kwargs)
    model.spec = {
        "task": "detection",
        "arch": arch,
        "num_classes": num_classes,
        **common,
        "anchor_sizes": sizes,
        "fpn_channels": fpn_channels,
        **{k: v for k, v in body.spec.items() if k != "out_channels"},
        **head_kwargs,
    }
    return model


def _fpn_levels(
    head: _Detector, net: nn.Module, returned_layers: Sequence[int] | None, fpn_channels: int
) -> tuple[list[int] | None, ExtraFPNBlock | None]:
    """The stages the FPN takes and its extra block: ``returned_layers`` (default: every stage) and
    ``resnet_fpn_backbone``'s max-pool P6; RetinaNet's layout takes C3-C5 (the last two stages of a
    CIFAR network, which has three) and P6, P7 made from C5 (Lin et al. 2017b, Sec. 4)."""
    layers = list(returned_layers) if returned_layers is not None else None
    if not head.p6p7:
        return layers, None
    n = len(net.stage_names)
    if layers is None:
        layers = list(range(n - 2, n + 1)) if n >= 4 else [n - 1, n]
    return layers, LastLevelP6P7(stage_channels(net)[layers[-1] - 1], fpn_channels)


def _anchor_sizes(anchor_sizes: Sequence[int], levels: int) -> list[int]:
    """The first ``levels`` anchor sizes, one per pyramid level from the finest."""
    if len(anchor_sizes) < levels:
        raise ConfigError(
            f"anchor_sizes needs {levels} sizes (one per pyramid level), got {list(anchor_sizes)}"
        )
    return [int(a) for a in anchor_sizes[:levels]]


def _detector_head(
    head: _Detector, body: nn.Module, num_classes: int, sizes: list[int], **kwargs: Any
) -> nn.Module:
    """torchvision's detector on the FPN ``body``: anchors of ``sizes`` (one per pyramid level, times each
    of the head's octave scales; ratios 0.5, 1, 2), RoI pooling over the pyramid's maps; ``kwargs`` go to
    the model."""
    scales = tuple(tuple(round(a * o) for o in head.octaves) for a in sizes)
    anchors = AnchorGenerator(scales, ((0.5, 1.0, 2.0),) * len(sizes))
    names = [str(i) for i in range(len(body.channels))]  # type: ignore[arg-type]
    pools = {
        arg: MultiScaleRoIAlign(names, output_size=size, sampling_ratio=2) for arg, size in head.roi_pools
    }
    return head.model(body, num_classes, **{head.anchor_arg: anchors}, **pools, **kwargs)


def create_segmenter(
    arch: str = "deeplabv3",
    backbone: str = "resnet18",
    *,
    num_classes: int,
    in_chans: int | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    output_stride: int | None = None,
    aux_loss: bool = False,
    atrous_rates: Sequence[int] | None = None,
    image_size: int | None = None,
    trainable_layers: int | None = None,
    frozen_bn: bool | None = None,
    init_from: str | os.PathLike | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """A torchvision segmenter (``arch`` in :data:`SEGMENTERS`) on a dilated reslab backbone.

    ``model(x)["out"]`` holds (B, ``num_classes``, H, W) logits at the input's size (bilinear upsampling
    of the head's output, torchvision's); with ``aux_loss`` also ``["aux"]``, an FCN head on the
    second-last stage (torchvision's auxiliary loss). ``output_stride``: see
    :func:`~reslab.models.backbones.dilate` (default 8, or the network's own if finer). The model takes
    normalized images, as torchvision's segmenters; ``image_mean`` / ``image_std`` (the data's, one per
    channel; ImageNet's by default for 3 channels) are not applied by it but kept in ``model.spec`` for
    whoever feeds it. ``atrous_rates`` default: :func:`aspp_rates` (the paper's, or scaled to
    ``image_size`` when given).
    """
    head = _choose(_SEGMENTERS, arch, "segmenter", num_classes)
    net = _network(backbone, init_from, backbone_kwargs, in_chans)
    body = resnet_backbone(
        net,
        output_stride=output_stride,
        pretrained=init_from is not None,
        trainable_layers=trainable_layers,
        frozen_bn=frozen_bn,
    )
    if aux_loss:
        body = _with_aux(body)
    mean, std = _norm_stats(int(body.body.in_chans), image_mean, image_std)
    aspp = _aspp_args(head, atrous_rates, int(body.spec["output_stride"]), image_size)
    classifier = head.head(body.channels[-1], num_classes, **aspp)
    aux = FCNHead(body.channels[0], num_classes) if aux_loss else None
    model = head.model(body, classifier, aux)
    model.spec = {
        "task": "segmentation",
        "arch": arch,
        "num_classes": num_classes,
        "image_mean": mean,
        "image_std": std,
        "aux_loss": aux_loss,
        **aspp,
        "image_size": image_size,
        **body.spec,
    }
    return model


def _aspp_args(
    head: _Segmenter, atrous_rates: Sequence[int] | None, output_stride: int, image_size: int | None
) -> dict[str, list[int]]:
    """The head's ``atrous_rates`` (given, else :func:`aspp_rates`) where it has an ASPP; else none."""
    if not head.aspp:
        return {}
    rates = [int(r) for r in atrous_rates] if atrous_rates else aspp_rates(output_stride, image_size)
    return {"atrous_rates": rates}


def aspp_rates(output_stride: int, image_size: int | None = None) -> list[int]:
    """DeepLabV3's ASPP rates (Chen et al. 2017, Sec. 4.1): (6, 12, 18) at output stride 16, doubled at 8.

    With ``image_size`` they are scaled to the feature map instead: the paper's rates fit the 33x33 map
    of its 513-pixel crops at stride 16, so a rate becomes ``r * (image_size / output_stride) / 33``
    (at least 1): (3, 6, 9) for a 128-pixel image at stride 8.
    """
    if image_size is None:
        return [round(r * 16 / output_stride) for r in (6, 12, 18)]
    side = image_size / output_stride
    return [max(1, round(r * side / 33)) for r in (6, 12, 18)]


def _choose(heads: Mapping[str, _Head], arch: str, kind: str, num_classes: int) -> _Head:
    """The table entry of ``arch``, once ``arch`` and ``num_classes`` are checked."""
    if arch not in heads:
        raise ConfigError(f"unknown {kind} {arch!r}; choose from {', '.join(heads)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    return heads[arch]


def _network(
    backbone: str,
    init_from: str | os.PathLike | None,
    backbone_kwargs: dict[str, Any] | None,
    in_chans: int | None,
) -> nn.Module:
    """The reslab network under the head (:func:`~reslab.models.backbones.build_body`), ``in_chans``
    added to ``backbone_kwargs``; with ``init_from`` the weights fix it, so it is only checked."""
    kwargs = dict(backbone_kwargs or {})
    if in_chans is not None:
        if init_from is None:
            kwargs["in_chans"] = in_chans
        else:
            kwargs.setdefault("in_chans", in_chans)
    return build_body(backbone, init_from=init_from, **kwargs)[0]


def _with_aux(body: nn.Module) -> nn.Module:
    """The same body returning the second-last stage as ``"aux"`` too."""
    names = list(body.body.stage_names)
    if len(names) < 2:
        raise ConfigError("aux_loss needs a network with at least two stages")
    spec = body.spec
    out = ResNetFeatures(body.body, {names[-2]: "aux", names[-1]: "out"})
    out.spec = spec
    return out


# the spec's ``task`` -> the function that builds it (the kinds of dense model a checkpoint can hold)
_BUILDERS = {"detection": create_detector, "segmentation": create_segmenter}
DENSE_TASKS = tuple(_BUILDERS)  # ("detection", "segmentation")


def is_dense_spec(spec: Any) -> bool:
    """Whether ``spec`` (a model's ``.spec``, or metadata key ``"spec"``) describes a detector or segmenter."""
    return isinstance(spec, dict) and spec.get("task") in DENSE_TASKS


def save_dense(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write a detector's or segmenter's weights with its ``spec`` (metadata key ``"spec"``) and any other
    JSON ``metadata``: :func:`reslab.models.weights.save_weights` (safetensors, atomic)."""
    from reslab.models.weights import save_weights, unwrap

    spec = getattr(unwrap(model), "spec", None)
    if not is_dense_spec(spec):
        raise ConfigError("save_dense takes a model built by reslab.models.dense (it has no .spec)")
    save_weights(model, path, {**(metadata or {}), "spec": spec})


def load_dense(path_or_run: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model saved by :func:`save_dense` (a file, or a run directory's best/last checkpoint), rebuilt
    from its ``spec`` and loaded strictly; ``(model in eval mode, metadata)``."""
    from reslab.errors import CheckpointError
    from reslab.models.weights import read_metadata, read_state_dict, resolve_checkpoint

    path = resolve_checkpoint(path_or_run)
    meta = read_metadata(path)
    spec = meta.get("spec")
    if not is_dense_spec(spec):
        raise CheckpointError(f"{path} holds no detection/segmentation spec; is it a classification model?")
    model = build_from_spec(spec)
    state = read_state_dict(path)
    missing, unexpected = model.state_dict().keys() - state.keys(), state.keys() - model.state_dict().keys()
    if missing or unexpected:
        which = (
            f"missing tensor {sorted(missing)[0]}"
            if missing
            else f"unexpected tensor {sorted(unexpected)[0]}"
        )
        raise CheckpointError(f"{path} does not fit its own spec: {which}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path} does not fit its own spec: {str(e).splitlines()[-1].strip()[:200]}"
        ) from None
    return model.to(map_location).eval(), meta


def dense_spec(path_or_run: str | os.PathLike) -> dict[str, Any] | None:
    """The ``spec`` of a detection / segmentation weights file or run (see :func:`save_dense`); ``None``
    for anything else (a classifier, a foreign checkpoint, a file that cannot be read: its own reader
    reports that)."""
    from reslab.errors import ReslabError
    from reslab.models.weights import read_metadata, resolve_checkpoint

    try:
        path = resolve_checkpoint(path_or_run)
        spec = read_metadata(path).get("spec") if path.suffix == ".safetensors" else None
    except ReslabError:
        return None
    return spec if is_dense_spec(spec) else None


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from ``model.spec`` (as stored in its checkpoint): same architecture, fresh weights."""
    spec = dict(spec)
    task = spec.pop("task", None)
    if task not in DENSE_TASKS:  # a tuple: an unhashable value is refused too, not a TypeError
        raise ConfigError(f"spec has task {task!r}; expected {' or '.join(map(repr, DENSE_TASKS))}")
    return _BUILDERS[task](**spec)
