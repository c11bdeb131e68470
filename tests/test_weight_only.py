"""Weight-only compression on OpenVINO (NNCF ``compress_weights``), ONNX Runtime (MatMulNBits) and
LiteRT (the LiteRT Quantizer): a small transformer encoder's
MatMul and embedding weights stored in int8 or int4, activations in float, judged like every
quantized artifact, and refused where there is nothing to compress."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def encoder():
    """Token ids -> one of 5 classes (the first token's id mod 5), a layer of attention and an MLP."""
    from compressor import keras_env
    from compressor.data import Dataset

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    tokens = tfk.Input((16,), dtype="int32", name="tokens")
    h = L.Embedding(100, 64)(tokens)
    h = L.LayerNormalization()(h + L.MultiHeadAttention(4, 16)(h, h))
    h = L.LayerNormalization()(h + L.Dense(64)(L.Dense(256, activation="gelu")(h)))
    model = tfk.Model(tokens, L.Dense(5, activation="softmax")(L.Flatten()(h)))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, (900, 16)).astype(np.int32)
    y = x[:, 0] % 5
    model.compile(tfk.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:600], y[:600], epochs=12, batch_size=32, verbose=0)
    return model, Dataset(x[600:], y[600:], "tokens")


def _matmul_weight_bytes(xml) -> dict[str, int]:
    """Bytes of the weights feeding MatMul and Gather (embedding) ops, by element type, read from the IR."""
    import openvino as ov

    found: dict[str, int] = {}
    model = ov.Core().read_model(str(xml))
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or np.prod(op.get_output_shape(0)) < 256:
            continue  # shapes, scales and zero points
        kind = op.get_output_element_type(0)
        found[kind.get_type_name()] = found.get(kind.get_type_name(), 0) + int(
            np.prod(op.get_output_shape(0)) * kind.bitwidth // 8)
    return found


def test_int8_and_int4_weights_shrink_the_encoder_and_keep_its_answers(encoder, tmp_path):
    from targets import export

    model, data = encoder
    results = {t: export(model, t, out_dir=tmp_path, validation=data, max_drop=2.0)
               for t in ("openvino-fp32", "openvino-int8w", "openvino-int4w")}
    weights = {t: _matmul_weight_bytes(r.artifact) for t, r in results.items()}
    fp32 = weights["openvino-fp32"]["f32"]
    assert "i4" in weights["openvino-int4w"] and "u8" in weights["openvino-int8w"]
    for target, at_least in (("openvino-int8w", 3.9), ("openvino-int4w", 6.0)):
        stored = weights[target]
        # the weights NNCF compressed (MatMul and embedding; the attention's Einsum weights stay f32)
        replaced = fp32 - stored.get("f32", 0)
        compressed = sum(n for kind, n in stored.items() if kind in ("u8", "i8", "u4", "i4"))
        assert replaced > fp32 / 2 and replaced / compressed >= at_least, (target, stored)
    for target in ("openvino-int8w", "openvino-int4w"):
        manifest = results[target].manifest
        assert manifest["parity"]["passed"] and manifest["budget"]["drop_pp"] <= 2.0
        assert manifest["details"]["activations"] == "float" and manifest["details"]["weight_tensors"]
    assert results["openvino-int4w"].manifest["size"]["bytes"] < results["openvino-int8w"].manifest["size"]["bytes"]


def _onnx_weight_bytes(path) -> dict[str, int]:
    """Bytes of the initializers of at least 256 elements, by element type."""
    import onnx
    from onnx import helper

    found: dict[str, int] = {}
    for tensor in onnx.load(str(path)).graph.initializer:
        count = int(np.prod(tensor.dims))
        if count >= 256:
            kind = helper.tensor_dtype_to_np_dtype(tensor.data_type)
            stored = len(tensor.raw_data) if tensor.raw_data else count * kind.itemsize
            found[kind.name] = found.get(kind.name, 0) + stored
    return found


def test_onnx_runtime_matmulnbits_stores_the_encoders_weights_in_int8_and_int4(encoder, tmp_path):
    from targets import export

    model, data = encoder
    results = {t: export(model, t, out_dir=tmp_path, validation=data, max_drop=2.0)
               for t in ("onnx-fp32", "onnx-int8w", "onnx-int4w")}
    sizes = {t: r.manifest["size"]["bytes"] for t, r in results.items()}
    for target in ("onnx-int8w", "onnx-int4w"):
        manifest = results[target].manifest
        compressed = manifest["details"]["quantization"]["compressed_ops"]
        assert manifest["parity"]["passed"] and manifest["budget"]["drop_pp"] <= 2.0
        assert compressed["MatMulNBits"] >= 2 and manifest["details"]["quantization"]["activations"] == "float"
    # int4 compresses the embedding table too (GatherBlockQuantized; ONNX Runtime's Gather is 4-bit only)
    assert results["onnx-int4w"].manifest["details"]["quantization"]["compressed_ops"]["GatherBlockQuantized"] == 1
    # (the attention's projections, which tf-keras writes as Einsum, and int8w's embedding stay float)
    assert sizes["onnx-int4w"] < sizes["onnx-int8w"] < sizes["onnx-fp32"] * 0.6, sizes
    float_bytes = _onnx_weight_bytes(results["onnx-fp32"].artifact)["float32"]
    left = _onnx_weight_bytes(results["onnx-int4w"].artifact).get("float32", 0)
    assert left < float_bytes / 3


def test_the_litert_quantizer_stores_the_encoders_weights_in_int8_and_int4(encoder, tmp_path):
    """tflite-int8w / tflite-int4w: the LiteRT Quantizer's recipes on the float model; the dense
    layers' weights in int8 (per channel) or int4 (blocks of 32), judged like every artifact."""
    from targets import export

    model, data = encoder
    results = {t: export(model, t, out_dir=tmp_path, validation=data, max_drop=2.0)
               for t in ("tflite-fp32", "tflite-int8w", "tflite-int4w")}
    sizes = {t: r.manifest["size"]["bytes"] for t, r in results.items()}
    for target, recipe in (("tflite-int8w", "weight_only_wi8_afp32"), ("tflite-int4w", "dynamic_wi4b32_afp32")):
        manifest = results[target].manifest
        assert manifest["parity"]["passed"] and manifest["budget"]["drop_pp"] <= 2.0
        assert manifest["details"]["recipe"] == recipe and manifest["details"]["compressed_weight_tensors"] >= 2
    assert sizes["tflite-int4w"] < sizes["tflite-int8w"] < sizes["tflite-fp32"] * 0.5, sizes


def test_a_model_whose_weights_are_not_matmul_weights_is_refused_in_one_line(tmp_path):
    from compressor import keras_env
    from compressor.data import Dataset
    from compressor.errors import UnsupportedModelError
    from targets import compatibility, export

    tfk = keras_env.tf_keras()
    L = tfk.layers
    empty = tfk.Sequential([tfk.Input((8,)), L.Activation("relu")])
    cnn = tfk.Sequential([tfk.Input((16, 16, 3)), L.Conv2D(64, 3), L.Conv2D(64, 3), L.GlobalAveragePooling2D(),
                          L.Dense(4)])
    data = Dataset(np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32), None, "noise")
    with pytest.raises(UnsupportedModelError, match=r"int8w compresses MatMul and embedding weights, 0% of this"):
        export(empty, "openvino-int8w", out_dir=tmp_path, validation=data)
    assert not any(tmp_path.iterdir())
    # the convolutions hold 38,720 of 38,980 weights: weight-only would leave 99 % float
    assert "1% of this model's (under 50%)" in compatibility(cnn)["openvino-int4w"]
    assert compatibility(cnn)["openvino-int8"] is None
