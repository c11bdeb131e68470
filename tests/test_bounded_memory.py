"""Memory that stays bounded as the model grows: shape inference on an ONNX graph's skeleton gives
every shape full inference gives; constants are converted when read; a file's gzip size is
counted a block at a time with the same result as gzip -9 of the whole; ONNX Runtime calibrates
in strides when a stride's tensors would be large, with the same ranges."""

from __future__ import annotations

import gzip

import numpy as np


def _model():
    """Conv -> Flatten -> MatMul with a large weight -> Reshape to a constant shape -> Add: the
    Reshape's shape is a small integer constant that shape inference must read."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "kernel": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "dense": rng.normal(size=(4 * 6 * 6, 24)).astype(np.float32),
        "shape": np.array([-1, 4, 6], np.int64),
        "bias": np.float32(rng.normal(size=(4, 6))),
    }
    nodes = [helper.make_node("Conv", ["x", "kernel"], ["conv"]),
             helper.make_node("Flatten", ["conv"], ["flat"]),
             helper.make_node("MatMul", ["flat", "dense"], ["mixed"]),
             helper.make_node("Reshape", ["mixed", "shape"], ["grid"]),
             helper.make_node("Add", ["grid", "bias"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 6])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_skeleton_infers_every_shape_full_inference_does_without_the_large_weights():
    from onnx import shape_inference

    from compressor.models import onnx_graph

    model = _model()
    light = onnx_graph.skeleton(model)
    assert {t.name for t in light.graph.initializer} == {"shape", "bias"}  # 24 floats and the shape
    assert {"kernel", "dense"} <= {i.name for i in light.graph.input}
    full = onnx_graph.shapes_of(shape_inference.infer_shapes(model).graph)
    got = onnx_graph.shapes_of(onnx_graph.inferred(model))
    assert got["grid"] == got["y"] == [None, 4, 6] and got["mixed"] == [None, 24]
    assert {name: got[name] for name in full} == full
    assert len(model.graph.initializer) == 4  # the model itself untouched


def test_a_model_written_one_initializer_at_a_time_parses_back_the_same(tmp_path):
    """``onnx_graph.write``: the same message protobuf's own encoding gives (model fields, metadata,
    value infos, initializers from 1 to 2**21 bytes, so lengths of one to three varint bytes), and
    as many bytes."""
    import onnx
    from onnx import helper, numpy_helper

    from compressor.models import onnx_graph

    model = _model()
    model.producer_name, model.doc_string = "test", "d" * 300
    helper.set_model_props(model, {"key": "value"})
    model.graph.value_info.append(helper.make_tensor_value_info("conv", onnx.TensorProto.FLOAT, ["n", 4, 6, 6]))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(1 << 19, np.float32), "large"))
    want = model.SerializeToString()
    onnx_graph.write(model, tmp_path / "model.onnx")
    got = (tmp_path / "model.onnx").read_bytes()
    assert len(got) == len(want) and got != want  # the graph last
    parsed = onnx.load(str(tmp_path / "model.onnx"))
    assert parsed == model and parsed.SerializeToString() == want
    onnx.checker.check_model(str(tmp_path / "model.onnx"))


def test_the_lean_pre_processing_gives_the_model_onnx_runtimes_gives(tmp_path):
    """``graph._optimized_and_shaped`` (a session reading the file optimizes it, ONNX shapes are
    inferred on the skeleton) writes the model ``quant_pre_process`` writes: the same nodes,
    weights, value infos and mark, optimized or not, on a CNN and on a two-layer encoder."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from targets.runtimes.onnx_runtime import convert, graph
    from tools import encoder

    encoder_path = tmp_path / "encoder.onnx"
    convert._keras_to_onnx(encoder.build(encoder.Config(vocabulary=20, hidden=16)), encoder_path)
    onnx.save_model(_model(), str(tmp_path / "cnn.onnx"))
    for source in (tmp_path / "cnn.onnx", encoder_path):
        for optimize in (True, False):
            ours, theirs = tmp_path / "ours.onnx", tmp_path / "theirs.onnx"
            graph._optimized_and_shaped(source, ours, optimize)
            quant_pre_process(str(source), str(theirs), skip_symbolic_shape=True, skip_optimization=not optimize)
            a, b = onnx.load(str(ours)), onnx.load(str(theirs))
            assert a.graph.node == b.graph.node and a.graph.initializer == b.graph.initializer, (source, optimize)
            assert sorted(v.SerializeToString() for v in a.graph.value_info) == sorted(
                v.SerializeToString() for v in b.graph.value_info), (source, optimize)
            assert a.metadata_props == b.metadata_props and a.graph.output == b.graph.output, (source, optimize)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx", "encoder.onnx", "ours.onnx", "theirs.onnx"]


