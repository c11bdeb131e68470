"""TensorFlow Lite Micro: int8 ``.tflite`` run on the real TFLM interpreter (``tflite-micro``).

The microcontroller artifact is the LiteRT int8 flatbuffer with int8 I/O, checked to
hold only integer ops, run on TFLM's reference kernels, with its tensor-arena use read
from TFLM's recording allocator, and emitted as an aligned C array.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compressor.errors import ConversionError
from compressor.models.source import feed_list
from targets import devices, embedding
from targets.runtime import Exported, Runtime, in_source_order
from targets.runtimes import litert

ARENA_PATTERN = re.compile(r"Arena allocation total (\d+) bytes")
ARENA_HEADROOM = 1 << 20  # the arena TFLM gets while measuring; the model's real use is read back
ARENA_MARGIN = 1 << 14  # what a runner adds to the recorded arena
ARENA_TRIES = 20


def _capture_native_stderr(func) -> str:
    """Run ``func`` and return what native code wrote to stderr meanwhile.

    A RuntimeError of TFLM's (a kernel that cannot prepare) becomes a ConversionError
    naming what TFLM printed: the op and the reason.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failure = None
        try:
            func()
        except RuntimeError as exc:
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        log = sink.read().decode(errors="replace")
    if failure is not None:
        said = "; ".join(line.strip() for line in log.splitlines() if line.strip()) or str(failure)
        raise ConversionError(f"mcu: TFLite Micro cannot run the model: {said[:300]}")
    return log


def measure_arena(content: bytes, sample: list[np.ndarray], positions: list[int]) -> int:
    """Tensor-arena bytes the model uses, as TFLM's recording allocator reports them."""
    from tflite_micro.python.tflite_micro import runtime

    made = []
    _capture_native_stderr(lambda: made.append(
        runtime.Interpreter.from_bytes(content, arena_size=len(content) + ARENA_HEADROOM)))
    interpreter = made[0]
    for array, position in zip(sample, positions):
        interpreter.set_input(array, position)
    _capture_native_stderr(interpreter.invoke)
    report = _capture_native_stderr(interpreter.print_allocations)
    match = ARENA_PATTERN.search(report)
    if not match:
        raise ConversionError("mcu: TFLite Micro did not report its arena use")
    # The recording allocator leaves out the temporary memory of memory planning, which a
    # fresh interpreter needs at allocation (NASNetMobile: 5 KiB more than reported): grow
    # the figure until an interpreter allocates in it, so the arena recorded is one that works.
    arena = int(match.group(1))
    for _ in range(ARENA_TRIES):
        try:
            size = arena + ARENA_MARGIN
            _capture_native_stderr(lambda: runtime.Interpreter.from_bytes(content, arena_size=size))
            return arena
        except ConversionError:
            arena = int(arena * 1.1) + 1024
    raise ConversionError(f"mcu: TFLite Micro could not allocate the model even in {arena + ARENA_MARGIN:,} bytes")


class TFLMRunner:
    """Runs an int8 ``.tflite`` file on the TFLite Micro interpreter, one sample at a time."""

    def __init__(self, artifact: Path, *, arena_bytes: int | None = None, input_order: list[int] | None = None,
                 output_order: list[int] | None = None) -> None:
        from tflite_micro.python.tflite_micro import runtime

        content = artifact.read_bytes()
        start = time.perf_counter()
        arena = arena_bytes + ARENA_MARGIN if arena_bytes else len(content) + ARENA_HEADROOM
        made = []  # TFLM's RuntimeError (an arena too small) becomes a ConversionError saying what TFLM said
        _capture_native_stderr(lambda: made.append(runtime.Interpreter.from_bytes(content, arena_size=arena)))
        self._interpreter = made[0]
        self.load_seconds = time.perf_counter() - start
        described = litert.LiteRTRunner(artifact, input_order=input_order, output_order=output_order)
        self.inputs, self.outputs = described.inputs, described.outputs  # names, quantization parameters
        self._in_positions = in_source_order(range(len(self.inputs)), input_order)
        self._positions = in_source_order(range(len(self.outputs)), output_order)
        described.close()

    def run(self, x) -> list[np.ndarray]:
        inputs = feed_list(x)
        results = [[] for _ in self.outputs]
        for index in range(len(inputs[0])):
            for info, array, position in zip(self.inputs, inputs, self._in_positions):
                self._interpreter.set_input(info.quantize(array[index : index + 1]), position)
            self._interpreter.invoke()
            for index, (info, position) in enumerate(zip(self.outputs, self._positions)):
                results[index].append(info.dequantize(self._interpreter.get_output(position)))
        return [np.concatenate(r) for r in results]

    def close(self) -> None:
        self._interpreter = None


def export(source, profile, calibration, workdir: Path) -> Exported:
    feeds_in_order = calibration.feeds(source)
    content = litert.convert(source.representation("keras"), profile, feeds_in_order)
    litert.check_integer_only(content, profile)
    artifact = workdir / litert.ARTIFACT_NAME
    artifact.write_bytes(content)
    order = litert.io_order(content, source)
    probe = litert.LiteRTRunner(artifact, input_order=order["input_order"]).inputs
    positions = order["input_order"] or list(range(len(probe)))
    arena = measure_arena(content, [info.quantize(a[:1]) for info, a in zip(probe, feeds_in_order)], positions)
    extra = embedding.write_c_array(artifact, workdir, arena_bytes=arena)
    ops = sorted({op["op"] for op in litert.op_table(content)})
    extra.append(embedding.write_op_resolver(ops, workdir, model=source.name))
    return Exported(artifact, extra, {"ops": ops, "arena_bytes": arena, "c_symbol": "g_model_data", **order,
                                      "device_fit": devices.fit_table(arena, len(content))})


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> TFLMRunner:
    details = details or {}
    return TFLMRunner(artifact, arena_bytes=details.get("arena_bytes"), input_order=details.get("input_order"),
                      output_order=details.get("output_order"))


RUNTIME = Runtime("tflm", load, export, libraries=("tensorflow", "tf-keras", "ai-edge-litert", "tflite-micro"),
                  preimport=("tflite_micro.python.tflite_micro.runtime",), accepts=("keras",),
                  describe=litert.describe)
