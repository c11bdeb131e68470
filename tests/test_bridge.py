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


def test_nested_sequential_with_an_input_bridges(tmp_path):
    """ConvNeXt's stem and downsampling blocks are Sequential models that start with an Input,
    called inside the functional model (twice here, as a shared block): tf-keras counts their
    calls from 1 where Keras 3 counts from 0. Rebuilding used to loop forever."""
    keras = keras_env.keras3()
    L = keras.layers
    block = keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(3, 1), L.LayerNormalization()], name="block")
    image = keras.Input((4, 4, 3))
    first = block(image)
    second = block(first)
    model = keras.Model(image, L.Dense(2)(L.Flatten()(first + second)))
    model.save(tmp_path / "nested.keras")
    converted = load_model(tmp_path / "nested.keras")
    assert [type(layer).__name__ for layer in converted.layers].count("Sequential") == 1
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(converted(x).numpy(), np.asarray(model(x)), atol=1e-5)


def test_a_channelwise_conv2d_is_bridged_as_depthwise_and_converts_to_onnx(tmp_path):
    """ConvNeXt's 7x7 convolution is a Conv2D with one group per channel. tf-keras runs grouped
    convolutions as XLA-compiled functions, which tf2onnx left as PartitionedCall nodes (every
    ONNX target of the zoo's ConvNeXt refused); as a DepthwiseConv2D it converts. A grouped
    Conv2D that is not channel-wise is refused in one line naming the layer."""
    import onnx
    import onnxruntime

    from compressor.errors import ConversionError
    from targets.runtimes.onnx_runtime import convert_keras

    keras = keras_env.keras3()
    keras.utils.set_random_seed(0)
    L = keras.layers
    image = keras.Input((6, 6, 4))
    x = L.Conv2D(8, 3, padding="same", groups=4, activation="relu", name="channelwise")(image)
    model = keras.Model(image, L.Dense(3)(L.Flatten()(x)))
    converted = bridge.to_tf_keras(model)
    assert type(converted.get_layer("channelwise")).__name__ == "DepthwiseConv2D"
    assert converted.get_layer("channelwise").depth_multiplier == 2
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(converted(x).numpy(), np.asarray(model(x)), atol=1e-5)
    convert_keras(converted, tmp_path / "m.onnx")
    assert "DepthwiseConv2D" not in {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, np.asarray(model(x)), atol=1e-5)

    grouped = keras.Model(image, L.Flatten()(L.Conv2D(4, 1, groups=2, name="two_groups")(image)))
    with pytest.raises(ConversionError, match=r"layer\(s\) 'two_groups' run as compiled TensorFlow functions"):
        convert_keras(bridge.to_tf_keras(grouped), tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


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


def test_keras3_activations_tf_keras_lacks_are_bridged_and_reload_safely(tmp_path):
    """MobileNetV3's hard_silu and others: tf-keras has no such names, and its hard_sigmoid is
    another function; the bridged copy must compute Keras 3's maths and reload in safe mode."""
    import numpy as np

    keras = keras_env.keras3()
    keras.utils.set_random_seed(2)
    L = keras.layers
    inputs = keras.Input((8,))
    x = L.Dense(8, activation="hard_silu")(inputs)
    x = L.Activation("hard_sigmoid")(x)
    x = L.Dense(8, activation="relu6")(x)
    x = L.Dense(8, activation="silu")(x)
    x = L.Activation("leaky_relu")(x)
    model = keras.Model(inputs, L.Dense(3, activation="softmax")(x))
    bridged = load_model(model)  # verified against the Keras 3 model (max abs diff <= 1e-5) on the way
    bridged.save(tmp_path / "bridged.keras")
    reloaded = load_model(tmp_path / "bridged.keras")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32) * 3
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_builtins_function_that_is_not_a_bridged_activation_is_still_refused():
    from compressor.errors import UnsafeModelError
    from compressor.models import safety

    layer = {"class_name": "Dense", "name": "d", "config": {"name": "d", "activation": {
        "module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"}}}
    with pytest.raises(UnsafeModelError, match="'function' comes from module 'builtins'"):
        safety.check_config(layer, source="m", trust_model=False)


