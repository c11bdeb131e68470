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
