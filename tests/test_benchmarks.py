"""Benchmarks: latency statistics, accuracy maths, results schema, every report format, HTML."""

import base64
import csv
import io
import json
import re
import time
from html.parser import HTMLParser

import numpy as np
import pytest

from benchmarks import reports, results
from compressor import metrics as accuracy
from compressor.metrics.compare import fidelity as compare_fidelity
from benchmarks.harness import measure
from benchmarks.latency import LatencyConfig, harness_overhead_ns
from benchmarks.latency import measure as measure_latency
from compressor.errors import BadInputError
from tests.helpers.results import results_doc


class SleepRunner:
    """A fake runner whose 'inference' sleeps a known time."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, 0

    def run(self):
        self.calls += 1
        time.sleep(self.seconds)


def test_latency_statistics_follow_known_sleep_times():
    runner = SleepRunner(0.002)
    config = LatencyConfig(warmup_runs=3, warmup_seconds=0.0, min_runs=40, min_seconds=0.0)
    stats = measure_latency(runner.run, config)
    assert stats.runs == 40 and runner.calls == 1 + 3 + 40  # first inference, warm-up, timed
    assert 2.0 <= stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.p50_ms < 2.0 * 10  # sleep overshoot is bounded, not the point; ordering and floor are
    assert abs(stats.throughput_per_s - 1000.0 / stats.mean_ms) < 1e-6


def test_min_seconds_extends_the_run_count():
    config = LatencyConfig(warmup_runs=0, warmup_seconds=0.0, min_runs=5, min_seconds=0.2)
    stats = measure_latency(SleepRunner(0.01).run, config)
    assert stats.runs >= 15  # 0.2 s of 10 ms runs, not the 5 asked as a minimum


def test_summary_percentiles_on_fixed_samples():
    from benchmarks.latency import summarize

    stats = summarize([i * 1_000_000 for i in range(1, 101)], batch=4, first_ns=5_000_000)
    assert stats.p50_ms == pytest.approx(50.5) and stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01) and stats.min_ms == 1 and stats.max_ms == 100
    assert stats.throughput_per_s == pytest.approx(4 * 1000 / 50.5) and stats.first_inference_ms == 5


def test_harness_overhead_is_negligible_next_to_a_50us_model():
    assert harness_overhead_ns() < 0.05 * 50_000  # under 5 % of 50 µs


def test_bad_latency_config():
    with pytest.raises(BadInputError, match="at least 1"):
        LatencyConfig(min_runs=0)


def test_accuracy_and_drop_on_fixed_predictions():
    labels = np.array([0, 1, 2, 3])
    reference = np.eye(4)[[0, 1, 2, 3]]  # all right
    candidate = np.eye(4)[[0, 1, 2, 0]]  # one wrong
    ref_metrics = accuracy.evaluate(reference, labels)
    metrics = accuracy.evaluate(candidate, labels)
    assert ref_metrics == {"top1": 1.0} and metrics == {"top1": 0.75}  # top-5 needs ≥ 10 classes
    assert accuracy.drop_points(metrics, ref_metrics) == {"top1": 25.0}
    fidelity = compare_fidelity(reference, candidate)
    assert fidelity["agreement"] == 0.75 and fidelity["max_abs"] == 1.0


def test_top5():
    outputs = np.tile(np.arange(10, dtype=float), (2, 1))  # class 9 best, then 8, 7, 6, 5
    assert accuracy.evaluate(outputs, np.array([5, 4]))["top5"] == 0.5


def test_results_schema_round_trips(tmp_path):
    doc = results_doc()
    path = results.save(doc, tmp_path / "results.json")
    assert results.load(path) == json.loads(json.dumps(doc))


@pytest.mark.parametrize("broken,message", [
    ({"schema": "other"}, "not a benchmark results document"),
    ({"schema_version": 99}, "schema version 99"),
    ({"results": []}, "non-empty list"),
])
def test_results_schema_refuses_bad_documents(tmp_path, broken, message):
    doc = {**results_doc(), **broken}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match=message):
        results.load(tmp_path / "r.json")


def test_every_report_format_comes_from_one_json(tmp_path):
    doc = results_doc()
    written = reports.write_reports(doc, tmp_path)
    assert set(written) == {"json", "csv", "md", "html"}
    assert json.loads(written["json"].read_text()) == json.loads(json.dumps(doc))
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text())))
    assert [r["target"] for r in rows] == ["float (TensorFlow)", "tflite-fp32", "tflite-int8"]
    assert float(rows[2]["speedup_vs_float"]) == 4.0
    markdown = written["md"].read_text()
    assert "| tflite-int8 | int8 | 3.9 KiB |" in markdown and "4.00×" in markdown and "+2.00" in markdown


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_is_well_formed_self_contained_and_its_images_decode(tmp_path):
    from PIL import Image

    text = reports.render(results_doc(), "html")
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors and not checker.stack
    assert not re.search(r"(src|href)=\"https?://", text), "the report must not need the network"
    assert len(checker.images) == 2
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
        assert image.size[0] > 300


def test_html_renders_in_headless_chromium(tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); well-formedness is checked above")
    page = tmp_path / "report.html"
    page.write_text(reports.render(results_doc(), "html"))
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text, table and plots drew something, not a blank page


def test_pareto_front():
    points = [(1.0, 90.0, "a"), (2.0, 95.0, "b"), (3.0, 93.0, "c"), (0.5, 80.0, "d")]
    front = results.pareto_front(points, cost=lambda p: p[0], loss=lambda p: -p[1])
    assert [p[2] for p in front] == ["d", "a", "b"]


def test_measure_end_to_end_on_exported_artifacts(tmp_path, tiny_cnn, digits8):
    from targets import export

    train, test = digits8
    for target in ("tflite-fp32", "tflite-int8", "onnx-fp32"):
        export(tiny_cnn, target, out_dir=tmp_path / "out", calibration=train, validation=test)
    source = tmp_path / "tiny.keras"
    tiny_cnn.save(source)
    config = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=20, min_seconds=0.0)
    progress = []
    doc = measure([tmp_path / "out"], eval_data=test, source=source, config=config, rounds=2,
                  on_progress=progress.append)
    assert len(progress) == 8 and progress[0].startswith("benchmark 1/8: ")  # 4 candidates x 2 rounds
    assert progress[-1].startswith("benchmark 8/8: ") and "(round 2/2), about " in progress[-1]
    by_name = {r["name"]: r for r in doc["results"]}
    assert set(by_name) == {"float (TensorFlow)", "tflite-fp32", "tflite-int8", "onnx-fp32"}
    float_top1 = float(np.mean(tiny_cnn.predict(test.x, verbose=0).argmax(1) == test.y))
    assert by_name["float (TensorFlow)"]["accuracy"]["top1"] == pytest.approx(float_top1)
    assert by_name["tflite-fp32"]["accuracy_drop_pp"]["top1"] == pytest.approx(0.0, abs=1e-9)
    int8 = by_name["tflite-int8"]
    assert int8["accuracy_drop_pp"]["top1"] == pytest.approx((float_top1 - int8["accuracy"]["top1"]) * 100)
    assert int8["latency"]["rounds"] == 2 and int8["latency"]["runs"] >= 20
    assert int8["speedup_vs_runtime_fp32"] == pytest.approx(
        by_name["tflite-fp32"]["latency"]["p50_ms"] / int8["latency"]["p50_ms"])
    assert int8["size"]["bytes"] < by_name["tflite-fp32"]["size"]["bytes"]
    assert doc["machine"]["cores"] >= 1 and "tensorflow" in doc["machine"]["libraries"]
    reports.write_reports(doc, tmp_path / "reports")
    assert results.load(tmp_path / "reports" / "results.json")["reference"] == "float (TensorFlow)"


def test_benchmark_app_gets_the_runners_own_cpu_properties(tmp_path, tiny_cnn, digits8):
    import subprocess

    from tools import fidelity
    from targets import export
    from targets.runtimes.openvino_runtime import OpenVINORunner, cpu_config

    train, test = digits8
    folder = export(tiny_cnn, "openvino-fp32", out_dir=tmp_path, calibration=train, validation=test).folder
    command = fidelity.benchmark_app_command(folder / "model.xml", [1, 8, 8, 1], threads=1, seconds=1,
                                             workdir=tmp_path)
    loaded = json.loads((tmp_path / "ov-config.json").read_text())
    assert loaded == {"CPU": {k: str(v) for k, v in cpu_config(1).items()}}
    dumped = tmp_path / "dumped.json"
    proc = subprocess.run(command + ["-dump_config", str(dumped)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-1000:]
    applied = json.loads(dumped.read_text())["CPU"]
    for key, value in cpu_config(1).items():  # benchmark_app kept every property the runner sets
        assert applied[key] == str(value)
    runner = OpenVINORunner(folder / "model.xml", threads=1)
    assert runner._compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert fidelity.MEDIAN.search(proc.stdout)


def test_fidelity_compare_alternates_rounds(tmp_path, tiny_cnn, digits8):
    from tools import fidelity
    from targets import export

    train, test = digits8
    folder = export(tiny_cnn, "openvino-int8", out_dir=tmp_path, calibration=train, validation=test).folder
    result = fidelity.compare(folder, seconds=1, rounds=2)
    assert len(result["harness_rounds_ms"]) == len(result["benchmark_app_rounds_ms"]) == 2
    assert result["harness_p50_ms"] > 0 and result["benchmark_app_median_ms"] > 0
    assert result["ratio"] == pytest.approx(result["harness_p50_ms"] / result["benchmark_app_median_ms"])
    with pytest.raises(BadInputError, match="benchmark_app measures OpenVINO IR"):
        fidelity.compare(export(tiny_cnn, "onnx-fp32", out_dir=tmp_path, validation=test).folder)


def test_openvino_static_batch_is_compared_with_the_same_ir_made_dynamic(tmp_path, tiny_cnn, digits8):
    import openvino as ov

    from tools import openvino_batch
    from targets import export

    train, test = digits8
    folder = export(tiny_cnn, "openvino-int8", out_dir=tmp_path, calibration=train, validation=test).folder
    copy = openvino_batch._dynamic_copy(folder / "model.xml", tmp_path)
    assert ov.Core().read_model(str(copy)).inputs[0].get_partial_shape()[0].is_dynamic
    result = openvino_batch.compare(folder, seconds=0.1, rounds=2)  # outputs of the two are checked equal inside
    assert len(result["static_rounds_ms"]) == len(result["dynamic_rounds_ms"]) == 2
    assert result["speedup"] == pytest.approx(result["dynamic_p50_ms"] / result["static_p50_ms"])
    with pytest.raises(BadInputError, match="not an OpenVINO IR with a static batch of 1"):
        openvino_batch.compare(export(tiny_cnn, "onnx-fp32", out_dir=tmp_path, validation=test).folder)


def test_side_by_side_alternates_in_abba_order():
    from tools.side_by_side import alternate

    calls = []
    timers = {name: (lambda name=name: calls.append(name) or float(len(calls))) for name in ("a", "b")}
    values = alternate(timers, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert values == {"a": [1.0, 4.0, 5.0], "b": [2.0, 3.0, 6.0]}
    with pytest.raises(BadInputError, match="rounds must be at least 1"):
        alternate(timers, 0)


def test_one_target_measured_from_several_folders_gets_one_name_each():
    """Runs in folders of their own are told apart by the run's folder; copies side by side in
    one folder by their own folder's name: no result of a document overwrites another."""
    from pathlib import Path

    from benchmarks.harness import Candidate, _named_apart

    make = lambda path: Candidate("onnx-int8", "artifact", Path(path), "onnxruntime", "int8", {})  # noqa: E731
    names = [c.name for c in _named_apart([make("out/int8/onnx-int8"), make("out/structured25/onnx-int8"),
                                           make("ab/onnx-int8"), make("ab/onnx-int8-before"),
                                           Candidate("onnx-fp32", "artifact", Path("ab/onnx-fp32"), "onnxruntime",
                                                     "fp32", {})])]
    assert names == ["onnx-int8 [int8]", "onnx-int8 [structured25]", "onnx-int8 [onnx-int8]",
                     "onnx-int8 [onnx-int8-before]", "onnx-fp32"]
