"""Interrupted runs leave no half-written output that looks valid, and never touch the input."""

import dataclasses
import errno
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compressor import atomic
from compressor.errors import BadInputError
from targets import export, open_artifact
from targets.runtime import runtimes
from targets.runtimes import litert
from tests.helpers.cli import run_cli


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or ".tmp" in p.name)


@pytest.mark.parametrize("interruption", [RuntimeError("converter crashed"), KeyboardInterrupt()])
def test_interrupted_export_leaves_nothing(interruption, tiny_cnn, digits8, tmp_path, monkeypatch):
    def crash(source, profile, calibration, workdir):
        (workdir / "model.tflite").write_bytes(b"TFL3 half written")
        raise interruption

    monkeypatch.setitem(runtimes(), "litert", dataclasses.replace(litert.RUNTIME, export=crash))
    with pytest.raises(type(interruption)):
        export(tiny_cnn, "tflite-fp32", out_dir=tmp_path, validation=digits8[1])
    assert list(tmp_path.iterdir()) == []


def test_full_disk_gives_a_clear_error_and_leaves_nothing(tiny_cnn, digits8, tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(BadInputError, match="No space left on device"):
        export(tiny_cnn, "tflite-fp32", out_dir=tmp_path, validation=digits8[1])
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old report")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic.write_text(target, "new report")
    assert target.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_sigterm_mid_run_cleans_up_and_keeps_input(tmp_path, tiny_cnn, digits8, capsys):
    model = tmp_path / "in" / "tiny.keras"
    model.parent.mkdir()
    tiny_cnn.save(model)
    train, test = digits8
    np.savez(tmp_path / "in" / "train.npz", x=train.x, y=train.y)
    np.savez(tmp_path / "in" / "test.npz", x=test.x, y=test.y)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("compressor")
    targets = ["openvino-fp32", "openvino-fp16", "openvino-int8", "onnx-int8", "tflite-int8"]
    command = [script, "compress", str(model), "--data", str(model.parent / "train.npz"), "--eval-data",
               str(model.parent / "test.npz"), "-o", str(out), "--rounds", "1", "--min-seconds", "0"]
    for name in targets:
        command += ["-t", name]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (out.is_dir() and any(".partial" in p.name for p in out.iterdir())):
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "nothing half-written" in err
    assert _leftovers(out) == []
    assert not (out / "run.json").exists(), "an interrupted run is not marked complete"
    for folder in out.iterdir():
        if folder.is_dir():  # any target folder present is complete and verified
            artifact = open_artifact(folder)
            assert json.loads((folder / "manifest.json").read_text())["parity"]["passed"] and artifact.path.exists()
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest
    # the interrupted run's folder is marked as this tool's: --overwrite replaces it
    code, _, err = run_cli(["compress", str(model), "-r", "int8", "-t", "tflite-fp32", "--data",
                            str(model.parent / "train.npz"), "--eval-data", str(model.parent / "test.npz"), "-o",
                            str(out), "--overwrite", "--rounds", "1", "--min-seconds", "0"], capsys)
    assert code == 0, err
    assert (out / "run.json").is_file() and not (out / ".compressor-run").exists()


def test_an_interrupt_that_surfaces_as_another_error_stops_every_target(tiny_cnn, digits8, tmp_path, monkeypatch):
    """SIGTERM inside `import openvino` came out as "ImportError: initialization failed": export_many
    must not record it as one target's bug and go on with the others."""
    from targets import export_many

    def interrupted_import(source, profile, calibration, workdir):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # what a native module init makes of it

    monkeypatch.setitem(runtimes(), "litert", dataclasses.replace(litert.RUNTIME, export=interrupted_import))
    with pytest.raises(ImportError):
        export_many(tiny_cnn, ["tflite-fp32", "onnx-fp32"], out_dir=tmp_path, validation=digits8[1])
    assert list(tmp_path.iterdir()) == []  # onnx-fp32 was not started after the interrupt


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowing it reproduces
def test_a_signal_the_interpreter_swallowed_still_stops_the_run(tiny_cnn, digits8, tmp_path):
    """SIGTERM that lands in a weakref callback (an import's module lock, seen in CI) raises there,
    and Python only prints "Exception ignored": the next step of the run raises it again."""
    import gc
    import weakref

    from compressor import interrupts
    from targets import export_many

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _: interrupts._unwind(signal.SIGTERM, None))  # noqa: F841
    del thing
    gc.collect()
    assert interrupts.interrupted()  # remembered, though the KeyboardInterrupt itself was ignored
    train, test = digits8
    try:
        with pytest.raises(KeyboardInterrupt):
            export_many(tiny_cnn, ["onnx-fp32"], out_dir=tmp_path, calibration=train, validation=test)
        assert list(tmp_path.iterdir()) == []
    finally:
        interrupts._received.clear()
