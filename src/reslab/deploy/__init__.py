"""Deployment: export (ONNX, torch.export, safetensors), prediction on image files, backbone features.

- :func:`export_model` writes a verified, atomically published export of a run or checkpoint.
- :func:`run_predict`: ``reslab predict``, a run of any task on image files, through its task;
  :func:`load`, :func:`input_spec`, :func:`predict_files` (from :mod:`reslab.tasks.inputs`): classify
  images with the run's preprocessing.
- :func:`stage_info`, :class:`StageFeatures`: the multi-scale stage outputs of ``model.forward_stages``.
- :func:`stylize`: ``reslab stylize``, Gatys et al.'s style transfer by optimizing the image (docs/style.md).

See docs/deploy.md.
"""

from reslab.deploy.export import FORMATS, ExportError, ExportResult, export_model
from reslab.deploy.features import StageFeatures, StageInfo, stage_info
from reslab.deploy.predict import run_predict
from reslab.deploy.stylize import StylizeResult, stylize
from reslab.tasks.classify_files import Prediction, predict_files
from reslab.tasks.inputs import ImageReadError, InputSpec, input_spec, load

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportResult",
    "ImageReadError",
    "InputSpec",
    "Prediction",
    "StageFeatures",
    "StageInfo",
    "StylizeResult",
    "export_model",
    "input_spec",
    "load",
    "predict_files",
    "run_predict",
    "stage_info",
    "stylize",
]
