"""One place that decides which Keras the engine runs on.

tensorflow-model-optimization only accepts tf-keras (Keras 2) models, so the engine
works on tf-keras. ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported for ``tf.keras`` to be tf-keras; Keras 3 (``import keras``) stays importable
beside it and is used only to read Keras 3 files before they are bridged.
TensorFlow is imported lazily so that ``compressor --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def tf():
    """Return the ``tensorflow`` module, imported on first use.

    TensorFlow's C++ start-up writes to stderr before its log level applies (CUDA
    probing, absl notices); it is muted with :func:`quiet_native`.
    """
    if "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    with quiet_native():
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def quiet_native():
    """Mute what native code writes to stdout/stderr, when ``COMPRESSOR_QUIET=1``.

    Converters (TFLite, TensorFlow start-up) print from C++, where Python's logging
    cannot reach. The CLI sets ``COMPRESSOR_QUIET=1`` unless ``-v`` is given.
    """
    if os.environ.get("COMPRESSOR_QUIET") != "1":
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            # Python-level stdout too (NNCF's progress bars, when sys.stdout is not fd 1). Not
            # stderr: a logging handler created meanwhile would keep the closed file.
            with contextlib.redirect_stdout(devnull):
                yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def tf_keras():
    """Return the ``tf_keras`` module (Keras 2), the engine's Keras."""
    tf()
    import tf_keras as module

    return module


def keras3():
    """Return the Keras 3 module, used to read Keras 3 models before bridging."""
    tf()
    import keras as module

    return module


def is_tf_keras_model(obj) -> bool:
    """True for a tf-keras model instance."""
    return isinstance(obj, tf_keras().Model)


def is_keras3_model(obj) -> bool:
    """True for a Keras 3 model instance (without importing Keras 3 needlessly)."""
    module = sys.modules.get("keras")
    return module is not None and isinstance(obj, module.Model)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    tf_keras().utils.set_random_seed(seed)
    tf().config.experimental.enable_op_determinism()


@contextlib.contextmanager
def releasing_graphs():
    """Let the graphs traced inside the block be freed once nothing else holds them.

    Every traced ``fit`` registers a ``CustomGradient-N`` entry in TensorFlow's global
    gradient registry (``ReplicaContext.all_reduce`` uses ``tf.custom_gradient``); its
    closure pins the whole training graph, so a process that compresses model after
    model grows by megabytes per model even after ``clear_session`` (tensorflow#97697,
    tf-keras PR 898). The gradient is only looked up while the training step is being
    traced, so the entries added inside the block are dropped on the way out. Tracing
    in another thread at the same moment could lose its entry: do not run compression
    concurrently with other TensorFlow training in one process.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):  # a TensorFlow that keeps it elsewhere: nothing to release
        yield
        return
    before = set(registry)
    try:
        yield
    finally:
        for name in [name for name in registry if name not in before and name.startswith("CustomGradient-")]:
            registry.pop(name, None)


def as_called(model, feeds):
    """``feeds`` (one array or tensor per ``model.inputs``, in that order) as ``model`` is called:
    a dict by key for a model built on a dict of inputs (``{"input_ids": ..., "attention_mask": ...}``,
    as transformer encoders are), else a list, or the one feed of a single-input model."""
    if isinstance(feeds, dict):
        return feeds
    feeds = list(feeds) if isinstance(feeds, (list, tuple)) else [feeds]
    struct = getattr(model, "_inputs_struct", None)  # Keras 3
    struct = getattr(model, "_nested_inputs", None) if struct is None else struct  # tf-keras
    if isinstance(struct, dict):
        position = {id(tensor): index for index, tensor in enumerate(model.inputs)}
        return {key: feeds[position[id(tensor)]] for key, tensor in struct.items()}
    return feeds if len(feeds) > 1 else feeds[0]
