"""The accuracy budget: int8 that misses it gets the layers that cost accuracy kept in float,
found by measuring each layer's effect on the output; when nothing meets it, exit 5 and no
artifact."""

import json
import re

from pathlib import Path

import numpy as np
import pytest

from benchmarks import reports
from benchmarks.latency import runner_p50_ms
from compressor.data import Dataset
from compressor.errors import ParityError
from compressor.metrics.loss import Loss
from targets import export, open_artifact
from targets.budget import sensitivity as recovery
from targets.runtime import run_batched
from targets.runtimes.litert.convert import convert_isolated
from tests.helpers.cli import run_cli
from tests.helpers.models import outlier_inputs, outlier_mlp, outlier_regressor
from tests.helpers.results import results_doc


@pytest.fixture(scope="module")
def outlier(digits8):
    train, test = digits8
    return (outlier_mlp(), Dataset(outlier_inputs(train.x), train.y, "digits + offset:train"),
            Dataset(outlier_inputs(test.x), test.y, "digits + offset:test"))


@pytest.mark.parametrize("target, hidden", [("onnx-int8", "outlier_mlp/hidden/MatMul/MatMulAddFusion"),
                                            ("openvino-int8", "outlier_mlp/hidden/MatMul"),
                                            ("tflite-int8", "outlier_mlp/hidden/MatMul;outlier_mlp/hidden/Relu;"
                                                            "outlier_mlp/hidden/BiasAdd")])
def test_the_search_keeps_exactly_the_layer_that_costs_accuracy_in_float(outlier, tmp_path, target, hidden,
                                                                         monkeypatch):
    from targets.runtimes import litert
    from targets.runtimes.litert import mixed

    model, train, test = outlier
    float_top1 = float(np.mean(model.predict(test.x, verbose=0).argmax(-1) == test.y))
    calibrations = []
    for module in (mixed, litert):  # wherever the LiteRT target calls the converter's child process
        monkeypatch.setattr(module, "convert_isolated", lambda *a, **k: calibrations.append(k) or convert_isolated(
            *a, **k), raising=False)
    with pytest.raises(ParityError):  # full int8 rounds every pixel to zero: refused by the floor
        export(model, target, out_dir=tmp_path / "plain", calibration=train, validation=test)
    result = export(model, target, out_dir=tmp_path / "budget", calibration=train, validation=test, max_drop=1.0,
                    timer=runner_p50_ms)
    # LiteRT: both exports' full int8, the search and the artifact written quantize one calibration (the
    # converter's child process, once: full int8's, its calibrated model kept)
    assert calibrations == ([{"keep_calibrated": True}] if target == "tflite-int8" else [])
    budget = result.manifest["budget"]
    found = budget["recovery"]
    assert found["float_nodes"] == [hidden]  # the one layer whose input carries the offset, nothing more
    assert found["full_int8_p50_ms"] > 0 and found["tried"][0]["p50_ms"] > 0  # each k's latency, measured
    assert found["full_int8_drop_pp"] is None and "parity check failed" in found["full_int8"]
    # quantized alone it makes (nearly) all of full int8's output noise
    assert found["sensitivity"][0]["node"] == hidden and found["sensitivity"][0]["noise_share"] > 0.9
    # one layer in float: measured edited from full int8 where the runtime can, then quantized for real
    assert [(t["k"], bool(t.get("edited"))) for t in found["tried"]] == (
        [(1, False)] if target == "tflite-int8" else [(1, True), (1, False)])
    # the cheaper rung first: every other calibration the runtime offers, exported and measured, did not do it
    expected = {"onnx-int8": ["percentile", "entropy"], "openvino-int8": ["mixed"], "tflite-int8": []}[target]
    assert [t.get("calibration") or t.get("preset") for t in found["tried_alternatives"]] == expected
    assert result.manifest["details"].get("float_nodes") == [hidden] or \
        result.manifest["details"]["quantization"]["float_nodes"] == [hidden]
    # the artifact written is the one measured: its own top-1 is within the budget
    runner = open_artifact(result.folder).runner()
    outputs = run_batched(runner, test.x)[0]
    runner.close()
    assert float_top1 - float(np.mean(outputs.argmax(-1) == test.y)) <= 0.01
    assert budget["drop_pp"] <= 1.0 and budget["max_drop_pp"] == 1.0


