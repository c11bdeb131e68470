"""The runtime interface every exporter/runner implements, and the runtime registry.

A runtime is one module in ``targets/runtimes/`` that declares one :class:`Runtime`
record named ``RUNTIME``: how it exports and loads, which libraries manifests record,
which modules the benchmark worker imports first, which source representations it
exports from, which source formats it runs as the float baseline. Every table elsewhere
derives from these records. Runtime libraries are imported inside those modules'
functions only, so a missing library fails only the targets that need it.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from compressor.errors import BadInputError
from compressor.memory import batch_for
from compressor.models.source import feed_list


@dataclass
class TensorInfo:
    name: str
    shape: list
    dtype: str
    scale: float | None = None  # quantized I/O: real = scale * (q - zero_point)
    zero_point: int | None = None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return x.astype(self.dtype, copy=False)
        info = np.iinfo(self.dtype)
        return np.clip(np.round(x / self.scale + self.zero_point), info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return q.astype(np.float32, copy=False)
        return (self.scale * (q.astype(np.float32) - self.zero_point)).astype(np.float32)


@dataclass
class Exported:
    """What a runtime's ``export`` wrote into the work folder."""

    artifact: Path
    extra_files: list[Path]
    details: dict  # runtime-specific facts for the manifest (opset, arena bytes, ...)


class Runner(Protocol):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    load_seconds: float

    def run(self, x) -> list[np.ndarray]:
        """Run a batch: one array per input in the source's input order (or the one array of a
        single-input model); return float outputs in the source's output order."""

    def close(self) -> None:
        """Release the runtime's session/interpreter."""


Export = Callable[..., Exported]  # (source, profile, calibration, workdir) -> Exported
Load = Callable[..., Runner]  # (path, *, threads, details) -> Runner


@dataclass(frozen=True)
class Runtime:
    name: str
    load: Load
    export: Export | None = None  # None: a runtime that only runs sources (the float baseline)
    libraries: tuple[str, ...] = ()  # distributions whose versions each manifest records
    preimport: tuple[str, ...] = ()  # modules the benchmark worker imports before its memory baseline
    accepts: tuple[str, ...] = ()  # source representations ``export`` takes, preferred first
    runs_sources: tuple[str, ...] = ()  # source formats it runs as they are (the float baseline)
    describe: Callable[[Path], dict] | None = None  # an artifact file's ops, I/O tensors, weight types
    suffix: str | None = None  # its artifact files' extension, for inspecting a bare file
    # int8 with chosen layers kept in float: (source, profile, calibration, workdir) -> an object with
    # ``nodes`` (the candidates' names, as ``options["float_nodes"]`` takes them) and
    # ``write(float_nodes, destination)``, optionally ``write_alone(quantized_nodes, destination)``
    # (only those in int8, edited from full int8: the sensitivity pass then quantizes once);
    # None: this runtime cannot mix precisions
    mixed: Callable | None = None
    # option sets to try, in order, when a profile's int8 misses the accuracy budget (before mixed
    # precision): other calibrations or presets, each a full export and evaluation
    alternatives: tuple = ()
    # precisions its kernels run on AMX tiles where the CPU has them (the roofline's ceiling for them)
    amx: tuple = ()

    def takes(self, source) -> bool:
        """Whether ``export`` can start from what ``source`` provides."""
        return self.export is not None and any(kind in source.provides for kind in self.accepts)


_REGISTRY: dict[str, Runtime] = {}


def runtimes() -> dict[str, Runtime]:
    """Every runtime declared in ``targets/runtimes/``, by name."""
    if not _REGISTRY:
        from targets import runtimes as package

        for module in sorted(info.name for info in pkgutil.iter_modules(package.__path__)):
            record = importlib.import_module(f"{package.__name__}.{module}").RUNTIME
            _REGISTRY[record.name] = record
    return _REGISTRY


def get_runtime(name: str) -> Runtime:
    known = runtimes()
    if name not in known:
        raise BadInputError(f"unknown runtime '{name}' (valid: {', '.join(known)})")
    return known[name]


def baseline_runtime(source_format: str) -> Runtime:
    """The runtime that runs a source of ``source_format`` as it is: the float baseline."""
    for runtime in runtimes().values():
        if source_format in runtime.runs_sources:
            return runtime
    raise BadInputError(f"no runtime runs {source_format} models as they are")


def run_batched(runner: Runner, x, batch_size: int | None = None) -> list[np.ndarray]:
    """Run ``x`` (one array per input, or one array) through ``runner`` in batches (by default as
    many samples as :func:`compressor.memory.batch_for` gives); concatenate each output."""
    inputs = feed_list(x)
    batch_size = batch_size or batch_for(inputs)
    chunks = [runner.run([a[start : start + batch_size] for a in inputs])
              for start in range(0, len(inputs[0]), batch_size)]
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


