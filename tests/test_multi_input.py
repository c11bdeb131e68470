"""Models with several named inputs, integer and float mixed (an image, a state vector, an
int64 rate): fed by name from one .npz, through every runtime, from Keras and from ONNX."""

import json

import numpy as np
import pytest

from compressor.data import Dataset, load_dataset
from compressor.errors import BadInputError
from compressor.models import as_source


@pytest.fixture(scope="module")
def three_inputs(tmp_path_factory, digits8):
    from compressor import keras_env
    from targets.runtimes.onnx_runtime import convert_keras

    keras_env.set_seed(5)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    image, state = tfk.Input((8, 8, 1), name="image"), tfk.Input((4,), name="state")
    rate = tfk.Input((1,), dtype="int64", name="rate")
    h = L.Flatten()(L.Conv2D(8, 3, activation="relu")(image))
    h = L.Concatenate()([h, state, L.Flatten()(L.Embedding(4, 3)(rate))])
    out = L.Dense(10, activation="softmax", name="classes")(L.Dense(32, activation="relu")(h))
    model = tfk.Model([image, state, rate], out, name="three_inputs")
    model.compile(tfk.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for split, data in zip(("train", "test"), digits8):
        arrays = {"image": data.x, "state": rng.normal(size=(len(data), 4)).astype(np.float32),
                  "rate": rng.integers(0, 4, size=(len(data), 1)).astype(np.int64)}
        np.savez(folder / f"{split}.npz", **arrays, y=data.y)
    train = load_dataset(folder / "train.npz")
    model.fit(train.x, train.y, epochs=10, batch_size=32, verbose=0)
    model.save(folder / "three_inputs.keras")
    convert_keras(model, folder / "three_inputs.onnx")
    return model, folder


def test_an_npz_with_one_array_per_input_feeds_them_by_name(three_inputs):
    model, folder = three_inputs
    data = load_dataset(folder / "test.npz")
    assert sorted(data.arrays) == ["image", "rate", "state"] and data.y is not None
    source = as_source(model)
    data.check_fits(source)
    feeds = data.feeds(source)
    assert [f.dtype.name for f in feeds] == ["float32", "float32", "int64"]
    assert len(data.take(5)) == 5 and all(len(a) == 5 for a in data.take(5).arrays.values())
    accuracy = np.mean(np.argmax(source.predict(feeds)[0], -1) == data.y)
    assert accuracy > 0.85


def test_a_missing_input_is_named_with_what_was_found(three_inputs):
    model, _ = three_inputs
    data = Dataset({"image": np.zeros((3, 8, 8, 1), np.float32), "rates": np.zeros((3, 1), np.int64)})
    with pytest.raises(BadInputError, match="no array for the model's inputs 'state', 'rate' \\(found: image, rates\\)"):
        data.check_fits(as_source(model))
    wrong = Dataset({"image": np.zeros((3, 8, 8, 1), np.float32), "state": np.zeros((3, 4), np.float32),
                     "rate": np.zeros((3, 1), np.float32)})
    with pytest.raises(BadInputError, match="for input 'rate': model takes integer inputs \\(int64\\)"):
        wrong.check_fits(as_source(model))


def _compress(model_path, folder, out, targets, capsys):
    from compressor.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(["compress", str(model_path), "-r", "int8", *[a for t in targets for a in ("-t", t)],
              "--data", str(folder / "train.npz"), "--eval-data", str(folder / "test.npz"), "-o", str(out),
              "--rounds", "1", "--min-seconds", "0"])
    return info.value.code, capsys.readouterr().err


@pytest.mark.slow
def test_a_three_input_keras_model_goes_to_every_runtime(three_inputs, tmp_path, capsys):
    _, folder = three_inputs
    targets = ["tflite-fp32", "tflite-int8", "onnx-int8", "openvino-int8"]
    code, err = _compress(folder / "three_inputs.keras", folder, tmp_path / "out", targets, capsys)
    assert code == 0, err
    for target in targets:
        manifest = json.loads((tmp_path / "out" / target / "manifest.json").read_text())
        assert manifest["input_names"] == ["image", "state", "rate"] and manifest["parity"]["agreement"] >= 0.95
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(abs(r["accuracy_drop_pp"]["top1"]) < 2 for r in results["results"])


def test_the_microcontroller_refuses_an_int64_gather_in_one_line(three_inputs, tmp_path, capsys):
    _, folder = three_inputs
    code, err = _compress(folder / "three_inputs.keras", folder, tmp_path / "out", ["mcu", "tflite-fp32"], capsys)
    assert code == 4, err
    assert "mcu: TFLite Micro cannot run the model: Positions of type 'INT64' are not supported by gather" in err


def test_a_three_input_onnx_model_with_an_int64_input_goes_through_compress_all(three_inputs, tmp_path, capsys):
    _, folder = three_inputs
    code, err = _compress(folder / "three_inputs.onnx", folder, tmp_path / "out", ["all"], capsys)
    assert code == 0, err
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    # the six ONNX-capable targets of a CNN, and bf16 where this CPU runs it (weight-only ones are for
    # models whose weights are mostly MatMul and embedding; this one's are convolutions)
    from compressor.models import load_source
    from targets import profiles_for

    six = {"onnx-fp32", "onnx-dynamic-int8", "onnx-int8", "openvino-fp32", "openvino-fp16", "openvino-int8"}
    assert set(run["exported"]) == set(profiles_for(load_source(folder / "three_inputs.onnx"))) >= six
    assert run["failed"] == {}
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["reference"] == "float (ONNX Runtime)"
    assert all(abs(r["accuracy_drop_pp"]["top1"]) < 2 for r in results["results"])