def test_constants_are_converted_only_when_read():
    from compressor.models import onnx_graph

    constants = onnx_graph.Constants(_model().graph)
    assert set(constants) == {"kernel", "dense", "shape", "bias"} and "dense" in constants
    assert constants._arrays == {}
    assert constants["shape"].tolist() == [-1, 4, 6]
    assert set(constants._arrays) == {"shape"}


def test_an_onnx_sources_report_counts_weights_zeros_and_macs(tmp_path):
    import onnx

    from compressor.models import load_source

    model = _model()
    dense = next(t for t in model.graph.initializer if t.name == "dense")
    values = onnx.numpy_helper.to_array(dense).copy()
    values[:36] = 0.0  # 36 of 144 rows
    dense.CopyFrom(onnx.numpy_helper.from_array(values, "dense"))
    onnx.save(model, str(tmp_path / "m.onnx"))
    report = load_source(tmp_path / "m.onnx").report()
    by_op = {layer.type: layer for layer in report.layers}
    assert by_op["Conv"].params == 4 * 3 * 9 and by_op["MatMul"].params == 144 * 24
    assert by_op["Conv"].macs == 36 * 108 and by_op["MatMul"].macs == 144 * 24
    assert by_op["MatMul"].sparsity == 0.25 and by_op["Add"].params == 24


def test_gzip_size_streams_to_the_same_count_as_gzip_9(tmp_path):
    from compressor.digests import gzip_size

    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=600_000).astype(np.float32), np.zeros(300_000, np.float32)]).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)  # 3.6 MB: several 1 MB blocks
    assert gzip_size(path) == len(gzip.compress(data, compresslevel=9, mtime=0))


def _calibrated_scales(path) -> dict:
    import onnx

    model = onnx.load(str(path))
    return {t.name: onnx.numpy_helper.to_array(t).tolist() for t in model.graph.initializer
            if t.name.endswith("_scale")}


def test_calibration_goes_in_strides_only_when_a_strides_tensors_are_large(tmp_path, monkeypatch):
    """200 samples of this model make 200 x 1,344 bytes of float tensors: one stride under the
    bound; under a 16 kB bound 12 samples fit, so strides of 10 (the largest divisor of 200 that
    fits), with the same min/max ranges as calibrating all at once."""
    import onnx
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from compressor.models import onnx_graph
    from targets.runtimes.onnx_runtime import calibration, quantize

    path = tmp_path / "m.onnx"
    onnx.save(_model(), str(path))
    x = np.random.default_rng(0).normal(size=(200, 3, 8, 8)).astype(np.float32)
    reader, strides = calibration.calibration_reader(path, [x])
    assert reader.names == ["x"] and strides == {}
    monkeypatch.setattr(calibration, "STRIDE_BYTES", 16 * 1024)
    # per sample: conv 4x6x6 + flat 144 + mixed 24 + grid 24 floats (the output is not counted)
    assert calibration._float_bytes_per_sample(onnx_graph.skeleton(_model()), {"x": x}) == (144 + 144 + 24 + 24) * 4
    reader, strides = calibration.calibration_reader(path, [x])
    assert strides == {"CalibStridedMinMax": 10}
    settings = quantize._static_settings(False, "int8", "minmax")
    scales = []
    for extra in ({}, strides):
        reader, _ = calibration.calibration_reader(path, [x])
        out = tmp_path / f"q{len(scales)}.onnx"
        ort_quantize_static(str(path), str(out), reader, per_channel=True,
                            **{**settings, "extra_options": {**settings["extra_options"], **extra}})
        scales.append(_calibrated_scales(out))
    assert scales[0] == scales[1] and len(scales[0]) >= 4


