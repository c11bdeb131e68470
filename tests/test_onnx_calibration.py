"""ONNX Runtime's static int8 with its calibration run ahead of ``quantize_static`` (which then
reads the ranges from its cache, holding no model of its own through the calibration): the same
QDQ model to the byte as ``quantize_static`` calibrating itself, with and without strides, for
each calibration method; a model below opset 10 is left to quantize_static."""

from __future__ import annotations

import numpy as np
import pytest


def _model(opset: int = 17):
    """Conv -> Relu -> Flatten -> MatMul -> Add: weighted ops and activations to calibrate."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"kernel": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
               "dense": rng.normal(size=(4 * 6 * 6, 10)).astype(np.float32),
               "bias": rng.normal(size=(10,)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "kernel"], ["conv"]), helper.make_node("Relu", ["conv"], ["act"]),
             helper.make_node("Flatten", ["act"], ["flat"]), helper.make_node("MatMul", ["flat", "dense"], ["mixed"]),
             helper.make_node("Add", ["mixed", "bias"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
@pytest.mark.parametrize("stride", [None, 10])
def test_ranges_calibrated_ahead_give_quantize_statics_own_model(tmp_path, method, stride):
    import onnx
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from targets.runtimes.onnx_runtime.calibration import calibrate_to_cache, calibration_reader
    from targets.runtimes.onnx_runtime.quantize import _static_settings

    path = tmp_path / "m.onnx"
    onnx.save(_model(), str(path))
    x = np.random.default_rng(1).normal(size=(40, 3, 8, 8)).astype(np.float32)
    settings = _static_settings(False, "int8", method)
    settings["extra_options"] = {**settings["extra_options"], **({"CalibStridedMinMax": stride} if stride else {})}
    written = []
    for ahead in (False, True):
        reader, _ = calibration_reader(path, [x])
        cache, out = tmp_path / f"ranges{ahead}.json", tmp_path / f"q{ahead}.onnx"
        if ahead:
            assert calibrate_to_cache(path, reader, settings, cache, tmp_path) and cache.is_file()
            reader = None
        ort_quantize_static(str(path), str(out), reader, per_channel=True, calibration_cache_path=cache, **settings)
        written.append(out.read_bytes())
    assert written[0] == written[1]
    # nothing left beside the model, the two outputs and the two caches (the augmented model's folder removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "qFalse.onnx", "qTrue.onnx", "rangesFalse.json",
                                                          "rangesTrue.json"]


def test_a_model_below_opset_10_is_calibrated_by_quantize_static(tmp_path):
    import onnx

    from targets.runtimes.onnx_runtime.calibration import calibrate_to_cache, calibration_reader
    from targets.runtimes.onnx_runtime.quantize import _static_settings

    path = tmp_path / "old.onnx"
    onnx.save(_model(opset=9), str(path))
    reader, _ = calibration_reader(path, [np.zeros((4, 3, 8, 8), np.float32)])
    assert reader.opset == 9
    assert not calibrate_to_cache(path, reader, _static_settings(False, "int8", "minmax"), tmp_path / "r.json",
                                  tmp_path)
    assert not (tmp_path / "r.json").exists()
