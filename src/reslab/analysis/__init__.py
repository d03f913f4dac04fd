"""Take residual networks apart: one measurement per module, each with a Python API and a CLI command
(``reslab analyze NAME``) that writes a figure (PNG), the raw numbers (CSV / NPZ) and ``summary.md``.

- :mod:`~reslab.analysis.gradients`: ``||dL/dx_l||`` per unit, weight-gradient norms, shortcut vs branch
  share of the input gradient; :func:`without_batchnorm` builds the BN-free copy for comparison.
- :mod:`~reslab.analysis.responses`: std of every residual branch's output (He et al. 2016, Fig. 7).
- :mod:`~reslab.analysis.lesion`: deleting / swapping units (Veit et al. 2016, Fig. 3 and 5).
- :mod:`~reslab.analysis.paths`: exact path-length distribution and the gradient per path length
  (Veit et al. 2016, Sec. 6, Fig. 6).
- :mod:`~reslab.analysis.landscape`: 1-D and 2-D loss landscapes with filter-normalized directions
  (Li et al. 2018), resumable.
- :mod:`~reslab.analysis.stats`: Welch's t-test (Student's t from the incomplete beta function, no SciPy)
  and binomial margins: the stated tests behind every verdict and summary sentence.
- :mod:`~reslab.analysis.ode`: the Euler-step reading (Chen et al. 2018): relative step per unit, its
  cosine to the negative gradient (Jastrzebski et al. 2018), weight smoothness in depth (Sander et al.
  2022).

Targets (run directories, checkpoints, or fresh models) come from :func:`resolve_targets`.
"""

from reslab.analysis.common import (
    EvalData,
    Target,
    evaluate,
    load_eval_data,
    resolve_targets,
    without_batchnorm,
)
from reslab.analysis.directions import filter_normalize, random_direction
from reslab.analysis.gradients import GradientProfile, gradient_profile, run_gradients
from reslab.analysis.landscape import compute_landscape, run_landscape
from reslab.analysis.lesion import lesion_study, run_lesion, swapped_blocks
from reslab.analysis.ode import ODEProfile, ode_profile, run_ode, weight_smoothness
from reslab.analysis.paths import path_gradients, path_length_distribution, run_paths
from reslab.analysis.responses import response_std, run_responses
from reslab.models.base import deleted_blocks  # the lesion of one unit: it lives with the units

ANALYSES = ("gradients", "responses", "lesion", "paths", "landscape", "ode")

__all__ = [
    "ANALYSES",
    "EvalData",
    "GradientProfile",
    "ODEProfile",
    "Target",
    "compute_landscape",
    "deleted_blocks",
    "evaluate",
    "filter_normalize",
    "gradient_profile",
    "lesion_study",
    "load_eval_data",
    "ode_profile",
    "path_gradients",
    "path_length_distribution",
    "random_direction",
    "resolve_targets",
    "response_std",
    "run_gradients",
    "run_landscape",
    "run_lesion",
    "run_ode",
    "run_paths",
    "run_responses",
    "swapped_blocks",
    "weight_smoothness",
    "without_batchnorm",
]
