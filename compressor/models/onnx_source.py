"""An ONNX model as a source: loaded safely, run by ONNX Runtime (ONNX's reference executor).

No TensorFlow is involved: the ONNX Runtime and OpenVINO targets take the graph as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from compressor.errors import BadInputError, one_line
from compressor.memory import batch_for
from compressor.models import onnx_graph
from compressor.models.inspection import LayerInfo, ModelReport, TensorSpec
from compressor.models.source import (class_score_outputs, feed_list, file_identity, first_input_spec, fixed_batch,
                                      round_float, run_at_batch)


def _check_external_data(proto, folder: Path, path: Path) -> bool:
    """Refuse external-data locations outside the model's folder (CVE-2024-27318); True when the
    model keeps any tensor in external data."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    root, found = folder.resolve(), False
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        found = True
        location = ExternalDataInfo(tensor).location
        candidate = folder / location
        if (Path(location).is_absolute() or ".." in Path(location).parts or candidate.is_symlink()
                or not candidate.resolve().is_relative_to(root)):
            raise BadInputError(f"{path}: external data '{location}' of tensor '{tensor.name}' is outside the "
                                "model's folder; refused")
        if not candidate.is_file():
            raise BadInputError(f"{path}: external data file '{location}' is missing")
    return found


def load_onnx(path: str | Path) -> "OnnxSource":
    """Load an ONNX model safely: external data checked before it is read, then ``onnx.checker``.

    Example:
        >>> source = load_onnx("model.onnx")
        >>> source.inputs[0].shape
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise BadInputError(f"{path}: corrupt or not an ONNX model ({one_line(exc)})") from None
    external = _check_external_data(proto, path.parent, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        # from the file when it holds every tensor: the checker then reads it in C++ instead of
        # taking a serialised copy of the loaded model (1 GB less at the peak on BERT-base)
        onnx.checker.check_model(str(path) if not external else proto)
    except Exception as exc:
        raise BadInputError(f"{path}: invalid ONNX model ({one_line(exc)})") from None
    # ONNX Runtime reads a self-contained file itself; with external data it fails on a shape
    # constant kept there ("Cannot parse data from external tensors"), so it gets the loaded proto
    return OnnxSource(path, proto, from_file=not external)


def _spec(value_info) -> TensorSpec:
    from onnx import helper

    tensor = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return TensorSpec(value_info.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name)


def numpy_helper_to_array(tensor) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _inferred_shapes(proto) -> dict[str, list]:
    """Every tensor's shape for one sample (a dynamic batch set to 1), from ONNX shape inference
    on the graph's skeleton; a dimension that stays unknown is None."""
    try:
        return onnx_graph.shapes_of(onnx_graph.inferred(proto, batch=1))
    except Exception:  # shape inference is best effort here: MACs then stay unknown (0)
        return {}


class _Weight(NamedTuple):
    """What the model report reads of one float initializer."""

    size: int
    ndim: int
    zeros: int


def _float_weights(graph) -> dict[str, _Weight]:
    """Each float initializer's size, rank and zeros, converted one at a time (holding every weight
    as an array at once would copy the model)."""
    found = {}
    for tensor in graph.initializer:
        array = numpy_helper_to_array(tensor)
        if array.dtype.kind == "f":
            found[tensor.name] = _Weight(array.size, array.ndim, int(np.count_nonzero(array == 0)))
    return found


def _node_macs(node, shapes: dict[str, list], weights: dict[str, _Weight]) -> int:
    """Multiply-accumulates of one Conv / ConvTranspose / Gemm / MatMul for one sample (0 if unknown)."""
    out = shapes.get(node.output[0]) if node.output else None
    if not out or any(d is None for d in out):
        return 0
    if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in weights:
        kernel = weights[node.input[1]]  # Conv: (out, in/groups, *k); ConvTranspose: (in, out/groups, *k)
        spatial = out[2:] if node.op_type == "Conv" else shapes.get(node.input[0], [None] * 3)[2:]
        if any(d is None for d in spatial):
            return 0
        return int(np.prod(spatial) * kernel.size)
    if node.op_type in ("Gemm", "MatMul"):
        first = shapes.get(node.input[0])
        if not first or first[-1] is None:
            return 0
        return int(np.prod(out[1:]) * first[-1]) if len(out) > 1 else int(out[0] * first[-1])
    return 0


