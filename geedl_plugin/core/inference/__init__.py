"""Inference: ONNX models over rasters of any size, vectorized and evaluated predictions, and the
pixel CNN compiled to Earth Engine.

Public entry points (each module imports onnxruntime / ee only when used):

- :func:`run_predict` (``runner``) with :class:`PredictParams` -> :class:`PredictResult`: the CLI
  ``predict`` command, the dock's QgsTask and the Processing algorithm all call it in-process;
- :func:`~.vectorize.vectorize_prediction`: class map -> label-layer polygons (source = model);
- :func:`~.evaluate.evaluate`: prediction vs truth raster/vector -> metrics + error map;
- :mod:`.ee_compile` / :mod:`.ee_deploy`: the pixel CNN as an Earth Engine operation list.
"""

from .runner import PredictParams, PredictResult, run_predict

__all__ = ["PredictParams", "PredictResult", "run_predict"]
