"""Take residual networks apart: one measurement per module, each with a Python API and a CLI command
(``reslab analyze NAME``) that writes a figure (PNG), the raw numbers (CSV / NPZ) and ``summary.md``.

- :mod:`~reslab.analysis.gradients`: ``||dL/dx_l||`` per unit, weight-gradient norms, shortcut vs branch
  share of the input gradient; :func:`without_batchnorm` builds the BN-free copy for comparison.
- :mod:`~reslab.analysis.responses`: std of every 3x3 layer's output after BN, per layer, over seeds (He et al. 2016,
  Fig. 7); :mod:`~reslab.analysis.response_claims` decides its two readings by stated tests.
- :mod:`~reslab.analysis.lesion`: deleting / swapping units (Veit et al. 2016, Fig. 3 and 5).
- :mod:`~reslab.analysis.paths`: exact path-length distribution and the gradient per path length
  (Veit et al. 2016, Sec. 6, Fig. 6).
- :mod:`~reslab.analysis.landscape`: 1-D and 2-D loss landscapes with filter-normalized directions
  (Li et al. 2018), resumable.
- :mod:`~reslab.analysis.stats`: Welch's t-test (SciPy's `ttest_ind` and t distribution)
  and binomial margins: the stated tests behind every verdict and summary sentence.
- :mod:`~reslab.analysis.ode`: the Euler-step reading (Chen et al. 2018): relative step per unit, its
  cosine to the negative gradient (Jastrzebski et al. 2018), weight smoothness in depth (Sander et al.
  2022).

Targets (run directories, checkpoints, or fresh models) come from :func:`resolve_targets`.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it: loaded on first use, so ``reslab --help`` (which lists
# :data:`ANALYSES`) imports no torch.
_LAZY = {
    **dict.fromkeys(("EvalData", "Target", "load_eval_data", "resolve_targets"), "targets"),
    **dict.fromkeys(("evaluate", "without_batchnorm"), "common"),
    **dict.fromkeys(("filter_normalize", "random_direction"), "directions"),
    **dict.fromkeys(("GradientProfile", "gradient_profile", "run_gradients"), "gradients"),
    **dict.fromkeys(("compute_landscape", "run_landscape"), "landscape"),
    **dict.fromkeys(("lesion_study", "run_lesion", "swapped_blocks"), "lesion"),
    **dict.fromkeys(("ODEProfile", "ode_profile", "run_ode", "weight_smoothness"), "ode"),
    **dict.fromkeys(("path_gradients", "path_length_distribution", "run_paths"), "paths"),
    **dict.fromkeys(("response_std", "run_responses"), "responses"),
    "ANALYSES": "command",
}
_ELSEWHERE = {"deleted_blocks": "reslab.models.base"}  # the lesion of one unit: it lives with the units

__all__ = sorted([*_LAZY, *_ELSEWHERE])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"reslab.analysis.{_LAZY[name]}"), name)
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'reslab.analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
