"""Int8 with chosen ops kept in float: the calibrated model quantized by the converter with those ops
denylisted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from targets.runtime import converted
from targets.runtimes.litert.convert import convert_isolated
from targets.runtimes.litert.flatbuffer import io_order, unclip_lstm_cells


# Mixed precision keeps an op in float by the name of its output tensor (the converter's
# "denylisted nodes", as its quantization debugger uses them). Candidates: every op of the
# calibrated model that computes a float tensor, the quantizer's own I/O ops aside: layer
# norms, softmax and the reshapes at a model's input cost accuracy as weighted ops do.
NOT_CANDIDATES = ("QUANTIZE", "DEQUANTIZE")


def calibrated(model, profile, feeds: list[np.ndarray]) -> bytes:
    """The calibrated float flatbuffer of ``model`` (the converter's first half, in a child process),
    made once per process for the same weights, profile and calibration data: the accuracy
    budget's search and its final export quantize it again and again with other ops in float."""
    import hashlib

    hasher = hashlib.sha1()
    for array in feeds:
        hasher.update(str((array.dtype, array.shape)).encode())
        hasher.update(np.ascontiguousarray(array).tobytes())
    kind = f"tflite-calibrated:{profile.name}:{profile.precision}:{profile.input_type}:{profile.output_type}"
    return converted(model, kind, lambda: convert_isolated(model, profile, feeds, calibrate_only=True),
                     inputs=hasher.hexdigest())


def quantize_calibrated(calibrated: bytes, profile, float_nodes=()) -> bytes:
    """The int8 flatbuffer from a calibrated float one (the converter's own second half),
    the ops whose outputs are named in ``float_nodes`` kept in float."""
    from tensorflow.lite.python import convert as tflite_convert

    tf = keras_env.tf()
    try:
        with keras_env.quiet_native():
            return tflite_convert.mlir_quantize(calibrated, False, input_data_type=tf.as_dtype(profile.input_type),
                                                output_data_type=tf.as_dtype(profile.output_type),
                                                denylisted_nodes=list(float_nodes) or None)
    except Exception as exc:
        raise ConversionError(f"{profile.name}: TFLite quantization failed: {one_line(exc)}") from None


def _float_op_outputs(content: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names = []
    for op in interpreter._get_ops_details():
        outputs = [int(i) for i in op["outputs"] if int(i) in tensors]
        if op["op_name"] in NOT_CANDIDATES or not outputs or np.dtype(tensors[outputs[0]]["dtype"]) != np.float32:
            continue
        names.append(tensors[outputs[0]]["name"])
    return list(dict.fromkeys(names))


class MixedPrecision:
    """LiteRT int8 with chosen ops kept in float, cheaply repeated: calibrated once (in a child
    process, as every calibrating conversion), then quantized once per candidate set."""

    suffix = ".tflite"

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        if profile.precision != "int8" or profile.builtin_int8_only:
            raise ConversionError(f"{profile.name}: only float-I/O int8 can keep layers in float")
        self._source, self._profile = source, profile
        self._calibrated = calibrated(source.representation("keras"), profile, calibration.feeds(source))
        self.nodes = _float_op_outputs(self._calibrated)

    def write(self, float_nodes, destination: Path) -> dict:
        content = unclip_lstm_cells(quantize_calibrated(self._calibrated, self._profile, float_nodes))[0]
        destination.write_bytes(content)
        return io_order(content, self._source)
