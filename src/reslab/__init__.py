"""reslab: build, train, reproduce and take apart deep residual networks (He et al. 2016 and successors).

``reslab.create_model``, ``reslab.list_models`` and ``reslab.model_info`` are loaded on first use, so
``import reslab`` (and ``reslab --help``) stays fast and torch-free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "list_models", "model_info"]

_LAZY = {name: "reslab.models" for name in __all__}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reslab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
