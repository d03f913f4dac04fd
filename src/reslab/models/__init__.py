"""The model zoo: ``create_model(name, ...)``, ``list_models(pattern)``, ``model_info(name)``.

See :mod:`reslab.models.zoo` for the networks, :mod:`reslab.models.blocks` for the residual units,
:mod:`reslab.models.base` for what every unit exposes, :mod:`reslab.models.registry` for the names,
:mod:`reslab.models.factory` for building with weights (timm's ``pretrained`` / ``features_only``
keywords), :mod:`reslab.models.weights` for checkpoints and :mod:`reslab.models.features` for the
intermediate feature maps.
"""

# Importing the zoo modules runs their @register_model decorators, in this order: the order of
# list_models() and `reslab models`. This is the one place that imports them for that.
from reslab.models import zoo, senet, densenet, video, sr, iresnet, inception_resnet, johnson, agents  # noqa: F401  # isort: skip
from reslab.models.base import ResidualUnit, deleted_blocks, set_drop_path
from reslab.models.factory import create_model
from reslab.models.hub import torchvision_weights
from reslab.models.registry import count_params_and_macs, get_entry, list_models, model_info

__all__ = [
    "ResidualUnit",
    "count_params_and_macs",
    "create_model",
    "deleted_blocks",
    "get_entry",
    "list_models",
    "model_info",
    "set_drop_path",
    "torchvision_weights",
]
