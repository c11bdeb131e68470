"""Built-in sample sets, all offline.

The real data that always ships is scikit-learn's digits: 1,797 real handwritten
digits of 8×8 pixels, split 75/25 (stratified, seed 0) into train and test. They are
resized to the shapes the sample models take. When the Keras dataset files for MNIST
or CIFAR-10 are already on this machine (``$KERAS_HOME/datasets`` or
``~/.keras/datasets``), the ``mnist``/``cifar10`` sets use them instead; nothing is
ever downloaded.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import BadInputError

SPLITS = ("train", "test")
MNIST_LIMIT = (12000, 2000)  # train/test samples taken from real MNIST, to keep training short
CIFAR_LIMIT = (12000, 2000)


@dataclass(frozen=True)
class SampleSet:
    name: str
    description: str
    load: Callable[[str], Dataset]


SAMPLE_SETS: dict[str, SampleSet] = {}


def sample_set(name: str, description: str):
    def register(load):
        SAMPLE_SETS[name] = SampleSet(name, description, load)
        return load

    return register


def keras_datasets_dir() -> Path:
    """Where Keras keeps downloaded datasets (never written to here)."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "datasets"


@lru_cache(maxsize=1)
def _digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # 8x8 in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return {"train": (x_train, y_train.astype(np.int64)), "test": (x_test, y_test.astype(np.int64))}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = [np.asarray(Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR)) for img in images]
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in SPLITS:
        raise BadInputError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    return _digits_split()[split]