def test_calibration_of_a_graph_whose_shapes_are_unknown_goes_one_sample_at_a_time(tmp_path):
    """A Reshape to a shape computed at run time, as tf2onnx writes around a dense layer on a
    dynamic sequence (rows = batch x sequence through ReduceProd, which ONNX's shape inference
    does not evaluate): the tensors' sizes are unknown, so one sample per stride."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    const = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "two"], ["leading"]),
             helper.make_node("ReduceProd", ["leading"], ["count"], keepdims=1),
             helper.make_node("Concat", ["count", "eight"], ["flat"], axis=0),
             helper.make_node("Reshape", ["x", "flat"], ["rows"]),
             helper.make_node("MatMul", ["rows", "w"], ["mixed"]),
             helper.make_node("Reshape", ["mixed", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", 8])],
                              [numpy_helper.from_array(np.eye(8, dtype=np.float32), "w"),
                               const("zero", [0]), const("two", [2]), const("eight", [8])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    from targets.runtimes.onnx_runtime import calibration

    reader, strides = calibration.calibration_reader(path, [np.zeros((30, 5, 8), np.float32)])
    assert strides == {"CalibStridedMinMax": 1}
    assert [reader.get_next()["x"].shape for _ in range(2)] == [(1, 5, 8)] * 2


def test_settling_after_a_stage_frees_the_cycles_it_left():
    """A converter's traced graphs hold reference cycles: settle() collects them (and returns the
    heap), so the next stage does not start from the last one's garbage."""
    import weakref

    from compressor import memory

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other, a.weights = b, a, np.ones(1 << 20)
    alive = weakref.ref(a)
    del a, b
    import gc

    gc.disable()  # no automatic collection between the del and the settle
    try:
        assert alive() is not None
        memory.settle()
        assert alive() is None
    finally:
        gc.enable()


def test_inference_batches_hold_a_few_large_images_or_many_small_ones(tmp_path):
    """A runtime holds one batch's activations (ONNX Runtime's arena keeps its largest): batches of
    320x320 images are small, batches of 28x28 digits are not, and the outputs are the same as one
    batch of everything."""
    import onnx
    from onnx import TensorProto, helper

    from compressor.memory import batch_for
    from compressor.models import load_source
    from targets.runtime import run_batched

    images, digits = np.ones((20, 320, 320, 3), np.float32), np.ones((200, 28, 28, 1), np.float32)
    assert batch_for([images]) == 3 and batch_for([digits]) == 64 and batch_for([digits], most=16) == 16
    assert batch_for([np.ones((2, 4096, 4096), np.float32)]) == 1

    class Recorder:
        sizes: list[int] = []

        def run(self, inputs):
            self.sizes.append(len(inputs[0]))
            return [inputs[0].sum(axis=(1, 2, 3))]

    recorder = Recorder()
    summed = run_batched(recorder, images)[0]
    assert recorder.sizes == [3] * 6 + [2] and np.array_equal(summed, images.sum(axis=(1, 2, 3)))

    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)], "mean",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 320, 320, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    path = tmp_path / "mean.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    varied = np.random.default_rng(0).normal(size=images.shape).astype(np.float32)
    source = load_source(path)
    assert np.allclose(source.predict(varied)[0], source.predict(varied, batch_size=20)[0], atol=1e-6)


