"""Running an IR on the CPU plugin with the options it was verified with (its
``rt_info/runtime_options``), inputs and outputs in the source's order, a static batch fed at the
batch it accepts."""

from __future__ import annotations

from pathlib import Path
import time

import numpy as np

from compressor import interrupts
from compressor.models.source import feed_list, run_at_batch
from targets.runtime import TensorInfo


def _element_type(port) -> str:
    return {"f32": "float32", "f16": "float16", "i32": "int32", "i64": "int64", "i8": "int8", "u8": "uint8"}.get(
        port.get_element_type().get_type_name(), port.get_element_type().get_type_name())


def _info(port) -> TensorInfo:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return TensorInfo(port.get_any_name(), shape, _element_type(port))


# The CPU plugin properties every artifact is verified and benchmarked with, written into the IR
# itself (``rt_info/runtime_options``, OpenVINO's place for them). f32 inference precision: on CPUs
# with bf16/fp16 units (AMX, AVX-512 BF16) the plugin otherwise runs fp32 IR in bf16, and the parity
# check would not test what a device runs. The 2026.4 CPU plugin applies only KV-cache and dynamic-
# quantization options from ``runtime_options`` (``Config::apply_rt_info``), so a plain
# ``compile_model(path, "CPU")`` does not: :func:`runtime_options` reads them back for the runner,
# the manifest records them, and the README shows a device application how to pass them.
VERIFIED_OPTIONS = {"INFERENCE_PRECISION_HINT": "f32"}


def carry_options(ov_model, options: dict = VERIFIED_OPTIONS):
    for key, value in options.items():
        ov_model.set_rt_info(value, ["runtime_options", key])
    return ov_model


def runtime_options(ov_model) -> dict:
    """The properties an IR was verified with (its ``rt_info/runtime_options``); an IR this toolkit
    wrote before it recorded them was verified in f32."""
    if not ov_model.has_rt_info(["runtime_options"]):
        return dict(VERIFIED_OPTIONS)
    return {key: value.astype(str) for key, value in ov_model.get_rt_info(["runtime_options"]).astype(dict).items()}


def cpu_config(threads: int, options: dict | None = None) -> dict:
    """The CPU plugin properties an artifact is run with: latency, one stream, ``threads``, and the
    IR's own runtime options (f32 inference precision unless it says otherwise)."""
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            **(VERIFIED_OPTIONS if options is None else options)}


ANY_BATCH = -1


class OpenVINORunner:
    """Runs an OpenVINO IR on the CPU plugin; a batch other than the IR's own static batch gets
    the IR reshaped to a dynamic batch and compiled once for every other size (each compiled model
    holds its own copy of the weights: 600 MB on BERT-base), or, where the graph cannot take a
    dynamic batch, reshaped and compiled once per size."""

    def __init__(self, artifact: Path, *, threads: int = 1, input_order: list[int] | None = None,
                 output_order: list[int] | None = None, fixed_batch: int | None = None) -> None:
        import openvino as ov

        start = time.perf_counter()
        self._core, self._artifact = ov.Core(), artifact
        model = self._core.read_model(str(artifact))
        self._config = cpu_config(threads, runtime_options(model))
        self._compiled = compiled = self._core.compile_model(model, "CPU", self._config)
        self._requests = {None: (compiled, compiled.create_infer_request())}
        self.load_seconds = time.perf_counter() - start
        self._in = list(range(len(compiled.inputs))) if input_order is None else input_order
        self._out = list(range(len(compiled.outputs))) if output_order is None else output_order
        self.inputs = [_info(compiled.inputs[i]) for i in self._in]  # in the source's order
        self.outputs = [_info(compiled.outputs[i]) for i in self._out]
        first = self.inputs[0].shape
        self._batch = first[0] if first and first[0] != -1 else None  # None: the IR takes any batch
        # a source exported with its batch fixed: run in chunks of it, never reshaped (its graph may
        # hold the batch in Reshapes, and its outputs may carry it on another axis than the first)
        self._fixed = fixed_batch

    def _request(self, batch: int):
        if self._batch is None or batch == self._batch:
            return self._requests[None][1]
        if ANY_BATCH not in self._requests:
            try:
                self._requests[ANY_BATCH] = self._compiled_at(ANY_BATCH)
            except Exception as exc:  # noqa: BLE001 - a graph that cannot take a dynamic batch
                if interrupts.interrupted(exc):
                    raise
                self._requests[ANY_BATCH] = None
        if self._requests[ANY_BATCH] is not None:
            return self._requests[ANY_BATCH][1]
        if batch not in self._requests:
            self._requests[batch] = self._compiled_at(batch)
        return self._requests[batch][1]

    def _compiled_at(self, batch: int):
        model = self._core.read_model(str(self._artifact))
        model.reshape({i: [batch, *info.shape[1:]] for i, info in zip(self._in, self.inputs)})
        compiled = self._core.compile_model(model, "CPU", self._config)
        return compiled, compiled.create_infer_request()

    def run(self, x) -> list[np.ndarray]:
        inputs = [np.ascontiguousarray(a, dtype=info.dtype) for info, a in zip(self.inputs, feed_list(x))]
        return run_at_batch(self._infer, inputs, self._fixed)

    def _infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import openvino as ov

        request = self._request(len(inputs[0]))
        # bind inputs without a copy and read outputs from the request's own tensors: the
        # dict-based infer() costs tens of microseconds more per call, which small models feel
        for position, array in zip(self._in, inputs):
            request.set_input_tensor(position, ov.Tensor(array, shared_memory=True))
        request.infer()
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32, copy=True) for i in self._out]

    def close(self) -> None:
        self._requests, self._compiled = {}, None


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> OpenVINORunner:
    details = details or {}
    return OpenVINORunner(artifact, threads=threads, input_order=details.get("input_order"),
                          output_order=details.get("output_order"), fixed_batch=details.get("fixed_batch"))


def kernels(compiled) -> dict[str, int]:
    """The CPU plugin's kernels for a compiled model on this host, by name and count (its runtime
    model's ``primitiveType``): ``brgconv_avx512_amx_1x1_bf16`` is a 1x1 convolution on AMX tiles
    in bf16; ``jit_avx512_..._I8`` int8 on AVX-512. What a runtime uses on a CPU, measured."""
    found: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            kind = info["primitiveType"].astype(str)
            if not kind.startswith("unknown"):
                found[kind] = found.get(kind, 0) + 1
    return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))
