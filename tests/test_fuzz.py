"""Fuzzing with hypothesis: mutated model files, datasets, recipes and manifests raise only the
project's typed errors. The default suite runs a few dozen examples per target; `make test-slow`
runs thousands."""

import atexit
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor import load_model, recipes
from compressor.data import load_dataset
from compressor.errors import CompressorError

QUICK, SLOW = 25, 2000
FOLDER = Path(tempfile.mkdtemp(prefix="compressor-fuzz-"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)


def _seed_files():
    from tests.helpers import models

    model = models.residual_cnn()  # small (a few thousand weights): mutations land in structure, loads are quick
    small = models.keras3_sequential()
    files = {"keras": FOLDER / "seed.keras", "h5": FOLDER / "seed.h5", "k3": FOLDER / "seed3.keras"}
    model.save(files["keras"])
    model.save(files["h5"])
    small.save(files["k3"])
    np.savez(FOLDER / "seed.npz", x=np.zeros((3, 4), np.float32), y=np.arange(3))
    from targets.runtimes.onnx_runtime import convert_keras

    convert_keras(models.trained_tiny_cnn(epochs=1), FOLDER / "seed.onnx")
    return {name: path.read_bytes() for name, path in files.items()} | {
        "npz": (FOLDER / "seed.npz").read_bytes(), "onnx": (FOLDER / "seed.onnx").read_bytes()}


SEEDS: dict = {}


def seeds():
    if not SEEDS:
        SEEDS.update(_seed_files())
    return SEEDS


@st.composite
def mutations(draw, kind):
    data = bytearray(seeds()[kind])
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if choice == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif choice == "truncate":
            del data[position:]
        elif choice == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[position:position + 64] = bytes(len(data[position:position + 64]))
    return bytes(data)


def _check(path: Path, data: bytes, load) -> str:
    path.write_bytes(data)
    try:
        load(path)
    except CompressorError as exc:  # the only kind of error allowed to escape
        return type(exc).__name__
    return "loaded"


def _report(kind: str, outcomes: Counter, examples: int) -> None:
    total = sum(outcomes.values())
    print(f"\nfuzz {kind}: {total} examples: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    assert total >= examples, f"hypothesis ran {total} examples of {kind}, fewer than {examples}"


def _model_loader(suffix):
    return lambda path: load_model(path)


def _onnx_loader(path):
    from compressor.models.onnx_source import load_onnx

    load_onnx(path)


CASES = {
    "keras": (".keras", _model_loader(".keras")),
    "h5": (".h5", _model_loader(".h5")),
    "k3": (".keras", _model_loader(".keras")),
    "npz": (".npz", lambda path: load_dataset(path)),
    "onnx": (".onnx", _onnx_loader),
}


def _fuzz_file(kind: str, examples: int):
    suffix, load = CASES[kind]

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=mutations(kind))
    def run(data):
        outcomes[_check(FOLDER / f"fuzz{suffix}", data, load)] += 1

    outcomes = Counter()
    run()
    _report(kind, outcomes, examples)


RECIPE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10)
RECIPE_KEYS = st.sampled_from(["name", "seed", "fine_tune", "steps", "targets", "type", "sparsity", "clusters",
                               "epochs", "exclude", "n", "m", "fraction", "schedule", "width", "junk"])


@st.composite
def recipe_documents(draw):
    steps = draw(st.lists(st.dictionaries(RECIPE_KEYS, RECIPE_VALUES | st.sampled_from(list(recipes.STEPS)),
                                          max_size=4), max_size=3))
    doc = draw(st.dictionaries(RECIPE_KEYS, RECIPE_VALUES, max_size=4))
    if draw(st.booleans()):
        doc["steps"] = steps
    return doc


def _fuzz_recipes(examples: int):
    @settings(max_examples=examples, deadline=None, derandomize=True)
    @given(doc=recipe_documents(), text=st.text(max_size=60))
    def run(doc, text):
        for source in (doc, text):
            try:
                if isinstance(source, str):
                    path = FOLDER / "r.yaml"
                    path.write_text(source)
                    recipes.load_recipe(str(path))
                else:
                    recipes.load_recipe(source)
                outcomes["loaded"] += 1
            except CompressorError as exc:
                outcomes[type(exc).__name__] += 1

    outcomes = Counter()
    run()
    _report("recipes (a document and a YAML text per example)", outcomes, 2 * examples)


def _fuzz_manifests(examples: int):
    from targets import manifest

    folder = FOLDER / "artifact"
    folder.mkdir(exist_ok=True)

    @settings(max_examples=examples, deadline=None, derandomize=True)
    @given(doc=st.dictionaries(st.sampled_from(["schema_version", "artifact", "target", "runtime"]),
                               RECIPE_VALUES | st.just(1), max_size=4) | st.text(max_size=40).map(lambda t: t))
    def run(doc):
        (folder / "manifest.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
        try:
            from targets import open_artifact

            open_artifact(folder)
            outcomes["loaded"] += 1
        except CompressorError as exc:
            outcomes[type(exc).__name__] += 1

    outcomes = Counter()
    run()
    _report("manifests", outcomes, examples)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_fuzz_model_and_data_loaders(kind):
    _fuzz_file(kind, QUICK)


def test_fuzz_recipe_parser():
    _fuzz_recipes(QUICK * 4)


def test_fuzz_manifest_reader():
    _fuzz_manifests(QUICK * 4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_fuzz_model_and_data_loaders_thoroughly(kind):
    _fuzz_file(kind, SLOW)


@pytest.mark.slow
def test_fuzz_recipe_parser_thoroughly():
    _fuzz_recipes(SLOW)


@pytest.mark.slow
def test_fuzz_manifest_reader_thoroughly():
    _fuzz_manifests(SLOW)