def test_the_lean_freezing_gives_the_model_tf2onnx_own_freezing_gives(monkeypatch, tmp_path):
    """Keras -> ONNX freezes the model to a graph def alone (no function built from it, no third
    graph): the same ops, the same weights and the same outputs as tf2onnx's own freezing, on a
    model with what the converter rewrites (a batch norm, a layer norm, an exact GELU through
    the Erfc handler, dense layers)."""
    import contextlib
    from collections import Counter

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from compressor import keras_env
    from targets.runtimes.onnx_runtime import convert, lean

    keras = keras_env.tf_keras()
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(6, 3, use_bias=False)(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((36, 6))(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dense(8, activation=lambda t: keras.activations.gelu(t, approximate=False))(x)
    model = keras.Model(image, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    for layer in model.layers:  # batch statistics that are not the initial ones, so a lost one shows
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([w + np.random.default_rng(1).uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])

    graph_def_only = convert._keras_to_onnx(model, tmp_path / "graph_def_only.onnx").read_bytes()
    monkeypatch.setattr(lean, "freezing_to_a_graph_def", contextlib.nullcontext)  # tf2onnx's own freezing
    own = convert._keras_to_onnx(model, tmp_path / "own.onnx").read_bytes()
    graphs = [onnx.load_from_string(b).graph for b in (graph_def_only, own)]
    assert Counter(n.op_type for n in graphs[0].node) == Counter(n.op_type for n in graphs[1].node)
    assert "Erf" in {n.op_type for n in graphs[0].node}  # the exact GELU, through the Erfc handler
    weights = [sorted(numpy_helper.to_array(t).tobytes() for t in g.initializer) for g in graphs]
    assert weights[0] == weights[1]
    feed = {"image": np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype(np.float32)}
    outputs = [ort.InferenceSession(b).run(None, feed)[0] for b in (graph_def_only, own)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], model(feed["image"]).numpy(), rtol=1e-4, atol=1e-5)


def test_weights_kept_from_grappler_and_held_once_give_the_same_model(monkeypatch, tmp_path):
    """Keras -> ONNX with the large weights kept from TensorFlow's graph optimizer (placeholders
    while it runs) and held once by tf2onnx's graph (no copy in a constant's node proto, none
    in the optimizers' roll-back copies): the same ops, weights and outputs as without, on a
    model whose weights above 64 KB are read by a convolution, a dense layer, attention's
    einsums and, not as a weight, by an addition (which grappler still sees)."""
    import contextlib
    from collections import Counter

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from compressor import keras_env
    from targets.runtimes.onnx_runtime import convert, lean

    keras = keras_env.tf_keras()
    keras.utils.set_random_seed(0)

    class AddTable(keras.layers.Layer):  # a large constant read by an Add, not as a weight
        def build(self, shape):
            self.table = self.add_weight(name="table", shape=tuple(shape[1:]), trainable=False,
                                         initializer=keras.initializers.RandomNormal(seed=3))

        def call(self, x):
            return x + self.table

    image = keras.Input((6, 6, 32), name="image")
    x = keras.layers.Conv2D(64, 3, padding="same")(image)  # 73 KB kernel
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((36, 64))(x)
    biased = {"bias_initializer": "random_normal"}  # as trained: a bias of zeros is dropped by grappler alone
    x = keras.layers.Dense(256, **biased)(x)  # 64 KB + bias
    x = keras.layers.MultiHeadAttention(4, 32, **biased)(x, x)  # 128 KB einsum kernels
    x = AddTable()(keras.layers.Dense(512, **biased)(x))  # a 36 x 512 table: 72 KB
    model = keras.Model(image, keras.layers.Dense(3)(keras.layers.Flatten()(x)))

    held = convert._keras_to_onnx(model, tmp_path / "held.onnx").read_bytes()
    hidden = []
    monkeypatch.setattr(lean, "hide_weights", lambda graph_def, weights: hidden.append(1) or {})
    monkeypatch.setattr(lean, "weights_held_once", contextlib.nullcontext)
    plain = convert._keras_to_onnx(model, tmp_path / "plain.onnx").read_bytes()
    assert hidden  # the plain conversion ran without hiding
    graphs = [onnx.load_from_string(b).graph for b in (held, plain)]
    assert Counter(n.op_type for n in graphs[0].node) == Counter(n.op_type for n in graphs[1].node)
    weights = [sorted(numpy_helper.to_array(t).tobytes() for t in g.initializer) for g in graphs]
    assert weights[0] == weights[1]
    assert max(len(w) for w in weights[0]) > lean.HIDDEN_BYTES
    feed = {"image": np.random.default_rng(2).normal(size=(2, 6, 6, 32)).astype(np.float32)}
    outputs = [ort.InferenceSession(b).run(None, feed)[0] for b in (held, plain)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], model(feed["image"]).numpy(), rtol=1e-4, atol=1e-4)


def test_only_constants_read_as_weights_go_past_grappler_hidden():
    """A constant above 64 KB read by a convolution through an Identity (and ordered by a
    control input) is hidden, its value handed over by name; one of the same size read by an
    Add, and a small one, stay for grappler to fold."""
    import tensorflow as tf

    from targets.runtimes.onnx_runtime import lean

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 8, 8, 32), name="x")
        kernel = tf.constant(np.ones((3, 3, 32, 64), np.float32), name="kernel")
        table = tf.constant(np.ones((8, 8, 64 * 32), np.float32)[..., :64], name="table")
        small = tf.constant(np.ones((64,), np.float32), name="small")
        read = tf.identity(kernel, name="read")
        with tf.control_dependencies([read]):
            y = tf.nn.conv2d(x, read, 1, "SAME") + table + small
        tf.identity(y, name="y")
    graph_def = graph.as_graph_def()
    weights: dict = {}
    hidden = lean.hide_weights(graph_def, weights)
    assert set(hidden) == set(weights) == {"kernel"}
    assert len(weights["kernel"]) == 3 * 3 * 32 * 64 * 4
    ops = {node.name: node.op for node in graph_def.node}
    assert (ops["kernel"], ops["table"], ops["small"]) == ("Placeholder", "Const", "Const")
    assert hidden["kernel"].op == "Const" and not hidden["kernel"].attr["value"].tensor.tensor_content
