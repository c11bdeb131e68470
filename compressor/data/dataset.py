"""The one dataset abstraction for calibration, fine-tuning and evaluation.

A :class:`Dataset` holds inputs ``x`` and optional integer labels ``y`` in memory (edge
calibration and evaluation sets are small). :meth:`Dataset.check_fits` gives a clear
error when the data does not fit a model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from compressor.errors import BadInputError


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (first axis = samples) and optional integer labels ``y``."""

    x: np.ndarray
    y: np.ndarray | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.ndim < 1:
            raise BadInputError(f"{self.name}: inputs must be an array with a sample axis")
        if self.x.dtype.kind not in "biuf":
            raise BadInputError(f"{self.name}: inputs have non-numeric dtype {self.x.dtype}")
        if len(self.x) == 0:
            raise BadInputError(f"{self.name}: has zero samples")
        if self.x.dtype.kind == "f" and not np.all(np.isfinite(self.x)):
            raise BadInputError(f"{self.name}: inputs contain NaN or Inf")
        if self.y is not None:
            self._check_labels()

    def _check_labels(self) -> None:
        y = self.y
        if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            raise BadInputError(f"{self.name}: labels must be integer class indices, got dtype {y.dtype}")
        if y.ndim != 1:
            raise BadInputError(f"{self.name}: labels must be one class index per sample, got shape {y.shape}")
        if len(y) != len(self.x):
            raise BadInputError(f"{self.name}: {len(y)} labels for {len(self.x)} samples")
        if np.any(y < 0):
            raise BadInputError(f"{self.name}: labels contain negative class indices")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def take(self, count: int) -> "Dataset":
        """The first ``count`` samples."""
        return Dataset(self.x[:count], None if self.y is None else self.y[:count], self.name)

    def shuffled(self, seed: int) -> "Dataset":
        order = np.random.default_rng(seed).permutation(len(self))
        return Dataset(self.x[order], None if self.y is None else self.y[order], self.name)

    def split(self, fraction: float, *, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Shuffle with ``seed`` and split into (first ``1 - fraction``, last ``fraction``)."""
        if not 0.0 < fraction < 1.0:
            raise BadInputError(f"{self.name}: split fraction must be in (0, 1), got {fraction}")
        data = self.shuffled(seed)
        cut = len(data) - max(1, int(round(len(data) * fraction)))
        if cut < 1:
            raise BadInputError(f"{self.name}: {len(data)} samples are too few to split")
        head = Dataset(data.x[:cut], None if data.y is None else data.y[:cut], self.name)
        tail = Dataset(data.x[cut:], None if data.y is None else data.y[cut:], self.name)
        return head, tail

    def batches(self, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0) -> Iterator[tuple]:
        """Yield ``(x_batch, y_batch)`` tuples (``y_batch`` is None without labels)."""
        if batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {batch_size}")
        data = self.shuffled(seed) if shuffle else self
        for start in range(0, len(data), batch_size):
            end = start + batch_size
            yield data.x[start:end], None if data.y is None else data.y[start:end]

    def check_fits(self, source, *, num_classes: int | None = None) -> None:
        """Raise BadInputError if the samples do not fit the model's single input.

        ``source`` is a :class:`compressor.models.SourceModel` (or anything with its
        ``data_spec()``: input shape without batch, input dtype, classes or None).
        """
        expected, dtype, classes = source.data_spec()
        self.check_shape(expected, dtype)
        if num_classes is None:
            num_classes = classes
        if self.y is not None and num_classes and int(self.y.max()) >= num_classes:
            raise BadInputError(
                f"{self.name}: label {int(self.y.max())} is out of range for a model with {num_classes} classes"
            )

    def check_shape(self, expected: Sequence, dtype: np.dtype) -> None:
        got = self.sample_shape
        fits = len(got) == len(expected) and all(e is None or int(e) == g for e, g in zip(expected, got))
        if not fits:
            want = "x".join("?" if e is None else str(e) for e in expected)
            have = "x".join(str(g) for g in got)
            raise BadInputError(f"{self.name}: samples have shape {have} but the model takes {want}")
        if np.dtype(dtype).kind in "iu" and self.x.dtype.kind == "f":
            raise BadInputError(f"{self.name}: model takes integer inputs ({dtype}) but the data is {self.x.dtype}")