def test_full_int8_within_budget_is_left_alone(tiny_cnn, digits8, tmp_path):
    train, test = digits8
    result = export(tiny_cnn, "openvino-int8", out_dir=tmp_path, calibration=train, validation=test, max_drop=5.0)
    budget = result.manifest["budget"]
    assert budget["recovery"] is None and budget["drop_pp"] <= 5.0
    assert budget["metric"] == "top-1 points on the validation labels"


def test_budget_exhausted_exits_5_and_writes_nothing(outlier, tmp_path, capsys, monkeypatch):
    model, train, test = outlier
    model.save(tmp_path / "outlier.keras")
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y)
    np.savez(tmp_path / "test.npz", x=test.x, y=test.y)
    monkeypatch.setattr(recovery, "SEARCH", False)  # no layer may stay float: nothing can meet the budget
    code, _, err = run_cli(["export", str(tmp_path / "outlier.keras"), "-t", "onnx-int8", "--max-drop", "1",
                            "--data", str(tmp_path / "train.npz"), "--eval-data", str(tmp_path / "test.npz"),
                            "-o", str(tmp_path / "out")], capsys)
    assert code == 5
    assert "onnx-int8: full int8 parity check failed on 450 validation samples: top-1 agreement" in err
    assert "no mix of int8 and float met the budget of 1 pt (no layer could be kept in float)" in err
    assert "-r qat-int8 (quantization-aware fine-tuning" in err  # the next rung, by its recipe name
    assert not (tmp_path / "out" / "onnx-int8").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no staging folder left either
    # integer-only hardware has no float layer to fall back on: it points to QAT at once
    code, _, err = run_cli(["export", str(tmp_path / "outlier.keras"), "-t", "edgetpu", "--max-drop", "1",
                            "--data", str(tmp_path / "train.npz"), "--eval-data", str(tmp_path / "test.npz"),
                            "-o", str(tmp_path / "out")], capsys)
    assert code != 0 and "next: compressor compress -r qat-int8" in err
    assert "integer-only hardware cannot keep a layer in float" in err
    assert not (tmp_path / "out" / "edgetpu").exists()


@pytest.mark.parametrize("target, hidden", [("onnx-int8", "outlier_regressor/hidden/MatMul/MatMulAddFusion"),
                                            ("openvino-int8", "outlier_regressor/hidden/MatMul"),
                                            ("tflite-int8", "outlier_regressor/hidden/MatMul;outlier_regressor/"
                                                            "hidden/Relu;outlier_regressor/hidden/BiasAdd")])
def test_a_model_without_class_scores_is_held_to_an_snr_floor(digits8, tmp_path, target, hidden):
    train, test = (Dataset(outlier_inputs(d.x), d.y.astype(np.float32), d.name) for d in digits8)
    model = outlier_regressor()  # one linear unit: no class scores, no top-1 to lose
    result = export(model, target, out_dir=tmp_path, calibration=train, validation=test, max_drop=1.0, min_snr=25.0)
    budget = result.manifest["budget"]
    assert budget["metric"].startswith("SNR of output 'value'") and budget["min_snr_db"] == 25.0
    assert budget["drop_pp"] is None and budget["snr_db"] >= 25.0
    found = budget["recovery"]
    # every pixel rounded away: OpenVINO measured 0.8 dB on an x86-vnni host, 0.7 dB on an x86-avx2 one
    snr = re.search(r"output SNR (-?[\d.]+) dB is below the floor 20 dB", found["full_int8"])
    assert snr and float(snr.group(1)) < 2.0, found["full_int8"]
    assert found["float_nodes"] == [hidden]  # the one layer that matters, found by its SNR gain
    artifact = open_artifact(result.folder)
    runner = artifact.runner()
    try:
        out = run_batched(runner, [test.x])[0]
    finally:
        runner.close()
    reference = model.predict(test.x, verbose=0)
    assert 10 * np.log10(np.mean(reference ** 2) / np.mean((out - reference) ** 2)) >= 25.0
    doc = results_doc()
    doc["results"][2]["budget"] = budget
    assert f"| tflite-int8 | ≥ 25 dB | refused (parity floor) | 1: {hidden} | {budget['snr_db']:.1f} dB |" \
        in reports.render(doc, "md")


