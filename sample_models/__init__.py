"""The sample models: small, real, reproducible, trained offline on first use.

Each sample model is a Keras 3 model (what users have today; the engine reaches it
through the tf-keras bridge) trained from a fixed seed on a built-in sample set.
Trained models are cached (``$COMPRESSOR_CACHE`` or ``~/.cache/compressor``), so only
the first use pays for training; nothing is downloaded. ``python -m sample_models.train``
trains them and prints their test accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compressor import atomic, keras_env
from compressor.data import samples as sample_data

CACHE_VERSION = 2
DEFAULT_SEED = 0


@dataclass(frozen=True)
class SampleModel:
    name: str
    description: str
    dataset: str  # a sample set name from compressor.data.samples
    build: Callable[[], object]  # returns an uncompiled Keras 3 model
    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3


SAMPLE_MODELS: dict[str, SampleModel] = {}


def sample_model(name: str, description: str, dataset: str, **training):
    def register(build):
        SAMPLE_MODELS[name] = SampleModel(name, description, dataset, build, **training)
        return build

    return register


def _layers():
    return keras_env.keras3().layers


@sample_model("mnist_cnn", "MNIST-style CNN: Conv32 3x3 > MaxPool > Dense64 > Dense10, 28x28x1", "mnist", epochs=12)
def _mnist_cnn():
    keras, L = keras_env.keras3(), _layers()
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            L.Conv2D(32, 3, activation="relu", name="conv"),
            L.MaxPooling2D(2, name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="hidden"),
            L.Dense(10, activation="softmax", name="classes"),
        ],
        name="mnist_cnn",
    )


@sample_model("cifar_cnn", "CIFAR-style CNN: Conv32 > Pool > Conv64 > Pool > Conv64 > Dense64 > Dense10, 32x32x3",
              "cifar10", epochs=20)
def _cifar_cnn():
    keras, L = keras_env.keras3(), _layers()
    return keras.Sequential(
        [
            keras.Input((32, 32, 3), name="image"),
            L.Conv2D(32, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(64, 3, activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool2"),
            L.Conv2D(64, 3, activation="relu", name="conv3"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="hidden"),
            L.Dense(10, activation="softmax", name="classes"),
        ],
        name="cifar_cnn",
    )


@sample_model("mlp", "MLP 784-128-10", "mnist-flat", epochs=20)
def _mlp():
    keras, L = keras_env.keras3(), _layers()
    return keras.Sequential(
        [
            keras.Input((784,), name="pixels"),
            L.Dense(128, activation="relu", name="hidden"),
            L.Dense(10, activation="softmax", name="classes"),
        ],
        name="mlp",
    )


@sample_model("lstm", "Sequence classifier: Embedding(17,16) > LSTM32 > Dense10 over 64 pixel tokens",
              "digits-tokens", epochs=30, learning_rate=3e-3)
def _lstm():
    keras, L = keras_env.keras3(), _layers()
    return keras.Sequential(
        [
            keras.Input((64,), dtype="int32", name="tokens"),
            L.Embedding(17, 16, name="embed"),
            L.LSTM(32, name="lstm"),
            L.Dense(10, activation="softmax", name="classes"),
        ],
        name="lstm",
    )


@sample_model("mobilenet_v2", "MobileNetV2 alpha 0.35, 96x96x3, trained from scratch", "digits-96rgb",
              epochs=20, learning_rate=2e-3)
def _mobilenet_v2():
    keras = keras_env.keras3()
    model = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10, name="mobilenet_v2"
    )
    # Keras' default BatchNorm momentum (0.999) is meant for ImageNet-length training; with
    # ~400 steps the moving statistics would stay near their initial values. 10 epochs were
    # enough on one CPU (96.9 %) and not on another (65.3 %: the moving statistics lagged the
    # weights); 20 reach 97.6 % on the second.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def cache_dir() -> Path:
    root = os.environ.get("COMPRESSOR_CACHE") or str(Path.home() / ".cache" / "compressor")
    return Path(root) / "sample_models"


def _get(name: str) -> SampleModel:
    from compressor.errors import BadInputError

    if name not in SAMPLE_MODELS:
        raise BadInputError(f"unknown sample model '{name}' (valid: {', '.join(SAMPLE_MODELS)})")
    return SAMPLE_MODELS[name]


def _cache_path(spec: SampleModel, seed: int) -> Path:
    data_name = sample_data.load(spec.dataset, "train").name
    recipe = (CACHE_VERSION, spec.name, spec.dataset, spec.epochs, spec.batch_size, spec.learning_rate, data_name, seed)
    key = hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]
    return cache_dir() / f"{spec.name}-{key}.keras"


def train(name: str, *, seed: int = DEFAULT_SEED, verbose: int = 0):
    """Train sample model ``name`` from ``seed``; return ``(model, test_accuracy)``."""
    import numpy as np

    spec = _get(name)
    keras = keras_env.keras3()
    keras.utils.set_random_seed(seed)
    keras_env.tf().config.experimental.enable_op_determinism()
    train_set, test_set = sample_data.load(spec.dataset, "train"), sample_data.load(spec.dataset, "test")
    model = spec.build()
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_set.x, train_set.y, epochs=spec.epochs, batch_size=spec.batch_size, shuffle=True,
              verbose=verbose)
    predictions = model.predict(test_set.x, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(predictions, axis=-1) == test_set.y))
    return model, accuracy


def path(name: str, *, seed: int = DEFAULT_SEED, verbose: int = 0) -> Path:
    """Path of the trained sample model ``name`` as a Keras 3 ``.keras`` file, training it on first use."""
    spec = _get(name)
    target = _cache_path(spec, seed)
    if target.is_file():
        return target
    model, accuracy = train(name, seed=seed, verbose=verbose)
    clean = spec.build()  # the weights alone, without the optimizer's state
    clean.set_weights(model.get_weights())
    with atomic.atomic_path(target) as tmp:
        clean.save(tmp)
    record = {"model": name, "seed": seed, "dataset": sample_data.load(spec.dataset, "test").name,
              "test_accuracy": accuracy}
    atomic.write_text(target.with_suffix(".json"), json.dumps(record, indent=2))
    return target


def forget(name: str, *, seed: int = DEFAULT_SEED) -> None:
    """Drop the cached sample model ``name`` (and its record), so that it is trained again on next use."""
    target = _cache_path(_get(name), seed)
    target.unlink(missing_ok=True)
    target.with_suffix(".json").unlink(missing_ok=True)


def recorded_accuracy(name: str, *, seed: int = DEFAULT_SEED) -> float | None:
    """The test accuracy recorded when the cached model was trained, if cached."""
    record = _cache_path(_get(name), seed).with_suffix(".json")
    return json.loads(record.read_text())["test_accuracy"] if record.is_file() else None
