"""ONNX models as input: loaded safely, quantized for ONNX Runtime and OpenVINO without TensorFlow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from compressor.errors import BadInputError, UnsupportedModelError
from compressor.models.onnx_source import load_onnx
from targets import export, open_artifact
from tests.helpers.cli import run_cli


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, tiny_cnn):
    from targets.runtimes.onnx_runtime import convert_keras

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    convert_keras(tiny_cnn, path)
    return path


def test_onnx_model_predicts_like_its_keras_source(onnx_file, tiny_cnn, digits8):
    model = load_onnx(onnx_file)
    x = digits8[1].x
    np.testing.assert_allclose(model.predict(x)[0], tiny_cnn.predict(x, verbose=0), atol=1e-5)
    assert model.data_spec() == ((8, 8, 1), np.dtype("float32"), 10)


@pytest.mark.parametrize("target", ["onnx-int8", "onnx-dynamic-int8", "openvino-int8", "openvino-fp32"])
def test_quantize_only_path(onnx_file, digits8, tmp_path, target):
    train, test = digits8
    result = export(load_onnx(onnx_file), target, out_dir=tmp_path, calibration=train, validation=test)
    manifest = result.manifest
    assert manifest["source"]["format"] == "onnx" and manifest["source"]["sha256"]
    assert manifest["parity"]["passed"] and manifest["parity"]["agreement"] >= 0.95
    outputs = open_artifact(result.folder).runner().run(test.x[:5])[0]
    assert outputs.shape == (5, 10)


@pytest.mark.parametrize("target", ["onnx-int8", "onnx-dynamic-int8"])
def test_a_quantized_graph_onnx_runtime_cannot_load_is_retried_then_refused(onnx_file, digits8, tmp_path,
                                                                            monkeypatch, target):
    """On an exported image classifier the quantizer wrote a graph ONNX Runtime refused to load
    (INVALID_GRAPH at a bias from pre-processing's Conv+Add fusion): the next setting is tried,
    and when none loads the target is refused in one line, never an internal error."""
    from targets import export_many
    from targets.runtimes.onnx_runtime import quantize as onnx_quantize

    train, test = digits8
    real, calls = onnx_quantize._loads, []

    def invalid_when_optimized(model):
        calls.append(model)
        if len(calls) == 1:
            raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model.")
        real(model)

    monkeypatch.setattr(onnx_quantize, "_loads", invalid_when_optimized)
    result = export(load_onnx(onnx_file), target, out_dir=tmp_path / "retried", calibration=train, validation=test)
    assert len(calls) == 2 and result.manifest["parity"]["passed"]
    details = result.manifest["details"]["quantization"]
    assert (details.get("per_channel"), details["graph_optimization"]) == (
        (False, True) if target == "onnx-int8" else (None, False))

    def never(model):
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model.")

    monkeypatch.setattr(onnx_quantize, "_loads", never)
    exported, failed = export_many(load_onnx(onnx_file), [target, "onnx-fp32"], out_dir=tmp_path / "refused",
                                   calibration=train, validation=test)
    assert [r.target for r in exported] == ["onnx-fp32"]
    assert failed[0].exit_code == 4 and "gave no loadable model" in failed[0].message
    assert "INVALID_GRAPH" in failed[0].message


def test_tflite_targets_refuse_onnx_input(onnx_file, digits8, tmp_path):
    expected = ("tflite-int8: cannot take model .*litert exports from keras models, not onnx ones; "
                "onnx models go to the onnxruntime and openvino targets")
    with pytest.raises(UnsupportedModelError, match=expected):
        export(load_onnx(onnx_file), "tflite-int8", out_dir=tmp_path, calibration=digits8[0], validation=digits8[1])


def test_onnx_path_runs_without_tensorflow(onnx_file, tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from compressor.data import load_dataset\n"
        "from compressor.models.onnx_source import load_onnx\n"
        "from targets import export\n"
        "train = load_dataset('sample:digits-8:train'); test = load_dataset('sample:digits-8:test')\n"
        f"for t in ('onnx-int8', 'openvino-int8'):\n"
        f"    export(load_onnx(r'{onnx_file}'), t, out_dir=r'{tmp_path}', calibration=train, validation=test)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def _external(tmp_path, onnx_file, location):
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load(str(onnx_file))
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "m.onnx"))
    if location != "weights.bin":
        proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


def test_external_data_inside_the_folder_loads(tmp_path, onnx_file, digits8):
    model = load_onnx(_external(tmp_path, onnx_file, "weights.bin"))
    assert model.predict(digits8[1].x[:3])[0].shape == (3, 10)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, onnx_file, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    path = _external(tmp_path, onnx_file, location)
    with pytest.raises(BadInputError, match="outside the model's folder"):
        load_onnx(path)


def test_external_data_symlink_is_refused(tmp_path, onnx_file):
    path = _external(tmp_path, onnx_file, "weights.bin")
    real = tmp_path / "elsewhere.bin"
    (path.parent / "weights.bin").rename(real)
    (path.parent / "weights.bin").symlink_to(real)
    with pytest.raises(BadInputError, match="outside the model's folder"):
        load_onnx(path)


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", "truncated"])
def test_corrupt_onnx_is_refused(tmp_path, onnx_file, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(onnx_file.read_bytes()[:300] if content == "truncated" else content)
    with pytest.raises(BadInputError, match="bad.onnx"):
        load_onnx(path)


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory, digits8):
    folder = tmp_path_factory.mktemp("npz")
    for name, data in zip(("train", "test"), digits8):
        np.savez(folder / f"{name}.npz", x=data.x, y=data.y)
    return folder / "train.npz", folder / "test.npz"


def test_inspect_reads_onnx_with_the_keras_models_params_and_macs(onnx_file, tiny_cnn, capsys):
    from compressor import inspect_model

    code, out, err = run_cli(["inspect", str(onnx_file), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    keras = inspect_model(tiny_cnn)
    assert report["macs"] == keras.macs > 0  # Conv and Gemm counted from ONNX shape inference
    assert report["params"] == keras.params - 4 * 8 + 8  # BatchNorm folds into the conv: a bias of 8 remains
    assert {"Conv", "MaxPool"} <= {layer["type"] for layer in report["layers"]}
    assert report["inputs"][0]["shape"][1:] == [8, 8, 1]
    assert report["targets"]["onnx-int8"] is None and report["targets"]["openvino-int8"] is None
    assert "litert exports from keras models, not onnx ones" in report["targets"]["tflite-int8"]


def test_compress_takes_an_onnx_model_with_a_quantize_only_recipe(onnx_file, npz_files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["compress", str(onnx_file), "-r", "int8", "-t", "all", "--data", str(npz_files[0]),
                         "--eval-data", str(npz_files[1]), "-o", str(out), "--rounds", "1", "--min-seconds", "0"],
                        capsys)
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    from targets import profiles_for

    # every ONNX-capable target (bf16 where this CPU runs it; weight-only, the Dense holding most weights)
    assert run["exported"] == profiles_for(load_onnx(onnx_file)) and run["failed"] == {}
    assert {"onnx-fp32", "onnx-dynamic-int8", "onnx-int8", "openvino-fp32", "openvino-fp16", "openvino-int8w",
            "openvino-int4w", "openvino-int8"} <= set(run["exported"])
    assert run["compression"]["baseline"]["macs"] > 0 and run["compression"]["baseline"]["accuracy"] > 0.8
    assert not (out / "model.keras").exists()  # nothing was compressed: the ONNX model is the source as it is
    results = json.loads((out / "results.json").read_text())
    assert results["reference"] == "float (ONNX Runtime)"
    assert all(abs(r["accuracy_drop_pp"]["top1"]) < 3 for r in results["results"])


def test_compress_refuses_a_fine_tuning_step_on_onnx_before_any_work(onnx_file, npz_files, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compress", str(onnx_file), "-r", "prune50-int8", "--data", str(npz_files[0]),
                         "--eval-data", str(npz_files[1]), "-o", str(out)], capsys)
    assert code == 4
    assert "steps[0] (prune): fine-tunes a Keras model" in err and "quantize-only recipes" in err
    assert not out.exists()


def test_compress_refuses_a_typo_in_the_model_before_any_work(npz_files, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compress", str(tmp_path / "missing.onnx"), "--data", str(npz_files[0]),
                         "--eval-data", str(npz_files[1]), "-o", str(out)], capsys)
    assert code == 3 and "no such file" in err and not out.exists()


def test_quantizing_into_a_relative_output_folder(onnx_file, digits8, tmp_path, monkeypatch):
    """ONNX Runtime's pre-processing runs in the work folder; paths given relative to the
    user's cwd must still point where they did (onnx-int8 wrote nothing into 'out/')."""
    monkeypatch.chdir(tmp_path)
    train, test = digits8
    result = export(load_onnx(onnx_file), "onnx-int8", out_dir="out", calibration=train, validation=test)
    assert (tmp_path / "out" / "onnx-int8" / "model.onnx").is_file() and result.manifest["parity"]["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and nothing else left in the cwd


def test_exact_gelu_converts_to_valid_onnx(tmp_path):
    """TensorFlow writes exact GELU with Erfc, which tf2onnx left untranslated: every ONNX and
    OpenVINO cell of the zoo's ViT was refused ("No Op registered for Erfc")."""
    import onnx

    from compressor import keras_env
    from compressor.data import Dataset
    from compressor.models import load_source
    from targets import export_many

    keras = keras_env.keras3()
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Dense(32, activation="gelu")(inputs)))
    model.save(tmp_path / "gelu.keras")
    data = Dataset(np.random.default_rng(0).normal(size=(64, 16)).astype("float32"), None, "normal")
    exported, failed = export_many(load_source(tmp_path / "gelu.keras"), ["onnx-fp32", "openvino-fp32"],
                                   out_dir=tmp_path / "out", calibration=data, validation=data)
    assert not failed, [f.message for f in failed]
    assert all(r.parity["max_abs"] < 1e-5 for r in exported)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "out" / "onnx-fp32" / "model.onnx")).graph.node}
    assert "Erf" in ops and "Erfc" not in ops