def test_reports_show_the_budget_and_the_layers_that_cost_accuracy():
    doc = results_doc()
    doc["results"][2]["budget"] = {
        "max_drop_pp": 1.0, "drop_pp": 0.22, "metric": "top-1 points on the validation labels", "samples": 450,
        "recovery": {"full_int8_drop_pp": 3.1, "float_nodes": ["conv1", "conv7"], "candidates": 12, "seconds": 40.2,
                     "sensitivity": [{"node": "conv1", "noise_share": 0.62, "agreement": 0.99},
                                     {"node": "conv7", "noise_share": 0.2, "agreement": 0.97}],
                     "full_int8_p50_ms": 0.2,
                     "tried": [{"k": 1, "float_nodes": ["conv1"], "drop_pp": 1.5, "agreement": 0.97, "p50_ms": 0.21},
                               {"k": 2, "float_nodes": ["conv1", "conv7"], "drop_pp": 0.22, "agreement": 0.985,
                                "p50_ms": 0.25}]}}
    text = reports.render(doc, "md")
    assert "| tflite-int8 | 1 pt | +3.10 pt | 2: conv1, conv7 | +0.22 pt | 12 | 40 |" in text
    assert "| tflite-int8 | conv1 | 62 % | 99.0 % |" in text
    # what each k cost: its loss and its latency beside full int8's
    assert "| tflite-int8 | 0 (full int8) | +3.10 pt | - | 0.200 | 1.00x |" in text
    assert "| tflite-int8 | 2 | +0.22 pt | 98.5 % | 0.250 | 1.25x |" in text
    html = reports.render(doc, "html")
    assert "Layers that cost accuracy" in html and html.count("data:image/png") >= 2
    assert json.loads(reports.render(doc, "json"))["results"][2]["budget"]["recovery"]["float_nodes"] == \
        ["conv1", "conv7"]


def test_the_onnx_search_starts_from_the_exports_own_full_int8(outlier, tmp_path, monkeypatch):
    """The budget's search on ONNX Runtime pre-processes, calibrates and quantizes nothing to get the
    full int8 it edits: it is the export's first attempt's (same graph, settings and data); the
    layers in float are quantized from its pre-processed graph and ranges, and the artifact
    written is the quantization the search measured."""
    import onnxruntime.quantization as ort_quantization

    from targets.runtimes.onnx_runtime import quantize

    model, train, test = outlier
    calls, real_quantize, real_pre_process = [], ort_quantization.quantize_static, quantize.pre_process

    def counted(source, destination, reader, **kwargs):
        cache = kwargs.get("calibration_cache_path")
        calls.append(("quantize", kwargs.get("calibrate_method").name, bool(kwargs.get("nodes_to_exclude")),
                      "ranges kept" if cache is not None and Path(cache).is_file() else "calibrated"))
        return real_quantize(source, destination, reader, **kwargs)

    def calibrated(prepared, reader, settings, cache, workdir):
        calls.append(("calibrate", settings["calibrate_method"].name))
        return real_calibrate(prepared, reader, settings, cache, workdir)

    real_calibrate = quantize.calibrate_to_cache
    monkeypatch.setattr(ort_quantization, "quantize_static", counted)
    monkeypatch.setattr(quantize, "calibrate_to_cache", calibrated)
    monkeypatch.setattr(quantize, "pre_process", lambda *a, **k: calls.append(("pre_process",)) or real_pre_process(
        *a, **k))
    result = export(model, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test, max_drop=1.0)
    assert result.manifest["budget"]["recovery"]["float_nodes"] == ["outlier_mlp/hidden/MatMul/MatMulAddFusion"]
    # each export calibrates ahead, then quantize_static reads those ranges from its cache
    assert calls == [("pre_process",), ("calibrate", "MinMax"), ("quantize", "MinMax", False, "ranges kept"),
                     ("pre_process",), ("calibrate", "Percentile"), ("quantize", "Percentile", False, "ranges kept"),
                     ("pre_process",), ("calibrate", "Entropy"), ("quantize", "Entropy", False, "ranges kept"),
                     # the search: its one layer in float quantized for real (full int8's ranges), no calibration;
                     # the artifact written is that quantization
                     ("quantize", "MinMax", True, "ranges kept")]
    # ... the same bytes as quantizing the artifact again from full int8's graph and ranges
    made = result.manifest["details"]["quantization"]
    again = tmp_path / "again"
    again.mkdir()
    kept = {key: value for key, value in quantize._KEPT.items() if key != "mixed"}
    monkeypatch.setattr(ort_quantization, "quantize_static", real_quantize)
    assert quantize._from_kept(kept, again / "model.onnx", again, quantize._static_settings(
        made["reduce_range"], made["activations"], "minmax"), made["float_nodes"]) is not None
    assert (again / "model.onnx").read_bytes() == (result.folder / "model.onnx").read_bytes()


