"""(slow) Zoo models through every target: no internal error, every float conversion passes parity.

`make zoo` runs the whole zoo and regenerates ZOO.md; this runs a few of its architectures."""

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("name", ["detector", "two_input", "gru_text", "mobilenet_v3_small"])
def test_zoo_model_goes_through_every_target(name, tmp_path):
    from tools import zoo

    record = zoo.run_model(zoo.ZOO[name], tmp_path)
    assert "error" not in record, record.get("error")
    for source in ("keras", "onnx"):
        cells = record[source]
        assert not [n for n, c in cells.items() if c["status"] == "internal error"], cells
        for target in ("onnx-fp32", "openvino-fp32", "openvino-fp16") + (("tflite-fp32",) if source == "keras" else ()):
            assert cells[target]["status"] == "ok", (target, cells[target])
