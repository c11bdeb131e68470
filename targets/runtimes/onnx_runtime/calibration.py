"""ONNX Runtime's calibration for static int8: the data read one sample at a time in strides of
bounded size, and the ranges computed ahead of ``quantize_static``, which reads them from its
calibration cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor import interrupts
from compressor.models import onnx_graph


class CalibrationReader:
    """ONNX Runtime's calibration protocol over a Dataset, one sample at a time, in strides
    (``set_range``) that its quantizer calibrates one after the other."""

    def __init__(self, input_names: list[str], calibration: list[np.ndarray]) -> None:
        self.names, self._arrays = input_names, calibration
        self.opset: int | None = None  # the model's ONNX opset, where calibration_reader read it
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return len(self._arrays[0])

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self):
        if self._next >= self._end:
            return None
        i, self._next = self._next, self._next + 1
        return {name: array[i : i + 1] for name, array in zip(self.names, self._arrays)}


# ONNX Runtime's calibrators hold every calibrated tensor of every sample they are given before
# reducing them (onnxruntime issue #10503: >256 GB for BERT with percentile calibration); a
# BERT-base encoder's float tensors are ~200 MB per sample of 128 tokens, 40 GB for 200 samples.
# Given strides (its ``CalibStridedMinMax`` option, which every calibrator honours), it reduces
# one stride's tensors at a time: min/max merge exactly, histograms grow from the first stride's
# bins. A stride holds at most this many bytes of tensors (one sample when one is larger).
STRIDE_BYTES = 256 * 2**20


def calibration_reader(model: Path, calibration: list[np.ndarray]) -> tuple[CalibrationReader, dict]:
    """A reader of ``calibration`` for ``model``'s inputs, and the quantizer's extra options that
    calibrate it in strides of at most ``STRIDE_BYTES`` of float tensors: none when every sample
    fits, one sample per stride when the tensors' sizes cannot be worked out from the graph."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    reader = CalibrationReader([i.name for i in proto.graph.input if i.name not in initializers], calibration)
    reader.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    per_sample = _float_bytes_per_sample(onnx_graph.skeleton(proto), dict(zip(reader.names, calibration)))
    del proto
    fits = 1 if per_sample is None else max(1, STRIDE_BYTES // max(per_sample, 1))
    if fits >= len(reader):
        return reader, {}
    return reader, {"CalibStridedMinMax": max(d for d in range(1, fits + 1) if len(reader) % d == 0)}


def _float_bytes_per_sample(skeleton, feeds: dict[str, np.ndarray]) -> int | None:
    """Bytes of the float tensors one sample makes in the graph, from shape inference at the
    data's shapes (batch 1); None when the size of any cannot be inferred (tf2onnx's dense layers
    on a dynamic sequence reshape through computed shapes that ONNX's inference does not follow)."""
    from onnx import TensorProto

    del skeleton.graph.value_info[:]  # shapes pre-processing inferred at a symbolic batch
    for value in skeleton.graph.input:
        dims, array = value.type.tensor_type.shape.dim, feeds.get(value.name)
        if array is not None and len(dims) == array.ndim:
            for dim, size in zip(dims, (1, *array.shape[1:])):
                dim.Clear()
                dim.dim_value = int(size)
    try:
        graph = onnx_graph.inferred(skeleton, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - an estimate: unknown means one sample per stride
        if interrupts.interrupted(exc):
            raise
        return None
    sizes = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2, TensorProto.DOUBLE: 8}
    shapes = onnx_graph.shapes_of(graph)
    floats = [value for value in graph.value_info if value.type.tensor_type.elem_type in sizes]
    if any(None in shapes.get(value.name, [None]) for value in floats):
        return None
    return sum(int(np.prod(shapes[v.name], dtype=np.int64)) * sizes[v.type.tensor_type.elem_type] for v in floats)


# ONNX Runtime's own calibration settings among quantize_static's extra options (its names for them)
CALIBRATION_OPTIONS = {"CalibTensorRangeSymmetric": "symmetric", "CalibMovingAverage": "moving_average",
                       "CalibMovingAverageConstant": "averaging_constant",
                       "CalibMaxIntermediateOutputs": "max_intermediate_outputs", "CalibPercentile": "percentile"}


def calibrate_to_cache(prepared: Path, reader: CalibrationReader, settings: dict, cache: Path, workdir: Path) -> bool:
    """The ranges ``quantize_static`` would calibrate for ``prepared`` (its calibrator, op types,
    options and strides), written to ``cache`` for it to read. ``quantize_static`` loads the model
    first and holds it through its own calibration, beside the calibrator's copy and session: 500
    MB of the 110 M encoder's export peak. False, with nothing written, for a model below opset 10,
    which quantize_static moves to opset 11 and calibrates there."""
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if reader.opset is None or reader.opset < 10:
        return False
    extra = settings["extra_options"]
    options = {key: extra[name] for name, key in CALIBRATION_OPTIONS.items() if name in extra}
    stride = extra.get("CalibStridedMinMax") or len(reader)
    with tempfile.TemporaryDirectory(prefix="ort.quant.", dir=workdir) as tmp:
        calibrator = create_calibrator(prepared, list(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                       augmented_model_path=str(Path(tmp) / "augmented_model.onnx"),
                                       calibrate_method=settings["calibrate_method"], extra_options=options)
        for start in range(0, len(reader), stride):
            reader.set_range(start, start + stride)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache)
    return True
