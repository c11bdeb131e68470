"""The click CLI: help with examples, inspect, targets, demo, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from compressor.app.cli import cli, main
from tests.helpers import models


def _commands():
    return sorted(cli.commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"compressor {command}" in result.output


def test_top_level_help_lists_exit_codes():
    result = CliRunner().invoke(cli, ["--help"])
    assert "Example:" in result.output
    for code in ("3  bad input", "4  unsupported model", "5  parity failure"):
        assert code in result.output


def _run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_inspect_json_reports_hand_counted_macs(mnist_cnn_file, capsys):
    code, out, _ = _run_main(["inspect", str(mnist_cnn_file), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["macs"] == 541_440 and data["params"] == 347_146
    assert data["targets"]["tflite-int8"] is None


def test_inspect_table(mnist_cnn_file, capsys):
    code, out, _ = _run_main(["inspect", str(mnist_cnn_file)], capsys)
    assert code == 0 and "541,440" in out and "Conv2D" in out


def test_inspect_lists_targets_that_cannot_take_an_lstm(tmp_path, capsys):
    path = tmp_path / "k3.keras"
    models.keras3_all_layers().save(path)
    code, out, _ = _run_main(["inspect", str(path), "--json"], capsys)
    assert code == 0
    targets = json.loads(out)["targets"]
    assert "LSTM" in targets["mcu"] and targets["onnx-fp32"] is None


def test_bad_input_exit_code_and_one_line(tmp_path, capsys):
    code, out, err = _run_main(["inspect", str(tmp_path / "missing.keras")], capsys)
    assert code == 3
    assert err.strip().count("\n") == 0 and "no such file" in err and "Traceback" not in err


def test_lambda_model_exit_code(tmp_path, capsys):
    path = tmp_path / "lambda.keras"
    models.keras3_with_lambda().save(path)
    code, _, err = _run_main(["inspect", str(path)], capsys)
    assert code == 3 and "Lambda" in err
    code, out, _ = _run_main(["inspect", str(path), "--trust-model", "--json"], capsys)
    assert code == 0 and json.loads(out)["layers"][0]["type"] == "Lambda"


def test_usage_error_exit_code(capsys):
    code, _, err = _run_main(["inspect"], capsys)
    assert code == 2 and "Missing argument" in err


def test_targets_lists_every_profile(capsys):
    from targets import PROFILES

    code, out, _ = _run_main(["targets", "--json"], capsys)
    assert code == 0
    listed = json.loads(out)
    assert [p["name"] for p in listed["profiles"]] == list(PROFILES)
    assert listed["host"]["cpu_class"] in {c["name"] for c in listed["cpu_classes"]}  # this machine's, with its flags


def test_demo_runs_the_whole_job_on_the_sample_model(tmp_path, capsys):
    import sample_models
    from compressor.models import load_source
    from targets import PROFILES, profiles_for

    out = tmp_path / "demo"
    code, text, _ = _run_main(["demo", "-o", str(out), "--rounds", "1", "--min-seconds", "0", "--json"], capsys)
    assert code == 0
    data = json.loads(text)
    applicable = profiles_for(load_source(sample_models.path("mnist_cnn")))  # bf16 only on CPUs that have it
    assert set(PROFILES) - set(applicable) <= {"openvino-bf16"}
    assert sorted(data["exported"]) == sorted(applicable) and data["failed"] == {}
    baseline, step = data["compression"]["baseline"], data["compression"]["steps"][0]
    assert baseline["macs"] == 541_440 and step["macs"] < 0.5 * baseline["macs"]
    rows = {r["name"]: r for r in data["results"]["results"]}
    assert rows["float (TensorFlow)"]["accuracy"]["top1"] > 0.9
    assert all(abs(rows[t]["accuracy_drop_pp"]["top1"]) < 3 for t in applicable)
    assert (out / "report.html").is_file() and (out / "mcu" / "model_data.cc").is_file()


def test_console_script_in_a_subprocess(mnist_cnn_file):
    script = Path(sys.executable).with_name("compressor")
    assert script.exists(), "install the project (pip install -e .) to get the console script"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert "compressor, version" in version.stdout
    result = subprocess.run([script, "inspect", str(mnist_cnn_file), "--json"], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 0 and json.loads(result.stdout)["macs"] == 541_440
    assert "cuda" not in result.stderr.lower()  # library start-up noise is muted without -v
    bad = subprocess.run([script, "inspect", str(mnist_cnn_file.parent)], capture_output=True, text=True)
    assert bad.returncode == 3 and "not a SavedModel" in bad.stderr


def test_errors_are_json_on_stdout_with_json(tmp_path, capsys):
    import json

    from tests.helpers.cli import run_cli

    code, out, err = run_cli(["inspect", str(tmp_path / "missing.keras"), "--json"], capsys)
    assert code == 3 and "no such file" in err
    assert json.loads(out) == {"error": {"message": err.strip(), "exit_code": 3}}
    code, out, err = run_cli(["export", str(tmp_path / "m.keras"), "-t", "tpu9000", "-o", str(tmp_path), "--json"],
                             capsys)
    assert code == 2 and json.loads(out)["error"]["message"].startswith("Error: unknown target 'tpu9000'")
