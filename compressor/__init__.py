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
    "search",
]


def compress(model, recipe, *, data, eval_data=None, trust_model: bool = False, on_step=None):
    """See :func:`compressor.pipeline.compress`."""
    from compressor.pipeline import compress as _compress

    return _compress(model, recipe, data=data, eval_data=eval_data, trust_model=trust_model, on_step=on_step)


def search(model, targets, *, data, eval_data, out_dir, max_drop: float = 1.0, objective: str = "latency",
           **options) -> dict:
    """The fastest (or smallest) artifact per target within ``max_drop`` top-1 points: int8 and
    pruning trials, each exported with the budget and measured on this machine; the record
    ``compressor search --json`` prints. See :mod:`compressor.app.search` (``options``: its
    SearchConfig fields: recipes, jobs, executor, address, time_budget_s, cpu_class, ...).

    Example:
        >>> record = search("model.keras", ["tflite-int8"], data="train.npz", eval_data="test.npz", out_dir="best")
        >>> record["chosen"]["tflite-int8"]["recipe"]
    """
    from compressor.app.search import SearchConfig
    from compressor.app.search import search as _search

    return _search(SearchConfig(str(model), tuple(targets), str(data), str(eval_data), str(out_dir),
                                max_drop=max_drop, objective=objective, **options))


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
