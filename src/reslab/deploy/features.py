"""Multi-scale feature maps: a reslab network as a detection / segmentation backbone.

He et al. 2016 (Sec. 4.3 and Appendix A/B) use ResNet-101 as the backbone of Faster R-CNN on PASCAL VOC
and COCO, taking the ``conv4_x`` output for the RPN and ``conv5_x`` as the RoI head. reslab exposes every
stage instead (``conv2_x`` ... ``conv5_x`` = ``layer1`` ... ``layer4``), the multi-scale form that a
Feature Pyramid Network (Lin et al. 2017) consumes; that is the deviation: no RoI pooling inside
``conv5_x``, the caller builds the head.

Every reslab model has ``forward_stages(x)``: the list of its stage outputs (``layer1`` ... ``layerN``,
names in ``model.stage_names``), the pyramid a Feature Pyramid Network or a U-Net decoder consumes.
:func:`stage_info` reports each stage's shape, stride (input size / feature size) and channels;
:class:`StageFeatures` wraps a model so it returns an ``OrderedDict`` of named maps and carries
``out_channels``, which is what ``torchvision.ops.FeaturePyramidNetwork`` wants (see docs/deploy.md).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError, first_line


@dataclasses.dataclass(frozen=True)
class StageInfo:
    name: str
    shape: tuple[int, ...]  # (N, C, H, W); a clip network's (N, C, T, H, W)
    stride: int | float  # input height / feature height (an int when it divides exactly)
    channels: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_input_size(text: str, *, clips: bool = False) -> tuple[int, ...]:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``; with ``clips``, a clip's ``C,T,H,W`` too."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) not in ((3, 4) if clips else (3,)) or any(s < 1 for s in size):
        what = "C,H,W (an image) or C,T,H,W (a clip)" if clips else "C,H,W"
        raise ConfigError(
            f"--input-size must be {what} with positive integers (e.g. 3,224,224), got {text!r}"
        )
    return size


def _stride(inp: int, out: int) -> int | float:
    return inp // out if out and inp % out == 0 else round(inp / out, 3)


def stage_names(model: nn.Module, n: int) -> list[str]:
    names = list(getattr(model, "stage_names", ()) or ())
    return names if len(names) == n else [f"stage{i + 1}" for i in range(n)]


@torch.no_grad()
def stage_info(model: nn.Module, input_size: Sequence[int], *, on_meta: bool = True) -> list[StageInfo]:
    """Name, shape, stride and channels of each output of ``model.forward_stages`` for one image
    (``input_size`` C, H, W) or one clip (C, T, H, W: a video network's; the stride is the spatial one).

    With ``on_meta`` (the default) a copy of the model runs on the ``meta`` device: shapes only, no
    memory or time spent on the actual convolutions.
    """
    if not hasattr(model, "forward_stages"):
        raise ConfigError(f"{type(model).__name__} has no forward_stages(); not a reslab model")
    c, *rest = (int(s) for s in input_size)
    h = rest[-2]
    if on_meta:
        model = copy.deepcopy(model).to("meta")
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters())).device
        x = torch.zeros(1, c, *rest, device=device)
        try:
            stages = model.forward_stages(x)
        except RuntimeError as e:
            first = first_line(e)
            size = "x".join(str(s) for s in (c, *rest))
            raise ConfigError(f"input size {size} does not fit this model: {first[:200]}") from None
    finally:
        model.train(was_training)
    names = stage_names(model, len(stages))
    return [
        StageInfo(name, tuple(f.shape), _stride(h, f.shape[-2]), int(f.shape[1]))
        for name, f in zip(names, stages)
    ]


def format_stage_info(infos: Sequence[StageInfo], title: str) -> str:
    rows = [("stage", "shape", "stride", "channels")]
    rows += [(i.name, "x".join(str(s) for s in i.shape), str(i.stride), str(i.channels)) for i in infos]
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = [title]
    for r in rows:
        lines.append(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}")
    return "\n".join(lines)


class StageFeatures(nn.Module):
    """A reslab model as a backbone: ``forward(x)`` returns ``OrderedDict(stage name -> feature map)``.

    ``out_channels`` (list, one per stage) and ``strides`` are filled in at construction by a shape-only
    pass at ``input_size``; ``stages`` picks a subset by name (e.g. ``("layer2", "layer3", "layer4")``
    for the C3-C5 levels an FPN usually takes). The classifier head is kept but never run.
    """

    def __init__(
        self,
        model: nn.Module,
        stages: Sequence[str] | None = None,
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.body = model
        if input_size is None:
            input_size = (int(getattr(model, "in_chans", 3)), 224, 224)
        infos = stage_info(model, input_size)
        available = [i.name for i in infos]
        chosen = list(stages) if stages is not None else available
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; this model has {available}")
        self.all_names = available
        self.return_names = chosen
        self.out_channels = [i.channels for i in infos if i.name in chosen]
        self.strides = [i.stride for i in infos if i.name in chosen]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body.forward_stages(x)
        named = dict(zip(self.all_names, maps))
        return OrderedDict((name, named[name]) for name in self.return_names)


def resolve_model(model_or_run: str | os.PathLike) -> tuple[nn.Module, dict[str, Any], tuple[int, ...]]:
    """A registered model name or a run / checkpoint path -> ``(model, metadata, default input size)``.

    A name builds the model with its default classes/channels; its default input size is the paper's
    (registry: (C, T, H, W) for a video model). A run or checkpoint is loaded with its weights; its input
    size comes from its config (a clip network's: the clips it was trained on).
    """
    if Path(model_or_run).exists():
        from reslab.tasks import refuse_task
        from reslab.tasks.inputs import input_spec, load

        refuse_task(model_or_run, "features")
        model, metadata = load(model_or_run)
        clip = metadata.get("input_size")
        if isinstance(clip, list) and len(clip) == 4:  # (C, T, H, W): the clips a video run trained on
            return model, metadata, tuple(int(v) for v in clip)
        return model, metadata, input_spec(model, metadata).input_size
    from reslab.models.factory import create_model
    from reslab.models.registry import get_entry

    name = str(model_or_run)
    entry = get_entry(name)  # unknown name -> ConfigError naming the closest ones
    with torch.device("meta"):
        model = create_model(name)
    return model.eval(), {}, tuple(entry.input_size)  # type: ignore[return-value]


def run_features(
    model_or_run: str | os.PathLike, input_size: str | None = None, *, as_json: bool = False
) -> str:
    """The text (or JSON) ``reslab features`` prints."""
    import json

    model, _, default_size = resolve_model(model_or_run)
    size = parse_input_size(input_size, clips=len(default_size) == 4) if input_size else default_size
    if len(size) != len(default_size):
        raise ConfigError(
            f"--input-size {input_size}: this model takes clips, C,T,H,W (e.g. {','.join(map(str, default_size))})"
        )
    in_chans = int(getattr(model, "in_chans", size[0]))
    if size[0] != in_chans:
        raise ConfigError(f"--input-size has {size[0]} channels but the model takes {in_chans}")
    infos = stage_info(model, size)
    name = getattr(model, "model_name", type(model).__name__)
    if as_json:
        return json.dumps(
            {"model": name, "input_size": list(size), "stages": [i.as_dict() for i in infos]}, indent=2
        )
    return format_stage_info(infos, f"{name}: forward_stages at input {'x'.join(map(str, size))}")
