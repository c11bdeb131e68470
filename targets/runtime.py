"""The runtime interface every exporter/runner implements, and the runtime registry.

A runtime module (``targets/litert.py``, ``targets/onnx_runtime.py``, ...) is imported
only when a profile needs it, so a missing runtime library fails only its targets.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from compressor.errors import BadInputError

RUNTIME_MODULES = {
    "litert": "targets.litert",
    "tflm": "targets.tflm",
    "onnxruntime": "targets.onnx_runtime",
    "openvino": "targets.openvino_runtime",
}


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

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run a batch of float (or integer-token) inputs; return float outputs."""

    def close(self) -> None:
        """Release the runtime's session/interpreter."""


class Runtime(Protocol):
    name: str

    def export(self, model, profile, calibration, workdir: Path) -> Exported: ...

    def load(self, artifact: Path, *, threads: int = 1, details: dict | None = None) -> Runner: ...


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIME_MODULES:
        raise BadInputError(f"unknown runtime '{name}' (valid: {', '.join(RUNTIME_MODULES)})")
    return importlib.import_module(RUNTIME_MODULES[name]).RUNTIME


def run_batched(runner: Runner, x: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
    """Run ``x`` through ``runner`` in batches; concatenate each output."""
    chunks = [runner.run(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]
