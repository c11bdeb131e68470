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
from compressor.errors import ConversionError
from targets.runtime import Exported, TensorInfo

OPSET = 17
ARTIFACT_NAME = "model.onnx"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


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
        raise ConversionError(f"ONNX conversion failed: {_one_line(exc)}") from None
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(destination))


class CalibrationReader:
    """ONNX Runtime's one-method calibration protocol over a Dataset."""

    def __init__(self, input_name: str, calibration) -> None:
        self._items = iter([{input_name: calibration.x[i : i + 1]} for i in range(len(calibration))])

    def get_next(self):
        return next(self._items, None)


def quantize_static(source: Path, destination: Path, calibration, workdir: Path, *, reduce_range: bool) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = workdir / "prepared.onnx"
    try:
        quant_pre_process(str(source), str(prepared))
        skip_symbolic = False
    except Exception:  # "Incomplete symbolic shape inference" on some models: ORT's advice is to skip it
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        skip_symbolic = True
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


def quantize_dynamic(source: Path, destination: Path) -> dict:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    ort_quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8, per_channel=False)
    return {"weights": "int8", "activations": "dynamic uint8"}


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


class ONNXRuntime:
    name = "onnxruntime"

    def export(self, model, profile, calibration, workdir: Path) -> Exported:
        artifact = workdir / ARTIFACT_NAME
        if profile.precision == "fp32":
            convert_keras(model, artifact)
            return Exported(artifact, [], {"opset": OPSET})
        float_model = workdir / "float.onnx"
        convert_keras(model, float_model)
        if profile.precision == "int8":
            details = quantize_static(float_model, artifact, calibration, workdir,
                                      reduce_range=bool(profile.options.get("reduce_range", False)))
        elif profile.precision == "dynamic-int8":
            details = quantize_dynamic(float_model, artifact)
        else:
            raise ConversionError(f"{profile.name}: ONNX Runtime has no precision '{profile.precision}' here")
        float_model.unlink()
        return Exported(artifact, [], {"opset": OPSET, "quantization": details})

    def load(self, artifact: Path, *, threads: int = 1, details: dict | None = None) -> ONNXRunner:
        return ONNXRunner(artifact, threads=threads)


RUNTIME = ONNXRuntime()
