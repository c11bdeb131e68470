"""The sensitivity pass ranks candidates from full int8 (one quantization for the whole ranking):
"these ops alone in int8" edited from the full int8 model ranks layers as quantizing the model
again per candidate does, on ONNX Runtime and OpenVINO."""

import numpy as np
import pytest

from compressor.data import Dataset
from compressor.models.onnx_source import load_onnx
from targets.profiles import get_profile
from targets.runtime import get_runtime
from tests.test_fixed_batch import _cnn


def _noise(outputs, reference) -> float:
    return float(np.mean((outputs - reference) ** 2))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranking")
    source = load_onnx(_cnn(folder / "cnn.onnx", batch=None))
    x = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32)
    return folder, source, Dataset(x, None, "noise")


def _run(runtime, path, details, x):
    runner = runtime.load(path, details=details)
    try:
        return runner.run(x)[0]
    finally:
        runner.close()


@pytest.mark.parametrize("target", ["onnx-int8", "openvino-int8"])
def test_ranking_from_full_int8_agrees_with_quantizing_again(model, tmp_path, target):
    folder, source, data = model
    profile = get_profile(target).for_cpu("x86-avx2")
    runtime = get_runtime(profile.runtime)
    mixed = runtime.mixed(source, profile, data, tmp_path)
    suffix = mixed.suffix
    reference = source.predict(data.x)[0]
    edited, again = {}, {}
    for node in mixed.nodes:
        details = mixed.write_alone([node], tmp_path / f"alone{suffix}")
        edited[node] = _noise(_run(runtime, tmp_path / f"alone{suffix}", details, data.x), reference)
        details = mixed.write([n for n in mixed.nodes if n != node], tmp_path / f"again{suffix}")
        again[node] = _noise(_run(runtime, tmp_path / f"again{suffix}", details, data.x), reference)
    assert len(mixed.nodes) >= 3
    assert max(edited, key=edited.get) == max(again, key=again.get)  # the layer the budget keeps in float first
    assert sorted(edited, key=edited.get) == sorted(again, key=again.get)
    details = mixed.write_alone([], tmp_path / f"none{suffix}")  # nothing quantized: the float model
    np.testing.assert_allclose(_run(runtime, tmp_path / f"none{suffix}", details, data.x), reference, atol=1e-5)


def test_an_edited_qdq_graph_is_a_valid_onnx_model(model, tmp_path):
    import onnx

    folder, source, data = model
    profile = get_profile("onnx-int8").for_cpu("x86-avx2")
    mixed = get_runtime("onnxruntime").mixed(source, profile, data, tmp_path)
    assert all(mixed.nodes)  # the exporter left the nodes unnamed: named for nodes_to_exclude
    mixed.write_alone(mixed.nodes[:2], tmp_path / "alone.onnx")
    edited = onnx.load(str(tmp_path / "alone.onnx"))
    onnx.checker.check_model(edited, full_check=True)
    names = [output for node in edited.graph.node for output in node.output]
    assert len(names) == len(set(names))
    quantized = {node.name.split(".")[-2] for node in edited.graph.node if node.op_type == "DequantizeLinear"}
    assert quantized <= set(mixed.nodes[:2])


class _Steps:
    """A search's evaluator whose outputs' SNR is set per way and per number of float layers:
    which candidate sets the confirmation measures, edited or quantized, in what order."""

    def __init__(self, snr_db: dict, reference: np.ndarray) -> None:
        self.snr_db, self.reference, self.calls = snr_db, reference, []
        self.mixed = type("Mixed", (), {"nodes": ["a", "b", "c", "d"], "write_alone": lambda *a: None})()

    def __call__(self, float_nodes, feeds, timer=None, *, alone=None):
        way = "edited" if alone is not None else "quantized"
        if alone is not None:
            assert sorted(alone) == sorted(set(self.mixed.nodes) - set(float_nodes))  # the rest of the model int8
        self.calls.append((way, len(float_nodes)))
        noise = np.sqrt(np.mean(self.reference ** 2) / 10 ** (self.snr_db[way, len(float_nodes)] / 10))
        pattern = np.where(np.arange(self.reference.size) % 2, 1.0, -1.0).reshape(self.reference.shape)
        return [self.reference + noise * pattern], None


@pytest.mark.parametrize("snr_db, calls, answer", [
    # the edit holds at k=1 but the quantized model does not: both ways again at k=2, which holds
    ({("edited", 1): 32, ("quantized", 1): 18, ("edited", 2): 35, ("quantized", 2): 33},
     [("edited", 1), ("quantized", 1), ("edited", 2), ("quantized", 2)], 2),
    # nothing holds edited: no quantization at all
    ({("edited", k): 10 for k in (1, 2, 3, 4)}, [("edited", k) for k in (1, 2, 3, 4)], None),
])
def test_the_confirmation_quantizes_only_the_number_of_layers_that_holds_edited(snr_db, calls, answer):
    from targets.budget import sensitivity

    reference = np.linspace(-1, 1, 64, dtype=np.float32).reshape(16, 4)
    steps = _Steps(snr_db, reference)
    expected = sensitivity.Outputs([reference], 0, False, min_snr_db=30.0)
    record = sensitivity.Recovery(1.0, 30.0)
    order = ["c", "a", "d", "b"]
    sensitivity._confirm(steps, lambda k: order[:k], [np.zeros((16, 2))], expected, record, None,
                         lambda line: None, "int8")
    assert steps.calls == calls
    assert record.float_nodes == (None if answer is None else ["c", "a", "d", "b"][:answer])
    assert [t.get("edited", False) for t in record.tried] == [way == "edited" for way, _ in calls]
