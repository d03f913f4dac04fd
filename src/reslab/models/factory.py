"""``create_model``: a registered name, and optionally where its weights come from, to a model.

The registry (:mod:`reslab.models.registry`) knows the names and builds a network with fresh weights;
this module adds the weights: a reslab or torchvision-format file (:mod:`reslab.models.weights`),
torchvision's ImageNet weights from the torch.hub cache (:mod:`reslab.models.hub`) or akamaster's
CIFAR-10 ResNets (:mod:`reslab.models.convert`). Dependencies point one way: this module imports those
four; none of them imports this one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from reslab.errors import ConfigError
from reslab.models.convert import AKAMASTER, akamaster_weights
from reslab.models.hub import torchvision_weights
from reslab.models.registry import get_entry
from reslab.models.weights import load_pretrained

_DOWNLOADABLE = ("torchvision", AKAMASTER)  # the values of ``pretrained`` that may download


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: str | None = None,
    download: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` default to the paper's data set (10 / 3 for CIFAR models, 1000 / 3
    for ImageNet models). ``pretrained`` is a path to a reslab checkpoint (``.safetensors``) or a
    torchvision state-dict file (a recognized foreign convention, akamaster's CIFAR ResNets, is converted:
    :mod:`reslab.models.convert`), or ``"torchvision"``: torchvision's ``IMAGENET1K_V1`` weights for
    ``name`` from the torch.hub cache (:func:`reslab.models.hub.torchvision_weights`; SHA-256 checked;
    keep ``num_classes`` at 1000, then ``model.reset_classifier(n)``), or ``"akamaster"``: akamaster's
    CIFAR-10 ResNet-20/32/44/56 (:func:`reslab.models.convert.akamaster_weights`). Nothing is downloaded
    unless ``download=True`` (only with those two; a file named ``torchvision`` is ``"./torchvision"``).
    Other keyword arguments go to the builder (``shortcut="B"``, ``zero_init_residual=True``,
    ``drop_path_rate=0.1``, ``depth=...``).
    """
    entry = get_entry(name)
    path = _weights_path(name, pretrained, download)  # resolved (and checked) before the model is built
    model = entry.build(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if path is not None:
        load_pretrained(model, path)
    return model


def _weights_path(name: str, pretrained: str | None, download: bool) -> str | None:
    """The file ``pretrained`` names: itself, or the cached (or, with ``download``, fetched) file of
    torchvision's or akamaster's weights for ``name``."""
    if download and pretrained not in _DOWNLOADABLE:
        raise ConfigError('download=True applies only to pretrained="torchvision" or "akamaster"')
    if pretrained == "torchvision":
        return str(torchvision_weights(name, download=download))
    if pretrained == AKAMASTER:
        return str(akamaster_weights(name, download=download))
    return pretrained
