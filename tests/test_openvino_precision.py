"""What was verified is what the user runs: an OpenVINO IR carries the inference precision its
parity check used (``rt_info/runtime_options``), the manifest records it, and compiling the IR
with those options gives the verified outputs, also on CPUs that would otherwise run it in bf16."""

import json

import numpy as np
import pytest

from compressor.models.onnx_source import load_onnx
from compressor.data import Dataset
from targets import export


def _layer_norm_model(path):
    """MatMul, LayerNormalization, MatMul: what bf16 execution visibly changes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) / 8, name)
               for name, shape in (("w1", (64, 256)), ("w2", (256, 64)), ("scale", (256,)), ("bias", (256,)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "scale", "bias"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return load_onnx(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov_precision")
    source = _layer_norm_model(folder / "ln.onnx")
    data = Dataset((np.random.default_rng(1).standard_normal((100, 64)) * 4).astype(np.float32), None, "noise")
    results = {t: export(source, t, out_dir=folder / "out", calibration=data, validation=data)
               for t in ("openvino-fp32", "openvino-int8")}
    return source, data, results


def _bf16_host() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("target", ["openvino-fp32", "openvino-int8"])
def test_the_ir_and_its_manifest_carry_the_verified_precision(exported, target):
    import openvino as ov

    from targets.runtimes.openvino_runtime import runtime_options

    result = exported[2][target]
    model = ov.Core().read_model(str(result.artifact))
    assert runtime_options(model) == {"INFERENCE_PRECISION_HINT": "f32"}
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "f32"
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["details"]["compile_properties"] == {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.mark.parametrize("target", ["openvino-fp32", "openvino-int8"])
def test_compiling_with_the_irs_own_options_gives_the_verified_outputs(exported, target):
    """What a device application does (README): read the IR, pass its runtime options."""
    import openvino as ov

    from targets import open_artifact
    from targets.runtimes.openvino_runtime import runtime_options

    source, data, results = exported
    core = ov.Core()
    model = core.read_model(str(results[target].artifact))
    compiled = core.compile_model(model, "CPU", runtime_options(model))
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    x = data.x[:1]
    device = compiled([x])[0]
    verified = open_artifact(results[target].folder).runner().run(x)[0]
    np.testing.assert_allclose(device, verified, rtol=0, atol=1e-6)
    if target == "openvino-fp32":
        reference = source.predict(x)[0]
        assert np.max(np.abs(device - reference)) <= results[target].parity["tolerance"]


@pytest.mark.skipif(not _bf16_host(), reason="needs a CPU with bf16 units (AMX or AVX-512 BF16)")
def test_on_a_bf16_host_a_plain_compile_differs_and_the_irs_options_do_not(exported):
    """The hazard the options guard against, measured on this host: OpenVINO's CPU plugin runs fp32
    IR in bf16 here unless told otherwise, and does not read the precision from the IR itself."""
    import openvino as ov

    from targets.runtimes.openvino_runtime import runtime_options

    source, data, results = exported
    core = ov.Core()
    path = str(results["openvino-fp32"].artifact)
    x = data.x[:20]
    reference = source.predict(x)[0]
    plain = core.compile_model(path, "CPU")
    tolerance = results["openvino-fp32"].parity["tolerance"]
    assert np.max(np.abs(np.concatenate([plain([x[i:i + 1]])[0] for i in range(20)]) - reference)) > tolerance
    model = core.read_model(path)
    pinned = core.compile_model(model, "CPU", runtime_options(model))
    outputs = np.concatenate([pinned([x[i:i + 1]])[0] for i in range(20)])
    assert np.max(np.abs(outputs - reference)) <= tolerance
