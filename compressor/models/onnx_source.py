"""An ONNX model as a source: loaded safely, run by ONNX Runtime (ONNX's reference executor).

No TensorFlow is involved: the ONNX Runtime and OpenVINO targets take the graph as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.errors import BadInputError, one_line
from compressor.models.inspection import LayerInfo, ModelReport, TensorSpec
from compressor.models.source import classes_of, file_identity, single_input


def _check_external_data(proto, folder: Path, path: Path) -> None:
    """Refuse external-data locations outside the model's folder (CVE-2024-27318)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    root = folder.resolve()
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        candidate = folder / location
        if (Path(location).is_absolute() or ".." in Path(location).parts or candidate.is_symlink()
                or not candidate.resolve().is_relative_to(root)):
            raise BadInputError(f"{path}: external data '{location}' of tensor '{tensor.name}' is outside the "
                                "model's folder; refused")
        if not candidate.is_file():
            raise BadInputError(f"{path}: external data file '{location}' is missing")


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
    _check_external_data(proto, path.parent, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise BadInputError(f"{path}: invalid ONNX model ({one_line(exc)})") from None
    if len(proto.graph.input) - len(proto.graph.initializer) > 1 and len(proto.graph.input) > 1:
        raise BadInputError(f"{path}: models with more than one input are not supported yet")
    return OnnxSource(path, proto)


def _spec(value_info) -> TensorSpec:
    from onnx import helper

    tensor = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return TensorSpec(value_info.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name)


class OnnxSource:
    """A user's ONNX model: the source of the quantize-only path."""

    format = "onnx"
    provides = ("onnx",)
    baseline_runtime = "onnxruntime"

    def __init__(self, path: Path, proto) -> None:
        self.path, self.proto, self.name = path, proto, path.stem
        self._session = None

    @property
    def inputs(self) -> list[TensorSpec]:
        initializers = {t.name for t in self.proto.graph.initializer}
        return [_spec(i) for i in self.proto.graph.input if i.name not in initializers]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(o) for o in self.proto.graph.output]

    def op_types(self) -> set[str]:
        return {node.op_type for node in self.proto.graph.node}

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.proto.SerializeToString(), providers=["CPUExecutionProvider"])
        first = single_input(self)
        return self._session.run(None, {first.name: x.astype(first.dtype, copy=False)})

    def predict(self, x: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
        parts = [self._run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def params(self) -> int:
        return sum(int(np.prod(t.dims)) for t in self.proto.graph.initializer)

    def report(self) -> ModelReport:
        sizes = {t.name: int(np.prod(t.dims)) for t in self.proto.graph.initializer}
        layers = [LayerInfo(node.name or node.op_type, node.op_type, [], sum(sizes.get(i, 0) for i in node.input),
                            0, 0.0, 0) for node in self.proto.graph.node]
        return ModelReport(self.name, self.inputs, self.outputs, layers)

    def representation(self, kind: str):
        return self.proto if kind == "onnx" else None

    def data_spec(self) -> tuple[tuple, np.dtype, int | None]:
        first = single_input(self)
        return tuple(first.shape[1:]), np.dtype(first.dtype), classes_of(self.outputs)

    def record(self, path=None) -> dict:
        return {"name": self.name, "format": "onnx", **file_identity(self.path), "params": self.params(),
                "macs": None}
