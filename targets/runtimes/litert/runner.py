"""Running a ``.tflite`` file with the ``ai_edge_litert`` interpreter (``tf.lite.Interpreter`` is
deprecated since TF 2.19/2.20), inputs and outputs in the source's order."""

from __future__ import annotations

from pathlib import Path
import time

import numpy as np

from compressor import keras_env
from compressor.models.source import feed_list
from targets.runtime import TensorInfo, in_source_order


class LiteRTRunner:
    """Runs a ``.tflite`` file with the LiteRT interpreter (XNNPACK on CPU)."""

    def __init__(self, artifact: Path, *, threads: int = 1, input_order: list[int] | None = None,
                 output_order: list[int] | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        start = time.perf_counter()
        with keras_env.quiet_native():  # the XNNPACK delegate announces itself on stderr
            self._interpreter = Interpreter(model_path=str(artifact), num_threads=threads)
            self._interpreter.allocate_tensors()
        self.load_seconds = time.perf_counter() - start
        self._input_details = in_source_order(self._interpreter.get_input_details(), input_order)
        self._output_details = in_source_order(self._interpreter.get_output_details(), output_order)
        self.inputs = [tensor_info(d) for d in self._input_details]
        self.outputs = [tensor_info(d) for d in self._output_details]
        self._shapes = None  # the input shapes the interpreter is allocated for
        # Fused recurrent ops keep their state in variable tensors across invocations;
        # each inference of a stateless Keras layer starts from zero state.
        self._stateful = any("SEQUENCE" in op["op_name"] for op in self._interpreter._get_ops_details())

    def _resize(self, inputs: list[np.ndarray]) -> None:
        """Every dynamic dimension (the batch, a sequence's length) set from the arrays fed."""
        shapes = tuple(tuple(a.shape) for a in inputs)
        if shapes == self._shapes:
            return
        for detail, shape in zip(self._input_details, shapes):
            signature = list(detail["shape_signature"])
            fitted = [int(got) if want == -1 else int(want) for want, got in zip(signature, shape)]
            self._interpreter.resize_tensor_input(detail["index"], fitted if len(shape) == len(signature) else
                                                  [len(inputs[0]), *signature[1:]])
        self._interpreter.allocate_tensors()
        self._shapes = shapes

    def _fixed_batch(self) -> int | None:
        first = self._input_details[0]["shape_signature"]
        return None if first[0] == -1 else int(first[0])

    def run(self, x) -> list[np.ndarray]:
        inputs = feed_list(x)
        count, fixed = len(inputs[0]), self._fixed_batch()
        if fixed is not None and count != fixed:
            parts = [self.run([a[i : i + fixed] for a in inputs]) for i in range(0, count, fixed)]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]
        if any(-1 in list(d["shape_signature"]) for d in self._input_details):  # a batch, or a sequence
            self._resize(inputs)  # with the batch fixed at one (mcu, edgetpu), the length still follows
        if self._stateful:
            self._interpreter.reset_all_variables()
        for info, detail, array in zip(self.inputs, self._input_details, inputs):
            self._interpreter.set_tensor(detail["index"], info.quantize(array))
        self._interpreter.invoke()
        return [info.dequantize(self._interpreter.get_tensor(d["index"]))
                for info, d in zip(self.outputs, self._output_details)]

    def close(self) -> None:
        self._interpreter = None


def tensor_info(detail: dict) -> TensorInfo:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    quantized = dtype in ("int8", "uint8", "int16") and scale != 0.0
    return TensorInfo(detail["name"], [int(d) for d in detail["shape_signature"]], dtype,
                      float(scale) if quantized else None, int(zero_point) if quantized else None)


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> LiteRTRunner:
    details = details or {}
    return LiteRTRunner(artifact, threads=threads, input_order=details.get("input_order"),
                        output_order=details.get("output_order"))
