"""Graph rewrites for ONNX Runtime: tf2onnx's twelve-op layer norms become one LayerNormalization
(same outputs; a CNN's global pooling untouched), and dense layers written as Gemm are quantized
by dynamic int8 as MatMuls are."""

from __future__ import annotations

from collections import Counter

import numpy as np


def _ops(path) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _sequence_model():
    from compressor import keras_env

    tfk = keras_env.tf_keras()
    L = tfk.layers
    x = tfk.Input((6, 8), name="tokens")
    # epsilons below 1e-5 (BERT's 1e-12) make tf-keras compute the moments, which tf2onnx writes
    # in twelve ops; at larger ones it uses a fused batch norm, one ONNX BatchNormalization already
    h = L.LayerNormalization(epsilon=1e-12, name="first_norm")(x)
    h = L.Dense(8, activation="gelu", name="mix")(h)
    h = L.LayerNormalization(epsilon=1e-6, name="second_norm")(L.Add()([x, h]))
    pooled = L.Dense(5, activation="tanh", name="pooled")(L.Flatten()(h))
    model = tfk.Model(x, L.Dense(3, activation="softmax", name="classes")(pooled))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # norms whose scale and shift are not 1 and 0
        if isinstance(layer, L.LayerNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, 8).astype(np.float32), rng.normal(0, 0.5, 8).astype(np.float32)])
    return model


def test_tf2onnx_layer_norms_become_one_op_each_with_the_same_outputs(tmp_path):
    import onnxruntime as ort

    from targets.runtimes.onnx_runtime import convert_keras

    model = _sequence_model()
    path = tmp_path / "model.onnx"
    convert_keras(model, path)
    ops = _ops(path)
    assert ops["LayerNormalization"] == 2 and ops["GlobalAveragePool"] == 0 and ops["Reciprocal"] == 0
    x = np.random.default_rng(1).normal(1.0, 3.0, (16, 6, 8)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"tokens": x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_an_onnx_source_with_the_pattern_is_fused_and_a_cnn_pool_is_not(tmp_path, monkeypatch):
    """An ONNX file a user converted with tf2onnx gets the same rewrite in its ONNX Runtime
    artifacts (the file itself untouched); global average pooling over a feature map (rank 4)
    is no layer norm."""
    from compressor import keras_env
    from compressor.data import Dataset
    from compressor.models import load_source
    from targets import export
    from targets.runtimes.onnx_runtime import convert, convert_keras

    sequence = tmp_path / "sequence.onnx"
    with monkeypatch.context() as patch:  # the file as tf2onnx writes it
        patch.setattr(convert, "fuse_layer_norms", lambda model: 0)
        convert_keras(_sequence_model(), sequence)
    before = sequence.read_bytes()
    assert _ops(sequence)["GlobalAveragePool"] == 4 and _ops(sequence)["LayerNormalization"] == 0
    x = np.random.default_rng(3).normal(0, 2, (32, 6, 8)).astype(np.float32)
    result = export(load_source(sequence), "onnx-fp32", out_dir=tmp_path / "out", validation=Dataset(x, None, "t"))
    assert result.manifest["parity"]["passed"] and result.manifest["parity"]["max_abs"] < 1e-5
    assert _ops(result.folder / "model.onnx")["LayerNormalization"] == 2
    assert sequence.read_bytes() == before

    tfk = keras_env.tf_keras()
    L = tfk.layers
    image = tfk.Input((8, 8, 3), name="image")
    cnn_path = tmp_path / "cnn.onnx"
    convert_keras(tfk.Model(image, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(image)))), cnn_path)
    pools = _ops(cnn_path)["GlobalAveragePool"] + _ops(cnn_path)["ReduceMean"]
    images = np.random.default_rng(4).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    result = export(load_source(cnn_path), "onnx-fp32", out_dir=tmp_path / "cnn", validation=Dataset(images, None, "i"))
    ops = _ops(result.folder / "model.onnx")
    assert pools == 1 and ops["GlobalAveragePool"] + ops["ReduceMean"] == 1 and ops["LayerNormalization"] == 0


