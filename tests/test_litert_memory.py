"""The TFLite converter's Python re-encodings written with one copy of the model at a time: the
same flatbuffer to the byte, the library function put back after; a model with no clipped LSTM
cell handed back without a copy."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def _twin_dense_model():
    """Two Dense layers with the same constant weights: their read-only buffers are duplicates,
    so the converter's de-duplication, one of the two re-encodings, has work to do."""
    from compressor import keras_env

    keras = keras_env.tf_keras()
    inputs = keras.Input((16,))
    twins = [keras.layers.Dense(32, kernel_initializer=keras.initializers.Constant(0.25),
                                bias_initializer="ones")(inputs) for _ in range(2)]
    joined = keras.layers.Concatenate()(twins)
    return keras.Model(inputs, keras.layers.Dense(4, kernel_initializer="glorot_uniform")(joined))


def _converted(model, lean: bool, dynamic: bool) -> bytes:
    from compressor import keras_env
    from targets.runtimes.litert.convert import _converter
    from targets.runtimes.litert.flatbuffer import lean_reencoding

    with tempfile.TemporaryDirectory() as work:
        converter = _converter(model, Path(work))
        if dynamic:
            converter.optimizations = [keras_env.tf().lite.Optimize.DEFAULT]
        with keras_env.quiet_native():
            if not lean:
                return converter.convert()
            with lean_reencoding():
                return converter.convert()


def test_the_lean_reencoding_writes_the_converters_own_bytes():
    from tensorflow.lite.tools import flatbuffer_utils

    from compressor import keras_env

    keras_env.set_seed(0)
    model = _twin_dense_model()
    library = flatbuffer_utils.convert_object_to_bytearray
    for dynamic in (False, True):
        plain, lean = _converted(model, False, dynamic), _converted(model, True, dynamic)
        assert isinstance(lean, bytes) and lean == plain
        assert flatbuffer_utils.convert_object_to_bytearray is library  # put back after the block
    # the duplicates were merged: one buffer holds the twins' kernel of 16 x 32 values of 0.25
    buffers = flatbuffer_utils.convert_bytearray_to_object(plain).buffers
    kernels = [b for b in buffers if b.data is not None and len(b.data) == 16 * 32 * 4]
    assert len(kernels) == 1 and np.all(np.frombuffer(kernels[0].data.tobytes(), np.float32) == 0.25)


def test_the_lean_encoding_is_the_librarys_on_a_graph_of_many_small_ops():
    """A graph that is mostly ops and tensor names, not constant data: the same bytes, and the
    extra buffer appended as the library appends it."""
    from tensorflow.lite.tools import flatbuffer_utils

    from compressor import keras_env
    from targets.runtimes.litert.flatbuffer import _encoded

    keras = keras_env.tf_keras()
    inputs = keras.Input((8,))
    x = inputs
    for _ in range(60):
        x = keras.layers.Activation("relu")(keras.layers.Add()([x, inputs]))
    content = _converted(keras.Model(inputs, x), False, False)
    model_object = flatbuffer_utils.convert_bytearray_to_object(content)
    assert _encoded(model_object) == flatbuffer_utils.convert_object_to_bytearray(model_object)
    assert _encoded(model_object, b"tail").endswith(b"tail")


def test_a_model_with_no_clipped_cell_is_not_copied():
    from compressor import keras_env
    from targets.runtimes.litert import unclip_lstm_cells

    keras_env.set_seed(0)
    content = _converted(_twin_dense_model(), True, False)
    unchanged, count = unclip_lstm_cells(content)
    assert count == 0 and unchanged is content
