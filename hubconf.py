"""torch.hub entry points: one per registered reslab model, generated from the registry.

    import torch
    model = torch.hub.load("path/to/reslab", "resnet56", source="local", pretrained=False)
    model = torch.hub.load("path/to/reslab", "resnet18", source="local", pretrained=True, download=True,
                           num_classes=10, in_chans=1)

Each entry ``NAME(pretrained=False, **kwargs)`` is ``reslab.create_model(NAME, pretrained=..., **kwargs)``:
``pretrained=True`` loads the weights published for NAME (torchvision's for the ImageNet ResNets,
akamaster's for resnet20/32/44/56) from the torch.hub cache and downloads them only with
``download=True``; ``num_classes``, ``in_chans``, ``features_only``, ``out_indices`` as in
``create_model``. The entries are made from ``reslab.list_models()``, as timm's hubconf.py exposes its
registry (``globals().update(timm.models._registry._model_entrypoints)``), so a new model gets one
without editing this file. A clone that is not pip-installed works too: its ``src/`` is put first on
``sys.path`` (a reslab already imported in the process is the one used).
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch"]

_SRC = str(_Path(__file__).resolve().parent / "src")
if _SRC not in _sys.path:
    _sys.path.insert(0, _SRC)

from reslab.models import create_model as _create_model  # noqa: E402
from reslab.models import get_entry as _get_entry  # noqa: E402
from reslab.models import list_models as _list_models  # noqa: E402


def _entry(name):
    def entry(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    summary = (_get_entry(name).builder.__doc__ or name).strip().split("\n\n")[0]
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{summary}\n\nreslab.create_model({name!r}, pretrained=pretrained, **kwargs)."
    return entry


globals().update({_name: _entry(_name) for _name in _list_models()})
