"""The budget in the task's own metric: a small segmenter through the CLI with ``--metric miou``
(truth from the data's ``t_mask``), judged in mIoU points by the export, recorded in every
manifest and measured again by the benchmarks; and a bad ``--metric`` refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli


def _squares(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grey images with a bright square somewhere; the mask is the square."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (count, 16, 16, 1)).astype(np.float32)
    masks = np.zeros((count, 16, 16), np.int64)
    for image, mask in zip(images, masks):
        top, left, size = rng.integers(0, 9), rng.integers(0, 9), rng.integers(4, 8)
        image[top:top + size, left:left + size] += 0.7
        mask[top:top + size, left:left + size] = 1
    return images, masks


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    from compressor import keras_env

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    model = tfk.Sequential([tfk.Input((16, 16, 1), name="image"), L.Conv2D(8, 3, padding="same", activation="relu"),
                            L.Conv2D(8, 3, padding="same", activation="relu"),
                            L.Conv2D(2, 1, activation="softmax", name="mask")])
    x, masks = _squares(400, 0)
    model.compile(tfk.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, masks, epochs=10, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("segmenter")
    model.save(folder / "seg.keras")
    for name, seed in (("train", 1), ("test", 2)):
        images, truth = _squares(120, seed)
        np.savez(folder / f"{name}.npz", x=images, t_mask=truth)
    return folder


def test_the_budget_and_the_reports_are_in_miou_points(segmenter, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["-q", "compress", str(segmenter / "seg.keras"), "-r", "int8", "-t", "onnx-int8",
                            "-t", "onnx-fp32", "--data", str(segmenter / "train.npz"), "--eval-data",
                            str(segmenter / "test.npz"), "-o", str(out), "--metric", "miou", "--max-drop", "2",
                            "--rounds", "1", "--min-seconds", "0.05"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    budget = manifest["budget"]
    assert manifest["task_metric"]["spec"] == "miou" and budget["task_metric"]["truth"] == "labels"
    float_miou = budget["task_metric"]["float_value"]["miou"]
    assert float_miou > 0.8  # the model learned the squares: the metric measures something
    assert budget["drop_pp"] == pytest.approx(100 * (float_miou - budget["task_metric"]["value"]["miou"]))
    assert budget["drop_pp"] <= 2.0 and budget["metric"] == "mIoU points against labels"
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    measured = rows["onnx-int8"]["task_metric"]
    assert measured["name"] == "miou" and measured["truth"] == "labels"
    assert measured["value"]["miou"] == pytest.approx(budget["task_metric"]["value"]["miou"], abs=1e-9)
    assert rows["onnx-fp32"]["task_metric"]["drop_pp"] == pytest.approx(0.0, abs=0.5)
    report = (out / "report.md").read_text()
    assert f"miou {measured['value']['miou'] * 100:.2f}" in report


def test_an_unknown_metric_is_refused_before_any_work(segmenter, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compress", str(segmenter / "seg.keras"), "-r", "int8", "-t", "onnx-int8", "--data",
                            str(segmenter / "train.npz"), "--eval-data", str(segmenter / "test.npz"), "-o", str(out),
                            "--metric", "miou:classes=2"], capsys)
    assert code == 3 and "metric miou: unknown option 'classes=2'" in err and not out.exists()
