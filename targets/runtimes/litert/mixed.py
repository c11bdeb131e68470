"""Int8 with chosen ops kept in float: the calibrated model quantized by the converter with those ops
denylisted."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor import digests
from compressor.cpu import usable_cores
from compressor.errors import ConversionError
from targets.runtime import converted
from targets.runtimes.litert import ahead
from targets.runtimes.litert.convert import convert_isolated, quantize_calibrated, quantized_content
from targets.runtimes.litert.flatbuffer import io_order


# Mixed precision keeps an op in float by the name of its output tensor (the converter's
# "denylisted nodes", as its quantization debugger uses them). Candidates: every op of the
# calibrated model that computes a float tensor, the quantizer's own I/O ops aside: layer
# norms, softmax and the reshapes at a model's input cost accuracy as weighted ops do.
NOT_CANDIDATES = ("QUANTIZE", "DEQUANTIZE")


def mixable(profile) -> bool:
    """Whether ``profile``'s int8 can keep ops in float: float I/O, not integer-only hardware."""
    return profile.precision == "int8" and not profile.builtin_int8_only


def _calibration(profile, feeds: list[np.ndarray]) -> tuple[str, str]:
    """The cache entry of a calibrated model: its kind, and a digest of the calibration data."""
    return (f"tflite-calibrated:{profile.name}:{profile.precision}:{profile.input_type}:{profile.output_type}",
            digests.arrays(feeds))


def calibrated(model, profile, feeds: list[np.ndarray]) -> bytes:
    """The calibrated float flatbuffer of ``model`` (the converter's first half, in a child process),
    made once per process for the same weights, profile and calibration data: the accuracy
    budget's search and its final export quantize it again and again with other ops in float."""
    kind, digest = _calibration(profile, feeds)
    return converted(model, kind, lambda: convert_isolated(model, profile, feeds, calibrate_only=True),
                     inputs=digest)


def full_int8(model, profile, feeds: list[np.ndarray]) -> bytes:
    """Full int8 of ``model`` (converted and run once in a child process), its calibrated float
    model kept as :func:`calibrated` keeps it: a budget's search after this export calibrates
    nothing again. Made again in the same process: quantized from the kept calibrated model."""
    made = {}

    def both() -> bytes:
        made["int8"], kept = convert_isolated(model, profile, feeds, keep_calibrated=True)
        return kept

    kind, digest = _calibration(profile, feeds)
    kept = converted(model, kind, both, inputs=digest)
    return made["int8"] if made else quantize_calibrated(kept, profile)


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


HELPER_WORTH_SECONDS = 30.0  # a helper process quantizes ahead when one per candidate would take this long here
HELPER_MAX_BYTES = 64 * 2**20  # ... and the calibrated model is at most this large (the helper holds a copy)


class MixedPrecision:
    """LiteRT int8 with chosen ops kept in float, cheaply repeated: calibrated once (in a child
    process, as every calibrating conversion), then quantized once per candidate set; on many
    candidates, a helper process quantizes the ranking's batches beside this one
    (:mod:`targets.runtimes.litert.ahead`)."""

    suffix = ".tflite"

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        if not mixable(profile):
            raise ConversionError(f"{profile.name}: only float-I/O int8 can keep layers in float")
        self._source, self._profile, self._workdir = source, profile, workdir
        self._calibrated = calibrated(source.representation("keras"), profile, calibration.feeds(source))
        self.nodes = _float_op_outputs(self._calibrated)
        self._seconds: float | None = None  # one quantization here, as measured first
        self._helper = None

    def _quantized(self, float_nodes) -> bytes:
        started = time.perf_counter()
        content = quantized_content(self._calibrated, self._profile, float_nodes)
        if self._seconds is None:
            self._seconds = time.perf_counter() - started
        return content

    def ahead(self, float_node_sets) -> None:
        """These candidates will be asked for next: quantized beside this process when worth it."""
        if self._helper is None and self._seconds is not None and usable_cores() > 1 \
                and len(self._calibrated) <= HELPER_MAX_BYTES \
                and self._seconds * len(self.nodes) >= HELPER_WORTH_SECONDS:
            self._helper = ahead.Helper(self._calibrated, self._profile, self._quantized, self._workdir)
        if self._helper is not None:
            self._helper.submit(float_node_sets)

    def write(self, float_nodes, destination: Path) -> dict:
        content = self._helper.take(float_nodes) if self._helper is not None else None
        if content is None:
            content = self._quantized(float_nodes)
        destination.write_bytes(content)
        return io_order(content, self._source)

    def close(self) -> None:
        if self._helper is not None:
            self._helper.close()
            self._helper = None