def _weight_tensors(graph):
    """Every tensor a converter may store at a lower precision: the initializers and the values of
    ``Constant`` nodes (exporters such as paddle2onnx keep all weights there), subgraphs included."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.type == AttributeProto.TENSOR:
                yield attribute.t
            elif attribute.type == AttributeProto.GRAPH:
                yield from _weight_tensors(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for graph_ in attribute.graphs:
                    yield from _weight_tensors(graph_)


def _round_tensor(tensor, dtype: str) -> None:
    """``tensor`` rounded to ``dtype`` in place. Scalars stay float32, as OpenVINO keeps them when
    it compresses constants to fp16: activation constants (hard-swish's 3 and 1/6, Clip bounds) are
    not weights. On MobileNetV3Large this brings the reference from 1.6e-2 to 5.8e-4 of the IR's
    output."""
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor)
    if array.dtype.kind == "f" and array.ndim:
        tensor.CopyFrom(numpy_helper.from_array(round_float(array, dtype), tensor.name))


class OnnxSource:
    """A user's ONNX model: the source of the quantize-only path."""

    format = "onnx"
    provides = ("onnx",)

    def __init__(self, path: Path, proto, fixed_shapes: dict | None = None, *, from_file: bool = False) -> None:
        self.path, self.proto, self.name = path, proto, path.stem
        self._session, self._report = None, None
        self._from_file = from_file  # the proto is the file's as loaded: ONNX Runtime reads the file itself
        self.fixed_shapes = fixed_shapes or {}  # input name -> the shape --input-shape fixed it to

    def with_input_shapes(self, shapes: dict[str, tuple]) -> "OnnxSource":
        """This model with the dynamic dimensions of its inputs fixed (``--input-shape``), for
        runtimes and quantizers that need static shapes; a static dimension must stay what it is."""
        proto = type(self.proto)()
        proto.CopyFrom(self.proto)
        inputs = {i.name: i for i in proto.graph.input}
        for name, shape in shapes.items():
            if name not in inputs:
                raise BadInputError(f"--input-shape names no input '{name}' (the model's: "
                                    f"{', '.join(spec.name for spec in self.inputs)})")
            dims = inputs[name].type.tensor_type.shape.dim
            if len(dims) != len(shape):
                raise BadInputError(f"--input-shape {name}: {len(shape)} dimensions for an input of {len(dims)}")
            for index, (dim, size) in enumerate(zip(dims, shape)):
                if dim.HasField("dim_value") and dim.dim_value not in (0, size):
                    raise BadInputError(f"--input-shape {name}: dimension {index} is {dim.dim_value} in the "
                                        f"model, not {size}")
                dim.Clear()
                dim.dim_value = int(size)
        return OnnxSource(self.path, proto, {**self.fixed_shapes, **{k: list(v) for k, v in shapes.items()}})

    @property
    def inputs(self) -> list[TensorSpec]:
        initializers = {t.name for t in self.proto.graph.initializer}
        return [_spec(i) for i in self.proto.graph.input if i.name not in initializers]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(o) for o in self.proto.graph.output]

    def op_types(self) -> set[str]:
        return {node.op_type for node in self.proto.graph.node}

    def _run(self, x: list[np.ndarray]) -> list[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            model = str(self.path) if self._from_file else self.proto.SerializeToString()  # not a second copy
            self._session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        specs = self.inputs
        return run_at_batch(lambda chunk: self._session.run(None, {
            spec.name: array.astype(spec.dtype, copy=False) for spec, array in zip(specs, chunk)}), list(x),
            fixed_batch([spec.shape for spec in specs]))

    def predict(self, x, batch_size: int | None = None) -> list[np.ndarray]:
        feeds = feed_list(x)
        batch_size = batch_size or batch_for(feeds)
        parts = [self._run([f[i : i + batch_size] for f in feeds]) for i in range(0, len(feeds[0]), batch_size)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def predict_with_weights(self, dtype: str, x) -> list[np.ndarray]:
        """The outputs with the float weights rounded to ``dtype`` (fp16 parity's reference)."""
        overrides = self._rounded_initializers(dtype) if self._from_file else None
        if overrides is None:  # weights in Constant nodes or subgraphs: a rounded copy of the model
            rounded = OnnxSource(self.path, type(self.proto)())
            rounded.proto.CopyFrom(self.proto)
            for tensor in _weight_tensors(rounded.proto.graph):
                _round_tensor(tensor, dtype)
            return rounded.predict(x)
        import onnxruntime as ort

        # ONNX Runtime reads the file and takes the rounded initializers in place of its own: no
        # copy of the model and no serialised one (openvino-fp16 of a BERT-base export: 3,579 MB
        # peak to 2,245 MB). The values must outlive the session, which this call keeps.
        options = ort.SessionOptions()
        values = [ort.OrtValue.ortvalue_from_numpy(array) for array in overrides.values()]
        for name, value in zip(overrides, values):
            options.add_initializer(name, value)
        rounded = OnnxSource(self.path, self.proto, self.fixed_shapes, from_file=True)
        rounded._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        return rounded.predict(x)

    def _rounded_initializers(self, dtype: str) -> dict[str, np.ndarray] | None:
        """Each float initializer of more than one value rounded to ``dtype`` (what ``_round_tensor``
        changes), by name; None when a Constant node or a subgraph holds a float weight too."""
        from onnx import AttributeProto

        for node in self.proto.graph.node:
            for attribute in node.attribute:
                if attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                    return None
                if (node.op_type == "Constant" and attribute.type == AttributeProto.TENSOR and attribute.t.dims
                        and attribute.t.data_type in onnx_graph.FLOAT_TYPES):
                    return None
        rounded = {}
        for tensor in self.proto.graph.initializer:
            if tensor.data_type in onnx_graph.FLOAT_TYPES and tensor.dims:
                rounded[tensor.name] = round_float(numpy_helper_to_array(tensor), dtype)
        return rounded

    def params(self) -> int:
        """Float weights (shape and index constants are not parameters)."""
        return self.report().params

    def report(self) -> ModelReport:
        """One row per node: its params (initializers it reads) and MACs for one sample (worked out
        once: shape inference on a large graph takes a second, and every export records it)."""
        if self._report is None:
            self._report = self._inspect()
        return self._report

    def _inspect(self) -> ModelReport:
        weights = _float_weights(self.proto.graph)
        shapes = _inferred_shapes(self.proto)
        layers = []
        for node in self.proto.graph.node:
            out_shape = shapes.get(node.output[0], []) if node.output else []
            kernels = [weights[i] for i in node.input if i in weights and weights[i].ndim >= 2]
            size = sum(w.size for w in kernels)
            zeros = sum(w.zeros for w in kernels)
            layers.append(LayerInfo(node.name or node.op_type, node.op_type, [d for d in out_shape],
                                    sum(weights[i].size for i in node.input if i in weights),
                                    _node_macs(node, shapes, weights), zeros / size if size else 0.0, size))
        return ModelReport(self.name, self.inputs, self.outputs, layers)

    def representation(self, kind: str):
        return self.proto if kind == "onnx" else None

    def data_spec(self) -> tuple[tuple, np.dtype, int | None]:
        return first_input_spec(self)

    def class_outputs(self) -> list[bool]:
        producers = {name: node.op_type for node in self.proto.graph.node for name in node.output}
        return class_score_outputs(self.outputs, [producers.get(o.name) == "Softmax" for o in self.outputs])

    def record(self, path=None) -> dict:
        return {"name": self.name, "format": "onnx", **file_identity(self.path), "params": self.params(),
                "macs": None, **({"input_shapes_fixed": self.fixed_shapes} if self.fixed_shapes else {})}
