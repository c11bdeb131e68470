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


def test_a_later_run_is_added_below_the_zoo_page(tmp_path):
    """``--section``: the models run later get their own tables below the page, which stays as it was."""
    import json

    from tools import zoo

    out = tmp_path / "zoo-out"
    (out / "convnext_tiny").mkdir(parents=True)
    record = {"model": "convnext_tiny", "description": "ConvNeXt", "dataset": "digits-32rgb", "params": 5,
              "seconds": 120.0,
              "keras": {"float": {"status": "ok", "p50_ms": 2.0, "top1": 0.9},
                        "onnx-int8": {"status": "ok", "p50_ms": 1.0, "drop_pp": 0.5, "agreement": 0.99}},
              "onnx": {"onnx-int8": {"status": "refused", "reason": "onnx-int8: parity check failed"}}}
    (out / "convnext_tiny" / zoo.ZOO_RESULT).write_text(json.dumps(record))
    page = tmp_path / "ZOO.md"
    page.write_text("# Model zoo\n\n## Summary\n\n260 ok\n")
    assert zoo.main(["--models", "convnext_tiny", "--out", str(out), "--section", "Re-run", "--write", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Model zoo\n\n## Summary\n\n260 ok\n\n## Re-run\n\n"
                           "`python -m tools.zoo --models convnext_tiny")
    assert "min of model runs on a " in text and ", class " in text
    assert "### From the Keras file" in text and "### Summary" in text and "Not in this regeneration" not in text
    assert "| convnext_tiny | 90.0%, 2.00 ms |" in text and "ok +0.50 pt, 99.0% agr, 1.00 ms" in text
    assert "1 ok, 1 refused, 0 cannot take it, 0 internal error" in text