def test_multi_head_attention_is_bridged_with_its_weights():
    """Keras 3 calls attention as layer(query, value) and keeps the input shapes off its config;
    tf-keras needs both to rebuild it (it was an internal KeyError: 'query_shape')."""
    import numpy as np

    keras = keras_env.keras3()
    keras.utils.set_random_seed(3)
    L = keras.layers
    tokens = keras.Input((6, 8))
    h = L.LayerNormalization()(tokens)
    x = L.Add()([tokens, L.MultiHeadAttention(num_heads=2, key_dim=4)(h, h)])
    model = keras.Model(tokens, L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(x)))
    bridged = load_model(model)
    x = np.random.default_rng(1).normal(size=(5, 6, 8)).astype(np.float32)
    np.testing.assert_allclose(bridged.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_arithmetic_with_numbers_and_mobilenet_v3_are_bridged():
    """`x + 3.0` in a Keras 3 functional model is a keras.src.ops call, not a layer (MobileNetV3's
    hard sigmoid is built so); the bridge makes each an equivalent Rescaling."""
    import numpy as np

    keras = keras_env.keras3()
    keras.utils.set_random_seed(4)
    L = keras.layers
    inputs = keras.Input((6,))
    x = L.Dense(6)(inputs)
    y = (1.0 - (x + 3.0) * 0.5) / 4.0 - x  # a number on either side; the last one tensor - tensor
    model = keras.Model(inputs, L.Dense(2)(y))
    data = np.random.default_rng(2).normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_allclose(load_model(model).predict(data, verbose=0), model.predict(data, verbose=0), atol=1e-5)
    stock = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                               include_preprocessing=False)
    images = np.random.default_rng(3).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(load_model(stock).predict(images, verbose=0), stock.predict(images, verbose=0),
                               atol=1e-5)


def test_a_copy_that_computes_something_else_is_refused(monkeypatch):
    """tf-keras' hard_sigmoid (0.2x + 0.5) is not Keras 3's (relu6(x + 3) / 6): a bridge that took
    the name as it is would compute another model; the output check refuses it."""
    from compressor.errors import ConversionError
    from compressor.models import activations

    monkeypatch.setattr(activations, "RENAMED", {})  # hard_sigmoid left to tf-keras' own meaning
    keras = keras_env.keras3()
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="hard_sigmoid")(keras.layers.Dense(8)(inputs)))
    with pytest.raises(ConversionError, match="differs from the Keras 3 model"):
        load_model(model)


def _scaled_dense_class(keras):
    @keras.saving.register_keras_serializable(package="bridge_test")
    class ScaledDense(keras.layers.Layer):
        """A registered custom layer (keras.ops inside, a learned scalar)."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

        def call(self, inputs):
            return keras.ops.softmax(keras.ops.matmul(inputs, self.kernel) * self.scale)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return ScaledDense


def test_layers_tf_keras_lacks_run_as_keras3_layers_and_export(tmp_path, digits8):
    """A custom layer the user trusts, and a Keras 3 built-in tf-keras lacks (RMSNormalization),
    run as Keras 3 layers inside the tf-keras model: same outputs, weights seen, every float
    runtime exports them."""
    from compressor.models import load_source
    from targets import export_many

    keras = keras_env.keras3()
    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="conv")(image))
    x = keras.layers.RMSNormalization(name="rms")(x)
    model = keras.Model(image, _scaled_dense_class(keras)(10, name="classes")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    train, test = digits8
    model.fit(train.x, train.y, epochs=3, verbose=0)
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(UnsafeModelError, match="custom code"):
        load_source(path)
    source = load_source(path, trust_model=True)
    np.testing.assert_allclose(source.predict(test.x)[0], model.predict(test.x, verbose=0), atol=1e-5)
    assert {"ScaledDense", "RMSNormalization"} <= source.op_types()
    assert source.report().params == model.count_params()
    exported, failed = export_many(source, ["tflite-fp32", "onnx-fp32", "openvino-fp32", "tflite-int8"],
                                   out_dir=tmp_path / "out", calibration=train, validation=test)
    assert not failed, [f.message for f in failed]
    assert all(r.parity["passed"] for r in exported)