@lru_cache(maxsize=16)
def _digits_images(split: str, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _digits(split)
    x = _resize(images, size)[..., None]
    return (np.repeat(x, channels, axis=-1) if channels > 1 else x), labels


@sample_set("digits-8", "sklearn digits at their own 8x8x1 size, 10 classes (for tiny test models)")
def _digits_8(split: str) -> Dataset:
    images, labels = _digits(split)
    return Dataset(images[..., None], labels, f"sample:digits-8:{split}")


def _digits_resized(name: str, size: int, channels: int, flat: bool) -> Callable[[str], Dataset]:
    def load(split: str) -> Dataset:
        x, y = _digits_images(split, size, channels)
        return Dataset(x.reshape(len(x), -1) if flat else x, y, f"sample:{name}:{split}")

    return load


# name, description, side, channels, flattened
for _name, _description, _size, _channels, _flat in (
    ("digits-28", "sklearn digits, 28x28x1 grey, 10 classes", 28, 1, False),
    ("digits-32rgb", "sklearn digits, 32x32x3, 10 classes", 32, 3, False),
    ("digits-96rgb", "sklearn digits, 96x96x3, 10 classes (MobileNetV2-sized input)", 96, 3, False),
    ("digits-784", "sklearn digits, 28x28 flattened to 784 features, 10 classes", 28, 1, True),
):
    sample_set(_name, _description)(_digits_resized(_name, _size, _channels, _flat))


@sample_set("digits-tokens", "sklearn digits read as a sequence of 64 pixel tokens (intensity 0-16), 10 classes")
def _digits_tokens(split: str) -> Dataset:
    images, labels = _digits(split)
    tokens = np.rint(images.reshape(len(images), 64) * 16).astype(np.int32)
    return Dataset(tokens, labels, f"sample:digits-tokens:{split}")


TOPICS, TOPIC_WORDS, VOCAB, TOKENS = 4, 12, 256, 32  # topics-text: classes, keywords per topic, vocabulary, length
PAD, CLS = 0, 1


@sample_set("topics-text", f"generated sentences of {TOKENS} tokens (input_ids, attention_mask; 0 pads, 1 opens), "
                           f"{TOPICS} topics told apart by the keywords they use, as a BERT tokenizer writes them")
def _topics_text(split: str) -> Dataset:
    """Sentences of 8 to 32 tokens: an opening token, then words drawn from a Zipf-like vocabulary,
    about a quarter of them keywords of the sentence's topic and a tenth keywords of another one
    (the label is the topic most of its keywords belong to). Seeded by split; nothing downloaded."""
    if split not in SPLITS:
        raise BadInputError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    rng = np.random.default_rng(SPLITS.index(split) + 11)
    count = 2000 if split == "train" else 500
    first_filler = 2 + TOPICS * TOPIC_WORDS
    fillers = np.arange(first_filler, VOCAB)
    weights = 1.0 / np.arange(1, len(fillers) + 1)
    labels = rng.integers(0, TOPICS, count)
    ids = np.zeros((count, TOKENS), np.int64)
    lengths = rng.integers(8, TOKENS + 1, count)
    for row, (label, length) in enumerate(zip(labels, lengths)):
        words = rng.choice(fillers, length - 1, p=weights / weights.sum())
        kind = rng.random(length - 1)
        other = (label + rng.integers(1, TOPICS)) % TOPICS
        for where, topic in ((kind < 0.25, label), ((kind >= 0.25) & (kind < 0.35), other)):
            words[where] = 2 + topic * TOPIC_WORDS + rng.integers(0, TOPIC_WORDS, int(where.sum()))
        ids[row, 0], ids[row, 1:length] = CLS, words
    mask = (np.arange(TOKENS)[None, :] < lengths[:, None]).astype(np.int64)
    return Dataset({"input_ids": ids, "attention_mask": mask}, labels.astype(np.int64), f"sample:topics-text:{split}")


def _local_mnist(split: str) -> Dataset | None:
    path = keras_datasets_dir() / "mnist.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        x, y = data[f"x_{split}"], data[f"y_{split}"]
    limit = MNIST_LIMIT[SPLITS.index(split)]
    x = (x[:limit].astype(np.float32) / 255.0)[..., None]
    return Dataset(x, y[:limit].astype(np.int64), f"sample:mnist:{split} (MNIST from {path})")


def _local_cifar10(split: str) -> Dataset | None:
    folder = keras_datasets_dir() / "cifar-10-batches-py"
    files = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    if not all((folder / f).is_file() for f in files):
        return None
    xs, ys = [], []
    for file in files:
        # CIFAR-10's own format is a pickle; only a file already on this machine, from
        # the official archive Keras downloads, is read.
        with open(folder / file, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        xs.append(np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[b"labels"]))
    limit = CIFAR_LIMIT[SPLITS.index(split)]
    x = np.concatenate(xs)[:limit].astype(np.float32) / 255.0
    return Dataset(x, np.concatenate(ys)[:limit].astype(np.int64), f"sample:cifar10:{split} (CIFAR-10 from {folder})")


@sample_set("mnist", "MNIST 28x28x1 when its Keras file is present locally, else digits-28")
def _mnist(split: str) -> Dataset:
    _digits(split)  # validates the split name
    return _local_mnist(split) or SAMPLE_SETS["digits-28"].load(split)


@sample_set("mnist-flat", "mnist flattened to 784 features")
def _mnist_flat(split: str) -> Dataset:
    data = _mnist(split)
    return Dataset(data.x.reshape(len(data), -1), data.y, data.name + " flattened")


@sample_set("cifar10", "CIFAR-10 32x32x3 when its Keras files are present locally, else digits-32rgb")
def _cifar10(split: str) -> Dataset:
    _digits(split)
    return _local_cifar10(split) or SAMPLE_SETS["digits-32rgb"].load(split)


def load(name: str, split: str = "train") -> Dataset:
    """Load the built-in sample set ``name`` (see ``SAMPLE_SETS``)."""
    if name not in SAMPLE_SETS:
        raise BadInputError(f"unknown sample set '{name}' (valid: {', '.join(sorted(SAMPLE_SETS))})")
    return SAMPLE_SETS[name].load(split)


from compressor.data import task_samples  # noqa: E402,F401  (registers the sets with a task's truth)
