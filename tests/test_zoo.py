"""(slow) Zoo models through every target: no internal error, every float conversion passes parity.

`make zoo` runs the whole zoo and regenerates ZOO.md; this runs a few of its architectures."""

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("name", ["detector", "two_input", "gru_text", "mobilenet_v3_small", "shapes_detector",
                                  "digit_embedding"])
def test_zoo_model_goes_through_every_target(name, tmp_path):
    from tools import zoo

    record = zoo.run_model(zoo.ZOO[name], tmp_path)
    assert "error" not in record, record.get("error")
    stages = record["stages"]  # where the time went: every export attempted has its time
    assert stages["train"] > 0 and set(stages["keras"]["exports"]) == {
        n for n, c in record["keras"].items() if c["status"] != "cannot take it" and n != "float"}
    for source in ("keras", "onnx"):
        cells = record[source]
        assert not [n for n, c in cells.items() if c["status"] == "internal error"], cells
        for target in ("onnx-fp32", "openvino-fp32", "openvino-fp16") + (("tflite-fp32",) if source == "keras" else ()):
            assert cells[target]["status"] == "ok", (target, cells[target])
            if zoo.ZOO[name].metric and target.endswith("fp32"):  # a float conversion keeps the task's metric
                assert abs(cells[target]["drop_pp"]) <= 0.1 and cells[target]["truth"] == "labels", cells[target]


def test_a_later_run_is_added_below_the_zoo_page(tmp_path):
    """``--section``: the models run later get their own tables below the page, which stays as it was."""
    import json

    from tools import zoo

    out = tmp_path / "zoo-out"
    (out / "convnext_tiny").mkdir(parents=True)
    record = {"model": "convnext_tiny", "description": "ConvNeXt", "dataset": "digits-32rgb", "params": 5,
              "seconds": 120.0, "stages": {"train": 60.0, "keras": {"exports": {"onnx-int8": 20.0, "mcu": 30.0},
                                                                 "benchmark": 5.0},
                                           "onnx conversion": 2.0, "onnx": {"exports": {"onnx-int8": 10.0}}},
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
    # where the time went: per stage, the slowest exports named (no ONNX artifact: no benchmark)
    assert "### Where the time goes" in text
    assert ("| convnext_tiny | 120 | 60 | 50 | 5 | 2 | 10 | - | mcu (keras) 30, onnx-int8 (keras) 20, "
            "onnx-int8 (onnx) 10 |") in text


def test_a_model_judged_by_its_task_metric_shows_it_in_its_cells(tmp_path):
    """A zoo model with a task metric: the float cell gives the metric's value, each artifact its
    drop in that metric's points, and the model's line names the --metric it was judged by."""
    import json

    from tools import zoo

    out = tmp_path / "zoo-out"
    (out / "shapes_detector").mkdir(parents=True)
    figures = {"metric": "map", "truth": "labels", "metric_unit": "mAP@0.5:0.95 points"}
    record = {"model": "shapes_detector", "description": "YOLO-style", "dataset": "shapes-boxes", "params": 5,
              "seconds": 60.0, "metric": "map:layout=yolov5",
              "keras": {"float": {"status": "ok", "p50_ms": 2.0, "top1": None, "metric_value": 0.245, **figures},
                        "onnx-int8": {"status": "ok", "p50_ms": 1.0, "drop_pp": 0.75, "agreement": None,
                                      "snr_db": 31.4, "metric_value": 0.2375, **figures}}}
    (out / "shapes_detector" / zoo.ZOO_RESULT).write_text(json.dumps(record))
    page = tmp_path / "ZOO.md"
    assert zoo.main(["--models", "shapes_detector", "--out", str(out), "--write", str(page)]) == 0
    text = page.read_text()
    assert "| shapes_detector | map 0.245, 2.00 ms |" in text
    assert "ok +0.75 pt map, 31 dB, 1.00 ms" in text
    assert "(shapes-boxes; judged by `--metric map:layout=yolov5`; 5 params, 60 s)" in text


def test_every_task_metric_has_a_zoo_model_and_its_data_carries_the_truth():
    """The zoo holds a model for each built-in task metric but MAE (PCK judges the regressor) and
    top-1 of one head (top-1 judges every classifier without --metric), and
    each such model's test data carries every t_* array its metric reads, so its drop is against
    the truth rather than the float model's own outputs."""
    from compressor.metrics import TASKS
    from compressor.metrics.task import parse_metric
    from tools import zoo

    judged = {parse_metric(spec.metric).name: spec for spec in zoo.ZOO.values() if spec.metric}
    assert set(TASKS) - set(judged) == {"mae", "top1"}
    for name, spec in judged.items():
        _, test_set = zoo.datasets(spec)
        assert set(TASKS[name].keys(parse_metric(spec.metric).options)) <= set(test_set.truth or {}), spec.name
        assert zoo.judged(spec, test_set).y is None
