"""The SavedModel TensorFlow's converters read: the model's serving signature and variables only,
converted to the same flatbuffer as Keras' own SavedModel; a model whose call reaches a resource
that is not a variable saved as Keras saves it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def _two_input_model():
    """Two named inputs, BatchNorm (moving statistics: non-trainable variables), two outputs."""
    from compressor import keras_env

    keras = keras_env.tf_keras()
    keras_env.set_seed(0)
    image, extra = keras.Input((12, 12, 3), name="image"), keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(8, 3, activation="relu")(image)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(8)(extra)])
    return keras.Model([image, extra], [keras.layers.Dense(3, name="scores")(x), keras.layers.Dense(1, name="box")(x)])


def _flatbuffer(directory: Path) -> bytes:
    from compressor import keras_env

    with keras_env.quiet_native():
        return keras_env.tf().lite.TFLiteConverter.from_saved_model(str(directory)).convert()


def _functions(directory: Path) -> int:
    """How many functions the SavedModel's graph holds."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((directory / "saved_model.pb").read_bytes())
    return sum(len(meta.graph_def.library.function) for meta in saved.meta_graphs)


def test_the_serving_saved_model_converts_to_the_keras_saved_models_flatbuffer():
    from compressor import keras_env
    from targets import saved_model

    model = _two_input_model()
    model.get_layer("norm").moving_mean.assign(np.full(8, 0.5, np.float32))  # not the initial values: saved, not rebuilt
    with tempfile.TemporaryDirectory() as work:
        ours, keras_own = Path(work) / "serving", Path(work) / "keras"
        saved_model.save(model, ours)
        with keras_env.quiet_native():
            keras_env.tf().saved_model.save(model, str(keras_own))
        assert _functions(ours) < _functions(keras_own) / 4  # not Keras' reloadable one, each layer's calls traced
        assert _flatbuffer(ours) == _flatbuffer(keras_own)
        loaded = keras_env.tf().saved_model.load(str(ours)).signatures["serving_default"]
        feeds = {"image": np.random.default_rng(0).random((2, 12, 12, 3), np.float32),
                 "extra": np.ones((2, 4), np.float32)}
        outputs = {k: v.numpy() for k, v in loaded(**feeds).items()}
    expected = model([feeds["image"], feeds["extra"]], training=False)
    assert set(outputs) == {"scores", "box"}
    np.testing.assert_allclose(outputs["scores"], expected[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["box"], expected[1].numpy(), rtol=1e-5, atol=1e-6)


def test_a_model_that_reaches_a_lookup_table_is_saved_as_keras_saves_it():
    from compressor import keras_env
    from targets import saved_model

    tf, keras = keras_env.tf(), keras_env.tf_keras()
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant([1, 2, 3], tf.int64), tf.constant([10.0, 20.0, 30.0])), default_value=0.0)

    class Lookup(keras.layers.Layer):  # the table is tracked by the layer, not a variable of the model
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.table = table

        def call(self, ids):
            return self.table.lookup(ids)

    ids = keras.Input((3,), dtype="int64", name="ids")
    model = keras.Model(ids, Lookup()(ids))
    with tempfile.TemporaryDirectory() as work:
        saved_model.save(model, Path(work) / "saved")
        assert _functions(Path(work) / "saved") > 4  # Keras' own, after the module's refusal (the layer's calls)
        loaded = tf.saved_model.load(str(Path(work) / "saved")).signatures["serving_default"]
        (values,) = loaded(ids=tf.constant([[1, 3, 7]], tf.int64)).values()
    np.testing.assert_array_equal(values.numpy(), [[10.0, 30.0, 0.0]])
