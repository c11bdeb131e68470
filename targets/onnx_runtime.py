"""ONNX / ONNX Runtime: tf2onnx for conversion, ONNX Runtime for quantization and running.

Static int8 follows ONNX Runtime's own advice for CNNs on x86 and ARM: QDQ format,
signed int8 activations and weights (S8S8), per-channel weights, after its
``quant_pre_process``. Dynamic int8 is the path for LSTM/transformer-like models.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import BadInputError, ConversionError, one_line
from targets.runtime import Exported, TensorInfo

OPSET = 17
ARTIFACT_NAME = "model.onnx"


def convert_keras(model, destination: Path) -> None:
    """Write ``model`` as ONNX (opset ``OPSET``) with a dynamic batch axis."""
    import onnx
    import tf2onnx

    tf = keras_env.tf()
    signature = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
                 for name, t in zip(model.input_names, model.inputs)]
    try:
        with keras_env.quiet_native():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    except Exception as exc:
        raise ConversionError(f"ONNX conversion failed: {one_line(exc)}") from None
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionError(f"ONNX conversion produced an invalid model: {one_line(exc)}") from None
    onnx.save_model(proto, str(destination))


class CalibrationReader:
    """ONNX Runtime's one-method calibration protocol over a Dataset."""

    def __init__(self, input_name: str, calibration) -> None:
        self._items = iter([{input_name: calibration.x[i : i + 1]} for i in range(len(calibration))])

    def get_next(self):
        return next(self._items, None)


def _pre_process(source: Path, workdir: Path) -> tuple[Path, bool]:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization),
    which its docs ask for before static and dynamic quantization alike. Returns the
    prepared model and whether symbolic shape inference had to be skipped."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = workdir / "prepared.onnx"
    try:
        quant_pre_process(str(source), str(prepared))
        return prepared, False
    except Exception:  # "Incomplete symbolic shape inference" on some models: ORT's advice is to skip it
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        return prepared, True


def quantize_static(source: Path, destination: Path, calibration, workdir: Path, *, reduce_range: bool) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    prepared, skip_symbolic = _pre_process(source, workdir)
    input_name = _session(prepared, 1).get_inputs()[0].name
    settings = {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8,
                "weight_type": QuantType.QInt8, "calibrate_method": CalibrationMethod.MinMax,
                "reduce_range": reduce_range}
    try:
        ort_quantize_static(str(prepared), str(destination), CalibrationReader(input_name, calibration),
                            per_channel=True, **settings)
        per_channel = True
    except Exception:  # per-channel can fail inside ORT's bias-scale adjustment; per-tensor is the fallback
        ort_quantize_static(str(prepared), str(destination), CalibrationReader(input_name, calibration),
                            per_channel=False, **settings)
        per_channel = False
    prepared.unlink()
    return {"format": "QDQ", "activations": "int8", "weights": "int8", "per_channel": per_channel,
            "reduce_range": reduce_range, "calibration": "minmax", "skip_symbolic_shape": skip_symbolic}


def quantize_dynamic(source: Path, destination: Path, workdir: Path) -> dict:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    import onnx

    prepared, skip_symbolic = _pre_process(source, workdir)
    ort_quantize_dynamic(str(prepared), str(destination), weight_type=QuantType.QInt8, per_channel=False)
    prepared.unlink()
    initializers = onnx.load(str(destination), load_external_data=False).graph.initializer
    quantized = sum(t.data_type == onnx.TensorProto.INT8 for t in initializers)
    return {"weights": "int8", "activations": "dynamic uint8", "skip_symbolic_shape": skip_symbolic,
            "int8_weight_tensors": quantized}


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


ONNX_TYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(float16)": "float16"}