def _gemm_model(path) -> None:
    """Two dense layers as tf2onnx writes them on 2-D inputs: Gemm with (out, in) weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (16, 12)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1"),
               numpy_helper.from_array(rng.normal(0, 0.3, (4, 16)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="dense1"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1, beta=0.0, name="dense2")]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_dynamic_int8_quantizes_dense_layers_written_as_gemm(tmp_path):
    import onnx

    from compressor.data import Dataset
    from compressor.models import load_source
    from targets import export

    path = tmp_path / "model.onnx"
    _gemm_model(path)
    x = np.random.default_rng(3).normal(0, 1, (64, 12)).astype(np.float32)
    result = export(load_source(path), "onnx-dynamic-int8", out_dir=tmp_path / "out", validation=Dataset(x, None, "x"))
    assert result.manifest["parity"]["passed"]
    artifact = onnx.load(str(result.folder / "model.onnx"))
    int8 = [t for t in artifact.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims]  # not zero points
    assert sorted(tuple(t.dims) for t in int8) == [(12, 16), (16, 4)]  # both layers' weights, as MatMul's (in, out)
    assert _ops(result.folder / "model.onnx")["Gemm"] == 0


def test_a_conversion_leaves_nothing_frozen_for_the_collector(tmp_path, monkeypatch):
    """tf2onnx's optimizers run after collections of the conversion's own objects only (the
    process's older ones frozen meanwhile); the freeze ends with the conversion, failed or not."""
    import gc

    import pytest
    import tf2onnx

    from compressor import keras_env
    from compressor.errors import ConversionError
    from targets.runtimes.onnx_runtime import convert_keras

    tfk = keras_env.tf_keras()
    x = tfk.Input((4,), name="x")
    convert_keras(tfk.Model(x, tfk.layers.Dense(2)(x)), tmp_path / "a.onnx")
    assert gc.get_freeze_count() == 0 and _ops(tmp_path / "a.onnx")["MatMul"] == 1

    def fails(*args, **kwargs):
        assert gc.get_freeze_count() > 0  # the collections during conversion skip the older objects
        raise RuntimeError("boom")

    monkeypatch.setattr(tf2onnx.convert, "from_keras", fails)
    with pytest.raises(ConversionError, match="boom"):
        convert_keras(tfk.Model(x, tfk.layers.Dense(3)(x)), tmp_path / "b.onnx")
    assert gc.get_freeze_count() == 0 and not (tmp_path / "b.onnx").exists()


def _attention_model(opset: int = 17, axis: int | None = None):
    """One attention head as a PyTorch export writes it: int64 ``input_ids`` and
    ``attention_mask``, the mask term ``(1 - mask) * -1e9`` added to the scores, a softmax, and
    a class head whose softmax reads a bias ``Add`` (no mask: not to be guarded)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    const = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)  # noqa: E731
    inits = [const("table", rng.normal(0, 1, (20, 16))), const("wq", rng.normal(0, 0.5, (16, 16))),
             const("wk", rng.normal(0, 0.5, (16, 16))), const("one", 1.0), const("big", -1e9),
             const("head", rng.normal(0, 1, (16, 3))), const("bias", [0.1, -0.2, 0.3]),
             numpy_helper.from_array(np.array([0, 1, -1], np.int64), "row"),
             numpy_helper.from_array(np.array(0, np.int64), "first")]
    softmax = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
             helper.make_node("MatMul", ["tokens", "wq"], ["q"]), helper.make_node("MatMul", ["tokens", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["maskf", "row"], ["mask3"]),
             helper.make_node("Sub", ["one", "mask3"], ["hidden"]), helper.make_node("Mul", ["hidden", "big"], ["term"]),
             helper.make_node("Add", ["scores", "term"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["weights"], name="attention_softmax", **softmax),
             helper.make_node("MatMul", ["weights", "tokens"], ["mixed"]),
             helper.make_node("Gather", ["mixed", "first"], ["pooled"], axis=1),
             helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
             helper.make_node("Add", ["logits", "bias"], ["biased"]),
             helper.make_node("Softmax", ["biased"], ["classes"], name="class_softmax", axis=-1)]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info(n, TensorProto.INT64, [None, None])
                                                   for n in ("input_ids", "attention_mask")],
                              [helper.make_tensor_value_info("classes", TensorProto.FLOAT, [None, 3]),
                               helper.make_tensor_value_info("weights", TensorProto.FLOAT, [None, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _padded(n: int = 12, length: int = 32) -> dict:
    rng = np.random.default_rng(5)
    lengths = rng.integers(3, length + 1, n)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(0, 20, (n, length)) * mask, "attention_mask": mask}


def test_a_masked_softmax_is_guarded_from_denormals_with_the_same_outputs(tmp_path):
    """The attention softmax reads Max(x, ReduceMax(x) - 80) in every ONNX Runtime artifact (the
    source file as it was); the class head's softmax, after a bias, is left alone; outputs equal
    the source's on sentences padded to different lengths, masked weights still 0 to float32."""
    import onnx
    import onnxruntime as ort

    from compressor.data import Dataset
    from compressor.models import load_source
    from targets import export

    source = tmp_path / "attention.onnx"
    onnx.save_model(_attention_model(), str(source))
    before = source.read_bytes()
    feeds = _padded()
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, feeds)
    for profile in ("onnx-fp32", "onnx-dynamic-int8"):
        result = export(load_source(source), profile, out_dir=tmp_path / profile, validation=Dataset(feeds, None, "t"))
        artifact = onnx.load(str(result.folder / "model.onnx"))
        readers = {name: n for n in artifact.graph.node for name in n.input}
        softmaxes = {n.name: n for n in artifact.graph.node if n.op_type == "Softmax"}
        guard = next(n for n in artifact.graph.node if n.output[0] == softmaxes["attention_softmax"].input[0])
        assert guard.op_type == "Max" and readers["biased"].name == "class_softmax", profile
        assert sum(n.op_type == "ReduceMax" for n in artifact.graph.node) == 1, profile
        assert result.manifest["parity"]["passed"], profile
        if profile == "onnx-fp32":
            got = ort.InferenceSession(str(result.folder / "model.onnx"),
                                       providers=["CPUExecutionProvider"]).run(None, feeds)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-30)
            hidden = feeds["attention_mask"][:, None, :].repeat(32, 1) == 0
            assert got[1][hidden].max() < 1e-30 and np.allclose(got[1].sum(-1), 1.0, atol=1e-6)
    assert source.read_bytes() == before


