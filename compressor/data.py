"""One dataset abstraction for calibration, fine-tuning and evaluation.

A :class:`Dataset` holds inputs ``x`` and optional integer labels ``y`` in memory (edge
calibration and evaluation sets are small). :func:`load_dataset` builds one from any
registered source: an ``.npz`` file with ``x``/``y`` arrays, a folder of images with one
sub-folder per class, a built-in sample set (``sample:NAME[:SPLIT]``), ``(x, y)`` arrays,
or a Python iterable of ``x`` or ``(x, y)`` items. :meth:`Dataset.check_fits` gives a
clear error when the data does not fit a model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from compressor.errors import BadInputError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


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

    def check_fits(self, model, *, num_classes: int | None = None) -> None:
        """Raise BadInputError if the samples do not fit ``model``'s single input.

        ``model`` is a Keras model, or any object with a ``data_spec()`` method
        returning ``(input shape without batch, input dtype, classes or None)``.
        """
        expected, dtype, classes = _data_spec(model)
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


def _data_spec(model) -> tuple[tuple, np.dtype, int | None]:
    if hasattr(model, "data_spec"):
        return model.data_spec()
    if len(model.inputs) != 1:
        raise BadInputError(f"model has {len(model.inputs)} inputs; datasets feed one")
    out = tuple(model.outputs[0].shape)
    classes = int(out[-1]) if len(out) == 2 and out[-1] and out[-1] > 1 else None
    return tuple(model.inputs[0].shape)[1:], np.dtype(model.inputs[0].dtype.name), classes


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class DataSource:
    name: str
    matches: Callable[[Any], bool]
    load: Callable[[Any, tuple | None], Dataset]


SOURCES: list[DataSource] = []


def data_source(name: str, matches: Callable[[Any], bool]):
    """Register a dataset source; the first whose ``matches`` is true loads it."""

    def register(load):
        SOURCES.append(DataSource(name, matches, load))
        return load

    return register


def _is_path_like(source) -> bool:
    return isinstance(source, (str, Path)) and not str(source).startswith("sample:")


@data_source("sample", lambda s: isinstance(s, str) and s.startswith("sample:"))
def _load_sample(source: str, input_shape) -> Dataset:
    from compressor import sample_data

    _, _, rest = source.partition(":")
    name, _, split = rest.partition(":")
    return sample_data.load(name, split or "train")


@data_source("npz", lambda s: _is_path_like(s) and str(s).lower().endswith(".npz"))
def _load_npz(source, input_shape) -> Dataset:
    path = _existing(source, want_dir=False)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise BadInputError(f"{path}: .npz has no 'x' array (found: {', '.join(archive.files) or 'none'})")
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
    except BadInputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{path}: .npz holds pickled objects, which are refused") from None
        raise BadInputError(f"{path}: corrupt .npz file ({exc})") from None
    except Exception as exc:  # zipfile / OSError / EOFError for damaged archives
        raise BadInputError(f"{path}: corrupt .npz file ({type(exc).__name__}: {exc})") from None
    return Dataset(x, y, name=str(path))


@data_source("image-folder", lambda s: _is_path_like(s) and Path(s).is_dir())
def _load_image_folder(source, input_shape) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    root = _existing(source, want_dir=True)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise BadInputError(f"{root}: image folder needs one sub-folder per class, found none")
    height, width, channels = _image_geometry(input_shape)
    xs, ys = [], []
    for index, label in enumerate(classes):
        for file in sorted((root / label).iterdir()):
            if file.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(file) as image:
                    image = image.convert("L" if channels == 1 else "RGB")
                    if height and width:
                        image = image.resize((width, height), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise BadInputError(f"{file}: unreadable image ({exc})") from None
            xs.append(array[..., None] if channels == 1 else array)
            ys.append(index)
    if not xs:
        raise BadInputError(f"{root}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if len({a.shape for a in xs}) > 1:
        raise BadInputError(f"{root}: images differ in size; give the model's input shape to resize them")
    return Dataset(np.stack(xs), np.asarray(ys, dtype=np.int64), name=str(root))


def _image_geometry(input_shape) -> tuple[int | None, int | None, int]:
    if input_shape is None:
        return None, None, 3
    if len(input_shape) != 3:
        raise BadInputError(f"an image folder needs a model with image input (H, W, C), not {tuple(input_shape)}")
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise BadInputError(f"image input must have 1 or 3 channels, the model has {channels}")
    return height, width, channels


@data_source("arrays", lambda s: isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], np.ndarray))
def _load_arrays(source, input_shape) -> Dataset:
    x, y = source
    return Dataset(x, None if y is None else np.asarray(y), name="arrays")


@data_source("array", lambda s: isinstance(s, np.ndarray))
def _load_array(source, input_shape) -> Dataset:
    return Dataset(source, None, name="array")


@data_source("iterable", lambda s: not isinstance(s, (str, Path, bytes, dict)) and hasattr(s, "__iter__"))
def _load_iterable(source, input_shape) -> Dataset:
    items = list(source)
    if not items:
        raise BadInputError("iterable dataset: has zero samples")
    labelled = all(isinstance(item, tuple) and len(item) == 2 for item in items)
    try:
        x = np.stack([np.asarray(item[0] if labelled else item) for item in items])
        y = np.asarray([item[1] for item in items]) if labelled else None
    except ValueError as exc:
        raise BadInputError(f"iterable dataset: samples differ in shape ({exc})") from None
    return Dataset(x, y, name="iterable")


def _existing(source, *, want_dir: bool) -> Path:
    path = Path(source)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    if want_dir and not path.is_dir():
        raise BadInputError(f"{path}: expected a directory of images")
    if not want_dir and path.is_dir():
        raise BadInputError(f"{path}: is a directory, expected a file")
    return path


def load_dataset(source, *, input_shape: Sequence | None = None) -> Dataset:
    """Build a :class:`Dataset` from any registered source.

    Args:
        source: a ``.npz`` path, an image folder, ``"sample:NAME[:SPLIT]"``, an
            ``(x, y)`` tuple, an array, an iterable, or a ``Dataset``.
        input_shape: the model's input shape without the batch axis, used to
            resize images.

    Raises:
        BadInputError: the source is unknown, unreadable or holds unusable data.

    Example:
        >>> train = load_dataset("sample:digits-28:train")
        >>> for x, y in train.batches(32, shuffle=True, seed=0): ...
    """
    if isinstance(source, Dataset):
        return source
    for candidate in SOURCES:
        if candidate.matches(source):
            return candidate.load(source, None if input_shape is None else tuple(input_shape))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadInputError(f"{path}: no such file or directory")
        raise BadInputError(f"{path}: unknown dataset format (use .npz with x/y arrays, an image folder, or sample:NAME)")
    raise BadInputError(f"unknown dataset source of type {type(source).__name__}")
