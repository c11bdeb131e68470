"""Sample models: registry, cache, and (slow) accuracy as recorded in sample_models/README.md."""

import re
from pathlib import Path

import pytest

import sample_models
from compressor import inspect_model, load_model

README = Path(sample_models.__file__).with_name("README.md")


def recorded_accuracies() -> dict[str, float]:
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d.]+) % \|\s*$", README.read_text(), flags=re.M)
    return {name: float(value) / 100 for name, value in rows}


def test_readme_records_every_sample_model():
    assert set(recorded_accuracies()) == set(sample_models.SAMPLE_MODELS)


def test_architectures_match_their_descriptions():
    shapes = {name: tuple(spec.build().input_shape[1:]) for name, spec in sample_models.SAMPLE_MODELS.items()}
    assert shapes == {"mnist_cnn": (28, 28, 1), "cifar_cnn": (32, 32, 3), "mlp": (784,), "lstm": (64,),
                      "mobilenet_v2": (96, 96, 3)}
    cifar = load_model(sample_models.SAMPLE_MODELS["cifar_cnn"].build())
    assert [layer.type for layer in inspect_model(cifar).layers if layer.macs] == ["Conv2D"] * 3 + ["Dense"] * 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(sample_models.SAMPLE_MODELS))
def test_sample_model_trains_to_recorded_accuracy(name, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-datasets"))  # the digits the README records
    path = sample_models.path(name)
    accuracy = sample_models.recorded_accuracy(name)
    assert abs(accuracy - recorded_accuracies()[name]) <= 0.01
    assert load_model(path) is not None
