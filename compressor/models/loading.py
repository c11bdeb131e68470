"""``load_model``: one entry point for every model format the toolkit reads.

Formats are detected from the file's content, not trusted from its name, and each
has a loader registered in ``LOADERS`` that opens it as a source model. Every Keras
loader scans the model's config with :mod:`compressor.models.safety` before Keras
deserializes anything, then loads with ``safe_mode``. Keras 3 models are bridged to
tf-keras (see :mod:`compressor.models.bridge`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compressor import keras_env
from compressor.errors import BadInputError, CompressorError, UnsupportedModelError, one_line
from compressor.models import safety

ZIP_MAGIC = b"PK\x03\x04"
WEIGHTS_MEMBER = "model.weights.h5"  # the HDF5 inside a .keras archive
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class ModelFormat:
    name: str
    extensions: tuple[str, ...]
    open: Callable[[Path, bool], object]  # (path, trust_model) -> SourceModel
    magic: bytes | None  # how the content starts, when the format says so
    source_format: str = "keras"  # the SourceModel.format it opens as


def _read_keras_archive(path: Path) -> tuple[dict, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise BadInputError(f"{path}: not a Keras archive (no config.json inside)")
            config = json.loads(archive.read("config.json"))
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            if WEIGHTS_MEMBER in names:  # zipfile checks each member's CRC as it reads it whole
                with tempfile.TemporaryDirectory(prefix="compressor-weights-") as tmp:
                    _walk_h5(Path(archive.extract(WEIGHTS_MEMBER, tmp)), shown=path)
    except BadInputError:
        raise
    except Exception as exc:  # zipfile raises many types: BadZipFile (bad CRC too), EOFError, NotImplementedError...
        raise BadInputError(f"{path}: corrupt or truncated .keras archive ({one_line(exc)})") from None
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise BadInputError(f"{path}: corrupt .keras archive (config.json or metadata.json is not an object)")
    return config, str(meta.get("keras_version", ""))


def _load_keras_archive(path: Path, trust_model: bool):
    config, version = _read_keras_archive(path)
    safety.check_config(config, source=str(path), trust_model=trust_model)
    try:
        if version.startswith("3"):
            model = keras_env.keras3().saving.load_model(path, compile=False, safe_mode=not trust_model)
        else:
            with _weights_read_from_a_file():
                model = keras_env.tf_keras().models.load_model(path, compile=False, safe_mode=not trust_model)
    except CompressorError:
        raise
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise BadInputError(f"{path}: cannot load Keras archive ({one_line(exc)})") from None
    return model


@contextlib.contextmanager
def _weights_read_from_a_file():
    """tf-keras reading a ``.keras`` archive's weights (``model.weights.h5``) from a copy of the
    archive member in a temporary file instead of from the member itself. HDF5 reads a file out
    of order, and each backward seek in a zip member makes Python 3.11's ``zipfile`` go back to
    the member's start and read forward again (through TensorFlow's file layer, which tf-keras
    opens the archive with): a 109.5 M-parameter encoder (418 MB of weights) took 158 s to load,
    all but 5 s of it in those reads. The copy is one sequential read; it goes when the load
    ends."""
    import shutil

    from tf_keras.src.saving import saving_lib

    own = saving_lib.H5IOStore.__init__
    with tempfile.TemporaryDirectory(prefix="compressor-weights-") as folder:
        def init(store, root_path, archive=None, mode="r"):
            if archive is None or mode != "r":
                return own(store, root_path, archive, mode)
            copy = Path(folder) / f"{len(list(Path(folder).iterdir()))}-{Path(root_path).name}"
            with archive.open(root_path, "r") as member, copy.open("wb") as out:
                shutil.copyfileobj(member, out, 16 << 20)
            return own(store, str(copy), None, mode)

        saving_lib.H5IOStore.__init__ = init
        try:
            yield
        finally:
            saving_lib.H5IOStore.__init__ = own


# Walks every attribute and dataset of an HDF5 file and prints its Keras config. Run in a
# child process: the HDF5 C library can loop forever on a damaged file (found by fuzzing:
# a zeroed global heap under a variable-length attribute), which no Python code can stop.
_H5_WALK = r"""
import json, sys
import h5py

def text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

