"""The Keras 3 -> tf-keras bridge keeps architecture and outputs."""

import numpy as np
import pytest

from compressor import keras_env, load_model
from compressor.models import bridge
from compressor.errors import UnsafeModelError, UnsupportedModelError
from tests.helpers import models


def test_every_listed_layer_bridges_with_identical_outputs(keras3_all_layers):
    converted = load_model(keras3_all_layers)
    assert keras_env.is_tf_keras_model(converted)
    source_types = sorted(type(layer).__name__ for layer in keras3_all_layers.layers)
    assert sorted(type(layer).__name__ for layer in converted.layers) == source_types
    for wanted in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "ReLU", "PReLU",
                   "Add", "Concatenate", "MaxPooling2D", "AveragePooling2D", "Flatten", "Reshape", "Permute",
                   "Dropout", "Embedding", "LSTM", "GRU"):
        assert wanted in source_types
    inputs = bridge.sample_inputs(keras3_all_layers, seed=7)
    assert bridge.max_output_difference(keras3_all_layers, converted, inputs) <= 1e-5
    assert converted.count_params() == keras3_all_layers.count_params()


def test_sequential_bridges():
    source = models.keras3_sequential()
    converted = load_model(source)
    assert type(converted).__name__ == "Sequential"
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(converted(x).numpy(), np.asarray(source(x)), atol=1e-6)


def test_subclassed_model_is_refused_with_advice():
    keras = keras_env.keras3()

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__(name="tiny")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="subclassed.*SavedModel"):
        load_model(model, trust_model=True)


def test_option_without_tf_keras_equivalent_names_layer_and_option():
    keras = keras_env.keras3()
    inp = keras.Input((4,))
    dense = keras.layers.Dense(3, name="adapted")
    model = keras.Model(inp, dense(inp))
    dense.enable_lora(2)
    with pytest.raises(UnsupportedModelError, match="adapted.*lora_rank"):
        load_model(model)


def test_lambda_is_refused_then_bridged_with_opt_in():
    model = models.keras3_with_lambda()
    with pytest.raises(UnsafeModelError, match="double.*Lambda"):
        load_model(model)
    converted = load_model(model, trust_model=True)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(converted(x).numpy(), np.asarray(model(x)), atol=1e-6)