def test_the_openvino_search_quantizes_nothing_twice(outlier, tmp_path, monkeypatch):
    """NNCF runs once per distinct quantization of a budgeted OpenVINO export: the search edits the
    export's own full int8, and the artifact with layers in float is the quantization the search's
    confirmation measured."""
    import importlib

    import weakref

    from targets import runtime

    quantize = importlib.import_module("targets.runtimes.openvino_runtime.quantize")  # the module, not its function
    model, train, test = outlier
    calls, real = [], quantize.quantize
    monkeypatch.setattr(runtime, "_CONVERSIONS", weakref.WeakKeyDictionary())  # nothing kept by earlier tests

    def counted(ov_model, calibration, **kwargs):
        calls.append((kwargs.get("preset", "performance"), tuple(kwargs.get("float_nodes", ()))))
        return real(ov_model, calibration, **kwargs)

    monkeypatch.setattr(quantize, "quantize", counted)
    result = export(model, "openvino-int8", out_dir=tmp_path, calibration=train, validation=test, max_drop=1.0)
    float_nodes = result.manifest["budget"]["recovery"]["float_nodes"]
    assert float_nodes == ["outlier_mlp/hidden/MatMul"]
    assert calls == [("performance", ()),  # full int8: refused
                     ("mixed", ()),  # the ladder's other preset
                     ("performance", tuple(float_nodes))]  # the search's one real quantization, and the artifact's


def test_litert_candidates_quantized_ahead_in_a_helper_process_are_the_same(outlier, tmp_path, monkeypatch):
    """LiteRT's helper process (started here for three candidates, as it would be for hundreds)
    quantizes the same bytes as this process, while this one quantizes what the helper has not
    started; the search chooses the same layers, and no process is left behind."""
    import psutil

    from targets.profiles import get_profile
    from targets.runtimes.litert import ahead, mixed
    from targets.runtimes.litert.convert import quantized_content

    model, train, test = outlier
    profile = get_profile("tflite-int8")
    calibrated = mixed.calibrated(model, profile, [train.x[:100]])
    nodes = mixed._float_op_outputs(calibrated)
    sets = [nodes[:i] + nodes[i + 1:] for i in range(len(nodes))] + [[]]  # each alone in int8, and full int8
    here = [quantized_content(calibrated, profile, s) for s in sets]
    in_here = []
    helper = ahead.Helper(calibrated, profile, lambda s: in_here.append(s) or quantized_content(
        calibrated, profile, s), tmp_path)
    process = helper._process
    try:
        helper.submit(sets)  # the first two sent to the helper, the others waiting
        assert [helper.take(s) for s in sets] == here
        assert in_here and len(in_here) < len(sets)  # some quantized here while waiting, the rest there
        assert helper.take(sets[0]) is None  # taken: not asked ahead any more
    finally:
        helper.close()
    assert process.poll() == 0 and not list(tmp_path.iterdir())  # ended when asked; its files taken

    monkeypatch.setattr(mixed, "HELPER_WORTH_SECONDS", 0.0)
    monkeypatch.setattr(mixed, "usable_cores", lambda: 2)
    started = []
    monkeypatch.setattr(ahead.Helper, "__init__", lambda self, *a, real=ahead.Helper.__init__: started.append(1) or
                        real(self, *a))
    result = export(model, "tflite-int8", out_dir=tmp_path, calibration=train, validation=test, max_drop=1.0)
    assert started == [1]
    assert result.manifest["budget"]["recovery"]["float_nodes"] == [
        "outlier_mlp/hidden/MatMul;outlier_mlp/hidden/Relu;outlier_mlp/hidden/BiasAdd"]
    assert not psutil.Process().children()


