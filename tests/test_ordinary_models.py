"""Recipes on an ordinary hand-made CNN as Keras' examples build them (Rescaling, Conv with
ReLU, a BatchNormalization tfmot cannot fold, DepthwiseConv, Dense): each step does what it
can, says what it skipped, and a step that can do nothing says so instead of fine-tuning."""

import numpy as np
import pytest

from compressor import keras_env
from compressor.algorithms import pruning, qat, structured
from compressor.data import Dataset
from compressor.recipes import FineTune

FAST = FineTune(epochs=2, batch_size=64, learning_rate=1e-3)


@pytest.fixture(scope="module")
def ordinary(digits8):
    keras_env.set_seed(3)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    image = tfk.Input((8, 8, 1), name="image")
    x = L.Rescaling(1 / 255, name="rescaling")(image)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)  # after an activation: tfmot cannot fold it into the conv
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="depthwise")(x)
    x = L.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = tfk.Model(image, L.Dense(10, activation="softmax", name="classes")(x))
    train, test = (Dataset(d.x * 255, d.y, d.name + " 0-255") for d in digits8)
    model.compile(tfk.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=10, batch_size=32, verbose=0)
    return model, train, test


def test_magnitude_pruning_prunes_what_tfmot_prunes_and_names_the_rest(ordinary):
    model, train, _ = ordinary
    pruned, record = pruning.prune_magnitude(model, train, pruning.Prune(sparsity=0.5), FAST)
    assert set(record["layer_sparsity"]) == {"conv", "pointwise", "classes"}
    assert all(s >= 0.49 for s in record["layer_sparsity"].values())
    assert record["skipped_layers"] == {"depthwise": "tfmot does not prune DepthwiseConv2D"}
    assert "not pruned: depthwise" in record["notes"][0]


def test_structured_pruning_follows_channels_through_rescaling(ordinary):
    model, _, _ = ordinary
    pruned, record = structured.prune_channels(model, structured.PruneStructured(fraction=0.5))
    assert pruned.get_layer("conv").filters == 8 and pruned.get_layer("depthwise").depthwise_kernel.shape[2] == 8
    assert record["macs_after"] < 0.6 * record["macs_before"]


def test_a_structured_step_that_removes_nothing_says_so_and_skips_fine_tuning(ordinary):
    from compressor.algorithms.step import StepContext

    model, train, test = ordinary
    config = structured.PruneStructured(fraction=0.5, exclude=["conv", "pointwise"])  # nothing left to prune
    before = [w.copy() for w in model.get_weights()]
    result, record = structured._run(model, config, StepContext(train, test, FAST, 0, False))
    assert record["groups_pruned"] == [] and "removed nothing and skipped fine-tuning" in record["notes"][0]
    assert all(np.array_equal(a, b) for a, b in zip(before, result.get_weights()))  # not trained


def test_qat_quantizes_what_tfmot_supports_and_keeps_the_rest_float_at_int8_outputs(ordinary, tmp_path):
    from targets import export

    model, train, test = ordinary
    trained, record = qat.quantize_aware(model, train, qat.QAT(), FAST)
    assert record["left_float"] == {"rescaling": "Rescaling", "bn": "BatchNormalization"}
    assert record["notes"][0].endswith(": rescaling, bn")
    result = export(trained, "tflite-int8", out_dir=tmp_path, calibration=train, validation=test)
    assert result.parity["agreement"] >= 0.95
    excluded, record = qat.quantize_aware(model, train, qat.QAT(exclude=["Rescaling", "classes"]), FAST)
    assert "rescaling" not in record["left_float"] and record["excluded"] == ["Rescaling", "classes"]
    assert record["preserve"] == "none"  # small kernels are not "clustered"
    assert type(excluded.get_layer("quant_classes").quantize_config).__name__ == "NoOpQuantizeConfig"


def test_qat_on_a_token_model_leaves_the_integer_input_alone(tmp_path):
    """tfmot put a fake-quant on the int32 token input in front of the Embedding (TypeError,
    an internal error in prune50-int8 on the LSTM sample)."""
    from compressor.data import samples
    from targets import export

    tfk = keras_env.tf_keras()
    keras_env.set_seed(1)
    tokens = tfk.Input((64,), dtype="int32", name="tokens")
    x = tfk.layers.GlobalAveragePooling1D()(tfk.layers.Embedding(17, 8, name="embed")(tokens))
    model = tfk.Model(tokens, tfk.layers.Dense(10, activation="softmax", name="classes")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    train, test = samples.load("digits-tokens", "train"), samples.load("digits-tokens", "test")
    model.fit(train.x, train.y, epochs=3, verbose=0)
    trained, record = qat.quantize_aware(model, train, qat.QAT(), FAST)
    assert record["left_float"] == {"embed": "Embedding on integer input"}
    # on the class whose onnx-int8 takes uint8 activations: QAT's int8 grids keep int8 ones (uint8 collapsed to 20 %)
    result = export(trained, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test, cpu_class="x86-vnni")
    assert result.manifest["details"]["quantization"]["activations"] == "int8"
    assert result.parity["passed"]


def test_qat_keeps_activations_tfmot_cannot_fake_quantize_in_float(digits8, tmp_path):
    """MobileNetV3's hard_silu (bridged from Keras 3): tfmot raised 'Activation ... not supported'
    (an internal error in prune50-int8 on a stock MobileNetV3Small)."""
    from compressor.models import load_source

    keras = keras_env.keras3()
    image = keras.Input((8, 8, 1))
    x = keras.layers.Activation("hard_silu", name="hard_silu")(keras.layers.Conv2D(8, 3, name="conv")(image))
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax", name="classes")(
        keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "hs.keras")
    train, _ = digits8
    _, record = qat.quantize_aware(load_source(tmp_path / "hs.keras").representation("keras"), train, qat.QAT(), FAST)
    assert record["left_float"] == {"hard_silu": "Activation(hard_silu)"}
