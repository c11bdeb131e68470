"""The bad-input corpus: every case through the CLI, with its exit code and message asserted,
and every input file byte-for-byte unchanged afterwards."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from compressor import keras_env
from compressor.app.cli import main
from tests.helpers import models

USAGE, BAD_INPUT, CONVERSION = 2, 3, 4


@pytest.fixture(scope="module")
def good(tmp_path_factory, tiny_cnn, digits8):
    folder = tmp_path_factory.mktemp("good")
    tiny_cnn.save(folder / "tiny.keras")
    tiny_cnn.save(folder / "tiny.h5")
    train, test = digits8
    np.savez(folder / "train.npz", x=train.x, y=train.y)
    np.savez(folder / "test.npz", x=test.x, y=test.y)
    from targets import export
    from targets.runtimes.onnx_runtime import convert_keras

    convert_keras(tiny_cnn, folder / "tiny.onnx")
    export(tiny_cnn, "tflite-fp32", out_dir=folder / "artifacts", validation=test)
    return folder


def _write(path: Path, data) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _truncated(src: Path, dst: Path) -> Path:
    return _write(dst, src.read_bytes()[: len(src.read_bytes()) // 2])


def _flipped(src: Path, dst: Path, start: int = 16) -> Path:
    data = bytearray(src.read_bytes())
    for i in range(start, len(data), max(1, len(data) // 50)):
        data[i] ^= 0xFF
    return _write(dst, bytes(data))


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _artifact_copy(good: Path, tmp: Path, damage) -> Path:
    folder = tmp / "artifact"
    shutil.copytree(good / "artifacts" / "tflite-fp32", folder)
    damage(folder / "model.tflite", folder / "model.tflite")
    return folder


def _recipe(tmp: Path, text: str) -> Path:
    return _write(tmp / "recipe.yaml", text)


def _lambda_model(tmp: Path) -> Path:
    path = tmp / "lambda.keras"
    models.keras3_with_lambda().save(path)
    return path


def _escaping_onnx(good: Path, tmp: Path) -> Path:
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load(str(good / "tiny.onnx"))
    convert_model_to_external_data(proto, location="w.bin", size_threshold=0)
    folder = tmp / "onnx"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "m.onnx"))
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../secret.bin"
    onnx.save_model(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


def _hashing_model(tmp: Path) -> tuple[Path, Path]:
    tfk = keras_env.tf_keras()
    inp = tfk.Input((4,), dtype="int64")
    x = tfk.layers.Embedding(16, 4)(tfk.layers.Hashing(num_bins=16, name="hash")(inp))
    model = tfk.Model(inp, tfk.layers.Dense(3, activation="softmax")(tfk.layers.Flatten()(x)))
    model.save(tmp / "hashing.keras")
    data = _npz(tmp / "ids.npz", x=np.arange(80).reshape(20, 4).astype(np.int64), y=np.zeros(20, np.int64))
    return tmp / "hashing.keras", data


OUT_ROOT: list[Path] = []  # outputs of the export cases, under pytest's own (cleaned) temp folder


@pytest.fixture(scope="module", autouse=True)
def _out_root(tmp_path_factory):
    OUT_ROOT[:] = [tmp_path_factory.mktemp("bad-input-out")]
    yield
    OUT_ROOT.clear()


def _export(model, data, *extra, target="tflite-int8", eval_data=None):
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="out-", dir=OUT_ROOT[0]))  # never inside the inputs' folders
    args = ["export", str(model), "-t", target, "--data", str(data), "-o", str(out)]
    if eval_data is not None:
        args += ["--eval-data", str(eval_data)]
    return args + list(extra)


def _compress(good, recipe="int8", out=None, model=None):
    return ["compress", str(model or good / "tiny.keras"), "-r", str(recipe), "-t", "tflite-fp32", "--data",
            str(good / "train.npz"), "--eval-data", str(good / "test.npz"), "-o", str(out)]


# case: builder(good, tmp) -> (argv, inputs that must stay unchanged), exit code, message
CASES = {
    "empty .keras": (lambda g, t: (["inspect", str(_write(t / "e.keras", b""))], []), BAD_INPUT, "file is empty"),
    "truncated .keras": (lambda g, t: (["inspect", str(_truncated(g / "tiny.keras", t / "t.keras"))], []),
                         BAD_INPUT, "corrupt|truncated"),
    "bit-flipped .keras": (lambda g, t: (["inspect", str(_flipped(g / "tiny.keras", t / "b.keras"))], []),
                           BAD_INPUT, "corrupt|cannot load"),
    "truncated .h5": (lambda g, t: (["inspect", str(_truncated(g / "tiny.h5", t / "t.h5"))], []), BAD_INPUT,
                      "corrupt|truncated"),
    "bit-flipped .h5": (lambda g, t: (["inspect", str(_flipped(g / "tiny.h5", t / "b.h5"))], []), BAD_INPUT,
                        "corrupt|cannot load|refused to load"),  # a garbled config can name non-Keras code
    "empty .onnx": (lambda g, t: (_export(_write(t / "e.onnx", b""), g / "train.npz", target="onnx-fp32"), []),
                    BAD_INPUT, "file is empty"),
    "truncated .onnx": (lambda g, t: (_export(_truncated(g / "tiny.onnx", t / "t.onnx"), g / "train.npz",
                                              target="onnx-fp32"), []), BAD_INPUT, "corrupt or not an ONNX|invalid"),
    "bit-flipped .onnx": (lambda g, t: (_export(_flipped(g / "tiny.onnx", t / "b.onnx", 0), g / "train.npz",
                                                target="onnx-fp32"), []), BAD_INPUT, "corrupt or not an ONNX|invalid"),
    "truncated .tflite": (lambda g, t: (["bench", str(_artifact_copy(g, t, _truncated)), "--eval-data",
                                         str(g / "test.npz")], []), BAD_INPUT, "does not match the manifest"),
    "bit-flipped .tflite": (lambda g, t: (["bench", str(_artifact_copy(g, t, _flipped)), "--eval-data",
                                           str(g / "test.npz")], []), BAD_INPUT, "does not match the manifest"),
    "directory for a model file": (lambda g, t: (["inspect", str(t)], []), BAD_INPUT, "not a SavedModel"),
    "file for an artifact folder": (lambda g, t: (["bench", str(g / "train.npz"), "--eval-data", str(g / "test.npz")],
                                                  []), BAD_INPUT, "no manifest.json"),
    "wrong extension": (lambda g, t: (["inspect", str(_write(t / "m.h5", (g / "tiny.keras").read_bytes()))], []),
                        BAD_INPUT, "content is a keras model but the extension is '.h5'"),
    "unknown extension": (lambda g, t: (["inspect", str(_write(t / "m.pt", b"\x80\x02}q"))], []), BAD_INPUT,
                          "unknown model format"),
    "Lambda layer": (lambda g, t: (["inspect", str(_lambda_model(t))], []), BAD_INPUT, "Lambda layer runs"),
    "ONNX external data outside its folder": (lambda g, t: (_export(_escaping_onnx(g, t), g / "train.npz",
                                                                    target="onnx-fp32"), []),
                                              BAD_INPUT, "outside the model's folder"),
    "data of the wrong shape": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.zeros((4, 9, 9, 1),
                                              np.float32), y=np.zeros(4, int))), []), BAD_INPUT,
                                "shape 9x9x1 but the model takes 8x8x1"),
    "data of the wrong dtype": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.array([["a"] * 64]))),
                                              []), BAD_INPUT, "non-numeric dtype"),
    "NaN in data": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.full((4, 8, 8, 1), np.nan,
                                  np.float32))), []), BAD_INPUT, "NaN or Inf"),
    "Inf in data": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.full((4, 8, 8, 1), np.inf,
                                  np.float32))), []), BAD_INPUT, "NaN or Inf"),
    "zero samples": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.zeros((0, 8, 8, 1), np.float32))),
                                   []), BAD_INPUT, "zero samples"),
    "labels do not match samples": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.zeros((4, 8, 8, 1),
                                    np.float32), y=np.zeros(3, int))), []), BAD_INPUT, "3 labels for 4 samples"),
    "labels beyond the model's classes": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.zeros(
        (4, 8, 8, 1), np.float32), y=np.array([0, 1, 2, 12]))), []), BAD_INPUT, "label 12 is out of range"),
    "pickled .npz": (lambda g, t: (_export(g / "tiny.keras", _npz(t / "d.npz", x=np.array([{"a": 1}], dtype=object))),
                                   []), BAD_INPUT, "pickled"),
    "missing data file": (lambda g, t: (_export(g / "tiny.keras", t / "nope.npz"), []), BAD_INPUT, "no such file"),
    "recipe with an unknown key": (lambda g, t: (_compress(g, _recipe(t, "stepz: []"), t / "o"), []), BAD_INPUT,
                                   "unknown key 'stepz'"),
    "recipe with a wrong type": (lambda g, t: (_compress(g, _recipe(t, "seed: abc"), t / "o"), []), BAD_INPUT,
                                 "seed: must be int"),
    "recipe with sparsity 1.5": (lambda g, t: (_compress(g, _recipe(t, "steps: [{type: prune, sparsity: 1.5}]"),
                                                         t / "o"), []), BAD_INPUT, "between 0 and 1"),
    "recipe with 0 clusters": (lambda g, t: (_compress(g, _recipe(t, "steps: [{type: cluster, clusters: 0}]"),
                                                       t / "o"), []), BAD_INPUT, "at least 2 clusters"),
    "recipe that is not YAML": (lambda g, t: (_compress(g, _recipe(t, "steps: [unclosed"), t / "o"), []), BAD_INPUT,
                                "not valid YAML"),
    "unknown recipe": (lambda g, t: (_compress(g, "prune99", t / "o"), []), USAGE, "unknown recipe 'prune99'"),
    "unknown target": (lambda g, t: (_export(g / "tiny.keras", g / "train.npz", target="npu"), []), USAGE,
                       "unknown target 'npu' \\(valid: tflite-fp32"),
    "output folder is the input file": (lambda g, t: (_compress(g, out=g / "tiny.keras"), []), BAD_INPUT,
                                        "is or contains the input"),
    "output folder contains the input": (lambda g, t: (_compress(g, out=g), []), BAD_INPUT,
                                         "is or contains the input"),
    "output folder without write permission": (
        lambda g, t: (_compress(g, out=Path("/proc/compressor-out") if os.geteuid() == 0 else _locked(t) / "o"), []),
        BAD_INPUT, "cannot write there"),
    # one target per runtime (every runtime's converter meets the op; "all" only repeats them)
    "a model whose op no target supports": (lambda g, t: (_export(*_hashing_model(t), "-t", "onnx-fp32", "-t",
                                                                  "openvino-fp32", "-t", "mcu",
                                                                  target="tflite-fp32"), []),
                                            CONVERSION, "StringToHashBucketFast"),
}


def _locked(tmp: Path) -> Path:
    folder = tmp / "locked"
    folder.mkdir(mode=0o500)
    return folder


def _digest(path: Path):
    if path.is_dir():
        return sorted((str(p.relative_to(path)), hashlib.sha256(p.read_bytes()).hexdigest())
                      for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_corpus_has_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, good, tmp_path, capsys):
    build, code, message = CASES[case]
    argv, _ = build(good, tmp_path)
    watched = [Path(a) for a in argv if Path(a).exists()]
    before = {p: _digest(p) for p in watched if p != tmp_path}
    good_before = _digest(good)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == code, err
    import re

    assert re.search(message, err), err
    lines = [line for line in err.strip().splitlines() if not re.match(r"\[\s*\d+\.\ds\] ", line)]  # not progress
    assert "Traceback" not in err and all(line.startswith("Error: ") for line in lines), "one line each, no traceback"
    asked = argv.count("-t")
    assert len(lines) == 1 or "all" in argv or len(lines) == asked, "one line, unless several targets were asked for"
    assert {p: _digest(p) for p in before} == before, "inputs must be left byte-for-byte unchanged"
    assert _digest(good) == good_before


def test_hdf5_file_that_hangs_the_hdf5_library(good, tmp_path, capsys, monkeypatch):
    """Found by fuzzing: zeroed records in the global heap make HDF5 loop forever while it
    reads the variable-length model_config attribute. The file is read in a child process
    with a time limit; the refusal is a one-line bad-input error."""
    from compressor.models import loading

    data = bytearray((good / "tiny.h5").read_bytes())
    heap = data.find(b"GCOL")
    assert heap > 0, "no global heap in the seed file"
    data[heap + 32:heap + 94] = bytes(62)
    path = _write(tmp_path / "hangs.h5", bytes(data))
    digest = _digest(path)
    monkeypatch.setattr(loading, "H5_WALK_SECONDS", 5.0)
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == BAD_INPUT, err
    assert "reading the HDF5 file did not finish in 5 s (damaged file?)" in err and err.strip().count("\n") == 0
    assert _digest(path) == digest
