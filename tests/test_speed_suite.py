"""The speed suite's arithmetic: the ratios SPEED.md states, from one configuration's results."""

import pytest

from tests.helpers.results import results_doc


def _record():
    doc = results_doc(latencies=(13.2, 7.2, 3.4))  # TF/Keras, tflite-fp32, tflite-int8 (MobileNetV2-like)
    rows = doc["results"]
    rows[1]["device_class"] = rows[2]["device_class"] = "CPU"
    rows[2]["speedup_vs_runtime_fp32"] = 7.2 / 3.4
    onnx_fp32 = {**rows[1], "name": "onnx-fp32", "runtime": "onnxruntime",
                 "latency": {**rows[1]["latency"], "p50_ms": 7.0}}
    doc["results"].append(onnx_fp32)
    return {"model": "m", "skipped": {}, "seconds": 60.0, "docs": {"1t-b1": doc}}


def test_headline_ratios_come_from_one_configuration():
    from tools import speed

    h = speed.headline(_record(), "1t-b1")
    assert h["best"] == "tflite-int8" and h["fastest_fp32"] == "onnx-fp32"
    assert h["best_vs_fastest_fp32"] == pytest.approx(7.0 / 3.4)  # against the fastest fp32 of any runtime
    assert h["best_vs_keras"] == pytest.approx(13.2 / 3.4)
    assert h["int8_vs_own_fp32"] == {"litert": pytest.approx(7.2 / 3.4)}
    assert h["int8_size_ratio"] == {"tflite-int8": pytest.approx(16000 / 4000)}
