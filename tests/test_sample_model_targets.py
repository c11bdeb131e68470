"""(slow) Every sample model through every profile that takes it: int8 accuracy within 1 point."""

import pytest

import sample_models
from tests.helpers.sweep import sweep

INT8 = ("int8", "dynamic-int8", "int16x8")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(sample_models.SAMPLE_MODELS))
def test_sample_model_exports_keep_accuracy(name, tmp_path):
    from targets import PROFILES

    rows = sweep(name, tmp_path)
    exported = [r for r in rows if "accuracy" in r]
    assert exported, rows
    for row in exported:
        if PROFILES[row["target"]].precision in INT8:
            assert row["accuracy"] >= row["float_accuracy"] - 0.01, row
    if name == "lstm":  # at least one int8 path takes the LSTM
        assert {"onnx-dynamic-int8", "tflite-int8"} <= {r["target"] for r in exported}
    else:
        assert len(exported) == len(PROFILES), [r for r in rows if "error" in r]
