"""Dataset sources: each registered loader turns one kind of input into a :class:`Dataset`.

:func:`load_dataset` builds one from any registered source: an ``.npz`` file with
``x``/``y`` arrays, a folder of images with one sub-folder per class, a built-in sample
set (``sample:NAME[:SPLIT]``), ``(x, y)`` arrays, or a Python iterable of ``x`` or
``(x, y)`` items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import BadInputError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}

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
    from compressor.data import samples

    _, _, rest = source.partition(":")
    name, _, split = rest.partition(":")
    return samples.load(name, split or "train")


HEAD_PREFIX = "y_"  # labels of one named output: y_classes, y_attributes
TRUTH_PREFIX = "t_"  # a task metric's truth: t_boxes, t_box_classes, t_mask, t_sequence, t_group, t_target


@data_source("npz", lambda s: _is_path_like(s) and str(s).lower().endswith(".npz"))
def _load_npz(source, input_shape) -> Dataset:
    """``x`` (and labels ``y``) for a single-input model; for several inputs, one array per
    input named as the model's inputs (``audio``, ``state``, ``rate``...). A model with
    several labelled heads takes ``y_<output name>`` per head. A task metric's truth comes as
    ``t_*`` arrays (``compressor.metrics.task``: ``t_boxes``, ``t_mask``, ``t_sequence``, ...)."""
    path = _existing(source, want_dir=False)
    try:
        with np.load(path, allow_pickle=False) as archive:
            inputs = {key: archive[key] for key in archive.files
                      if key != "y" and not key.startswith((HEAD_PREFIX, TRUTH_PREFIX))}
            heads = {key[len(HEAD_PREFIX):]: archive[key] for key in archive.files if key.startswith(HEAD_PREFIX)}
            truth = {key: archive[key] for key in archive.files if key.startswith(TRUTH_PREFIX)}
            if not inputs:
                raise BadInputError(f"{path}: .npz has no 'x' array nor one array per model input "
                                    f"(found: {', '.join(archive.files) or 'none'})")
            x = inputs["x"] if list(inputs) == ["x"] else inputs
            y = archive["y"] if "y" in archive.files else None
    except BadInputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{path}: .npz holds pickled objects, which are refused") from None
        raise BadInputError(f"{path}: corrupt .npz file ({exc})") from None
    except Exception as exc:  # zipfile / OSError / EOFError for damaged archives
        raise BadInputError(f"{path}: corrupt .npz file ({type(exc).__name__}: {exc})") from None
    return Dataset(x, y, name=str(path), heads=heads or None, truth=truth or None)


@data_source("image-folder", lambda s: _is_path_like(s) and Path(s).is_dir())
def _load_image_folder(source, input_shape) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    root = _existing(source, want_dir=True)
    # hidden folders (.ipynb_checkpoints, .git) are not classes
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BadInputError(f"{root}: image folder needs one sub-folder per class, found none")
    height, width, channels = _image_geometry(input_shape)
    xs, ys = [], []
    for index, label in enumerate(classes):
        for file in sorted((root / label).iterdir()):
            if file.suffix.lower() not in IMAGE_EXTENSIONS or file.name.startswith("."):
                continue
            try:
                with Image.open(file) as image:
                    image = image.convert("L" if channels == 1 else "RGB")
                    if height and width:
                        image = image.resize((width, height), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.float32)  # 0-255; scaled in load_dataset
            except (UnidentifiedImageError, OSError) as exc:
                raise BadInputError(f"{file}: unreadable image ({exc})") from None
            xs.append(array[..., None] if channels == 1 else array)
            ys.append(index)
    if not xs:
        raise BadInputError(f"{root}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if len({a.shape for a in xs}) > 1:
        raise BadInputError(f"{root}: images differ in size; give the model's input shape to resize them")
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    return Dataset(np.stack(xs), np.asarray(ys, dtype=np.int64), name=f"{root} ({len(classes)} classes: {shown})",
                   pixels="raw")


# How decoded image pixels are scaled: (multiplier, offset, what the model gets). "raw" is what
# keras.utils.image_dataset_from_directory gives, and what a model with its own Rescaling takes.
PIXEL_SCALES = {
    "raw": (1.0, 0.0, "pixels 0-255"),
    "unit": (1 / 255, 0.0, "pixels / 255 (0-1)"),
    "symmetric": (1 / 127.5, -1.0, "pixels / 127.5 - 1 (-1..1, MobileNet/Inception preprocessing)"),
}


def scale_pixels(data: Dataset, scale: str) -> Dataset:
    """An image folder's pixels at ``scale``, named in the dataset (manifests and reports show it)."""
    if scale not in PIXEL_SCALES:
        raise BadInputError(f"unknown pixel scale '{scale}' (valid: {', '.join(PIXEL_SCALES)})")
    multiplier, offset, what = PIXEL_SCALES[scale]
    x = (data.x * np.float32(multiplier) + np.float32(offset)).astype(np.float32)
    return Dataset(x, data.y, f"{data.name[:-1]}; {what})", pixels=scale)


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


def load_dataset(source, *, input_shape: Sequence | None = None, pixel_scale: str | None = None) -> Dataset:
    """Build a :class:`Dataset` from any registered source.

    Args:
        source: a ``.npz`` path, an image folder, ``"sample:NAME[:SPLIT]"``, an
            ``(x, y)`` tuple, an array, an iterable, or a ``Dataset``.
        input_shape: the model's input shape without the batch axis, used to
            resize images.
        pixel_scale: for an image folder, a name in :data:`PIXEL_SCALES` (default
            ``"raw"``: 0-255, as Keras' ``image_dataset_from_directory`` gives).

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
            data = candidate.load(source, None if input_shape is None else tuple(input_shape))
            if data.pixels:  # decoded images: the scale is the user's choice, raw 0-255 unless told
                return scale_pixels(data, pixel_scale or "raw")
            if pixel_scale is not None:
                raise BadInputError(f"{source}: --pixel-scale applies to image folders; arrays and sample sets "
                                    "are used as they are")
            return data
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadInputError(f"{path}: no such file or directory")
        raise BadInputError(f"{path}: unknown dataset format (use .npz with x/y arrays, an image folder, or sample:NAME)")
    raise BadInputError(f"unknown dataset source of type {type(source).__name__}")
