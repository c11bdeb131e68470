"""Compress trained Keras models for edge devices.

The public API is small: ``compress`` runs a recipe, ``load_model`` reads a Keras model
into tf-keras, ``load_source`` reads any supported model (Keras or ONNX) as a source
model, ``inspect_model`` describes a model, ``compressor.data`` feeds it data.
"""

from compressor import keras_env  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from compressor.errors import (
    BadInputError,
    CompressorError,
    ConversionError,
    ParityError,
    UnsafeModelError,
    UnsupportedModelError,
)
from compressor.version import __version__

__all__ = [
    "BadInputError",
    "CompressorError",
    "ConversionError",
    "ParityError",
    "UnsafeModelError",
    "UnsupportedModelError",
    "__version__",
    "compress",
    "inspect_model",
    "load_model",
    "load_source",
]


def compress(model, recipe, *, data, eval_data=None, trust_model: bool = False, on_step=None):
    """See :func:`compressor.pipeline.compress`."""
    from compressor.pipeline import compress as _compress

    return _compress(model, recipe, data=data, eval_data=eval_data, trust_model=trust_model, on_step=on_step)


def load_model(model, *, trust_model: bool = False, verify_bridge: bool = True):
    """See :func:`compressor.models.loading.load_model`."""
    from compressor.models.loading import load_model as _load

    return _load(model, trust_model=trust_model, verify_bridge=verify_bridge)


def load_source(model, *, trust_model: bool = False):
    """See :func:`compressor.models.loading.load_source`."""
    from compressor.models.loading import load_source as _load

    return _load(model, trust_model=trust_model)


def inspect_model(model):
    """See :func:`compressor.models.inspection.inspect_model`."""
    from compressor.models.inspection import inspect_model as _inspect

    return _inspect(model)
