"""ONNX Runtime's quantizers: static int8 (QDQ, S8S8, per-channel, after its pre-processing) with its
calibration ladder, dynamic int8, and int8 with chosen nodes kept in float."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from compressor import digests, interrupts, memory
from compressor.models import onnx_graph
from compressor.errors import ConversionError, one_line
from compressor.progress import off_stdout
from targets import qdq
from targets.runtimes.onnx_runtime.calibration import calibrate_to_cache, calibration_reader
from targets.runtimes.onnx_runtime.convert import write_float_model
from targets.runtimes.onnx_runtime.fusion import gemm_as_matmul
from targets.runtimes.onnx_runtime.graph import pre_process
from targets.runtimes.onnx_runtime.runner import session


# Each attempt: (graph optimization in pre-processing, per-channel weights). The first is ONNX
# Runtime's advice; the others exist because on some exported graphs the quantizer fails
# (per-channel bias-scale adjustment) or writes a graph ONNX Runtime cannot load (a bias that
# pre-processing's Conv+Add fusion produced, dequantized from int32: INVALID_GRAPH).
STATIC_ATTEMPTS = ((True, True), (True, False), (False, True), (False, False))


def _loads(model: Path) -> None:
    """Raise if ONNX Runtime cannot build a session for ``model`` (what parity would hit next)."""
    session(model, 1)


def _first_loadable(source: Path, destination: Path, workdir: Path, attempts, quantize, what: str) -> dict:
    """Run ``quantize(prepared, per_channel)`` for each ``(optimize, per_channel)`` attempt until
    ONNX Runtime loads what it wrote; the pre-processed graph is made once per ``optimize``.
    Returns the facts of the attempt that worked; ConversionError names why each failed."""
    failures, prepared = [], {}
    try:
        for optimize, per_channel in attempts:
            if optimize not in prepared:
                prepared[optimize] = pre_process(source, workdir, optimize=optimize, name=f"prepared-{optimize}.onnx")
                memory.release()
            model, skip_symbolic = prepared[optimize]
            try:
                quantize(model, per_channel)
                memory.release()
                _loads(destination)
            except Exception as exc:
                if interrupts.interrupted(exc):
                    raise
                channels = "" if per_channel is None else f", {'per-channel' if per_channel else 'per-tensor'}"
                failures.append(f"{'optimized' if optimize else 'unoptimized'} graph{channels}: "
                                f"{one_line(exc)[:160]}")
                destination.unlink(missing_ok=True)
                continue
            facts = {"skip_symbolic_shape": skip_symbolic, "graph_optimization": optimize}
            return facts if per_channel is None else {**facts, "per_channel": per_channel}
    finally:
        for model, _ in prepared.values():
            model.unlink(missing_ok=True)
    raise ConversionError(f"ONNX Runtime's {what} quantizer gave no loadable model; " + "; ".join(failures[:2]))


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def _static_settings(reduce_range: bool, activations: str, calibration_method: str) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations must be int8 or uint8, not {activations!r}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, not {calibration_method!r}")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration_method]
    return {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8 if activations == "int8"
            else QuantType.QUInt8, "weight_type": QuantType.QInt8, "calibrate_method": method,
            "reduce_range": reduce_range,
            # a LayerNormalization's scale is 1-D: per channel along its only axis (ONNX Runtime's default
            # axis 1 is out of range for it, which it says once per norm on stderr, then goes per tensor)
            "extra_options": {"QDQOpTypePerChannelSupportToAxis": {"LayerNormalization": 0}}}


def quantize_static(source: Path, destination: Path, calibration, workdir: Path, *, reduce_range: bool,
                    activations: str = "int8", calibration_method: str = "minmax", float_nodes=()) -> dict:
    """Static QDQ int8: int8 weights (per channel where the quantizer manages), ``activations``
    int8 (S8S8) or uint8 (U8S8, ONNX Runtime's fast path on x86 with VNNI); the nodes named in
    ``float_nodes`` (of the pre-processed graph) stay in float."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    activations = _activations_for(source, activations)
    settings = _static_settings(reduce_range, activations, calibration_method)
    ranges, made = workdir / "calibration-ranges.json", {}
    keep = not float_nodes and calibration_method == "minmax" and source.stat().st_size <= KEEP_FULL_BYTES

    def quantize(prepared: Path, per_channel: bool) -> None:
        if float_nodes:
            qdq.name_file_nodes(prepared)
        reader, strides = calibration_reader(prepared, calibration)
        options = {**settings, "extra_options": {**settings["extra_options"], **strides}}
        try:
            with off_stdout():  # its histogram calibrations print their progress
                if calibrate_to_cache(prepared, reader, options, ranges, workdir):
                    reader = None  # quantize_static reads the ranges from the cache
                ort_quantize_static(str(prepared), str(destination), reader, per_channel=per_channel,
                                    nodes_to_exclude=list(float_nodes) or None, calibration_cache_path=ranges,
                                    **options)
            if keep and per_channel:
                made.update(prepared=prepared.read_bytes(), ranges=ranges.read_text())
        finally:
            ranges.unlink(missing_ok=True)

    kept = kept_full(source, calibration, settings) if float_nodes else None
    facts = _from_kept(kept, destination, workdir, settings, float_nodes) if kept else None
    if facts is None:
        facts = _first_loadable(source, destination, workdir, STATIC_ATTEMPTS, quantize, "static")
    if made and facts["graph_optimization"] and facts["per_channel"]:
        _keep_full(source, calibration, settings, {**made, "full": destination.read_bytes(), "facts": facts})
    return {"format": "QDQ", "activations": activations, "weights": "int8", "reduce_range": reduce_range,
            "calibration": calibration_method, "float_nodes": list(float_nodes), **facts}


def _from_kept(kept: dict, destination: Path, workdir: Path, settings: dict, float_nodes) -> dict | None:
    """``float_nodes`` kept in float, quantized from the pre-processed graph and ranges of this
    process's full int8 of the same graph (no pre-processing, no calibration): its facts, or None
    when ONNX Runtime cannot load what that gives (the attempts from the start then)."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    measured = kept.get("mixed")  # the budget search's last quantization, from the same graph and ranges
    if measured is not None and measured[0] == tuple(sorted(float_nodes)):
        destination.write_bytes(measured[1])
        return kept["facts"]
    prepared, ranges = workdir / "kept-prepared.onnx", workdir / "kept-ranges.json"
    prepared.write_bytes(kept["prepared"])
    qdq.name_file_nodes(prepared)
    ranges.write_text(kept["ranges"])
    try:
        with off_stdout():
            ort_quantize_static(str(prepared), str(destination), None, per_channel=True,
                                nodes_to_exclude=list(float_nodes), calibration_cache_path=ranges, **settings)
        _loads(destination)
        return kept["facts"]
    except Exception as exc:
        if interrupts.interrupted(exc):
            raise
        destination.unlink(missing_ok=True)
        return None
    finally:
        prepared.unlink(missing_ok=True)
        ranges.unlink(missing_ok=True)


# The last full int8 this process made, as the accuracy budget's mixed precision would make it
# (optimized pre-processing, per-channel, min-max ranges: the ladder's other calibrations do not
# replace it): its search on the same float graph, settings and calibration data starts from it,
# with no pre-processing, calibration or quantization of its own. Kept in memory (the two graphs,
# about 1.25x the float one) while the float graph is at most this large: larger ones keep their
# memory for the search's own copies.
KEEP_FULL_BYTES = 256 * 2**20
_KEPT: dict = {}


def _full_key(source: Path, calibration: list[np.ndarray], settings: dict) -> str:
    options = sorted((k, str(v)) for k, v in settings.items() if k != "extra_options")
    return f"{digests.sha256(source)}:{digests.arrays(calibration)}:{options}"


def _keep_full(source: Path, calibration: list[np.ndarray], settings: dict, made: dict) -> None:
    _KEPT.clear()
    _KEPT.update(made, key=_full_key(source, calibration, settings))


def kept_full(source: Path, calibration: list[np.ndarray], settings: dict) -> dict | None:
    """The pre-processed graph, calibration ranges and full int8 QDQ graph (bytes) this process
    made last from ``source`` with these settings and data, or None."""
    if not _KEPT or source.stat().st_size > KEEP_FULL_BYTES:
        return None
    return _KEPT if _KEPT["key"] == _full_key(source, calibration, settings) else None


# The accuracy budget's calibration rung, before mixed precision: ranges that ignore outliers.
ALTERNATIVES = ({"calibration": "percentile"}, {"calibration": "entropy"})


# Mixed precision keeps a node in float by name. Candidates: every node ONNX Runtime quantizes
# that computes values (not only weighted ones: on EfficientNetB0, keeping 64 convolutions in
# float left full int8's 34-point loss as it was; the in-model normalization, swish and
# squeeze-excite multiplications were quantized too), not the ones that only move data.
MOVES_DATA = {"Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten", "Slice", "Split", "Gather",
              "GatherElements", "Pad", "TopK", "Where", "Resize", "MaxPool"}


def _quantized_op_types() -> set[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return (set(QDQRegistry) | set(QLinearOpsRegistry)) - MOVES_DATA


class MixedPrecision:
    """Static int8 with chosen nodes kept in float, cheaply repeated: the float model is
    converted and pre-processed once, calibrated once (ONNX Runtime's calibration cache), then
    quantized once per candidate set of float nodes. The sensitivity pass's "these nodes alone in
    int8" costs no quantization: full int8 with every other node given its float inputs back."""

    suffix = ".onnx"
    concurrent = True  # write_alone edits a copy: candidates may be written, loaded and run in threads

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        import onnx

        self._workdir, self._lock = workdir, threading.Lock()
        float_model = workdir / "float.onnx"
        write_float_model(source, float_model)
        self._feeds = calibration.feeds(source)
        self._settings = _static_settings(bool(profile.options.get("reduce_range", False)),
                                          _activations_for(float_model, profile.options.get("activations", "int8")),
                                          profile.options.get("calibration", "minmax"))
        self._cache, self._prepared = workdir / "calibration-cache.json", workdir / "mixed-prepared.onnx"
        kept, self._full = kept_full(float_model, self._feeds, self._settings), None
        self._kept = kept
        if kept:  # the export's own full int8 of this graph: pre-processed, calibrated and quantized already
            self._prepared.write_bytes(kept["prepared"])
            self._cache.write_text(kept["ranges"])
        else:
            self._prepared, _ = pre_process(float_model, workdir, optimize=True, name=self._prepared.name)
        prepared = onnx.load(str(self._prepared))
        if qdq.name_nodes(prepared):  # candidates are kept in float by name (as the export names them)
            onnx.save(prepared, str(self._prepared))
        elif kept:
            self._full = onnx.load_from_string(kept["full"])
        graph = prepared.graph
        self._float = prepared
        self._per_channel = True
        quantized = _quantized_op_types()
        self.nodes = [node.name for node in graph.node if node.op_type in quantized and node.name]

    def write(self, float_nodes, destination: Path) -> dict:
        """Quantize with ``float_nodes`` kept in float into ``destination``; the runner's details."""
        from onnxruntime.quantization import quantize_static as ort_quantize_static

        if not float_nodes and self._full is not None:  # full int8, made already
            import onnx

            onnx.save(self._full, str(destination))
            return {}
        reader, strides = (None, {}) if self._cache.is_file() else calibration_reader(self._prepared, self._feeds)
        try:
            with off_stdout():  # its histogram calibrations print their progress
                ort_quantize_static(str(self._prepared), str(destination), reader, per_channel=self._per_channel,
                                    nodes_to_exclude=list(float_nodes) or None, calibration_cache_path=self._cache,
                                    **{**self._settings,
                                       "extra_options": {**self._settings["extra_options"], **strides}})
            _loads(destination)
        except Exception as exc:
            if interrupts.interrupted(exc) or not self._per_channel:
                raise
            self._per_channel = False  # as for export: per-tensor when per-channel fails on this graph
            return self.write(float_nodes, destination)
        if self._kept is not None and self._per_channel:  # as the export quantizes from the kept full int8:
            self._kept["mixed"] = (tuple(sorted(float_nodes)), destination.read_bytes())  # its artifact
        return {}

    def write_alone(self, quantized_nodes, destination: Path) -> dict:
        """Only ``quantized_nodes`` in int8, edited from the full int8 graph (quantized once)."""
        import onnx

        with self._lock:  # quantized once, by the first thread to ask
            if self._full is None:
                full = destination.with_name("full-int8.onnx")
                self.write([], full)
                self._full = onnx.load(str(full))
                full.unlink()
        onnx.save(qdq.alone(self._full, self._float, set(quantized_nodes)), str(destination))
        return {}


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def _carries_qdq(model: Path) -> bool:
    """Does the graph already hold int8 quantization (a quantization-aware-trained model's)?"""
    import onnx

    ops = {node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node}
    memory.release()  # the model read for its op types (a 500 MB encoder's: the stages after started above it)
    return bool(ops & QDQ_OPS)


def _activations_for(model: Path, asked: str) -> str:
    """The activation type for static int8: quantization-aware training fixed int8 grids, which
    uint8 activations would re-grid (a QAT token model fell to 20 % agreement)."""
    return "int8" if asked != "int8" and _carries_qdq(model) else asked


def quantize_dynamic(source: Path, destination: Path, workdir: Path) -> dict:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    import onnx

    if _carries_qdq(source):  # ORT's dynamic quantizer expects float weights, not weights behind DequantizeLinear
        raise ConversionError("the model already carries int8 quantization (QuantizeLinear/DequantizeLinear, as a "
                              "quantization-aware-trained model does); dynamic int8 re-quantizes float weights only: "
                              "use onnx-int8")

    def quantize(prepared: Path, per_channel) -> None:
        model = onnx.load(str(prepared))
        if gemm_as_matmul(model):  # its dynamic quantizer takes MatMul, not Gemm
            onnx_graph.write(model, prepared)
        del model
        ort_quantize_dynamic(str(prepared), str(destination), weight_type=QuantType.QInt8, per_channel=False)

    # as for static int8: the unoptimized graph when the optimized one fails
    facts = _first_loadable(source, destination, workdir, ((True, None), (False, None)), quantize, "dynamic")
    initializers = onnx.load(str(destination), load_external_data=False).graph.initializer
    quantized = sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 0 for t in initializers)  # not zero points
    return {"weights": "int8", "activations": "dynamic uint8", "int8_weight_tensors": quantized, **facts}
