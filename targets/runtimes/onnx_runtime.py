"""ONNX / ONNX Runtime: tf2onnx for conversion, ONNX Runtime for quantization and running.

Static int8 follows ONNX Runtime's own advice for CNNs on x86 and ARM: QDQ format,
signed int8 activations and weights (S8S8), per-channel weights, after its
``quant_pre_process``. Dynamic int8 is the path for LSTM/transformer-like models.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from compressor import interrupts, keras_env
from compressor.errors import ConversionError, one_line
from compressor.models.source import fixed_batch, run_at_batch, feed_list
from targets.runtime import Exported, Runtime, TensorInfo, converted

OPSET = 17
ARTIFACT_NAME = "model.onnx"


_HANDLERS = []


def _register_handlers() -> None:
    """Ops tf2onnx 1.17 passes through untranslated, leaving an invalid ONNX graph. ``Erfc``:
    TensorFlow's exact GELU is ``0.5 x erfc(-x / sqrt 2)`` (ViT, ConvNeXt); ONNX has ``Erf``
    only, and erfc(x) = 1 - erf(x)."""
    if _HANDLERS:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            shapes, dtypes = node.output_shapes, node.output_dtypes
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=[node.output[0]], shapes=shapes,
                          dtypes=dtypes)

    _HANDLERS.append(Erfc)


def convert_keras(model, destination: Path) -> None:
    """Write ``model`` as ONNX (opset ``OPSET``) with a dynamic batch axis (converted once per
    process while its weights stay the same)."""
    destination.write_bytes(converted(model, "onnx", lambda: _keras_to_onnx(model)))


FUNCTION_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


def _keras_to_onnx(model) -> bytes:
    import onnx
    import tf2onnx

    _register_handlers()

    tf = keras_env.tf()
    signature = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
                 for name, t in zip(model.input_names, model.inputs)]
    try:
        with keras_env.quiet_native():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET,
                                                  optimizers=_collecting_optimizers())
    except Exception as exc:
        raise ConversionError(f"ONNX conversion failed: {one_line(exc)}") from None
    calls = sorted({node.name.rsplit("/", 2)[-2] if node.name.count("/") >= 1 else node.name
                    for node in proto.graph.node if node.op_type in FUNCTION_CALLS})
    if calls:  # tf-keras runs a grouped Conv2D as an XLA-compiled function, which tf2onnx passes through
        raise ConversionError(
            f"ONNX conversion: layer(s) {', '.join(repr(c) for c in calls[:3])} run as compiled TensorFlow functions "
            "(a grouped Conv2D does) that tf2onnx cannot convert; try the tflite or openvino targets, which convert "
            "from TensorFlow, or export the model to ONNX with the framework that trained it")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionError(f"ONNX conversion produced an invalid model: {one_line(exc)}") from None
    return proto.SerializeToString()


def _collecting_optimizers() -> dict:
    """tf2onnx's own graph optimizers, each started after a garbage collection. Before each one
    tf2onnx deep-copies the whole graph (to roll back one that fails); the copies it drops sit in
    reference cycles until Python's cyclic collector runs, which counts objects, not bytes, so
    a model's weights pile up copy after copy: ResNet50 (98 MB of weights) peaked at 7.4 GB in
    conversion, 2.6 GB with a collection before each optimizer (same optimizers, same graph)."""
    import gc

    from tf2onnx import optimizer

    def collected(factory):
        def make():
            gc.collect()
            return factory()
        return make

    return {name: collected(factory) for name, factory in optimizer._get_optimizers().items()}


class CalibrationReader:
    """ONNX Runtime's one-method calibration protocol over a Dataset."""

    def __init__(self, input_names: list[str], calibration: list[np.ndarray]) -> None:
        self._items = iter([{name: array[i : i + 1] for name, array in zip(input_names, calibration)}
                            for i in range(len(calibration[0]))])

    def get_next(self):
        return next(self._items, None)


