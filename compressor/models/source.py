"""``SourceModel``: what the toolkit reads, whatever its format.

Code downstream asks the source what it has (named inputs and outputs, op types, MACs,
``predict``, which representations it can hand over) instead of checking its type. A
Keras source hands over a tf-keras model (``"keras"``); an ONNX source its ONNX graph
(``"onnx"``). A runtime takes a source when it accepts one of those representations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from compressor import keras_env
from compressor.errors import BadInputError
from compressor.memory import batch_for
from compressor.models import inspection
from compressor.models.inspection import ModelReport, TensorSpec, flat_layers, tensor_specs


class SourceModel(Protocol):
    name: str
    format: str  # "keras" | "onnx": recorded in manifests, never branched on
    provides: tuple[str, ...]  # representations ``representation`` hands over
    path: Path | None

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def op_types(self) -> set[str]:
        """Layer (Keras) or op (ONNX) type names: what target profiles are checked against."""

    def predict(self, x, batch_size: int | None = None) -> list[np.ndarray]:
        """Run the float model on ``x`` (one array per input, in input order; or the one array of
        a single-input model); one array per output. ``batch_size``: samples per batch (default:
        :func:`compressor.memory.batch_for`'s)."""

    def predict_with_weights(self, dtype: str, x) -> list[np.ndarray]:
        """``predict`` with every float weight rounded to ``dtype`` first (the model itself unchanged)."""

    def report(self) -> ModelReport:
        """Inputs, outputs, layers or ops, params and MACs."""

    def representation(self, kind: str):
        """The model as ``kind`` (one of ``provides``), or None."""

    def data_spec(self) -> tuple[tuple, np.dtype, int | None]:
        """(first input's shape without batch, its dtype, number of classes or None)."""

    def class_outputs(self) -> list[bool]:
        """For each output: does it hold class scores (top-1 agreement, labels apply)?"""

    def record(self, path=None) -> dict:
        """The manifest's ``source`` entry (``path``: the file the model came from)."""


def _scores_shape(spec: TensorSpec) -> bool:
    return len(spec.shape) == 2 and bool(spec.shape[-1]) and spec.shape[-1] > 1


def class_score_outputs(outputs: list[TensorSpec], softmax: list[bool]) -> list[bool]:
    """Which outputs hold class scores: a model's only output when it is (batch, classes), the
    convention of classifiers with or without a final softmax; among several outputs (a
    detector's boxes and scores, landmarks), those (batch, classes) outputs that end in a softmax."""
    if len(outputs) == 1:
        return [_scores_shape(outputs[0])]
    return [_scores_shape(spec) and ends_in_softmax for spec, ends_in_softmax in zip(outputs, softmax)]


def classes_of(source, metric=None) -> int | None:
    """The class count of the source's first class-score output (as ``metric`` reads the
    outputs, when one judges the model), else None."""
    flags = class_outputs_for(source, metric)
    first = next((spec for spec, flag in zip(source.outputs, flags) if flag), None)
    return None if first is None else int(first.shape[-1])


def class_outputs_for(source, metric=None) -> list[bool]:
    """Which outputs hold class scores: the source's guess from their shapes, corrected by the
    task metric the user chose (``metric.outputs_read``: an output it reads is class scores only
    for top-1)."""
    flags = list(source.class_outputs())
    if metric is not None:
        for index, scores in metric.outputs_read(len(flags)).items():
            if index < len(flags):
                flags[index] = scores
    return flags


def labelled_output(source, metric=None) -> int | None:
    """The index of the output that labels (``y``) apply to: the first class-score output."""
    return next((index for index, flag in enumerate(class_outputs_for(source, metric)) if flag), None)


def passthrough_outputs(inputs: list[np.ndarray], outputs: list[np.ndarray], names=None) -> dict[int, str]:
    """The outputs that carry no computation of the model, by index, with why: integer outputs
    (token ids, masks, indices), copies of an input, and outputs equal on every sample. Found on
    the data (``inputs`` and the float model's ``outputs`` on them), whatever the format. No
    budget, headline figure or recommendation follows them; parity checks them for equality."""
    names = names or [f"input {i}" for i in range(len(inputs))]
    found = {}
    for index, output in enumerate(outputs):
        output = np.asarray(output)
        copied = next((name for name, x in zip(names, inputs)
                       if np.shape(x) == output.shape and np.array_equal(np.asarray(x), output)), None)
        if copied is not None:
            found[index] = f"copies input '{copied}'"
        elif output.dtype.kind in "iub":
            found[index] = "integer"
        elif len(output) > 1 and output.size and np.all(output == output[:1]):
            found[index] = "constant"
    return found


def judged_outputs(source, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[list[int], dict[int, str]]:
    """The outputs an artifact is judged by (every output that computes something, class scores
    first) and the pass-through ones (:func:`passthrough_outputs`)."""
    passthrough = passthrough_outputs(inputs, outputs, [spec.name for spec in source.inputs])
    judged = [i for i in range(len(outputs)) if i not in passthrough]
    if not judged:  # nothing but integers (an argmax head) or copies: judge the integers the model computes
        judged = [i for i, why in passthrough.items() if why == "integer"] or list(range(len(outputs)))
        passthrough = {i: why for i, why in passthrough.items() if i not in judged}
    head = labelled_output(source)
    if head is not None and head in judged:
        judged.remove(head)
        judged.insert(0, head)
    return judged, passthrough


def fixed_batch(shapes) -> int | None:
    """The batch a model's inputs are fixed at (every input's first dimension the same number, as a
    plain PyTorch export writes it), or None when it takes any batch."""
    firsts = {shape[0] if len(shape) else None for shape in shapes}
    first = firsts.pop() if len(firsts) == 1 else None
    return first if isinstance(first, int) and first > 0 else None


def run_at_batch(run, inputs: list[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """``run(inputs)`` for a model whose batch is fixed at ``batch``: in chunks of that size, the last
    one padded with copies of its first sample and cut back, each output with its batch axis first
    (a recognizer's time-major ``[T, 1, classes]`` becomes ``[1, T, classes]``) so that samples are
    concatenated, not time steps; as it is when ``batch`` is None."""
    if batch is None:
        return run(inputs)
    parts = []
    for start in range(0, len(inputs[0]), batch):
        chunk = [a[start:start + batch] for a in inputs]
        short = batch - len(chunk[0])
        if short:
            chunk = [np.concatenate([a, np.repeat(a[:1], short, axis=0)]) for a in chunk]
        outputs = [_batch_first(np.asarray(o), batch) for o in run(chunk)]
        parts.append([o[:batch - short] if short else o for o in outputs])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _batch_first(output: np.ndarray, batch: int) -> np.ndarray:
    """``output`` with its batch axis (the first of ``batch`` elements; the first axis when it is one)
    moved to the front."""
    if not output.ndim or output.shape[0] == batch:
        return output
    axis = next((i for i, size in enumerate(output.shape) if size == batch), None)
    if axis is None:  # no axis holds the batch (an output that pools it away): one row per call
        return output[None]
    return np.moveaxis(output, axis, 0)


def feed_list(x) -> list[np.ndarray]:
    """Inputs as a list (one array per input): a single array stands for a single-input model's."""
    return [x] if isinstance(x, np.ndarray) else list(x)


def first_input_spec(source) -> tuple[tuple, np.dtype, int | None]:
    first = source.inputs[0]
    return tuple(first.shape[1:]), np.dtype(first.dtype), classes_of(source)


def file_identity(path) -> dict:
    from compressor.digests import sha256

    return {} if path is None else {"path": Path(path).name, "sha256": sha256(Path(path))}


class KerasSource:
    """A tf-keras model (Keras 3 models are bridged on the way in, see :func:`as_source`)."""

    format = "keras"
    provides = ("keras",)

    def __init__(self, model, path=None) -> None:
        self.model, self.path = model, None if path is None else Path(path)
        self.name = model.name

    @property
    def inputs(self) -> list[TensorSpec]:
        return tensor_specs(self.model)[0]

    @property
    def outputs(self) -> list[TensorSpec]:
        return tensor_specs(self.model)[1]

    def input_scale(self) -> float | None:
        """The factor of a Rescaling layer the input goes through first (1/255 in EfficientNet
        and in models built as Keras' image examples), or None."""
        layers = [layer for layer in flat_layers(self.model) if type(layer).__name__ != "InputLayer"]
        first = layers[0] if layers else None
        if type(first).__name__ != "Rescaling":
            return None
        scale = np.asarray(first.scale, dtype=np.float64)
        return float(scale.reshape(-1)[0]) if scale.size else None

    def op_types(self) -> set[str]:
        """Layer types, wrapped layers included (Bidirectional(GRU) is a GRU too)."""
        types = set()
        for layer in flat_layers(self.model):
            types.add(getattr(layer, "wrapped_class", None) or type(layer).__name__)
            for inner in (getattr(layer, "forward_layer", None), getattr(layer, "layer", None)):
                if inner is not None:
                    types.add(type(inner).__name__)
        return types

    def predict(self, x, batch_size: int | None = None) -> list[np.ndarray]:
        feeds = feed_list(x)
        result = self.model.predict(keras_env.as_called(self.model, feeds), batch_size=batch_size or batch_for(feeds),
                                    verbose=0)
        return [np.asarray(r) for r in (result if isinstance(result, list) else [result])]

    def predict_with_weights(self, dtype: str, x) -> list[np.ndarray]:
        from compressor.models.precision import weights_as

        with weights_as(self.model, dtype):  # BatchNorms folded first, as converters do
            return self.predict(x)

    def report(self) -> ModelReport:
        return inspection.inspect_model(self.model)

    def representation(self, kind: str):
        return self.model if kind == "keras" else None

    def data_spec(self) -> tuple[tuple, np.dtype, int | None]:
        return first_input_spec(self)

    def class_outputs(self) -> list[bool]:
        return class_score_outputs(self.outputs, [_softmax_layer(t._keras_history.layer) for t in self.model.outputs])

    def with_input_shapes(self, shapes: dict[str, tuple]) -> "KerasSource":
        """A Keras model's inputs are static but for the batch: shapes that agree are accepted (the
        batch is fed as it comes), anything else is refused."""
        for spec in self.inputs:
            shape = shapes.get(spec.name)
            if shape is not None and (len(shape) != len(spec.shape) or any(
                    d is not None and int(d) != int(s) for d, s in zip(spec.shape[1:], shape[1:]))):
                raise BadInputError(f"--input-shape {spec.name}: {'x'.join(map(str, shape))} differs from the Keras "
                                    f"model's input {spec.shape}; fixing shapes applies to ONNX models' dynamic "
                                    "dimensions")
        unknown = sorted(set(shapes) - {spec.name for spec in self.inputs})
        if unknown:
            raise BadInputError(f"--input-shape names no input '{unknown[0]}' (the model's: "
                                f"{', '.join(spec.name for spec in self.inputs)})")
        return self

    def record(self, path=None) -> dict:
        report = self.report()
        return {"name": self.name, "params": report.params, "macs": report.macs,
                **file_identity(path if path is not None else self.path)}


def _softmax_layer(layer) -> bool:
    inner = getattr(layer, "layer", layer)  # a tfmot wrapper holds the real layer
    activation = getattr(inner, "activation", None)
    activation = getattr(activation, "activation", activation)
    return type(inner).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def round_float(array: np.ndarray, dtype: str) -> np.ndarray:
    """A float array rounded to ``dtype`` and back to its own type; other arrays as they are."""
    return array.astype(dtype).astype(array.dtype) if array.dtype.kind == "f" else array


def is_source(obj) -> bool:
    return hasattr(obj, "representation") and hasattr(obj, "provides")


def as_source(model, *, path=None, trust_model: bool = False):
    """``model`` as a SourceModel: a source as it is, a Keras model (Keras 3 bridged) wrapped.

    Example:
        >>> as_source(tf_keras_model).data_spec()
    """
    if is_source(model):
        return model
    if keras_env.is_tf_keras_model(model):  # already in the engine's Keras (a step's output, a loaded model)
        return KerasSource(model, path)
    if keras_env.is_keras3_model(model):
        from compressor.models.loading import load_model

        return KerasSource(load_model(model, trust_model=trust_model), path)
    raise BadInputError(f"not a model: {type(model).__name__}")


def parse_input_shapes(values, source) -> dict[str, tuple[int, ...]]:
    """``--input-shape`` values (``NAME=1x3x320x320``, or ``1x3x320x320`` for a model with one
    input) as {input name: shape}."""
    shapes = {}
    for value in values or ():
        name, sep, dims = str(value).rpartition("=")
        if not sep:
            if len(source.inputs) != 1:
                raise BadInputError(f"--input-shape {value}: the model has {len(source.inputs)} inputs; name one "
                                    "(NAME=DIMxDIM...)")
            name = source.inputs[0].name
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise BadInputError(f"--input-shape {value}: dimensions are whole numbers joined by x "
                                "(1x3x320x320)") from None
        if not shape or min(shape) < 1:
            raise BadInputError(f"--input-shape {value}: every dimension must be at least 1")
        shapes[name] = shape
    return shapes


def fixing_shapes(source, values):
    """``source`` with the input shapes ``values`` (``--input-shape``) fixed; itself without any."""
    return source.with_input_shapes(parse_input_shapes(values, source)) if values else source