def test_a_miss_says_what_came_closest(outlier, tmp_path, monkeypatch):
    from compressor.errors import AccuracyBudgetError
    from targets.runtimes import onnx_runtime

    model, train, test = outlier
    real = onnx_runtime.MixedPrecision.__init__

    def only_the_head(self, *args, **kwargs):  # a candidate list without the layer that matters
        real(self, *args, **kwargs)
        self.nodes = [node for node in self.nodes if "classes" in node]

    monkeypatch.setattr(onnx_runtime.MixedPrecision, "__init__", only_the_head)
    # the head's one or two ops: one came closest on an x86-vnni host, two on an x86-avx2 one
    with pytest.raises(AccuracyBudgetError, match=r"closest: [12] layer\(s\) in float, \+\d+\.\d\d pt, under the "
                                                  r"parity floor: top-1 agreement \d+\.\d% is below the floor 95% "
                                                  r"\(outlier_mlp/classes") as caught:
        export(model, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test, max_drop=1.0)
    assert caught.value.exit_code == 5 and not list(tmp_path.iterdir())


MEMORY_SCRIPT = r"""
import json, sys
import numpy as np, psutil
from compressor import keras_env
from compressor.data import Dataset
from targets import export
from targets.budget import sensitivity as recovery

keras_env.set_seed(0)
tfk = keras_env.tf_keras()
L = tfk.layers
model = tfk.Sequential([tfk.Input((784,), name="x")] + [L.Dense(1024, activation="relu") for _ in range(3)]
                       + [L.Dense(10, activation="softmax")])  # 2.9 M parameters, 11.6 MB: 20x the MNIST sample
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (600, 784)).astype(np.float32)
y = model.predict(x, verbose=0).argmax(-1)
train, test = Dataset(x[:300], y[:300], "train"), Dataset(x[300:], y[300:], "test")
from targets import Parity
export(model, "onnx-int8", out_dir=sys.argv[1] + "/warm", calibration=train, validation=test,
       parity_rule=Parity(min_agreement=1e-6))  # the libraries loaded and warm, whatever it agrees
import threading, time
process = psutil.Process()
before, peak, done = process.memory_info().rss, [0], threading.Event()
def sample():  # the resident size while the budget's search runs, every 5 ms
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
records = []
real = recovery.search
def spy(*args, **kwargs):
    records.append(real(*args, **kwargs))
    return records[-1]
recovery.search = spy
try:
    export(model, "onnx-int8", out_dir=sys.argv[1] + "/budget", calibration=train, validation=test, max_drop=0.0)
except Exception as exc:
    pass  # within or over a zero budget: the pass ran either way
done.set()
sampler.join()
print(json.dumps({"before_mb": before / 2**20, "peak_mb": peak[0] / 2**20,
                  "measured": len(records[0].sensitivity) if records else 0}))
"""