def in_source_order(items: list, order: list[int] | None) -> list:
    """An artifact's ``items`` (tensors, their details) in the source's order: ``order[k]`` is where
    the source's k-th is among the artifact's (None: the same order). Every runtime uses this and
    :func:`in_artifact_order`; ``order`` comes from :func:`name_order` or a runtime's signature."""
    return list(items) if order is None else [items[i] for i in order]


def in_artifact_order(arrays: list, order: list[int] | None) -> list:
    """The inverse of :func:`in_source_order`: arrays given in the source's order, put in the artifact's."""
    if order is None:
        return list(arrays)
    placed = [None] * len(arrays)
    for array, position in zip(arrays, order):
        placed[position] = array
    return placed


def name_order(wanted: list[str], names: list[set[str]]) -> list[int] | None:
    """For each wanted name, the position of the tensor that carries it; None unless every one is found.

    Converters add decorations (``serving_default_image:0``): a name matches its bare form.
    """
    def bare(name: str) -> str:
        return name.removeprefix("serving_default_").split(":")[0]

    positions = []
    for name in wanted:
        found = [i for i, candidates in enumerate(names) if name in candidates or name in {bare(c) for c in candidates}]
        if len(found) != 1:
            return None
        positions.append(found[0])
    return positions


def _runtime_by_suffix(path: Path):
    """The runtime whose artifacts end as ``path`` does (``.tflite``, ``.xml``), or None."""
    return next((r for r in runtimes().values() if r.suffix and Path(path).suffix.lower() == r.suffix), None)


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` is an artifact (a folder with a manifest, or a runtime's own file) rather than a model."""
    from targets import manifest as manifests

    path = Path(path)
    return (path / manifests.MANIFEST_NAME).is_file() or path.name == manifests.MANIFEST_NAME \
        or _runtime_by_suffix(path) is not None


def describe_artifact(path: str | Path) -> dict:
    """What an exported artifact is: an artifact folder (its manifest, integrity checked) or a bare
    ``.tflite`` / OpenVINO ``.xml`` file; ops, inputs and outputs with their types.

    Raises:
        BadInputError: not an artifact this toolkit can read.
    """
    from targets import manifest as manifests

    path = Path(path)
    if (path.is_dir() and (path / manifests.MANIFEST_NAME).is_file()) or path.name == manifests.MANIFEST_NAME:
        from targets.artifact import open_artifact

        artifact = open_artifact(path)
        described = get_runtime(artifact.runtime).describe(artifact.path)
        m = artifact.manifest
        return {"artifact": str(artifact.path), "target": m["target"], "runtime": m["runtime"],
                "precision": m["precision"], "cpu_class": m.get("cpu_class"), "size": m["size"],
                "source": m.get("source"),
                "parity": {k: m["parity"].get(k) for k in ("passed", "max_abs", "agreement", "snr_db", "samples")},
                **described}
    runtime = _runtime_by_suffix(path)
    if runtime is None or not path.is_file():
        raise BadInputError(f"{path}: not an artifact (a folder with manifest.json, a .tflite or an OpenVINO .xml)")
    return {"artifact": str(path), "runtime": runtime.name, "size": {"bytes": path.stat().st_size},
            **runtime.describe(path)}


_CONVERSIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def converted(model, kind: str, convert: Callable[[], object], digest: str | None = None, inputs: str = ""):
    """``convert()``'s result for ``model``, made once per process while it stays the same (a
    Keras model: while its weights do; others pass their own ``digest``). Converters (tf2onnx,
    OpenVINO's SavedModel path) keep much of the memory of each conversion, and OpenVINO names
    nodes with a process-wide counter: the accuracy budget's rungs export one model several
    times and name its layers across them. Memory grew by about 170 MB a conversion of an
    11 MB MLP before this. ``inputs``: a digest of whatever else the result depends on (the
    calibration data)."""
    if digest is None:
        hasher = hashlib.sha1()
        for weight in model.weights:
            hasher.update(np.ascontiguousarray(weight.numpy()).tobytes())
        digest = hasher.hexdigest()
    digest += inputs
    entry = _CONVERSIONS.setdefault(model, {})
    if kind in entry and entry[kind][0] == digest:
        return entry[kind][1]
    value = convert()
    entry[kind] = (digest, value)
    return value


def forget_conversions() -> None:
    """Drop every result :func:`converted` keeps: the next export of any model converts and
    quantizes afresh, as in a new process (what timing one export against the bare library calls
    it wraps needs; a kept NNCF quantization or LiteRT calibration would be timed as free)."""
    _CONVERSIONS.clear()
