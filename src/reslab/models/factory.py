"""``create_model``: a registered name, and optionally where its weights come from, to a model.

The registry (:mod:`reslab.models.registry`) knows the names and builds a network with fresh weights;
this module adds the weights: a reslab or torchvision-format file (:mod:`reslab.models.weights`),
torchvision's ImageNet weights from the torch.hub cache (:mod:`reslab.models.hub`) or akamaster's
CIFAR-10 ResNets (:mod:`reslab.models.convert`), and timm's ``features_only`` wrapper
(:mod:`reslab.models.features`). Dependencies point one way: this module imports those five; none of
them imports this one.

The keywords are timm's (``timm.create_model``, ``timm/models/_factory.py`` and ``_builder.py``):
``pretrained=True`` loads the model's published weights, a ``num_classes`` other than the weights' keeps
the freshly initialized classifier, ``in_chans`` other than the weights' adapts the first convolution
(``timm.models.adapt_input_conv``), ``num_classes=0`` leaves no classifier (pooled features),
``features_only=True, out_indices=(...)`` returns the stage maps. Deviation from timm: nothing is
downloaded unless ``download=True`` (timm downloads on ``pretrained=True``); the file is taken from the
torch.hub cache, where torchvision keeps it too, and a missing one is one line saying how to get it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from reslab.errors import ConfigError
from reslab.models.convert import AKAMASTER, AKAMASTER_FILES, akamaster_weights
from reslab.models.features import FeatureListNet
from reslab.models.hub import TORCHVISION, TORCHVISION_URLS, torchvision_weights
from reslab.models.registry import get_entry
from reslab.models.weights import load_adapted

_DOWNLOADABLE = (TORCHVISION, AKAMASTER)  # the named sources of ``pretrained``; True picks one by name


def create_model(
    name: str,
    *,
    pretrained: bool | str | os.PathLike | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    download: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, as ``timm.create_model`` does.

    ``num_classes`` and ``in_chans`` default to the paper's data set (10 / 3 for CIFAR models, 1000 / 3
    for ImageNet models); ``num_classes=0``: no classifier, the model returns pooled features.
    ``pretrained``:

    - ``True``: the weights published for ``name`` (:func:`published_weights`): torchvision's
      ``IMAGENET1K_V1`` for the ImageNet ResNets, ResNeXts and wide ResNets, akamaster's CIFAR-10 ResNets
      for ``resnet20/32/44/56``; any other name is a :class:`ConfigError` ("no published weights").
    - ``"torchvision"`` / ``"akamaster"``: those sources by name (a file named so is ``"./torchvision"``).
    - a path: a reslab checkpoint (``.safetensors``) or a torchvision-format state dict (a recognized
      foreign convention, akamaster's, is converted: :mod:`reslab.models.convert`).

    Published files come from the torch.hub cache (SHA-256 checked; :func:`reslab.models.hub.
    torchvision_weights`) and are downloaded only with ``download=True``; without the file that is a
    one-line :class:`~reslab.errors.CheckpointError`. The weights load strictly except, as timm's
    ``load_pretrained``: a classifier of another size is left freshly initialized, a first convolution
    with other input channels is adapted (``in_chans=1``: summed over the RGB channels; see
    :func:`reslab.models.weights.adapt_input_conv`); a ``UserWarning`` says what was not loaded as is.

    ``features_only=True`` (image models): a :class:`~reslab.models.features.FeatureListNet` whose
    ``forward`` returns the list of feature maps at ``out_indices``, timm's numbering (0: the stem before
    its max-pool, ``i``: stage ``i``, ``layer{i}``; default all). Other keyword arguments go to the builder
    (``shortcut="B"``, ``zero_init_residual=True``, ``drop_path_rate=0.1``, ``depth=...``).
    """
    entry = get_entry(name)
    if out_indices is not None and not features_only:
        raise ConfigError("out_indices applies only with features_only=True")
    if features_only and entry.task != "image-classification":
        raise ConfigError(f"features_only applies to image models; {name} is a {entry.task} model")
    path = _weights_path(name, pretrained, download)  # resolved (and checked) before the model is built
    if features_only and entry.num_classes:
        num_classes = 0  # the classifier is removed anyway: load none (timm's num_classes_pretrained=0)
    model = entry.build(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if path is not None:
        notes = load_adapted(model, path)
        if notes:
            warnings.warn(f"{name} from {Path(path).name}: {'; '.join(notes)}", UserWarning, stacklevel=2)
    if features_only:
        return FeatureListNet(model, out_indices)
    return model


def published_weights(name: str) -> str:
    """Where ``pretrained=True`` takes ``name``'s weights from: ``"torchvision"`` or ``"akamaster"``; a
    :class:`ConfigError` naming the models that have some when ``name`` has none."""
    if name in TORCHVISION_URLS:
        return TORCHVISION
    if name in AKAMASTER_FILES:
        return AKAMASTER
    raise ConfigError(
        f"no published weights for {name}: torchvision's exist for {', '.join(TORCHVISION_URLS)}; "
        f"akamaster's for {', '.join(AKAMASTER_FILES)}; or pass pretrained=PATH"
    )


def _weights_path(name: str, pretrained: bool | str | os.PathLike | None, download: bool) -> str | None:
    """The file ``pretrained`` names: itself, or the cached (or, with ``download``, fetched) file of
    torchvision's or akamaster's weights for ``name``."""
    source = published_weights(name) if pretrained is True else pretrained
    if download and source not in _DOWNLOADABLE:
        raise ConfigError('download=True applies only to pretrained=True, "torchvision" or "akamaster"')
    if source is None or source is False:
        return None
    if source == TORCHVISION:
        return str(torchvision_weights(name, download=download))
    if source == AKAMASTER:
        return str(akamaster_weights(name, download=download))
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f'pretrained must be True, False, a path, "torchvision" or "akamaster", got {source!r}'
        )
    return os.fspath(source)
