"""Every next step a refusal names works: the option it names, used as named, writes the artifact.

And what a refusal message points to exists; fp16 references round every weight the converter
rounds, wherever the ONNX graph stores it (initializers or ``Constant`` nodes).
"""

import json
import re

import numpy as np
import pytest

from compressor.models.onnx_source import load_onnx
from tests.helpers.cli import run_cli

OPTION = re.compile(r"(--[a-z][a-z-]+)")


def _mlp(path, *, classes: int, constants: bool = False, seed: int = 0, width: int = 32):
    """A two-layer ONNX MLP: class scores (``classes`` > 1, no softmax) or one regression output.
    ``constants``: its weights as ``Constant`` nodes (as paddle2onnx writes them), not initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {"w1": rng.standard_normal((16, width)).astype(np.float32) / 2,
               "b1": rng.standard_normal(width).astype(np.float32) / 4,
               "w2": rng.standard_normal((width, classes)).astype(np.float32) / 4}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    tensors = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    if constants:
        nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in tensors] + nodes
        tensors = []
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, classes])], tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("next_steps")
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        np.savez(folder / f"{name}.npz", x=(rng.standard_normal((200, 16)) * 2).astype(np.float32))
    return {"classifier": _mlp(folder / "classifier.onnx", classes=10, width=512),
            "regressor": _mlp(folder / "regressor.onnx", classes=1), "folder": folder,
            # 200 classes for 200 samples: top-1 margins so thin that int8 flips some on any CPU
            "close_calls": _mlp(folder / "close_calls.onnx", classes=200, width=512)}


# (target, model, strict options that force the refusal, the option it must name, a value that accepts)
CASES = [
    ("openvino-fp32", "classifier", ["--max-abs", "1e-12"], "--max-abs", "0.5"),
    ("openvino-fp16", "regressor", ["--min-parity-snr", "300"], "--min-parity-snr", "10"),
    ("onnx-dynamic-int8", "regressor", ["--min-parity-snr", "300"], "--min-parity-snr", "5"),
    ("onnx-dynamic-int8", "close_calls", ["--min-agreement", "1.0", "--max-drop", "100"], "--min-agreement", "0.5"),
    ("onnx-dynamic-int8", "classifier", ["--max-drop", "0"], "--max-drop", "100"),
    ("onnx-dynamic-int8", "regressor", ["--min-snr", "300"], "--min-snr", "5"),
]


def _export(models, target, model, options, out, capsys):
    folder = models["folder"]
    return run_cli(["export", str(models[model]), "-t", target, "--data", str(folder / "train.npz"),
                    "--eval-data", str(folder / "test.npz"), "-o", str(out), *options], capsys)


def _with(options: list[str], option: str, value: str) -> list[str]:
    """``options`` with ``option`` set to ``value`` (added when absent)."""
    if option in options:
        i = options.index(option)
        return [*options[:i + 1], value, *options[i + 2:]]
    return [*options, option, value]


@pytest.mark.parametrize("target, model, strict, named, loose", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_the_option_a_refusal_names_writes_the_artifact(models, tmp_path, capsys, target, model, strict, named,
                                                         loose):
    code, _, err = _export(models, target, model, strict, tmp_path / "refused", capsys)
    assert code == 5, err
    message = err.strip().splitlines()[-1]
    options = set(OPTION.findall(message))
    assert named in options, message
    assert not (tmp_path / "refused" / target).exists()
    for option in options:  # every option named is one the command has, and accepts
        if option not in ("--max-abs", "--min-agreement", "--min-parity-snr", "--max-drop", "--min-snr"):
            pytest.fail(f"the message names {option}, which this test does not know how to follow: {message}")
    code, _, err = _export(models, target, model, _with(strict, named, loose), tmp_path / "accepted", capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "accepted" / target / "manifest.json").read_text())
    assert manifest["parity"]["passed"]
    if named in ("--max-drop", "--min-snr"):  # the budget's own options
        budget = manifest["budget"]
        assert budget["max_drop_pp" if named == "--max-drop" else "min_snr_db"] == float(loose)
    else:
        assert manifest["parity"]["rule_set_by"] == "user"


def test_a_refusal_names_no_file_that_is_not_there(models, tmp_path, capsys):
    code, _, err = _export(models, "openvino-fp32", "classifier", ["--max-abs", "1e-12"], tmp_path / "out", capsys)
    assert code == 5
    for name in re.findall(r"([\w.-]+\.(?:log|json|txt))", err):
        assert (tmp_path / "out" / name).exists(), f"the message names {name}, which was not written: {err}"


def test_the_snr_floor_option_replaces_the_profiles_floor_and_is_recorded(models, tmp_path, capsys):
    code, _, err = _export(models, "onnx-dynamic-int8", "regressor", ["--min-parity-snr", "12.5"], tmp_path, capsys)
    assert code == 0, err
    parity = json.loads((tmp_path / "onnx-dynamic-int8" / "manifest.json").read_text())["parity"]
    assert parity["min_snr_db"] == 12.5 and parity["failed_checks"] == []


def test_fp16_reference_rounds_weights_stored_as_constant_nodes(tmp_path):
    """paddle2onnx stores weights as Constant nodes: the fp16 reference must round them too."""
    as_constants = load_onnx(_mlp(tmp_path / "constants.onnx", classes=1, constants=True, width=256))
    as_initializers = load_onnx(_mlp(tmp_path / "initializers.onnx", classes=1, width=256))
    x = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32)
    exact = as_constants.predict(x)[0]
    rounded = as_constants.predict_with_weights("float16", x)[0]
    assert np.max(np.abs(rounded - exact)) > 1e-4  # the rounding moved the reference
    np.testing.assert_array_equal(rounded, as_initializers.predict_with_weights("float16", x)[0])


def test_fp16_export_of_a_constant_node_model_is_checked_against_its_rounded_weights(tmp_path, capsys):
    model = _mlp(tmp_path / "constants.onnx", classes=1, constants=True, width=256)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "data.npz", x=(rng.standard_normal((100, 16)) * 2).astype(np.float32))
    code, _, err = run_cli(["export", str(model), "-t", "openvino-fp16", "--data", str(tmp_path / "data.npz"),
                            "--eval-data", str(tmp_path / "data.npz"), "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    parity = json.loads((tmp_path / "out" / "openvino-fp16" / "manifest.json").read_text())["parity"]
    assert parity["reference_weights"] == "float16" and parity["max_abs"] <= parity["tolerance"]


@pytest.mark.parametrize("again", [False, True])
def test_layers_kept_in_float_are_found_in_a_graph_whose_nodes_have_no_names(models, tmp_path, capsys, monkeypatch,
                                                                           again):
    """ONNX Runtime keeps nodes in float by name; the search names the unnamed ones, and the artifact
    written keeps those same nodes in float (the search's own quantization, or, ``again``, one made
    anew from full int8's graph): full int8 flips some top-1s of the close calls, the mix none."""
    import importlib

    quantize = importlib.import_module("targets.runtimes.onnx_runtime.quantize")
    real_write = quantize.MixedPrecision.write

    def forgetting(self, float_nodes, destination):  # the artifact quantized again, not the search's
        details = real_write(self, float_nodes, destination)
        if self._kept is not None:
            self._kept.pop("mixed", None)
        return details

    if again:
        monkeypatch.setattr(quantize.MixedPrecision, "write", forgetting)
    code, _, err = _export(models, "onnx-int8", "close_calls", ["--min-agreement", "1.0", "--max-drop", "100"],
                           tmp_path, capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "onnx-int8" / "manifest.json").read_text())
    float_nodes = manifest["budget"]["recovery"]["float_nodes"]
    assert float_nodes and manifest["details"]["quantization"]["float_nodes"] == float_nodes
    assert manifest["parity"]["passed"] and manifest["parity"]["agreement"] == 1.0

