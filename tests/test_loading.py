"""load_model: every format, safety by default, one-line errors for bad files."""

import hashlib

import numpy as np
import pytest

from compressor import keras_env, load_model
from compressor.models import bridge
from compressor.errors import BadInputError, UnsafeModelError
from tests.helpers import models


def _same_outputs(a, b):
    inputs = bridge.sample_inputs(a, seed=3)
    return bridge.max_output_difference(a, b, inputs) <= 1e-5


@pytest.fixture(scope="module")
def keras3_model():
    return models.keras3_all_layers()


@pytest.fixture(scope="module")
def tf_model():
    return models.tf_keras_mnist_cnn()


def test_keras3_keras_file(tmp_path, keras3_model):
    path = tmp_path / "m.keras"
    keras3_model.save(path)
    loaded = load_model(path)
    assert keras_env.is_tf_keras_model(loaded) and _same_outputs(keras3_model, loaded)


def test_keras3_h5_file(tmp_path, keras3_model):
    path = tmp_path / "m.h5"
    keras3_model.save(path)
    assert _same_outputs(keras3_model, load_model(str(path)))


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "saved_model_dir"])
def test_tf_keras_formats(tmp_path, tf_model, name):
    path = tmp_path / name
    tf_model.save(path)
    loaded = load_model(path)
    assert keras_env.is_tf_keras_model(loaded) and _same_outputs(tf_model, loaded)


def test_a_tf_keras_archive_s_weights_are_read_from_a_copy_on_disk_then_removed(tmp_path, tf_model, monkeypatch):
    """tf-keras reads a .keras archive's weights through the zip member (each backward seek a
    re-read from the member's start): the toolkit hands HDF5 a copy in a temporary file, the
    same weights, and leaves no copy behind."""
    import tempfile

    import h5py
    from tf_keras.src.saving import saving_lib

    path = tmp_path / "m.keras"
    tf_model.save(path)
    own = saving_lib.H5IOStore.__init__
    opened = []
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_file = h5py.File

    def spy(name, *args, **kwargs):
        opened.append(name)
        return real_file(name, *args, **kwargs)

    monkeypatch.setattr(saving_lib.h5py, "File", spy)
    loaded = load_model(path)
    assert [type(name) for name in opened] == [str] and "compressor-weights-" in opened[0]  # a file, not the member
    assert saving_lib.H5IOStore.__init__ is own and not list((tmp_path / "tmp").iterdir())
    assert all(np.array_equal(a, b) for a, b in zip(tf_model.get_weights(), loaded.get_weights()))


def test_in_memory_models_pass_through(tf_model, keras3_model):
    assert load_model(tf_model) is tf_model
    assert keras_env.is_tf_keras_model(load_model(keras3_model))


def _lambda_tf_keras():
    tfk = keras_env.tf_keras()
    inp = tfk.Input((4,))
    out = tfk.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    return tfk.Model(inp, tfk.layers.Dense(2)(out))


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5", "lambda_saved_model"])
def test_lambda_refused_by_default_accepted_with_opt_in(tmp_path, name):
    path = tmp_path / name
    _lambda_tf_keras().save(path)
    before = _digest(path)
    with pytest.raises(UnsafeModelError, match="double.*Lambda.*trust"):
        load_model(path)
    model = load_model(path, trust_model=True)
    assert np.allclose(model(np.ones((1, 4), "float32")).numpy(), model.layers[-1](np.full((1, 4), 2.0, "float32")))
    assert _digest(path) == before


def test_keras3_lambda_file_refused(tmp_path):
    path = tmp_path / "k3lambda.keras"
    models.keras3_with_lambda().save(path)
    with pytest.raises(UnsafeModelError, match="double"):
        load_model(path)


