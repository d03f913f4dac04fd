"""The model zoo: ``create_model(name, ...)``, ``list_models(pattern)``, ``model_info(name)``.

See :mod:`reslab.models.zoo` for the networks, :mod:`reslab.models.blocks` for the residual units,
:mod:`reslab.models.base` for what every unit exposes and :mod:`reslab.models.weights` for checkpoints.
"""

from reslab.models.base import ResidualUnit, deleted_blocks, set_drop_path
from reslab.models.hub import torchvision_weights
from reslab.models.registry import count_params_and_macs, create_model, get_entry, list_models, model_info

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
