"""Sample models: registry, cache, and (slow) accuracy as recorded in sample_models/README.md."""

import re
from pathlib import Path

import pytest

import sample_models
from compressor import inspect_model, load_model

README = Path(sample_models.__file__).with_name("README.md")


CLASSES = ("x86-avx2", "x86-vnni")  # the columns of the table, in order


def recorded_accuracies(cpu_class: str) -> dict[str, float | None]:
    """The README's test accuracy of each sample model on CPUs of ``cpu_class`` (None: not measured)."""
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d.]+ %|-) \| ([\d.]+ %|-) \|\s*$", README.read_text(), flags=re.M)
    column = CLASSES.index(cpu_class) + 1
    return {row[0]: None if row[column] == "-" else float(row[column].rstrip(" %")) / 100 for row in rows}


def test_readme_records_every_sample_model():
    for cpu_class in CLASSES:
        assert set(recorded_accuracies(cpu_class)) == set(sample_models.SAMPLE_MODELS)
    assert all(value is not None for value in recorded_accuracies("x86-vnni").values())


def test_architectures_match_their_descriptions():
    shapes = {name: tuple(spec.build().input_shape[1:]) for name, spec in sample_models.SAMPLE_MODELS.items()}
    assert shapes == {"mnist_cnn": (28, 28, 1), "cifar_cnn": (32, 32, 3), "mlp": (784,), "lstm": (64,),
                      "mobilenet_v2": (96, 96, 3)}
    cifar = load_model(sample_models.SAMPLE_MODELS["cifar_cnn"].build())
    assert [layer.type for layer in inspect_model(cifar).layers if layer.macs] == ["Conv2D"] * 3 + ["Dense"] * 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(sample_models.SAMPLE_MODELS))
def test_sample_model_trains_to_recorded_accuracy(name, tmp_path, monkeypatch):
    from compressor.cpu import get_class

    host = get_class("host").name
    recorded = recorded_accuracies(host).get(name) if host in CLASSES else None
    if recorded is None:
        pytest.skip(f"no accuracy recorded for {name} on CPU class {host}")
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-datasets"))  # the digits the README records
    path = sample_models.path(name)
    accuracy = sample_models.recorded_accuracy(name)
    assert abs(accuracy - recorded) <= 0.01
    assert load_model(path) is not None
