"""Models: loading every format, the Keras 3 → tf-keras bridge, safety, inspection, and
the one :class:`SourceModel` interface (Keras and ONNX implementations).

Example:
    >>> from compressor.models import load_source
    >>> source = load_source("model.onnx")
    >>> source.inputs, source.op_types(), source.predict(x)
"""

from compressor.models.inspection import ModelReport, TensorSpec, inspect_model
from compressor.models.loading import LOADERS, detect_format, load_model, load_source
from compressor.models.source import KerasSource, SourceModel, as_source

__all__ = ["LOADERS", "KerasSource", "ModelReport", "SourceModel", "TensorSpec", "as_source", "detect_format",
           "inspect_model", "load_model", "load_source"]
