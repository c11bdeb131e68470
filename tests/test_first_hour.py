"""A new user's first hour, acted out through the CLI: a Keras 3 CNN that rescales its own
input (as Keras' image examples build them), data as an image folder and as .npz."""

import json

import numpy as np
import pytest

from compressor import keras_env
from tests.helpers.cli import run_cli


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory):
    from PIL import Image

    from compressor.data import samples

    root = tmp_path_factory.mktemp("first_hour")
    train, test = samples.load("digits-28", "train"), samples.load("digits-28", "test")
    for split, data in (("train", train), ("test", test)):
        for index, (image, label) in enumerate(zip(data.x, data.y)):
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(folder / f"{index}.png")
        (root / split / ".ipynb_checkpoints").mkdir()  # what a notebook leaves behind: not a class
    np.savez(root / "test.npz", x=np.round(test.x * 255), y=test.y)  # the same pixels as arrays
    keras = keras_env.keras3()
    keras.utils.set_random_seed(0)
    L = keras.layers
    image = keras.Input((28, 28, 1))
    x = L.Rescaling(1 / 255)(image)
    x = L.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    model = keras.Model(image, L.Dense(10, activation="softmax")(L.Flatten()(x)))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(np.round(train.x * 255), train.y, epochs=8, batch_size=32, verbose=0)  # 96 % on the test split
    model.save(root / "cnn.keras")
    return root


def _top1(out, name="float (TensorFlow)"):
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    return rows[name]["accuracy"]["top1"]


def test_an_image_folder_feeds_the_pixels_a_rescaling_model_expects(first_hour, tmp_path, capsys):
    """Image folders were divided by 255 without a word: this model then scored 10 % (chance)
    with exit 0 and every artifact 'ok'. Raw pixels, as Keras gives them, by default."""
    out = tmp_path / "out"
    code, _, err = run_cli(["compress", str(first_hour / "cnn.keras"), "-r", "int8", "-t", "tflite-fp32",
                            "--data", str(first_hour / "train"), "--eval-data", str(first_hour / "test"),
                            "-o", str(out), "--rounds", "1", "--min-seconds", "0"], capsys)
    assert code == 0, err
    assert _top1(out) > 0.8 and _top1(out, "tflite-fp32") == _top1(out)
    manifest = json.loads((out / "tflite-fp32" / "manifest.json").read_text())
    validation = manifest["validation"]["source"]
    assert "pixels 0-255" in validation and "10 classes: digit_0" in validation
    assert "pixels 0-255" in (out / "report.md").read_text()  # the report's data line says how pixels were fed
    npz_out = tmp_path / "npz"
    code, _, err = run_cli(["export", str(first_hour / "cnn.keras"), "-t", "tflite-fp32", "--eval-data",
                            str(first_hour / "test.npz"), "-o", str(npz_out)], capsys)
    assert code == 0, err  # the same pixels as .npz: the same model, the same figures


def test_pixels_scaled_twice_are_refused_before_any_work(first_hour, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["compress", str(first_hour / "cnn.keras"), "-r", "int8", "-t", "tflite-fp32",
                            "--data", str(first_hour / "train"), "--eval-data", str(first_hour / "test"),
                            "--pixel-scale", "unit", "-o", str(out)], capsys)
    assert code == 3 and "rescales its input itself" in err and "--pixel-scale raw" in err
    assert not out.exists()
