"""What a report tells its reader: what to ship per device class and why, which differences
are noise, which targets were refused, and plots whose labels never overlap."""

import itertools

import pytest

from benchmarks import reports
from tests.helpers.results import results_doc


def _doc(samples=450):
    doc = results_doc(latencies=(2.0, 1.0, 0.5))
    doc["dataset"]["samples"] = samples
    rows = doc["results"]
    rows[1]["device_class"], rows[2]["device_class"] = "CPU", "CPU"
    mcu = {**rows[2], "name": "mcu", "runtime": "tflm", "device_class": "microcontroller",
           "latency": {**rows[2]["latency"], "p50_ms": 9.0}}
    gained = {**rows[2], "name": "onnx-int8", "runtime": "onnxruntime", "device_class": "CPU",
              "latency": {**rows[2]["latency"], "p50_ms": 0.7}, "accuracy": {"top1": 0.9067},
              "accuracy_drop_pp": {"top1": -0.67}, "speedup_vs_reference": 2.0 / 0.7}  # a "gain" of 3 in 450
    doc["results"] += [mcu, gained]
    doc["title"] = "cnn.keras, recipe int8"
    doc["refused"] = [{"target": "openvino-int8", "exit_code": 5,
                       "reason": "openvino-int8: parity check failed: top-1 agreement 83.1% is below the floor 95%"}]
    return doc


def test_recommends_the_fastest_within_budget_per_device_class_and_says_why():
    lines = reports.recommendations(_doc(), budget_pp=1.0)
    # tflite-int8 (0.5 ms) drops 2 pt, over the budget; onnx-int8 is the fastest within it
    assert lines[0].startswith("CPU: ship onnx-int8: fastest within 1 pt (0.700 ms, 2.86× the float model")
    assert lines[1].startswith("microcontroller: nothing within 1 pt")
    assert "closest mcu (+2.00 pt, the fastest at that loss)" in lines[1]
    generous = reports.recommendations(_doc(), budget_pp=3.0)
    assert generous[0].startswith("CPU: ship tflite-int8") and "measured on this host with TFLite Micro" in generous[1]


def test_a_difference_within_the_sampling_noise_is_not_shown_as_a_gain():
    doc = _doc(samples=450)
    noise = reports.noise_pp(doc)
    assert noise == pytest.approx(100 * 1.96 * (0.9 * 0.1 / 450) ** 0.5)  # ±2.77 pt for 90 % on 450 samples
    text = reports.render(doc, "md")
    assert "| onnx-int8 |" in text and "≈-0.67" in text and "±2.77 pt" in text
    figure = reports.accuracy_latency_figure(doc)
    front = [line for line in figure.axes[0].get_lines() if line.get_label() == "Pareto front"][0]
    assert max(front.get_ydata()) == pytest.approx(90.0)  # the noise "gain" does not lead the front


def test_reports_carry_the_title_the_refused_targets_and_host_measured_devices():
    doc = _doc()
    for fmt in ("md", "html"):
        text = reports.render(doc, fmt)
        assert "Benchmark report: cnn.keras, recipe int8" in text
        assert "openvino-int8" in text and "below the floor 95%" in text
        assert "mcu †" in text and "TFLite Micro&#x27;s reference kernels" in text if fmt == "html" else \
            "TFLite Micro's reference kernels" in text
        assert "What to ship, per device class" in text


def test_plot_labels_never_overlap():
    """Measured from the rendered text boxes: names sit in a legend beside the axes, not on points
    that may coincide (three fp32 names were drawn on top of each other)."""
    doc = _doc()
    for row in doc["results"][1:]:  # several artifacts at the same place
        row["latency"] = {**row["latency"], "p50_ms": 1.0}
        row["accuracy"] = {"top1": 0.9}
    figure = reports.accuracy_latency_figure(doc)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    from matplotlib.text import Text

    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    drawn = figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)  # what the PNG holds
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    boxes = [(name, box) for name, box in boxes if drawn.x0 - 1 <= box.x0 and box.x1 <= drawn.x1 + 1]
    assert {"tflite-fp32", "tflite-int8", "mcu", "onnx-int8"} <= {name for name, _ in boxes}
    overlaps = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
                if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0]
    assert not overlaps, overlaps
