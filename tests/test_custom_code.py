"""A model with a registered custom layer, as users write them: refused unless trusted, loaded
with the file that defines the layer (--custom-code), run through export and benchmark workers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

LAYERS = textwrap.dedent('''
    import keras

    @keras.saving.register_keras_serializable(package="custom_code_test")
    class Gain(keras.layers.Layer):
        """Multiplies by a learned per-feature gain."""

        def build(self, input_shape):
            self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.gain
''')

BUILD = textwrap.dedent('''
    import sys
    import numpy as np
    from compressor import keras_env
    from compressor.models import custom_code

    custom_code.load([sys.argv[1]])
    keras = keras_env.keras3()
    Gain = sys.modules["compressor_custom_layers"].Gain
    image = keras.Input((8, 8, 1), name="image")
    x = Gain(name="gain")(keras.layers.Flatten()(image))
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax", name="classes")(x))
    model.get_layer("gain").set_weights([np.linspace(0.5, 1.5, 64).astype("float32")])
    model.save(sys.argv[2])
''')

CLI = "import sys; from compressor.app.cli import main; main(sys.argv[1:])"


def _run(*args, cwd):
    env = dict(os.environ, COMPRESSOR_QUIET="1")
    env.pop("COMPRESSOR_CUSTOM_CODE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.slow
def test_a_custom_layer_loads_with_its_code_and_goes_through_export_and_benchmark(tmp_path, digits8):
    (tmp_path / "layers.py").write_text(LAYERS)
    built = _run("-c", BUILD, "layers.py", "gain.keras", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    train, test = digits8
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y)
    np.savez(tmp_path / "test.npz", x=test.x, y=test.y)

    untrusted = _run("-c", CLI, "inspect", "gain.keras", cwd=tmp_path)
    assert untrusted.returncode != 0 and "custom code" in untrusted.stderr
    unregistered = _run("-c", CLI, "inspect", "gain.keras", "--trust-model", cwd=tmp_path)
    assert unregistered.returncode != 0
    assert "custom class 'custom_code_test>Gain'" in unregistered.stderr and "--custom-code" in unregistered.stderr
    code_without_trust = _run("-c", CLI, "inspect", "gain.keras", "--custom-code", "layers.py", cwd=tmp_path)
    assert code_without_trust.returncode == 2 and "--trust-model" in code_without_trust.stderr

    done = _run("-c", CLI, "compress", "gain.keras", "--trust-model", "--custom-code", "layers.py", "-r", "int8",
                "-t", "tflite-fp32", "-t", "onnx-fp32", "-t", "openvino-int8", "--data", "train.npz",
                "--eval-data", "test.npz", "-o", "out", "--rounds", "1", "--min-seconds", "0", "--json",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["name"]: r for r in results["results"]}
    assert set(rows) == {"float (TensorFlow)", "tflite-fp32", "onnx-fp32", "openvino-int8"}  # the source ran too
    assert rows["tflite-fp32"]["accuracy_drop_pp"]["top1"] == 0
    for target in ("tflite-fp32", "onnx-fp32"):
        manifest = json.loads((tmp_path / "out" / target / "manifest.json").read_text())
        assert manifest["parity"]["passed"] and manifest["parity"]["max_abs"] < 1e-5