@pytest.mark.slow
def test_the_sensitivity_pass_memory_is_bounded(tmp_path):
    """A model 20x the MNIST sample's size: every layer measured, memory grows by outputs and one
    candidate model at a time, not by the number of candidates (NNCF's accuracy control was killed
    at 24 GB on a real ONNX image classifier)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    # the four Dense layers and their activations (3 ReLU, the softmax), each quantized with it alone in float
    assert facts["measured"] == 8
    assert facts["peak_mb"] - facts["before_mb"] < 150, facts  # measured: 3 MB (745 MB before conversions were kept)


@pytest.mark.parametrize("target", ["onnx-int8", "openvino-int8"])
def test_candidates_measured_in_threads_rank_as_one_by_one(outlier, tmp_path, monkeypatch, target):
    """ONNX Runtime's and OpenVINO's candidates are measured several at once (threads): the
    ranking, every share to the digit, and the layers chosen are those of measuring one by one."""
    from targets.profiles import get_profile
    from targets.runtime import get_runtime

    model, train, test = outlier
    mixed = get_runtime(get_profile(target).runtime).mixed
    assert mixed.concurrent
    monkeypatch.setattr(recovery, "usable_cores", lambda: 2)
    batches = []
    real_each = recovery._Evaluator.each

    def each(self, measure, items, float_node_sets):
        batches.append(len(items))
        return real_each(self, measure, items, float_node_sets)

    monkeypatch.setattr(recovery._Evaluator, "each", each)
    records = []
    for concurrent in (True, False):
        monkeypatch.setattr(mixed, "concurrent", concurrent)
        result = export(model, target, out_dir=tmp_path / str(concurrent), calibration=train, validation=test,
                        max_drop=1.0)
        found = result.manifest["budget"]["recovery"]
        records.append((found["float_nodes"], [(s["node"], s.get("noise_share")) for s in found["sensitivity"]]))
    assert batches and max(batches) > 1  # a batch of several candidates, measured at once the first time
    assert records[0] == records[1]


@pytest.mark.parametrize("target", ["onnx-int8", "openvino-int8"])
def test_an_onnx_source_gets_the_same_recovery(outlier, tmp_path, target):
    """From the model's ONNX file: the layers are named in that graph (OpenVINO numbers unnamed
    nodes per process, so the search and the final export must see the same conversion)."""
    from compressor.models.onnx_source import load_onnx
    from targets.runtimes.onnx_runtime import convert_keras

    model, train, test = outlier
    convert_keras(model, tmp_path / "outlier.onnx")
    result = export(load_onnx(tmp_path / "outlier.onnx"), target, out_dir=tmp_path / "out", calibration=train,
                    validation=test, max_drop=1.0)
    found = result.manifest["budget"]["recovery"]
    assert len(found["float_nodes"]) == 1 and "hidden" in found["float_nodes"][0]
    assert result.manifest["budget"]["drop_pp"] <= 1.0


@pytest.mark.slow
def test_the_budget_counts_what_the_recipes_steps_lost(tiny_cnn, digits8, tmp_path):
    """The budget is the user's: against the model they gave, not the pruned one the steps made."""
    from compressor.app.workflow import JobSpec, run as run_job
    from tests.helpers.cli import write_model_and_data

    files = write_model_and_data(tmp_path, tiny_cnn, digits8)
    args = dict(targets=("onnx-int8",), data=str(files / "train.npz"), eval_data=str(files / "test.npz"))

    def run(model, recipe, **spec):
        return run_job(JobSpec(model, recipe, **spec))

    cut = {"name": "cut", "fine_tune": {"epochs": 0},
           "steps": [{"type": "prune_structured", "fraction": 0.75, "recalibrate_bn": False}]}
    outcome = run(str(files / "tiny.keras"), cut, out_dir=str(tmp_path / "cut"), max_drop=1.0, **args)
    assert not outcome.exported and outcome.failed[0].exit_code == 5
    assert "onnx-int8: the compressed float model itself loses" in outcome.failed[0].message
    assert "against the model before compression" in outcome.failed[0].message

    light = {"name": "light", "fine_tune": {"epochs": 1}, "steps": [{"type": "prune", "sparsity": 0.2}]}
    outcome = run(str(files / "tiny.keras"), light, out_dir=str(tmp_path / "light"), max_drop=5.0, **args)
    budget = outcome.exported[0].manifest["budget"]
    assert budget["against"] == "the model before compression"
    test = digits8[1]
    runner = open_artifact(outcome.exported[0].folder).runner()
    try:
        artifact_top1 = np.mean(run_batched(runner, [test.x])[0].argmax(-1) == test.y)
    finally:
        runner.close()
    user_top1 = np.mean(tiny_cnn.predict(test.x, verbose=0).argmax(-1) == test.y)
    assert budget["drop_pp"] == pytest.approx(100 * (user_top1 - artifact_top1), abs=1e-3)


def test_a_mix_within_the_budget_but_under_the_parity_floor_is_not_the_answer():
    """Top-1 may hold (or even rise) while the artifact agrees with its model on too few samples,
    or its other output falls under the SNR floor: its export would be refused by the floor, so
    the search must keep looking (a zoo ViT and a zoo detector did this)."""
    from targets.profiles import Parity

    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(10), 200)
    labels = scores.argmax(-1)
    boxes = rng.uniform(0, 1, (200, 4))
    swapped = scores.copy()
    swapped[:14] = scores[:14][:, ::-1]  # 14 of 200 samples change their top-1: 93 % agreement
    floor = Parity(min_agreement=0.95, min_snr_db=20.0)
    found = recovery.Recovery(budget_pp=20.0)
    single = recovery.Outputs([scores], 0, True, labels=labels, floor=floor, names=("scores",))
    measured = single.judge([swapped])
    assert measured.drop_pp == pytest.approx(7.0) and not found.holds(measured)  # within 20 pt, under the floor
    assert "top-1 agreement 93.0% is below the floor 95%" in measured.below_floor[0]
    assert found.holds(single.judge([scores]))
    # the budget against the model before compression, the floor against the exported one
    before = recovery.Outputs([scores], 0, True, labels=labels, baseline=[swapped], floor=floor, names=("scores",))
    assert found.holds(before.judge([scores]))
    # two outputs: class scores intact, boxes at 14 dB; the boxes are what the ranking must follow
    noisy = boxes + rng.normal(0, 0.2 * np.sqrt(np.mean(boxes ** 2)), boxes.shape)
    two = recovery.Outputs([scores, boxes], 0, True, labels=labels, floor=floor, names=("scores", "boxes"),
                           class_outputs=(True, False))
    measured = two.judge([scores, noisy])
    assert measured.drop_pp == 0.0 and not found.holds(measured)
    assert measured.below_floor[0].startswith("output 'boxes': output SNR 1")
    assert two.watched([scores, noisy]) == [0, 1] and two.watched([scores, boxes]) == [0]
    snr = recovery.Recovery(budget_pp=1.0, min_snr_db=30.0)
    assert snr.holds(Loss(None, None, 31.0)) and not snr.holds(Loss(None, None, 29.0))

