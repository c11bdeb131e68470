"""The end-to-end commands: compress, export, bench, report, embed, recipes; output folders; exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor.app.cli import main
from targets import embedding
from tests.helpers.cli import run_cli, write_model_and_data

FAST_BENCH = ["--rounds", "1", "--min-seconds", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_cnn, digits8):
    return write_model_and_data(tmp_path_factory.mktemp("cli"), tiny_cnn, digits8)


@pytest.fixture(scope="module")
def compressed(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    args = ["compress", str(files / "tiny.keras"), "-r", "structured50-int8", "-t", "tflite-int8", "-t", "onnx-int8",
            "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"), "-o", str(out), *FAST_BENCH,
            "--max-drop", "5"]  # half the channels of a 1,400-parameter CNN cost it 2 pt against the model given
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    return out


def test_compress_writes_the_documented_layout(compressed):
    names = sorted(p.name for p in compressed.iterdir())
    assert names == ["model.keras", "onnx-int8", "report.html", "report.md", "results.csv", "results.json", "run.json",
                     "tflite-int8"]
    for target, artifact in (("tflite-int8", "model.tflite"), ("onnx-int8", "model.onnx")):
        manifest = json.loads((compressed / target / "manifest.json").read_text())
        assert (compressed / target / artifact).is_file() and manifest["parity"]["passed"]
        assert manifest["recipe"]["recipe"]["name"] == "structured50-int8"
        assert manifest["recipe"]["steps"][0]["macs"] < manifest["recipe"]["baseline"]["macs"]
    results = json.loads((compressed / "results.json").read_text())
    assert {r["name"] for r in results["results"]} == {"float (TensorFlow)", "tflite-int8", "onnx-int8"}
    run = json.loads((compressed / "run.json").read_text())
    assert run["exported"] == ["tflite-int8", "onnx-int8"] and run["failed"] == {}
    assert "| tflite-int8 |" in (compressed / "report.md").read_text()


def test_existing_output_folder_is_refused_then_replaced_with_overwrite(compressed, files, capsys):
    args = ["compress", str(files / "tiny.keras"), "-t", "tflite-fp32", "--data", str(files / "train.npz"),
            "--eval-data", str(files / "test.npz"), "-o", str(compressed), *FAST_BENCH]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "exists and is not empty" in err
    assert (compressed / "onnx-int8").is_dir(), "a refused run touches nothing"


def test_overwrite_never_deletes_a_foreign_folder(files, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    args = ["compress", str(files / "tiny.keras"), "-t", "tflite-fp32", "--data", str(files / "train.npz"),
            "--eval-data", str(files / "test.npz"), "-o", str(foreign), "--overwrite", *FAST_BENCH]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "left untouched" in err
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_output_folder_containing_the_input_is_refused(files, capsys):
    args = ["compress", str(files / "tiny.keras"), "-t", "tflite-fp32", "--data", str(files / "train.npz"),
            "--eval-data", str(files / "test.npz"), "-o", str(files)]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "contains the input" in err


def test_unwritable_output_folder(files, tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/compressor-out")  # even root cannot create folders here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    args = ["compress", str(files / "tiny.keras"), "-t", "tflite-fp32", "--data", str(files / "train.npz"),
            "--eval-data", str(files / "test.npz"), "-o", str(target)]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "cannot write there" in err


def test_bench_and_report_regenerate_every_format(compressed, files, tmp_path, capsys):
    code, out, _ = run_cli(["bench", str(compressed), "--eval-data", str(files / "test.npz"), "--source",
                         str(files / "tiny.keras"), "-o", str(tmp_path), "--rounds", "1", "--min-seconds", "0",
                         "--json"], capsys)
    assert code == 0 and len(json.loads(out)["results"]) == 3
    for fmt in ("md", "csv", "html", "json"):
        code, text, _ = run_cli(["report", str(tmp_path / "results.json"), "--format", fmt], capsys)
        assert code == 0 and "tflite-int8" in text
    code, _, _ = run_cli(["report", str(tmp_path / "results.json"), "-f", "html", "-o", str(tmp_path / "r.html")],
                      capsys)
    assert code == 0 and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_bench_refuses_a_tampered_artifact(compressed, files, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(compressed / "tflite-int8", copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[100] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    code, _, err = run_cli(["bench", str(copy), "--eval-data", str(files / "test.npz")], capsys)
    assert code == 3 and "does not match the manifest" in err


def test_export_command_and_parity_failure_exit_code(files, tmp_path, capsys):
    code, out, _ = run_cli(["export", str(files / "tiny.keras"), "-t", "openvino-fp16", "--data",
                         str(files / "train.npz"), "--eval-data", str(files / "test.npz"), "-o", str(tmp_path / "e"),
                         "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["details"]["weights"] == "fp16"
    scaled = tmp_path / "scaled.npz"
    with np.load(files / "train.npz") as data:
        np.savez(scaled, x=data["x"] * 0.01, y=data["y"])  # calibration on the wrong scale
    code, _, err = run_cli(["export", str(files / "tiny.keras"), "-t", "tflite-int8", "--data", str(scaled),
                         "--eval-data", str(files / "test.npz"), "-o", str(tmp_path / "p")], capsys)
    assert code == 5 and "parity check failed" in err
    assert not (tmp_path / "p" / "tflite-int8").exists()


def test_conversion_failure_exit_code(files, tmp_path, capsys):
    from compressor import keras_env

    tfk = keras_env.tf_keras()
    model = tfk.Sequential([tfk.Input((6,), dtype="int32"), tfk.layers.Embedding(10, 4), tfk.layers.LSTM(4),
                            tfk.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "lstm.keras")
    np.savez(tmp_path / "tokens.npz", x=np.ones((20, 6), np.int32), y=np.zeros(20, np.int64))
    code, _, err = run_cli(["export", str(tmp_path / "lstm.keras"), "-t", "mcu", "--data", str(tmp_path / "tokens.npz"),
                         "-o", str(tmp_path / "o")], capsys)
    assert code == 4 and "mcu: cannot take model" in err and "LSTM" in err


def test_embed_writes_an_array_equal_to_the_artifact(compressed, tmp_path, capsys):
    code, out, _ = run_cli(["embed", str(compressed / "tflite-int8"), "-o", str(tmp_path)], capsys)
    assert code == 0
    source = (tmp_path / "model_data.cc").read_text()
    assert embedding.bytes_from_c_source(source) == (compressed / "tflite-int8" / "model.tflite").read_bytes()


def test_recipes_command_lists_builtins(capsys):
    code, out, _ = run_cli(["recipes", "--json"], capsys)
    names = [r["name"] for r in json.loads(out)]
    assert code == 0 and {"int8", "prune50-int8", "structured50-int8", "distill-int8", "mcu"} <= set(names)


def test_unknown_target_and_recipe_exit_code(files, tmp_path, capsys):
    code, _, err = run_cli(["compress", str(files / "tiny.keras"), "-r", "nope", "--data", str(files / "train.npz"),
                         "--eval-data", str(files / "test.npz"), "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "unknown recipe 'nope'" in err  # a usage error, like an unknown option
    code, _, err = run_cli(["export", str(files / "tiny.keras"), "-t", "tpu9000", "--data", str(files / "train.npz"),
                         "-o", str(tmp_path / "y")], capsys)
    assert code == 2 and "unknown target 'tpu9000'" in err


def test_internal_error_exit_code_and_traceback_only_with_verbose(monkeypatch, capsys):
    import compressor.models.inspection

    def boom(model):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(compressor.models.inspection, "inspect_model", boom)
    from tests.helpers import models

    code, _, err = run_cli(["inspect", str(Path(__file__))], capsys)  # unknown format: a user error first
    assert code == 3
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "compressor-internal-test.keras"
    models.tf_keras_mnist_cnn().save(path)
    code, _, err = run_cli(["inspect", str(path)], capsys)
    assert code == 1 and "Internal error: RuntimeError: simulated bug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["-v", "inspect", str(path)])
    path.unlink()


def test_compress_in_a_subprocess_with_the_console_script(files, tmp_path):
    script = Path(sys.executable).with_name("compressor")
    out = tmp_path / "sub"
    result = subprocess.run([script, "compress", str(files / "tiny.keras"), "-r", "int8", "-t", "tflite-dynamic-int8",
                             "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"), "-o", str(out),
                             *FAST_BENCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "export: tflite-dynamic-int8" in result.stderr and "Summary" in result.stdout
    assert (out / "tflite-dynamic-int8" / "model.tflite").is_file()
    quiet = subprocess.run([script, "-q", "recipes"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_export_with_the_users_own_parity_bounds(files, tmp_path, capsys):
    """--max-abs replaces the float targets' tolerance, --min-agreement the quantized targets' floor."""
    common = ["--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz")]
    code, _, err = run_cli(["export", str(files / "tiny.keras"), "-t", "tflite-fp16", "--max-abs", "1e-9", *common,
                         "-o", str(tmp_path / "strict")], capsys)
    assert code == 5 and "tflite-fp16: parity check failed" in err and "exceeds tolerance 1e-09" in err
    assert not (tmp_path / "strict" / "tflite-fp16").exists()

    code, out, _ = run_cli(["export", str(files / "tiny.keras"), "-t", "tflite-fp16", "-t", "tflite-int8",
                         "--max-abs", "0.05", "--min-agreement", "0.9", *common, "-o", str(tmp_path / "own"), "--json"],
                        capsys)
    assert code == 0
    fp16, int8 = (m["parity"] for m in json.loads(out))
    assert (fp16["tolerance"], fp16["min_agreement"], fp16["rule_set_by"]) == (0.05, 0.9, "user")  # fp16 has both
    assert fp16["reference_weights"] == "float16"
    assert (int8["tolerance"], int8["min_agreement"], int8["rule_set_by"]) == (None, 0.9, "user")

    code, out, _ = run_cli(["export", str(files / "tiny.keras"), "-t", "tflite-fp32", *common,
                         "-o", str(tmp_path / "default"), "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["parity"]["rule_set_by"] == "profile"
    assert json.loads(out)[0]["parity"]["tolerance"] == pytest.approx(1e-4)


def _broken_runtime(monkeypatch, name: str):
    """A bug inside one runtime's exporter (an unexpected exception, not a typed error)."""
    import dataclasses

    from targets.runtime import get_runtime, runtimes

    def crash(source, profile, calibration, workdir):
        raise RuntimeError("simulated bug in the exporter")

    monkeypatch.setitem(runtimes(), name, dataclasses.replace(get_runtime(name), export=crash))