class ONNXRunner:
    def __init__(self, artifact: Path, *, threads: int = 1) -> None:
        start = time.perf_counter()
        self._session = _session(artifact, threads)
        self.load_seconds = time.perf_counter() - start
        self.inputs = [_info(t) for t in self._session.get_inputs()]
        self.outputs = [_info(t) for t in self._session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        feed = {self.inputs[0].name: x.astype(self.inputs[0].dtype, copy=False)}
        return [np.asarray(o, np.float32) for o in self._session.run(None, feed)]

    def close(self) -> None:
        self._session = None


def _info(node) -> TensorInfo:
    shape = [d if isinstance(d, int) else -1 for d in node.shape]
    return TensorInfo(node.name, shape, ONNX_TYPES.get(node.type, node.type))


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


def load_onnx(path: str | Path):
    """Load an ONNX model safely: external data checked before it is read, then ``onnx.checker``."""
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
    return OnnxModel(path, proto)


class OnnxModel:
    """A user's ONNX model: the source of the quantize-only path (no TensorFlow involved)."""

    source_format = "onnx"

    def __init__(self, path: Path, proto) -> None:
        self.path, self.proto, self.name = path, proto, path.stem
        self._session = None

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.proto.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {self._session.get_inputs()[0].name: x.astype(self.data_spec()[1], copy=False)}
        return self._session.run(None, feed)

    def predict(self, x: np.ndarray, batch_size: int = 64, verbose: int = 0):
        parts = [self._run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        outputs = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        return outputs if len(outputs) > 1 else outputs[0]

    def data_spec(self) -> tuple[tuple, np.dtype, int | None]:
        """(input shape without batch, input dtype, number of classes or None)."""
        from onnx import helper

        graph = self.proto.graph
        initializers = {t.name for t in graph.initializer}
        first = next(i for i in graph.input if i.name not in initializers)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type))
        out = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
        classes = out[-1] if len(out) == 2 and out[-1] and out[-1] > 1 else None
        return tuple(dims[1:]), dtype, classes

    def layer_types(self) -> set[str]:
        return {node.op_type for node in self.proto.graph.node}

    def source_record(self) -> dict:
        from targets.manifest import sha256

        params = sum(int(np.prod(t.dims)) for t in self.proto.graph.initializer)
        return {"name": self.name, "format": "onnx", "path": self.path.name, "sha256": sha256(self.path),
                "params": params, "macs": None}


def write_float_model(model, destination: Path) -> None:
    """The float ONNX model: converted from tf-keras, or the user's ONNX model re-saved inline."""
    import onnx

    if getattr(model, "source_format", None) == "onnx":
        onnx.save_model(model.proto, str(destination))
    else:
        convert_keras(model, destination)


class ONNXRuntime:
    name = "onnxruntime"

    def export(self, model, profile, calibration, workdir: Path) -> Exported:
        artifact = workdir / ARTIFACT_NAME
        if profile.precision == "fp32":
            write_float_model(model, artifact)
            return Exported(artifact, [], {"opset": _opset(artifact)})
        float_model = workdir / "float.onnx"
        write_float_model(model, float_model)
        if profile.precision == "int8":
            details = quantize_static(float_model, artifact, calibration, workdir,
                                      reduce_range=bool(profile.options.get("reduce_range", False)))
        elif profile.precision == "dynamic-int8":
            details = quantize_dynamic(float_model, artifact, workdir)
            if not details["int8_weight_tensors"]:
                raise ConversionError(f"{profile.name}: ONNX Runtime quantized no weight of this model (no op it "
                                      "quantizes dynamically), so the artifact would be fp32 under another name")
        else:
            raise ConversionError(f"{profile.name}: ONNX Runtime has no precision '{profile.precision}' here")
        opset = _opset(float_model)
        float_model.unlink()
        return Exported(artifact, [], {"opset": opset, "quantization": details})

    def load(self, artifact: Path, *, threads: int = 1, details: dict | None = None) -> ONNXRunner:
        return ONNXRunner(artifact, threads=threads)


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


RUNTIME = ONNXRuntime()
