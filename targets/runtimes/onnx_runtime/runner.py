"""Running an ONNX model with ONNX Runtime: the session, its I/O, a fixed batch fed at the batch it
accepts."""

from __future__ import annotations

from pathlib import Path
import time

import numpy as np

from compressor.models.source import feed_list, fixed_batch, run_at_batch
from targets.runtime import TensorInfo


def session(model: Path | bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()  # ORT_ENABLE_ALL and spinning, the defaults: measured in tools/ort_settings.py
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=options,
                                providers=["CPUExecutionProvider"])


ONNX_TYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(float16)": "float16"}


class ONNXRunner:
    def __init__(self, artifact: Path | bytes, *, threads: int = 1) -> None:
        start = time.perf_counter()
        self.session = session(artifact, threads)
        self.load_seconds = time.perf_counter() - start
        self.inputs = [_info(t) for t in self.session.get_inputs()]
        self.outputs = [_info(t) for t in self.session.get_outputs()]

    def run(self, x) -> list[np.ndarray]:
        def run(chunk):
            feed = {info.name: array.astype(info.dtype, copy=False) for info, array in zip(self.inputs, chunk)}
            return [np.asarray(o, np.float32) for o in self.session.run(None, feed)]

        # a model exported with its batch fixed (at 1, as a plain PyTorch export does) runs in chunks of it
        return run_at_batch(run, feed_list(x), fixed_batch([info.shape for info in self.inputs]))

    def close(self) -> None:
        self.session = None


def _info(node) -> TensorInfo:
    shape = [d if isinstance(d, int) else -1 for d in node.shape]
    return TensorInfo(node.name, shape, ONNX_TYPES.get(node.type, node.type))


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> ONNXRunner:
    if (details or {}).get("source"):  # a user's model, not our artifact: its external data is checked first
        from compressor.models.onnx_source import load_onnx

        return ONNXRunner(load_onnx(artifact).proto.SerializeToString(), threads=threads)
    return ONNXRunner(artifact, threads=threads)