def test_export_goes_on_after_one_target_fails_and_logs_the_bug(files, tmp_path, capsys, monkeypatch):
    _broken_runtime(monkeypatch, "litert")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["export", str(files / "tiny.keras"), "-t", "tflite-fp32", "-t", "onnx-fp32",
                              "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"),
                              "-o", str(out)], capsys)
    assert code == 1, err
    assert json.loads((out / "onnx-fp32" / "manifest.json").read_text())["parity"]["passed"]
    assert not (out / "tflite-fp32").exists()
    assert "Internal error: tflite-fp32: RuntimeError: simulated bug in the exporter" in err and "please report" in err
    assert "Traceback" not in err and "raise RuntimeError" in (out / "errors.log").read_text()


def test_compress_goes_on_after_one_target_fails_and_records_it(files, tmp_path, capsys, monkeypatch):
    _broken_runtime(monkeypatch, "onnxruntime")
    out = tmp_path / "out"
    code, _, err = run_cli(["compress", str(files / "tiny.keras"), "-r", "int8", "-t", "onnx-int8", "-t", "tflite-int8",
                         "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"), "-o", str(out),
                         *FAST_BENCH], capsys)
    assert code == 1, err
    run = json.loads((out / "run.json").read_text())
    assert run["exported"] == ["tflite-int8"]
    assert run["failed"]["onnx-int8"]["exit_code"] == 1 and "raise RuntimeError" in run["failed"]["onnx-int8"]["traceback"]
    assert {r["name"] for r in json.loads((out / "results.json").read_text())["results"]} == {
        "float (TensorFlow)", "tflite-int8"}
    assert "simulated bug" in (out / "errors.log").read_text()


