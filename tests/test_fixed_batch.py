"""Models exported with their batch fixed (at 1, as a plain PyTorch export writes them) go through
every stage at the batch they accept, with no internal error: a CNN, and a CNN + LSTM recognizer
whose time-major output ``[T, 1, classes]`` is declared as ``[1, seqlen]``."""

import json

import numpy as np
import pytest

from compressor.models.onnx_source import load_onnx
from compressor.models.source import fixed_batch, run_at_batch
from tests.helpers.cli import run_cli

STEPS, FEATURES, HIDDEN, CLASSES = 16, 8, 12, 11
ONNX_TARGETS = ["onnx-fp32", "onnx-dynamic-int8", "onnx-int8", "openvino-fp32", "openvino-fp16", "openvino-int8"]


def _cnn(path, batch: int = 1):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 4, "w"),
               numpy_helper.from_array(np.zeros(8, np.float32), "b"),
               numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "d")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "d"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _recognizer(path):
    """Transpose to time-major, LSTM, per-step class scores: ``[T, 1, classes]``, declared ``[1, seqlen]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array((rng.standard_normal((1, 4 * HIDDEN, FEATURES)) / 3).astype(np.float32), "W"),
               numpy_helper.from_array((rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) / 3).astype(np.float32), "R"),
               numpy_helper.from_array(np.zeros((1, 8 * HIDDEN), np.float32), "B"),
               numpy_helper.from_array(rng.standard_normal((HIDDEN, CLASSES)).astype(np.float32), "D"),
               numpy_helper.from_array(np.array([1], np.int64), "axis")]
    nodes = [helper.make_node("Transpose", ["x"], ["steps"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["steps", "W", "R", "B"], ["Y"], hidden_size=HIDDEN),
             helper.make_node("Squeeze", ["Y", "axis"], ["states"]),
             helper.make_node("MatMul", ["states", "D"], ["logits"]),
             helper.make_node("LogSoftmax", ["logits"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "recognizer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, STEPS, FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _detector(path):
    """A YOLO-style head at a static 1x3x32x32: a strided convolution to 4 box + 10 class channels,
    reshaped with the batch baked in (``[1, 14, -1]``, as exporters write it) to ``[1, 14, 256]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(rng.standard_normal((14, 3, 3, 3)).astype(np.float32) / 3, "w"),
               numpy_helper.from_array(np.array([1, 14, -1], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Reshape", ["c", "shape"], ["flat"]), helper.make_node("Sigmoid", ["flat"], ["y"])]
    graph = helper.make_graph(nodes, "detector",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 14, 256])], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_run_at_batch_pads_the_last_chunk_and_puts_the_batch_axis_first():
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    calls = []

    def time_major(chunk):  # a model fixed at batch 4 returning [steps, batch, features]
        calls.append(len(chunk[0]))
        assert len(chunk[0]) == 4
        return [np.stack([chunk[0] * step for step in (1, 2)]), chunk[0].sum(1)]

    steps, sums = run_at_batch(time_major, [x], 4)
    assert calls == [4, 4, 4] and steps.shape == (10, 2, 3) and sums.shape == (10,)
    np.testing.assert_array_equal(steps[:, 1], x * 2)
    np.testing.assert_array_equal(sums, x.sum(1))
    assert fixed_batch([[1, 3, 16, 16], [1, 4]]) == 1 and fixed_batch([[None, 3]]) is None
    assert fixed_batch([[1, 3], [2, 3]]) is None


def test_a_source_fixed_at_batch_one_predicts_sample_by_sample(tmp_path):
    source = load_onnx(_recognizer(tmp_path / "recognizer.onnx"))
    x = np.random.default_rng(1).standard_normal((5, STEPS, FEATURES)).astype(np.float32)
    outputs = source.predict(x)[0]
    assert outputs.shape == (5, STEPS, CLASSES)
    for i in range(5):  # sample i's steps, not 16 rows taken across samples
        np.testing.assert_allclose(outputs[i], source.predict(x[i:i + 1])[0][0], rtol=0, atol=0)


@pytest.mark.parametrize("model, shape", [(_cnn, (3, 16, 16)), (_recognizer, (STEPS, FEATURES)),
                                          (_detector, (3, 32, 32))],
                         ids=["cnn", "cnn-lstm-time-major", "static-detector"])
def test_fixed_batch_models_go_through_every_onnx_target(tmp_path, capsys, model, shape):
    path = model(tmp_path / "model.onnx")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "train.npz", x=rng.standard_normal((130, *shape)).astype(np.float32))
    np.savez(tmp_path / "test.npz", x=rng.standard_normal((70, *shape)).astype(np.float32))
    code, _, err = run_cli(["export", str(path), "-t", "all", "--data", str(tmp_path / "train.npz"),
                            "--eval-data", str(tmp_path / "test.npz"), "-o", str(tmp_path / "out"), "--min-snr", "25",
                            "--max-drop", "50"], capsys)
    assert code == 0, err
    for target in ONNX_TARGETS:
        manifest = json.loads((tmp_path / "out" / target / "manifest.json").read_text())
        assert manifest["parity"]["passed"] and manifest["parity"]["samples"] == 70, target
    openvino = json.loads((tmp_path / "out" / "openvino-int8" / "manifest.json").read_text())
    assert openvino["details"]["fixed_batch"] == 1 and openvino["details"]["batch"] == 1


def _dynamic_cnn(path):
    """The CNN with a dynamic batch and dynamic height and width, as `torch.onnx.export` with
    dynamic axes writes it."""
    import onnx

    _cnn(path, batch=1)
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("N", None, "H", "W")):
        if name:
            dim.Clear()
            dim.dim_param = name
    model.graph.output[0].type.tensor_type.shape.dim[0].Clear()
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(model, str(path))
    return path


def test_input_shape_fixes_dynamic_dimensions_and_is_recorded(tmp_path, capsys):
    model = _dynamic_cnn(tmp_path / "dynamic.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (120, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    out = tmp_path / "out"
    code, _, err = run_cli(["export", str(model), "-t", "openvino-int8", "-t", "onnx-int8", "--data",
                            str(tmp_path / "data.npz"), "-o", str(out), "--input-shape", "x=1x3x16x16"], capsys)
    assert code == 0, err
    for target in ("openvino-int8", "onnx-int8"):
        manifest = json.loads((out / target / "manifest.json").read_text())
        assert manifest["source"]["input_shapes_fixed"] == {"x": [1, 3, 16, 16]}
        assert manifest["inputs"][0]["shape"] == [1, 3, 16, 16] and manifest["parity"]["passed"]
    for value, message in (("x=1x3x16", "3 dimensions for an input of 4"), ("image=1x3x16x16", "names no input"),
                           ("x=1x4x16x16", "dimension 1 is 3 in the model, not 4"), ("x=1xAx16x16", "whole numbers")):
        code, _, err = run_cli(["export", str(model), "-t", "onnx-fp32", "--data", str(tmp_path / "data.npz"),
                                "-o", str(tmp_path / "bad"), "--input-shape", value], capsys)
        assert code == 3 and message in err, (value, err)
    assert not (tmp_path / "bad").exists()