def _pre_process(source: Path, workdir: Path, *, optimize: bool = True,
                 name: str = "prepared.onnx") -> tuple[Path, bool]:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization),
    which its docs ask for before static and dynamic quantization alike. Returns the
    prepared model and whether symbolic shape inference had to be skipped."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = (workdir / name).resolve()
    source = source.resolve()  # before the chdir below: the paths may be relative to the caller's cwd
    unreshaped = (workdir / f"unreshaped-{name}").resolve()
    if _drop_identity_reshapes(source, unreshaped):
        source = unreshaped
    # in a folder of its own: on incomplete shape inference ORT saves sym_shape_infer_temp.onnx (and,
    # for a large model, a <uuid>.data beside it) in the cwd and leaves them there
    scratch = Path(tempfile.mkdtemp(prefix=".pre-process.", dir=workdir))
    try:
        with contextlib.chdir(scratch):
            try:
                quant_pre_process(str(source), str(prepared), skip_optimization=not optimize)
                return prepared, False
            except Exception:  # "Incomplete symbolic shape inference" on some models: ORT's advice is to skip it
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True,
                                  skip_optimization=not optimize)
                return prepared, True
    finally:
        unreshaped.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _drop_identity_reshapes(source: Path, destination: Path) -> int:
    """Write ``source`` without the Reshapes that give a tensor the shape it already has, and
    return how many there were (0: nothing written). tf2onnx puts one between a convolution
    with a 1x1 output map and its BatchNormalization (EfficientNetB0 at 32x32: 15 of them);
    there it stops ONNX Runtime's Conv+BatchNormalization fusion, and the convolution's output
    is quantized before the per-channel scale of BatchNormalization (46 % top-1 agreement)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    try:
        model = onnx.load(str(source), load_external_data=False)
        graph = model.graph
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer) or any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
                for a in n.attribute):
            return 0  # weights beside the file, or subgraphs: left as they are
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        constants.update({n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant"
                          for a in n.attribute if a.name == "value"})
        if not any(n.op_type == "Reshape" and n.input[1] in constants for n in graph.node):
            return 0  # no Reshape to a constant shape: no shape inference needed (a second on ResNet50)
        inferred = shape_inference.infer_shapes(model).graph
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                  for v in [*inferred.value_info, *inferred.input, *inferred.output]
                  if v.type.tensor_type.HasField("shape")}
        outputs = {o.name for o in graph.output}
        bypass = {}
        for node in graph.node:
            if node.op_type != "Reshape" or node.output[0] in outputs or node.input[1] not in constants:
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            target, dims = [int(t) for t in constants[node.input[1]].ravel()], shapes.get(node.input[0])
            if dims is None or len(dims) != len(target) or target.count(-1) > 1 or (allowzero and 0 in target):
                continue
            if all(t in (0, -1) or (d is not None and t == d) for t, d in zip(target, dims)):
                bypass[node.output[0]] = node.input[0]
        if not bypass:
            return 0
        kept = [n for n in graph.node if not (n.op_type == "Reshape" and n.output[0] in bypass)]
        for node in kept:
            for i, name in enumerate(node.input):
                while name in bypass:
                    name = bypass[name]
                node.input[i] = name
        shapes_used = {n.input[1] for n in graph.node if n.op_type == "Reshape" and n.output[0] in bypass}
        still_used = {name for n in kept for name in n.input} | outputs
        unused = [t for t in graph.initializer if t.name in shapes_used and t.name not in still_used]
        for tensor in unused:
            graph.initializer.remove(tensor)
        del graph.node[:]
        graph.node.extend(kept)
        onnx.save(model, str(destination))
        return len(bypass)
    except Exception as exc:  # noqa: BLE001 - an optional clean-up: the graph is quantized as it came
        if interrupts.interrupted(exc):
            raise
        return 0


# Each attempt: (graph optimization in pre-processing, per-channel weights). The first is ONNX
# Runtime's advice; the others exist because on some exported graphs the quantizer fails
# (per-channel bias-scale adjustment) or writes a graph ONNX Runtime cannot load (a bias that
# pre-processing's Conv+Add fusion produced, dequantized from int32: INVALID_GRAPH).
STATIC_ATTEMPTS = ((True, True), (True, False), (False, True), (False, False))


def _loads(model: Path) -> None:
    """Raise if ONNX Runtime cannot build a session for ``model`` (what parity would hit next)."""
    _session(model, 1)


def _first_loadable(source: Path, destination: Path, workdir: Path, attempts, quantize, what: str) -> dict:
    """Run ``quantize(prepared, per_channel)`` for each ``(optimize, per_channel)`` attempt until
    ONNX Runtime loads what it wrote; the pre-processed graph is made once per ``optimize``.
    Returns the facts of the attempt that worked; ConversionError names why each failed."""
    failures, prepared = [], {}
    try:
        for optimize, per_channel in attempts:
            if optimize not in prepared:
                prepared[optimize] = _pre_process(source, workdir, optimize=optimize, name=f"prepared-{optimize}.onnx")
            model, skip_symbolic = prepared[optimize]
            try:
                quantize(model, per_channel)
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
            "reduce_range": reduce_range}


def quantize_static(source: Path, destination: Path, calibration, workdir: Path, *, reduce_range: bool,
                    activations: str = "int8", calibration_method: str = "minmax", float_nodes=()) -> dict:
    """Static QDQ int8: int8 weights (per channel where the quantizer manages), ``activations``
    int8 (S8S8) or uint8 (U8S8, ONNX Runtime's fast path on x86 with VNNI); the nodes named in
    ``float_nodes`` (of the pre-processed graph) stay in float."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    activations = _activations_for(source, activations)
    settings = _static_settings(reduce_range, activations, calibration_method)

    def quantize(prepared: Path, per_channel: bool) -> None:
        input_names = [i.name for i in _session(prepared, 1).get_inputs()]
        ort_quantize_static(str(prepared), str(destination), CalibrationReader(input_names, calibration),
                            per_channel=per_channel, nodes_to_exclude=list(float_nodes) or None, **settings)

    facts = _first_loadable(source, destination, workdir, STATIC_ATTEMPTS, quantize, "static")
    return {"format": "QDQ", "activations": activations, "weights": "int8", "reduce_range": reduce_range,
            "calibration": calibration_method, "float_nodes": list(float_nodes), **facts}


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

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        self._workdir = workdir
        float_model = workdir / "float.onnx"
        write_float_model(source, float_model)
        self._prepared, _ = _pre_process(float_model, workdir, optimize=True, name="mixed-prepared.onnx")
        self._feeds = calibration.feeds(source)
        import onnx

        from targets import qdq

        prepared = onnx.load(str(self._prepared))
        if qdq.name_nodes(prepared):  # candidates are kept in float by name
            onnx.save(prepared, str(self._prepared))
        graph = prepared.graph
        self._float, self._full = prepared, None
        self._settings = _static_settings(bool(profile.options.get("reduce_range", False)),
                                          _activations_for(self._prepared, profile.options.get("activations", "int8")),
                                          profile.options.get("calibration", "minmax"))
        self._cache = workdir / "calibration-cache.json"
        self._per_channel = True
        quantized = _quantized_op_types()
        self.nodes = [node.name for node in graph.node if node.op_type in quantized and node.name]

    def write(self, float_nodes, destination: Path) -> dict:
        """Quantize with ``float_nodes`` kept in float into ``destination``; the runner's details."""
        from onnxruntime.quantization import quantize_static as ort_quantize_static

        names = [i.name for i in _session(self._prepared, 1).get_inputs()]
        reader = None if self._cache.is_file() else CalibrationReader(names, self._feeds)
        try:
            ort_quantize_static(str(self._prepared), str(destination), reader, per_channel=self._per_channel,
                                nodes_to_exclude=list(float_nodes) or None, calibration_cache_path=self._cache,
                                **self._settings)
            _loads(destination)
        except Exception as exc:
            if interrupts.interrupted(exc) or not self._per_channel:
                raise
            self._per_channel = False  # as for export: per-tensor when per-channel fails on this graph
            return self.write(float_nodes, destination)
        return {}

    def write_alone(self, quantized_nodes, destination: Path) -> dict:
        """Only ``quantized_nodes`` in int8, edited from the full int8 graph (quantized once)."""
        import onnx

        from targets import qdq

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

    return bool({node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node} & QDQ_OPS)


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
        ort_quantize_dynamic(str(prepared), str(destination), weight_type=QuantType.QInt8, per_channel=False)

    # as for static int8: the unoptimized graph when the optimized one fails
    facts = _first_loadable(source, destination, workdir, ((True, None), (False, None)), quantize, "dynamic")
    initializers = onnx.load(str(destination), load_external_data=False).graph.initializer
    quantized = sum(t.data_type == onnx.TensorProto.INT8 for t in initializers)
    return {"weights": "int8", "activations": "dynamic uint8", "int8_weight_tensors": quantized, **facts}


def _session(model: Path | bytes, threads: int):
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
        self._session = _session(artifact, threads)
        self.load_seconds = time.perf_counter() - start
        self.inputs = [_info(t) for t in self._session.get_inputs()]
        self.outputs = [_info(t) for t in self._session.get_outputs()]

    def run(self, x) -> list[np.ndarray]:
        def run(chunk):
            feed = {info.name: array.astype(info.dtype, copy=False) for info, array in zip(self.inputs, chunk)}
            return [np.asarray(o, np.float32) for o in self._session.run(None, feed)]

        # a model exported with its batch fixed (at 1, as a plain PyTorch export does) runs in chunks of it
        return run_at_batch(run, feed_list(x), fixed_batch([info.shape for info in self.inputs]))

    def close(self) -> None:
        self._session = None


def _info(node) -> TensorInfo:
    shape = [d if isinstance(d, int) else -1 for d in node.shape]
    return TensorInfo(node.name, shape, ONNX_TYPES.get(node.type, node.type))


def write_float_model(source, destination: Path) -> None:
    """The float ONNX model: the source's own ONNX graph re-saved inline, or its Keras model converted."""
    import onnx

    graph = source.representation("onnx")
    if graph is not None:
        onnx.save_model(graph, str(destination))
    else:
        convert_keras(source.representation("keras"), destination)


def export(source, profile, calibration, workdir: Path) -> Exported:
    artifact = workdir / ARTIFACT_NAME
    if profile.precision == "fp32":
        write_float_model(source, artifact)
        return Exported(artifact, [], {"opset": _opset(artifact)})
    float_model = workdir / "float.onnx"
    write_float_model(source, float_model)
    if profile.precision == "int8":
        details = quantize_static(float_model, artifact, calibration.feeds(source), workdir,
                                  reduce_range=bool(profile.options.get("reduce_range", False)),
                                  activations=profile.options.get("activations", "int8"),
                                  calibration_method=profile.options.get("calibration", "minmax"),
                                  float_nodes=profile.options.get("float_nodes", ()))
    elif profile.precision == "dynamic-int8":
        details = quantize_dynamic(float_model, artifact, workdir)
        if not details["int8_weight_tensors"]:
            raise ConversionError(f"{profile.name}: ONNX Runtime quantized no weight of this model (no op it "
                                  "quantizes dynamically), so the artifact would be fp32 under another name")
    else:
        raise ConversionError(f"{profile.name}: ONNX Runtime has no precision '{profile.precision}' here")
    opset = _opset(float_model)
    float_model.unlink()
    return Exported(artifact, [], {"opset": opset, "quantization": details})


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> ONNXRunner:
    if (details or {}).get("source"):  # a user's model, not our artifact: its external data is checked first
        from compressor.models.onnx_source import load_onnx

        return ONNXRunner(load_onnx(artifact).proto.SerializeToString(), threads=threads)
    return ONNXRunner(artifact, threads=threads)


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


def describe(artifact: Path) -> dict:
    """Op types, I/O, and the element types of the initializers (int8 weights of a quantized model)."""
    import onnx

    model = onnx.load(str(artifact), load_external_data=False)
    ops: dict[str, dict] = {}
    for node in model.graph.node:
        entry = ops.setdefault(node.op_type, {"count": 0, "dtypes": []})
        entry["count"] += 1
    constants: dict[str, int] = {}
    for tensor in model.graph.initializer:
        name = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
        constants[name] = constants.get(name, 0) + 1
    runner = ONNXRunner(artifact)
    tensors = lambda infos: [vars(i) for i in infos]  # noqa: E731
    return {"ops": dict(sorted(ops.items())), "inputs": tensors(runner.inputs), "outputs": tensors(runner.outputs),
            "constants": constants, "opset": _opset(artifact)}


RUNTIME = Runtime("onnxruntime", load, export, libraries=("tf2onnx", "onnx", "onnxruntime"),
                  preimport=("onnxruntime",), accepts=("onnx", "keras"), runs_sources=("onnx",), describe=describe,
                  mixed=MixedPrecision, alternatives=ALTERNATIVES)