def _weighted_error(y_true, y_pred):  # a training loss of the user's own: code, but never loaded
    return keras_env.keras3().ops.mean(3.0 * (y_true - y_pred) ** 2, axis=-1)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_trained_with_its_own_loss_loads_without_the_opt_in(tmp_path, suffix):
    """The training setup (a custom loss in compile_config) is never built (models load with
    compile=False), so it is no reason to refuse the model; a custom layer still is."""
    keras = keras_env.keras3()
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(inp))
    model.compile("adam", loss=_weighted_error)
    model.fit(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"), epochs=1, verbose=0)
    path = tmp_path / f"trained{suffix}"
    model.save(path)
    loaded = load_model(path)
    assert _same_outputs(model, loaded)


def test_custom_layer_refused(tmp_path):
    keras = keras_env.keras3()

    @keras.saving.register_keras_serializable(package="evil")
    class Custom(keras.layers.Layer):
        def call(self, x):
            return x

    inp = keras.Input((2,))
    model = keras.Model(inp, Custom(name="custom")(inp))
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(UnsafeModelError, match="custom.*custom code"):
        load_model(path)


def _digest(path):
    if path.is_dir():
        return sorted((p.name, p.read_bytes()) for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path, data):
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def _truncate(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _bitflip(src, dst):
    data = bytearray(src.read_bytes())
    for i in range(64, len(data), max(1, len(data) // 40)):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))


BAD_FILES = {
    "missing": (lambda d, good: d / "nope.keras", "no such file"),
    "empty": (lambda d, good: _write(d / "e.keras", b""), "empty"),
    "truncated keras": (lambda d, good: _truncate(good["keras"], d / "t.keras") or d / "t.keras", "corrupt|truncated"),
    "truncated h5": (lambda d, good: _truncate(good["h5"], d / "t.h5") or d / "t.h5", "corrupt|truncated"),
    "bitflipped keras": (lambda d, good: _bitflip(good["keras"], d / "b.keras") or d / "b.keras",
                         "corrupt|cannot load"),
    "bitflipped h5": (lambda d, good: _bitflip(good["h5"], d / "b.h5") or d / "b.h5", "corrupt|cannot load"),
    "wrong extension": (lambda d, good: _write(d / "m.h5", good["keras"].read_bytes()),
                        "content is a keras model but the extension is '.h5'"),
    "unknown extension": (lambda d, good: _write(d / "m.pt", b"\x80\x02}q\x00."),
                          "unknown model format '.pt'"),
    "text as keras": (lambda d, good: _write(d / "m.keras", "hello"), "corrupt or not a keras"),
    "plain directory": (lambda d, good: (d / "dir").mkdir() or d / "dir", "not a SavedModel"),
    "saved_model.pb file": (lambda d, good: _write(d / "saved_model.pb", b"x"),
                            "pass the SavedModel directory"),
    "weights-only h5": (lambda d, good: _weights_only(d), "no model config"),
}


def _weights_only(d):
    path = d / "w.weights.h5"
    models.tf_keras_mnist_cnn().save_weights(path)
    renamed = d / "w.h5"
    path.rename(renamed)
    return renamed


@pytest.fixture(scope="module")
def good_files(tmp_path_factory, tf_model):
    folder = tmp_path_factory.mktemp("good")
    files = {"keras": folder / "good.keras", "h5": folder / "good.h5"}
    tf_model.save(files["keras"])
    tf_model.save(files["h5"])
    return files


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_model_files_give_one_line_errors(tmp_path, good_files, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path, good_files)
    before = _digest(path) if path.exists() else None
    with pytest.raises(BadInputError, match=message) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    assert (_digest(path) if path.exists() else None) == before


def test_not_a_model_object():
    with pytest.raises(BadInputError, match="not a model"):
        load_model(42)


def test_a_keras3_export_saved_model_is_a_source(tmp_path, digits8):
    """Keras 3 writes SavedModels with model.export(): a graph with no Keras config. It is run
    through its serving signature (a TFSMLayer) and goes to every runtime."""
    from compressor.models import load_source
    from targets import export_many

    keras = keras_env.keras3()
    image = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(x))
    model.export(str(tmp_path / "exported"))
    train, test = digits8
    source = load_source(tmp_path / "exported")
    np.testing.assert_allclose(source.predict(test.x)[0], model.predict(test.x, verbose=0), atol=1e-5)
    exported, failed = export_many(source, ["tflite-fp32", "onnx-fp32", "openvino-fp32"], out_dir=tmp_path / "out",
                                   calibration=train, validation=test)
    assert not failed, [f.message for f in failed]
    assert all(r.manifest["parity"]["max_abs"] < 1e-5 for r in exported)


def test_layer_classes_of_keras_applications_are_keras_not_custom_code():
    """ConvNeXt's LayerScale lives in keras.src.applications: Keras' own class, not the user's
    (the zoo's ConvNeXtTiny was refused as custom code); a look-alike elsewhere still is."""
    from compressor.models.safety import scan_config

    def model(module):
        return {"class_name": "Functional", "config": {"layers": [
            {"module": module, "class_name": "LayerScale", "name": "scale", "config": {"name": "scale"}}]}}

    assert scan_config(model("keras.src.applications.convnext")) == []
    assert scan_config(model("evil.convnext")) and scan_config(model("keras.src.applications.made_up"))