def test_a_batchnorm_behind_an_identity_reshape_is_folded_before_int8(digits8, tmp_path):
    """tf2onnx puts a Reshape to the same shape between a convolution with a 1x1 output map and
    its BatchNormalization (EfficientNetB0 at 32x32). It stopped ONNX Runtime's Conv+BN fusion:
    the convolution's output was quantized per tensor before BatchNormalization's per-channel
    scale, and channels of small range were lost (93 % agreement on this model, 18 dB)."""
    import onnx

    from compressor import keras_env
    from targets import Parity
    from targets.runtimes import onnx_runtime

    tfk = keras_env.tf_keras()
    tfk.utils.set_random_seed(3)
    train, test = digits8
    L = tfk.layers
    image = tfk.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(16, 8, name="conv")(image)))
    model = tfk.Model(image, L.Dense(10, activation="softmax")(L.Flatten()(x)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=15, verbose=0)
    # channels whose convolution outputs span 1e-3 .. 10, brought to one scale by BatchNormalization
    scales = np.logspace(-3, 1, 16).astype("float32")
    kernel, bias = model.get_layer("conv").get_weights()
    model.get_layer("conv").set_weights([kernel * scales, bias * scales])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights([gamma, beta, mean * scales, var * scales**2])
    path = tmp_path / "bn.onnx"
    onnx_runtime.convert_keras(model, path)
    nodes = onnx.load(str(path)).graph.node
    produced_by = {out: node.op_type for node in nodes for out in node.output}
    assert [produced_by[n.input[0]] for n in nodes if n.op_type == "BatchNormalization"] == ["Reshape"]

    prepared, _ = onnx_runtime.pre_process(path, tmp_path)
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(prepared)).graph.node}  # folded
    result = export(load_onnx(path), "onnx-int8", out_dir=tmp_path / "out", calibration=train, validation=test,
                    parity_rule=Parity(min_agreement=1e-6))
    assert result.manifest["parity"]["agreement"] >= 0.97 and result.manifest["parity"]["snr_db"] >= 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bn.onnx", "out", "prepared.onnx"]  # no leftovers
