"""The one dataset abstraction for calibration, fine-tuning and evaluation.

A :class:`Dataset` holds inputs ``x`` and optional integer labels ``y`` in memory (edge
calibration and evaluation sets are small). ``x`` is one array for a model with one
input, or one array per named input (``{"audio": ..., "state": ..., "rate": ...}``),
integer and float inputs mixed. :meth:`Dataset.feeds` puts the arrays in a model's input
order; :meth:`Dataset.check_fits` gives a clear error when they do not fit the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from compressor.errors import BadInputError

SINGLE = "x"  # the key of the one input of a single-input model


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (first axis = samples; one array, or one per named input) and optional
    integer labels ``y``."""

    x: np.ndarray | dict[str, np.ndarray]
    y: np.ndarray | None = None
    name: str = "data"
    heads: dict[str, np.ndarray] | None = None  # labels per named output of a multi-head model (y_<output>)
    pixels: str | None = None  # images decoded by the toolkit: the pixel scale applied (see sources.PIXEL_SCALES)
    truth: dict[str, np.ndarray] | None = None  # a task metric's truth by key (t_boxes, t_mask, ...), per sample

    def __post_init__(self) -> None:
        arrays = self.arrays
        if not arrays:
            raise BadInputError(f"{self.name}: holds no input array")
        for key, array in arrays.items():
            what = "inputs" if isinstance(self.x, np.ndarray) else f"input '{key}'"
            if not isinstance(array, np.ndarray) or array.ndim < 1:
                raise BadInputError(f"{self.name}: {what} must be an array with a sample axis")
            if array.dtype.kind not in "biuf":
                raise BadInputError(f"{self.name}: {what} have non-numeric dtype {array.dtype}")
            if len(array) == 0:
                raise BadInputError(f"{self.name}: has zero samples")
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise BadInputError(f"{self.name}: {what} contain NaN or Inf")
        counts = {key: len(array) for key, array in arrays.items()}
        if len(set(counts.values())) > 1:
            raise BadInputError(f"{self.name}: inputs differ in sample count ({counts})")
        if self.y is not None:
            self._check_labels(self.y, self.name)
        for head, labels in (self.heads or {}).items():
            self._check_labels(labels, f"{self.name}: labels for output '{head}'")
        for key, array in (self.truth or {}).items():
            if np.ndim(array) < 1 or len(array) != len(self):
                raise BadInputError(f"{self.name}: {key} holds {len(array) if np.ndim(array) else 0} rows "
                                    f"for {len(self)} samples")

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every input array by name (``x`` for the one input of a single-input dataset)."""
        return {SINGLE: self.x} if isinstance(self.x, np.ndarray) else dict(self.x)

    def _check_labels(self, y: np.ndarray, what: str) -> None:
        if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            raise BadInputError(f"{what}: labels must be integer class indices, got dtype {y.dtype}")
        if y.ndim != 1:
            raise BadInputError(f"{what}: labels must be one class index per sample, got shape {y.shape}")
        if len(y) != len(self):
            raise BadInputError(f"{what}: {len(y)} labels for {len(self)} samples")
        if np.any(y < 0):
            raise BadInputError(f"{what}: labels contain negative class indices")

    def labels_for(self, output: str, *, primary: bool) -> np.ndarray | None:
        """The labels of one output: ``y_<output>``, else ``y`` when it is the primary (labelled) output."""
        if self.heads and output in self.heads:
            return self.heads[output]
        return self.y if primary else None

    @property
    def metric_truth(self) -> dict[str, np.ndarray]:
        """What a task metric may score against: the ``t_*`` arrays, and the class labels as ``y``
        (and ``y_<output>`` per labelled head)."""
        labels = {"y": self.y} if self.y is not None else {}
        labels.update({f"y_{head}": values for head, values in (self.heads or {}).items()})
        return {**labels, **(self.truth or {})}

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def _single(self) -> np.ndarray:
        if not isinstance(self.x, np.ndarray):
            raise BadInputError(f"{self.name}: holds {len(self.x)} named inputs ({', '.join(self.x)}), not one")
        return self.x

    def _select(self, index) -> "Dataset":
        x = self.x[index] if isinstance(self.x, np.ndarray) else {k: v[index] for k, v in self.x.items()}
        heads = {k: v[index] for k, v in self.heads.items()} if self.heads else None
        truth = {k: v[index] for k, v in self.truth.items()} if self.truth else None
        return Dataset(x, None if self.y is None else self.y[index], self.name, heads, self.pixels, truth)

    def take(self, count: int) -> "Dataset":
        """The first ``count`` samples."""
        return self._select(slice(0, count))

    def shuffled(self, seed: int) -> "Dataset":
        return self._select(np.random.default_rng(seed).permutation(len(self)))

    def split(self, fraction: float, *, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Shuffle with ``seed`` and split into (first ``1 - fraction``, last ``fraction``)."""
        if not 0.0 < fraction < 1.0:
            raise BadInputError(f"{self.name}: split fraction must be in (0, 1), got {fraction}")
        data = self.shuffled(seed)
        cut = len(data) - max(1, int(round(len(data) * fraction)))
        if cut < 1:
            raise BadInputError(f"{self.name}: {len(data)} samples are too few to split")
        return data._select(slice(0, cut)), data._select(slice(cut, None))

    def batches(self, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0) -> Iterator[tuple]:
        """Yield ``(x_batch, y_batch)`` tuples (``y_batch`` is None without labels)."""
        if batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {batch_size}")
        data = self.shuffled(seed) if shuffle else self
        for start in range(0, len(data), batch_size):
            part = data._select(slice(start, start + batch_size))
            yield part.x, part.y

    def feeds(self, source) -> list[np.ndarray]:
        """The input arrays in ``source``'s input order (a :class:`compressor.models.SourceModel`)."""
        return self.feeds_named([spec.name for spec in source.inputs])

    def feeds_named(self, names: list[str]) -> list[np.ndarray]:
        """The input arrays in the order of a model's input ``names``."""
        arrays = self.arrays
        if len(names) == 1:
            for key in (SINGLE, names[0]):
                if key in arrays:
                    return [arrays[key]]
            raise BadInputError(f"{self.name}: no 'x' array, nor one named after the model's input '{names[0]}' "
                                f"(found: {', '.join(arrays)})")
        missing = [name for name in names if name not in arrays]
        if missing:
            raise BadInputError(
                f"{self.name}: no array for the model's input{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} (found: {', '.join(arrays)}); give one array per input, "
                f"named as the model's inputs ({', '.join(names)})")
        return [arrays[name] for name in names]

    def check_fits(self, source, *, num_classes: int | None = None, metric=None) -> None:
        """Raise BadInputError if the samples do not fit the model's inputs.

        ``source`` is a :class:`compressor.models.SourceModel` (named inputs with shapes
        and dtypes, ``data_spec()`` for the class count). ``metric``: the task metric the model
        is judged by, which says whether its outputs hold class scores the labels apply to (a
        keypoint regressor judged by PCK has none, whatever labels its data carries).
        """
        for spec in source.inputs:
            if not spec.shape:
                raise BadInputError(f"model input '{spec.name}' is a scalar without a batch axis; inputs are fed in "
                                    "batches of samples, so it needs a batch axis (shape [batch] or [batch, 1])")
        for spec, array in zip(source.inputs, self.feeds(source)):
            where = "" if len(source.inputs) == 1 else f" for input '{spec.name}'"
            check_shape(self.name + where, array, spec.shape[1:], np.dtype(spec.dtype))
        outputs = [spec.name for spec in source.outputs]
        unknown = sorted(set(self.heads or {}) - set(outputs))
        if unknown:
            raise BadInputError(f"{self.name}: labels y_{unknown[0]} name no output of the model "
                                f"(its outputs: {', '.join(outputs)})")
        self._check_pixel_range(source)
        if num_classes is None:
            from compressor.models.source import classes_of

            num_classes = classes_of(source, metric)
        if self.y is not None and num_classes and int(self.y.max()) >= num_classes:
            raise BadInputError(
                f"{self.name}: label {int(self.y.max())} is out of range for a model with {num_classes} classes"
            )

    def _check_pixel_range(self, source) -> None:
        """Images already in 0-1 for a model that divides by 255 itself score at chance, silently."""
        scale = getattr(source, "input_scale", lambda: None)()
        if scale is None or not 0 < scale < 0.1 or len(source.inputs) != 1:
            return
        array = self.feeds(source)[0]
        if array.dtype.kind == "f" and array.ndim == 4 and float(array.max()) <= 1.0:
            fix = ("--pixel-scale raw" if self.pixels else "pixels 0-255 in the .npz, as the model was trained on")
            raise BadInputError(
                f"{self.name}: the model rescales its input itself (x {scale:.4g}, a Rescaling layer) but these "
                f"images are already in 0-1 (max {float(array.max()):.3g}); give {fix}")

    def check_shape(self, expected: Sequence, dtype: np.dtype) -> None:
        check_shape(self.name, self._single(), expected, dtype)


def check_shape(name: str, array: np.ndarray, expected: Sequence, dtype: np.dtype) -> None:
    """Refuse samples of another shape than ``expected`` (None: any size), or floats for integer inputs."""
    got = tuple(array.shape[1:])
    fits = len(got) == len(expected) and all(e is None or int(e) == g for e, g in zip(expected, got))
    if not fits:
        want = "x".join("?" if e is None else str(e) for e in expected)
        have = "x".join(str(g) for g in got)
        raise BadInputError(f"{name}: samples have shape {have} but the model takes {want}")
    if np.dtype(dtype).kind in "iu" and array.dtype.kind == "f":
        raise BadInputError(f"{name}: model takes integer inputs ({dtype}) but the data is {array.dtype}")