def test_many_layers_are_ranked_by_runs_first_and_only_as_far_as_asked(monkeypatch):
    """A model with many quantized ops (a DenseNet has hundreds): runs of consecutive ops are
    quantized alone first, and a run is opened (its ops measured one by one) only while it may
    hold the next op of the order; the order is the one measuring every op would give."""
    monkeypatch.setattr(recovery, "RUNS", 5)
    layers = [f"op{i}" for i in range(40)]
    measured = []

    def share_alone(quantized):  # op33 makes the noise; the rest a little each, op5 the second most
        measured.append(list(quantized))
        return sum(0.9 if q == "op33" else 0.2 if q == "op5" else 0.01 for q in quantized), {}

    found = recovery.Recovery(budget_pp=1.0)
    ranking = recovery._Ranking(share_alone, layers, found, lambda line: None, "t")
    assert [r["layers"] for r in found.runs] == [8] * 5 and len(measured) == 5
    assert max(found.runs, key=lambda r: r["noise_share"])["first"] == "op32"
    assert ranking.first(1) == ["op33"] and ranking.measurements == 5 + 8  # one run opened
    assert ranking.first(2) == ["op33", "op5"] and ranking.measurements == 5 + 16
    assert {s["node"] for s in found.sensitivity} == {f"op{i}" for i in (*range(32, 40), *range(0, 8))}
    # with every op measured (runs of one), the same order
    monkeypatch.setattr(recovery, "RUNS", 40)
    exhaustive = recovery._Ranking(share_alone, layers, recovery.Recovery(budget_pp=1.0), lambda line: None, "t")
    assert exhaustive.measurements == 40 and exhaustive.first(12) == ranking.first(12)


@pytest.mark.parametrize("seed", range(5))
def test_the_ranking_by_runs_orders_as_measuring_every_layer_when_noise_adds_up(monkeypatch, seed):
    """Where each op's noise adds to the others' (a run's share is the sum of its ops'), the
    order by runs is exactly the order of measuring every op, at any k asked."""
    monkeypatch.setattr(recovery, "RUNS", 8)
    rng = np.random.default_rng(seed)
    layers = [f"op{i}" for i in range(int(rng.integers(20, 200)))]
    shares = dict(zip(layers, rng.pareto(1.5, len(layers)).tolist()))
    ranking = recovery._Ranking(lambda q: (sum(shares[n] for n in q), {}), layers, recovery.Recovery(budget_pp=1.0),
                                lambda line: None, "t")
    every = sorted(layers, key=lambda n: (-shares[n], layers.index(n)))
    for k in (1, 2, 3, 4, 6, 8, 12, 16, 24):
        assert ranking.first(k) == every[:k]


def test_a_run_that_cannot_be_quantized_alone_is_opened_first_and_its_failing_layer_left_out(monkeypatch):
    monkeypatch.setattr(recovery, "RUNS", 2)
    layers = [f"op{i}" for i in range(8)]

    def share_alone(quantized):
        if "op6" in quantized:
            raise ValueError("cannot quantize op6 alone")
        return 0.1 * len(quantized) + (0.5 if "op1" in quantized else 0.0), {}

    found = recovery.Recovery(budget_pp=1.0)
    ranking = recovery._Ranking(share_alone, layers, found, lambda line: None, "t")
    assert [r["noise_share"] for r in found.runs] == [0.9, None]
    assert ranking.first(8) == ["op1", "op0", "op2", "op3", "op4", "op5", "op7"]  # op6: not a candidate
    assert [s for s in found.sensitivity if "error" in s] == [{"node": "op6", "error": "cannot quantize op6 alone"}]