def test_unknown_target_is_refused_before_any_work(files, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compress", str(files / "tiny.keras"), "-r", "structured50-int8", "-t", "tflite-int9",
                         "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"), "-o", str(out),
                         *FAST_BENCH], capsys)
    assert code == 2 and "unknown target 'tflite-int9'" in err
    assert not out.exists()  # nothing was compressed, nothing was written


def test_bench_takes_an_onnx_source_as_the_float_baseline(files, tmp_path, capsys):
    from targets.runtimes.onnx_runtime import convert_keras
    from tests.helpers import models  # noqa: F401  (TF_USE_LEGACY_KERAS set by conftest)

    from compressor import load_model

    source = tmp_path / "tiny.onnx"
    convert_keras(load_model(files / "tiny.keras"), source)
    out = tmp_path / "out"
    code, _, err = run_cli(["export", str(source), "-t", "openvino-int8", "--data", str(files / "train.npz"),
                         "--eval-data", str(files / "test.npz"), "-o", str(out)], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["bench", str(out), "--source", str(source), "--eval-data", str(files / "test.npz"),
                              "--json", *FAST_BENCH], capsys)
    assert code == 0, err
    doc = json.loads(stdout)
    rows = {r["name"]: r for r in doc["results"]}
    assert doc["reference"] == "float (ONNX Runtime)" and rows["float (ONNX Runtime)"]["kind"] == "source"
    assert rows["float (ONNX Runtime)"]["accuracy"]["top1"] > 0.8
    assert abs(rows["openvino-int8"]["accuracy_drop_pp"]["top1"]) < 5


def test_unlabelled_evaluation_data_shows_accuracy_as_not_measured(files, tmp_path, capsys, digits8):
    np.savez(tmp_path / "unlabelled.npz", x=digits8[1].x)
    code, out, err = run_cli(["compress", str(files / "tiny.keras"), "-r", "int8", "-t", "tflite-int8",
                              "--data", str(files / "train.npz"), "--eval-data", str(tmp_path / "unlabelled.npz"),
                              "-o", str(tmp_path / "out"), *FAST_BENCH], capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if "tflite-int8" in line or "float (TensorFlow)" in line]
    assert len(rows) == 2 and all("not measured" in row for row in rows) and "0.00%" not in out
