"""The TFLite converter's Python re-encodings written with one copy of the model at a time: the
same flatbuffer to the byte, the library function put back after; a model with no clipped LSTM
cell handed back without a copy."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest


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
        with keras_env.quiet_native(), lean_reencoding() if lean else contextlib.nullcontext():
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


@pytest.mark.slow  # the same check as above, on another graph's shape
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


def _calibrated(model, feeds: list[np.ndarray], lean: bool) -> bytes:
    """The converter's calibrated float model (ranges, not yet quantized), with the lean
    calibration or the library's."""
    from types import SimpleNamespace

    from compressor import keras_env
    from targets.runtimes.litert.calibration import lean_calibration
    from targets.runtimes.litert.convert import _configure, _converter

    profile = SimpleNamespace(name="tflite-int8", precision="int8", input_type="float32", output_type="float32")
    with tempfile.TemporaryDirectory() as work:
        converter = _converter(model, Path(work))
        _configure(converter, profile, feeds, list(model.input_names))
        converter._experimental_calibrate_only = True
        with keras_env.quiet_native(), lean_calibration() if lean else contextlib.nullcontext():
            return converter.convert()


def _ranges(content: bytes) -> dict[str, tuple]:
    from tensorflow.lite.tools import flatbuffer_utils

    tensors = flatbuffer_utils.convert_bytearray_to_object(content).subgraphs[0].tensors
    return {t.name.decode(): (t.quantization.min[0], t.quantization.max[0]) for t in tensors
            if t.quantization is not None and t.quantization.min is not None}


def test_the_lean_calibration_of_a_cnn_is_the_librarys_to_the_byte(tiny_cnn):
    from tensorflow.lite.python.optimize import calibrator

    from targets.runtimes.litert.calibration import LeanCalibrator

    feeds = [np.random.default_rng(0).uniform(0, 1, (24, *tiny_cnn.input_shape[1:])).astype(np.float32)]
    library = calibrator.Calibrator, calibrator.add_intermediate_tensors
    lean = _calibrated(tiny_cnn, feeds, True)
    assert (calibrator.Calibrator, calibrator.add_intermediate_tensors) == library  # put back
    assert LeanCalibrator.library is library[0]
    assert lean == _calibrated(tiny_cnn, feeds, False) and len(_ranges(lean)) >= 4


def test_each_tensor_keeps_its_own_range_where_an_op_ran_in_place():
    """x -> x * -1000 -> + x -> sqrt: the library's logger reads an op's input again after the op,
    and an ADD run in place in the input's memory gave the input the output's range; here each
    range is the tensor's own, and the NaNs of sqrt of a negative are left out, as the library
    leaves them out."""
    from compressor import keras_env

    keras = keras_env.tf_keras()
    inputs = keras.Input((6,), name="x")
    scaled = keras.layers.Lambda(lambda t: t * -1000.0, name="scaled")(inputs)
    summed = keras.layers.Add(name="summed")([scaled, inputs])
    rooted = keras.layers.Lambda(lambda t: keras_env.tf().sqrt(t + 500.0), name="rooted")(summed)
    model = keras.Model(inputs, rooted, name="model")  # its name in the tensor names
    x = np.random.default_rng(1).uniform(0, 1, (16, 6)).astype(np.float32)
    got = _ranges(_calibrated(model, [x], True))
    summed_values = x * np.float32(-1000) + x
    finite = np.sqrt(summed_values[summed_values + 500 >= 0] + 500)
    assert (summed_values + 500 < 0).any() and finite.size  # NaNs in the run, and values beside them
    expected = {"serving_default_x:0": x, "model/scaled/mul": x * np.float32(-1000), "model/summed/add": summed_values,
                "model/rooted/add": summed_values + 500, "PartitionedCall:0": finite}
    assert set(got) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], (values.min(), values.max()), rtol=1e-6, err_msg=name)


def test_recurrent_models_and_custom_ops_go_to_the_librarys_calibrator():
    from compressor import keras_env
    from targets.runtimes.litert.calibration import LeanCalibrator, loggable_tensors

    keras = keras_env.tf_keras()
    inputs = keras.Input((5, 3))
    lstm = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    feeds = [np.random.default_rng(2).normal(size=(8, 5, 3)).astype(np.float32)]
    content = _converted(lstm, False, False)
    assert loggable_tensors(content) is None
    assert LeanCalibrator(content, ["SomeRegisterer"])._logged is None
    assert _calibrated(lstm, feeds, True) == _calibrated(lstm, feeds, False)
