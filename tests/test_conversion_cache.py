"""The process's cache of conversions (targets.runtime.converted): one conversion per model and
inputs, until forget_conversions() drops them all (a cold export, as in a new process)."""

from targets.runtime import converted, forget_conversions


class _Model:
    """Stands for a model: converted() keys its cache on the object, by weak reference."""


def test_a_conversion_is_made_once_per_model_and_inputs_until_forgotten():
    model, calls = _Model(), []

    def convert():
        calls.append(1)
        return f"artifact {len(calls)}"

    assert converted(model, "onnx", convert, digest="w1") == "artifact 1"
    assert converted(model, "onnx", convert, digest="w1") == "artifact 1"  # kept
    assert converted(model, "onnx", convert, digest="w1", inputs="calibration-b") == "artifact 2"
    assert converted(model, "onnx", convert, digest="w2", inputs="calibration-b") == "artifact 3"  # new weights
    forget_conversions()
    assert converted(model, "onnx", convert, digest="w2", inputs="calibration-b") == "artifact 4"
    assert len(calls) == 4