def visit(name, obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        obj[()]

with h5py.File(sys.argv[1], "r") as handle:
    for key in handle.attrs:
        handle.attrs[key]
    handle.visititems(visit)
    config, version = handle.attrs.get("model_config"), handle.attrs.get("keras_version", "")
    print(json.dumps({"model_config": text(config), "keras_version": str(text(version))}))
"""
H5_WALK_SECONDS = 60.0


def _walk_h5(path: Path, *, shown: Path | None = None) -> dict:
    """Read all of HDF5 file ``path`` in a time-limited child; return its Keras header.

    ``shown``: the name used in errors (the archive an HDF5 member came from).
    """
    import subprocess
    import sys

    shown = shown or path
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", _H5_WALK, str(path)], capture_output=True, text=True,
                              timeout=H5_WALK_SECONDS)
    except subprocess.TimeoutExpired:
        raise BadInputError(f"{shown}: reading the HDF5 file did not finish in {H5_WALK_SECONDS:g} s "
                            "(damaged file?)") from None
    if proc.returncode != 0:  # h5py raises OSError, ValueError, KeyError... for damaged files
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise BadInputError(f"{shown}: corrupt or truncated HDF5 file ({lines[-1][:300] if lines else 'no detail'})")
    try:
        header = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"model_config": header["model_config"], "keras_version": header["keras_version"]}
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise BadInputError(f"{shown}: corrupt or truncated HDF5 file ({one_line(exc)})") from None


def _read_h5_config(path: Path) -> tuple[dict, str]:
    """The model config and Keras version of an HDF5 file, once the whole file was read safely."""
    header = _walk_h5(path)
    raw, version = header["model_config"], header["keras_version"]
    if raw is None:
        raise BadInputError(f"{path}: HDF5 file holds no model config (weights-only file?)")
    try:
        config = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"{path}: corrupt model config in HDF5 file ({one_line(exc)})") from None
    if not isinstance(config, dict):
        raise BadInputError(f"{path}: corrupt model config in HDF5 file (not an object)")
    return config, version


def _load_h5(path: Path, trust_model: bool):
    # Keras ignored safe_mode for .h5 (CVE-2025-9905): the scan above is the guard.
    config, version = _read_h5_config(path)
    safety.check_config(config, source=str(path), trust_model=trust_model)
    try:
        if version.startswith("3"):
            return keras_env.keras3().saving.load_model(path, compile=False, safe_mode=not trust_model)
        return keras_env.tf_keras().models.load_model(path, compile=False)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot load HDF5 model ({one_line(exc)})") from None


def _load_saved_model(path: Path, trust_model: bool):
    metadata = path / "keras_metadata.pb"
    if not metadata.exists():  # Keras 3's model.export(), tf.saved_model.save: a graph, no Keras config
        return _exported_saved_model(path)
    _check_saved_model_metadata(metadata, trust_model)
    try:
        return keras_env.tf_keras().models.load_model(str(path), compile=False)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot load SavedModel ({one_line(exc)})") from None


def _exported_saved_model(path: Path):
    """A SavedModel with no Keras metadata (what Keras 3's ``model.export()`` writes) as a Keras 3
    model: its serving signature in a ``TFSMLayer``, which runs the saved graph (no Python code
    of the model's author runs; the path is the user's own). Its weights are frozen in the graph,
    so it takes quantize-only recipes."""
    tf, keras = keras_env.tf(), keras_env.keras3()
    try:
        with keras_env.quiet_native():
            signatures = tf.saved_model.load(str(path)).signatures
    except Exception as exc:
        raise BadInputError(f"{path}: cannot load SavedModel ({one_line(exc)})") from None
    endpoint = "serving_default" if "serving_default" in signatures else next(iter(signatures), None)
    if endpoint is None:
        raise BadInputError(f"{path}: SavedModel has no serving signature to run")
    _, specs = signatures[endpoint].structured_input_signature
    inputs = {name: keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=name)
              for name, spec in sorted(specs.items())}
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint, name="saved_model")
    outputs = layer(inputs if len(inputs) > 1 else next(iter(inputs.values())))
    if isinstance(outputs, dict):
        outputs = [outputs[key] for key in sorted(outputs)]
    return keras.Model(list(inputs.values()), outputs, name=path.name)


def _check_saved_model_metadata(metadata: Path, trust_model: bool) -> None:
    keras_env.tf_keras()
    from tf_keras.protobuf import saved_metadata_pb2

    proto = saved_metadata_pb2.SavedMetadata()
    try:
        proto.ParseFromString(metadata.read_bytes())
    except Exception as exc:
        raise BadInputError(f"{metadata}: corrupt Keras metadata ({one_line(exc)})") from None
    for node in proto.nodes:
        try:
            entry = json.loads(node.metadata or "{}")
        except ValueError:
            raise BadInputError(f"{metadata}: corrupt Keras metadata entry") from None
        if isinstance(entry, dict):
            layer = {"class_name": entry.get("class_name"), "name": entry.get("name"), "config": entry.get("config") or {}}
            if node.identifier == "_tf_keras_layer" or node.identifier == "_tf_keras_network":
                safety.check_config(layer, source=str(metadata.parent), trust_model=trust_model)


def _open_keras(load: Callable[[Path, bool], object]) -> Callable[[Path, bool], object]:
    def open_source(path: Path, trust_model: bool):
        from compressor.models import activations
        from compressor.models.source import KerasSource

        activations.register()  # a bridged model saved by tf-keras names them
        return KerasSource(_to_tf_keras(load(path, trust_model), trust_model, verify=True), path)

    return open_source


def _open_onnx(path: Path, trust_model: bool):
    from compressor.models.onnx_source import load_onnx

    return load_onnx(path)


LOADERS = {
    "keras": ModelFormat("keras", (".keras",), _open_keras(_load_keras_archive), ZIP_MAGIC),
    "h5": ModelFormat("h5", (".h5", ".hdf5"), _open_keras(_load_h5), HDF5_MAGIC),
    "savedmodel": ModelFormat("savedmodel", (), _open_keras(_load_saved_model), None),
    "onnx": ModelFormat("onnx", (".onnx",), _open_onnx, None, "onnx"),  # a protobuf: no magic; onnx.load checks it
}


def detect_format(path: Path) -> ModelFormat:
    """Name the format of ``path`` from its content; raise BadInputError if unusable."""
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return LOADERS["savedmodel"]
        raise BadInputError(f"{path}: is a directory but not a SavedModel (no saved_model.pb)")
    if path.name == "saved_model.pb":
        raise BadInputError(f"{path}: pass the SavedModel directory, not saved_model.pb")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise BadInputError(f"{path}: file is empty")
    by_content = next((fmt for fmt in LOADERS.values() if fmt.magic and head.startswith(fmt.magic)), None)
    suffix = path.suffix.lower()
    by_name = next((fmt for fmt in LOADERS.values() if suffix in fmt.extensions), None)
    if by_content is None:
        if by_name is not None and by_name.magic is None:
            return by_name
        if by_name is not None:
            raise BadInputError(f"{path}: corrupt or not a {by_name.name} model (unrecognised content)")
        known = ", ".join(ext for fmt in LOADERS.values() for ext in fmt.extensions)
        raise BadInputError(f"{path}: unknown model format '{suffix or path.name}' (known: {known}, SavedModel directory)")
    if by_name is None or by_name.name != by_content.name:
        raise BadInputError(
            f"{path}: content is a {by_content.name} model but the extension is '{suffix}'; rename it to "
            f"'{by_content.extensions[0]}'"
        )
    return by_content


def load_source(model, *, trust_model: bool = False):
    """Load any model the toolkit reads as a :class:`compressor.models.SourceModel`.

    Args:
        model: a ``.keras`` / ``.h5`` / ``.onnx`` file, a SavedModel directory, an
            in-memory Keras 3 or tf-keras model, or a source.

    Example:
        >>> source = load_source("model.onnx")
        >>> source.inputs, source.op_types()
    """
    from compressor.models.source import KerasSource, is_source

    if isinstance(model, (str, Path)):
        return detect_format(Path(model)).open(Path(model), trust_model)
    if is_source(model):
        return model
    return KerasSource(load_model(model, trust_model=trust_model))  # an in-memory model: checked, then bridged


def load_model(model, *, trust_model: bool = False, verify_bridge: bool = True):
    """Load a Keras model from a path or take an in-memory model; return a tf-keras model.

    Args:
        model: a path to a ``.keras`` / ``.h5`` file or a SavedModel directory, or an
            in-memory Keras 3 or tf-keras model.
        trust_model: allow Lambda layers and custom objects (they run code).
        verify_bridge: check that a bridged Keras 3 model gives the same outputs.

    Returns:
        A tf-keras ``Model``.

    Raises:
        BadInputError: missing, corrupt or unrecognised file.
        UnsafeModelError: the model runs code and ``trust_model`` is False.
        UnsupportedModelError: a Keras 3 model the bridge cannot translate, or a model
            that is not a Keras model (ONNX: see :func:`load_source`).

    Example:
        >>> model = load_model("model.keras")
    """
    if isinstance(model, (str, Path)):
        source = load_source(model, trust_model=trust_model)
        keras_model = source.representation("keras")
        if keras_model is None:
            raise UnsupportedModelError(f"{model}: an {source.format} model, not a Keras model; this step needs "
                                        "a Keras model (.keras, .h5 or SavedModel)")
        return keras_model
    if keras_env.is_tf_keras_model(model) or keras_env.is_keras3_model(model):
        _check_in_memory(model, trust_model)
        return _to_tf_keras(model, trust_model, verify=verify_bridge)
    raise BadInputError(f"not a model or a path: {type(model).__name__}")


def _to_tf_keras(model, trust_model: bool, *, verify: bool):
    from compressor.models import bridge

    if keras_env.is_keras3_model(model):
        return bridge.to_tf_keras(model, verify=verify, trust_model=trust_model)
    return model


def _check_in_memory(model, trust_model: bool) -> None:
    try:
        config = {"class_name": type(model).__name__, "name": model.name, "config": model.get_config()}
    except NotImplementedError:
        return  # a subclassed model: the bridge explains what to do
    safety.check_config(config, source=f"model '{model.name}'", trust_model=trust_model)
