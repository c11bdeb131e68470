"""A YOLO-layout ONNX detector judged by mAP: its head concatenates box coordinates (pixels) and
class scores (0-1) into one ``[batch, 4 + classes, anchors]`` tensor, the layout whose int8 loses
mAP (one scale for both ranges). With ``--metric map`` and a budget in mAP points, the ladder
keeps what costs mAP in float, decided by mAP, not by a tensor SNR."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from compressor import keras_env
    from compressor.models.onnx_source import load_onnx
    from targets.runtimes.onnx_runtime import convert_keras

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    image = tfk.Input((32, 32, 3), name="image")
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(image)
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)  # 8x8 grid: 64 anchors
    boxes = L.Conv2D(4, 1, activation="sigmoid")(h)
    boxes = L.Lambda(lambda b: b * 32.0, name="to_pixels")(boxes)  # centre x, y, width, height in pixels
    scores = L.Conv2D(3, 1, activation="sigmoid")(h)
    head = L.Concatenate(axis=-1)([boxes, scores])
    head = L.Reshape((64, 7))(head)
    head = L.Permute((2, 1), name="output0")(head)  # [batch, 4 + 3, 64], as YOLOv8 exports it
    model = tfk.Model(image, head)
    folder = tmp_path_factory.mktemp("detector")
    convert_keras(model, folder / "yolo.onnx")
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (300, 32, 32, 3)).astype(np.float32)
    return load_onnx(folder / "yolo.onnx"), data


def test_an_int8_detector_is_judged_and_recovered_in_map_points(detector, tmp_path):
    from compressor.data import Dataset
    from compressor.errors import AccuracyBudgetError
    from targets import export

    source, data = detector
    train, test = Dataset(data[:200], None, "train"), Dataset(data[200:], None, "test")
    try:
        result = export(source, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test,
                        metric="map:layout=yolov8", max_drop=2.0)
    except AccuracyBudgetError as exc:  # what came closest is named in mAP points
        assert "mAP@0.5:0.95 points" in str(exc)
        pytest.fail(f"no int8 mix met 2 mAP points: {exc}")
    budget = result.manifest["budget"]
    assert budget["task_metric"]["name"] == "map" and budget["task_metric"]["truth"] == "the float model's outputs"
    assert budget["task_metric"]["float_value"]["map"] == pytest.approx(1.0)  # the float model against itself
    assert budget["drop_pp"] <= 2.0
    found = budget["recovery"]
    full = found.get("full_int8_drop_pp")
    assert full is not None and full > 2.0, "full int8 of this head was expected to lose mAP"
    assert found["float_nodes"], "the mix that holds the budget keeps some layers in float"
    assert budget["metric"] == "mAP@0.5:0.95 points against the float model's outputs"
