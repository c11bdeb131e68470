"""A model with several outputs (a class head beside regression heads, as detectors and
landmark networks have): outputs kept in the source's order on every runtime, parity per
output (class scores by agreement, the others by SNR), labels on the class head."""

import json

import numpy as np
import pytest

from compressor.models import as_source
from compressor.models.source import class_score_outputs, labelled_output
from compressor.models.inspection import TensorSpec
from targets.parity import compare
from targets.profiles import INT8


@pytest.fixture(scope="module")
def three_heads(tmp_path_factory, digits8):
    """PReLU, Permute and three Dense heads; the class head is built first, so that a converter
    that orders outputs by creation lists it first while the model lists box, classes, score."""
    from compressor import keras_env

    keras_env.set_seed(7)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    image = tfk.Input((8, 8, 1), name="image")
    h = L.Conv2D(8, 3, padding="same")(image)
    h = L.PReLU(shared_axes=[1, 2])(h)
    h = L.Flatten()(L.Permute((3, 1, 2))(h))
    h = L.Dense(32, activation="relu")(h)
    classes = L.Dense(10, activation="softmax", name="classes")(h)
    box = L.Dense(4, name="box")(h)
    score = L.Dense(1, activation="sigmoid", name="score")(h)
    model = tfk.Model(image, [box, classes, score], name="three_heads")
    model.compile(tfk.optimizers.Adam(1e-2), ["mse", "sparse_categorical_crossentropy", "binary_crossentropy"])
    train = digits8[0]
    model.fit(train.x, [train.x.reshape(len(train), -1)[:, 20:24], train.y, (train.y > 4).astype("float32")],
              epochs=12, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("heads") / "three_heads.keras"
    model.save(path)
    return model, path


def test_the_class_head_is_found_among_several_outputs(three_heads):
    source = as_source(three_heads[0])
    assert [o.name for o in source.outputs] == ["box", "classes", "score"]
    assert source.class_outputs() == [False, True, False] and labelled_output(source) == 1
    assert source.data_spec()[2] == 10  # labels are checked against the class head


def test_a_single_output_is_class_scores_with_or_without_softmax():
    logits = [TensorSpec("logits", [None, 10], "float32")]
    assert class_score_outputs(logits, [False]) == [True]
    two = logits + [TensorSpec("box", [None, 4], "float32")]
    assert class_score_outputs(two, [False, False]) == [False, False]


def test_parity_names_the_output_that_fails():
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(10), size=100)
    box = rng.normal(size=(100, 4))
    result = compare([box, scores], [box + rng.normal(scale=0.5, size=box.shape), scores], INT8,
                     names=["box", "classes"], class_outputs=[False, True])
    assert result.failures == [f"output 'box': output SNR {result.outputs[0]['snr_db']:.1f} dB is below the floor 20 dB"]
    assert [o["name"] for o in result.outputs] == ["box", "classes"] and result.outputs[1]["agreement"] == 1.0


def test_compress_takes_a_three_output_model_to_every_runtime(three_heads, digits8, tmp_path, capsys):
    from compressor.app.cli import main

    _, path = three_heads
    out = tmp_path / "out"
    train, test = digits8
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y)
    np.savez(tmp_path / "test.npz", x=test.x, y=test.y, y_score=(test.y > 4).astype(int))  # labels per head
    targets = ["tflite-fp32", "tflite-int8", "mcu", "onnx-fp32", "onnx-int8", "openvino-fp32"]
    with pytest.raises(SystemExit) as info:
        main(["compress", str(path), "-r", "int8", *[a for t in targets for a in ("-t", t)],
              "--data", str(tmp_path / "train.npz"), "--eval-data", str(tmp_path / "test.npz"), "-o", str(out),
              "--rounds", "1", "--min-seconds", "0"])
    assert info.value.code == 0, capsys.readouterr().err
    for target in targets:
        manifest = json.loads((out / target / "manifest.json").read_text())
        parity = manifest["parity"]
        assert [o["name"] for o in parity["outputs"]] == ["box", "classes", "score"], target
        assert parity["outputs"][1]["agreement"] >= 0.95 and parity["outputs"][0]["agreement"] is None
        assert manifest["labelled_output"] == 1
    assert json.loads((out / "tflite-fp32" / "manifest.json").read_text())["details"]["output_order"] == [1, 0, 2]
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["results"]}
    assert rows["float (TensorFlow)"]["accuracy"]["top1"] > 0.8  # measured on the class head
    assert all(abs(r["accuracy_drop_pp"]["top1"]) < 2 for r in rows.values())
    heads = rows["float (TensorFlow)"]["accuracy_per_output"]
    assert set(heads) == {"classes", "score"}  # y is the class head's; box has no labels
    assert heads["classes"]["accuracy"]["top1"] == rows["float (TensorFlow)"]["accuracy"]["top1"]
    assert heads["score"]["accuracy"]["binary"] > 0.8
    assert all(abs(r["accuracy_per_output"]["score"]["accuracy_drop_pp"]["binary"]) < 3 for r in rows.values())
    report = (out / "report.md").read_text()
    assert "Parity per output" in report and "| tflite-int8 | box |" in report
    assert "Accuracy per labelled output" in report and "| tflite-int8 | score | binary |" in report


def test_labels_for_an_output_the_model_lacks_are_refused_before_work(three_heads, digits8, tmp_path, capsys):
    from compressor.app.cli import main

    _, path = three_heads
    train, test = digits8
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y)
    np.savez(tmp_path / "test.npz", x=test.x, y=test.y, y_scores=(test.y > 4).astype(int))
    with pytest.raises(SystemExit) as info:
        main(["compress", str(path), "-r", "int8", "-t", "tflite-fp32", "--data", str(tmp_path / "train.npz"),
              "--eval-data", str(tmp_path / "test.npz"), "-o", str(tmp_path / "out")])
    assert info.value.code == 3
    assert "labels y_scores name no output of the model (its outputs: box, classes, score)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tflite-fp32").exists()