def test_the_guard_follows_the_opset_axis_rules():
    """Opset 18 reads ReduceMax's axes as an input; before opset 13 a softmax over axis 1 of a
    rank-3 tensor flattens axes 1 and 2, so no per-axis guard can stand for it: left alone."""
    import onnxruntime as ort

    from targets.runtimes.onnx_runtime.fusion import guard_masked_softmax

    feeds = _padded(4)
    for opset, axis, guarded in ((18, None, 1), (12, 1, 0), (12, 2, 1)):
        model = _attention_model(opset, axis)
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert guard_masked_softmax(model) == guarded, (opset, axis)
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-30)


def test_the_exact_gelu_is_written_as_onnx_runtime_fuses_it_with_the_same_outputs(tmp_path):
    """Keras' exact GELU (through the Erfc handler: 1 - Erf(-x * 0.7071)) converted as
    1 + Erf(x / sqrt 2): no Neg or Sub left, ONNX Runtime's optimized graph holds one fused
    Gelu per activation, and the outputs are the Keras model's."""
    import onnx
    import onnxruntime as ort

    from compressor import keras_env
    from targets.runtimes.onnx_runtime import convert

    keras = keras_env.tf_keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 16), name="x")
    gelu = lambda t: keras.activations.gelu(t, approximate=False)  # noqa: E731
    y = keras.layers.Dense(16, activation=gelu)(keras.layers.Dense(32, activation=gelu)(x))
    model = keras.Model(x, y)
    converted = convert._keras_to_onnx(model, tmp_path / "gelu.onnx").read_bytes()
    ops = Counter(n.op_type for n in onnx.load_from_string(converted).graph.node)
    assert ops["Erf"] == ops["Div"] == 2 and not ops["Neg"] and not ops["Sub"]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(converted, options, providers=["CPUExecutionProvider"])
    fused = Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert fused["Gelu"] == 2 and not fused["Erf"]
    feed = np.random.default_rng(1).normal(size=(3, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": feed})[0], model(feed).numpy(), rtol=1e-5, atol=1e-6)


def test_a_keras_encoders_conversion_is_guarded_and_written_as_it_is(tmp_path):
    """A tf-keras encoder's conversion guards each attention softmax itself, so the float model
    is a copy of the conversion's file, kept for the other targets (no parse and re-serialisation
    of its weights); outputs equal Keras' on sentences padded to different lengths; the file goes
    with the model."""
    import onnx
    import onnxruntime as ort

    from compressor.data import Dataset
    from compressor.models import load_source
    from targets import export
    from targets.runtimes.onnx_runtime import convert
    from tools import encoder

    model = encoder.build(encoder.Config(vocabulary=20, layers=2, hidden=16, intermediate=32))
    feeds = _padded()
    source = load_source(model)
    result = export(source, "onnx-fp32", out_dir=tmp_path / "out", validation=Dataset(feeds, None, "t"))
    kept = convert._keras_onnx(source.representation("keras"))  # the process's one conversion, a file
    assert (result.folder / "model.onnx").read_bytes() == kept.read_bytes() and result.manifest["parity"]["passed"]
    graph = onnx.load(str(kept))
    producers = {o: n for n in graph.graph.node for o in n.output}
    guarded = {n.name.split("/")[1]: producers[n.input[0]].op_type == "Max"
               for n in graph.graph.node if n.op_type == "Softmax"}
    assert guarded == {"attention_0": True, "attention_1": True, "classes": False}
    session = ort.InferenceSession(str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run([o.name for o in source.outputs], {k: feeds[k] for k in ("input_ids", "attention_mask")})
    want = source.predict([feeds[i.name] for i in source.inputs])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    del source, model
    import gc

    gc.collect()
    assert not kept.exists()
