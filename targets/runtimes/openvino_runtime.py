"""OpenVINO: ``openvino.convert_model`` from a SavedModel, NNCF for int8, the CPU plugin to run.

NNCF 3.x has no TensorFlow backend, so int8 quantizes the converted OpenVINO model.
``openvino.save_model`` compresses weights to fp16 by default; here the profile's
precision decides, and the manifest records what was written.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from compressor.models.source import fixed_batch, run_at_batch, feed_list
from targets.runtime import Exported, Runtime, TensorInfo, converted, name_order


def _decline_telemetry() -> None:
    """Keep OpenVINO's converter and NNCF from sending usage telemetry.

    ``openvino_telemetry`` sends events unless the user opted out with a consent file
    under ``~/intel``. This toolkit sends nothing, and it changes no file in the user's
    home either: consent is declined for this process only. Without a network, the
    sender's forked child can also deadlock in ``getaddrinfo`` and hang the process at
    exit (seen in ``compressor demo``).
    """
    try:
        from openvino_telemetry.utils import opt_in_checker, sender
    except ImportError:  # not installed: nothing to decline
        return
    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: opt_in_checker.ConsentCheckResult.DECLINED
    sender.TelemetrySender.send = lambda self, backend, message: None


_decline_telemetry()

ARTIFACT_NAME = "model.xml"


# OpenVINO errors start with a source location; the unmapped op is named further down
UNMAPPED_OP = "no conversion rule found"


def _without_paths(ov_model, name: str):
    """Drop the temporary conversion path the IR would record: same inputs, same bytes (and no
    machine paths inside a shipped artifact)."""
    if ov_model.has_rt_info(["conversion_parameters", "input_model"]):
        ov_model.set_rt_info(name, ["conversion_parameters", "input_model"])
    return ov_model


def convert(source, workdir: Path):
    """The OpenVINO model for a source: its ONNX graph as it is, or its tf-keras model via a
    temporary SavedModel."""
    graph = source.representation("onnx")
    if graph is not None:  # once per source: automatic node names (mixed precision's handles) stay the same
        return converted(source, "openvino", lambda: _convert_onnx(graph, source.path, workdir), digest="").clone()
    return _convert_keras(source.representation("keras"), workdir)


def _convert_onnx(graph, path: Path, workdir: Path):
    import onnx
    import openvino as ov

    inline = workdir / "source.onnx"
    onnx.save_model(graph, str(inline))
    try:
        return _without_paths(ov.convert_model(str(inline)), path.name)
    except Exception as exc:
        reason = one_line(exc, prefer=UNMAPPED_OP)
        raise ConversionError(f"OpenVINO conversion of {path} failed: {reason}") from None
    finally:
        inline.unlink(missing_ok=True)


def _convert_keras(model, workdir: Path):
    """The OpenVINO model of a Keras model (converted once per process while its weights stay
    the same; each caller gets its own copy)."""
    return converted(model, "openvino", lambda: _convert_saved_model(model, workdir)).clone()


def _convert_saved_model(model, workdir: Path):
    import openvino as ov

    saved = workdir / "saved_model"
    try:
        with keras_env.quiet_native():
            keras_env.tf().saved_model.save(model, str(saved))
            return _without_paths(ov.convert_model(str(saved)), "saved_model")
    except Exception as exc:
        raise ConversionError(f"OpenVINO conversion failed: {one_line(exc, prefer=UNMAPPED_OP)}") from None
    finally:
        shutil.rmtree(saved, ignore_errors=True)


# An automatic OpenVINO node name: its type and a process-wide counter ("Multiply_2896"),
# alone or as a segment of a derived name ("Multiply_2896/fq_weights_1").
AUTO_NAME = re.compile(r"(?<![A-Za-z0-9_])([A-Z][A-Za-z0-9]*)_(\d+)(?![A-Za-z0-9_])")


def _stable_names(ov_model):
    """Renumber automatic node names in graph order.

    Their counters count the nodes the process made before (in the converter, in NNCF):
    the same model exported twice in one process, or in two processes whose libraries
    did slightly different work, would otherwise write different IR bytes.
    """
    renamed: dict[str, str] = {}
    io_names = {name for port in [*ov_model.inputs, *ov_model.outputs] for name in port.get_names()}

    def stable(name: str) -> str:  # the model's input and output names are the user's: kept
        if name in io_names:
            return name
        return AUTO_NAME.sub(lambda m: renamed.setdefault(m.group(0), f"{m.group(1)}_{len(renamed)}"), name)

    for node in ov_model.get_ordered_ops():
        if node.get_type_name() not in ("Parameter", "Result"):
            node.set_friendly_name(stable(node.get_friendly_name()))
        for port in node.outputs():
            if port.get_names():
                port.get_tensor().set_names({stable(name) for name in port.get_names()})
    return ov_model


def with_batch(ov_model, batch: int):
    """``ov_model`` with its dynamic batch axis (the first) fixed to ``batch``, or None.

    The CPU plugin compiles a static shape into a faster program: batch 1 against the
    dynamic IR ran 1.08-1.23x faster on the sample models (median of 5 alternating rounds).
    None when no input has a dynamic first axis or the graph cannot take the shape.
    """
    import openvino as ov

    shapes = {}
    for index, port in enumerate(ov_model.inputs):
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_dynamic:
            shapes[index] = ov.PartialShape([ov.Dimension(batch)] + [shape[i] for i in range(1, len(shape))])
    if not shapes:
        return None
    fixed = ov_model.clone()
    try:
        fixed.reshape(shapes)
    except Exception:  # e.g. a Reshape with the batch baked in: keep the dynamic model
        return None
    return fixed


def quantize(ov_model, calibration: list[np.ndarray], *, overflow_fix: str = "first_layer_only", float_nodes=(),
             subset_size: int | None = None, preset: str = "performance"):
    """NNCF post-training int8: its default ``performance`` preset (symmetric weights and
    activations) or ``mixed`` (asymmetric activations, for activations far from zero-centred).

    ``overflow_fix`` is NNCF's name: "enable" quantizes weights to 7 bits in every layer so
    that CPUs without VNNI, which add int8 products pairwise in saturating int16, do not clip.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # one sample at a time, one array per model input in the IR's own input order
    items = [[array[i : i + 1] for array in calibration] for i in range(len(calibration[0]))]
    items = [item[0] if len(item) == 1 else item for item in items]
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix))
    ignored = nncf.IgnoredScope(names=list(float_nodes)) if float_nodes else None
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    with keras_env.quiet_native():
        return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=min(subset_size or len(items), len(items)),
                             target_device=nncf.TargetDevice.CPU, advanced_parameters=advanced, preset=presets[preset],
                             **({"ignored_scope": ignored} if ignored else {}))


ALTERNATIVES = ({"preset": "mixed"},)  # the accuracy budget's calibration rung, before mixed precision


# Mixed precision keeps an op in float by its name in the converted model (NNCF's ignored
# scope). Candidates: the ops NNCF quantizes, read from where its FakeQuantize nodes go. NNCF
# moves a quantizer up past the ops that only move or select values, so the op it quantizes
# is the first one below the FakeQuantize that computes.
PASS_THROUGH = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "MaxPool", "StridedSlice", "Slice",
                          "Split", "VariadicSplit", "Pad", "DepthToSpace", "SpaceToDepth", "ShuffleChannels",
                          "Gather", "Broadcast", "Tile", "Convert", "Relu", "Clamp", "ReduceMax"})


def _readers(fake_quantize) -> set[str]:
    """The names of the ops that read ``fake_quantize``'s output, past the ops that only move values."""
    readers, seen, stack = set(), set(), [fake_quantize]
    while stack:
        for output in stack.pop().outputs():
            for target in output.get_target_inputs():
                node = target.get_node()
                name = node.get_friendly_name()
                if node.get_type_name() in PASS_THROUGH:
                    if name not in seen:
                        seen.add(name)
                        stack.append(node)
                elif node.get_type_name() not in ("FakeQuantize", "Result"):
                    readers.add(name)
    return readers


def quantizer_readers(quantized) -> dict[str, set[str]]:
    """For each FakeQuantize of ``quantized`` (by name), the ops it quantizes the inputs of."""
    return {op.get_friendly_name(): _readers(op) for op in quantized.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize"}


def quantized_ops(model, quantized) -> list[str]:
    """The names of ``model``'s ops whose inputs NNCF quantized in ``quantized``, in graph order."""
    readers = set().union(*quantizer_readers(quantized).values())
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in readers]


class MixedPrecision:
    """NNCF int8 with chosen ops kept in float, cheaply repeated: the model is converted once,
    then quantized once per candidate set of float ops. The sensitivity pass's "these ops alone
    in int8" costs no quantization: full int8 with every other FakeQuantize bypassed."""

    suffix = ".xml"

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        ov_model = convert(source, workdir)
        order = name_order([i.name for i in source.inputs], [p.get_names() for p in ov_model.inputs])
        self._order = {"input_order": order, "output_order": name_order(
            [o.name for o in source.outputs], [p.get_names() for p in ov_model.outputs]),
            "fixed_batch": fixed_batch([spec.shape for spec in source.inputs])}
        static = with_batch(ov_model, profile.options.get("batch", 1)) if profile.options.get("batch", 1) else None
        self._model = static if static is not None else ov_model
        self._feeds = _ir_order(calibration.feeds(source), order)
        self._overflow_fix = profile.options.get("overflow_fix", "first_layer_only")
        self._full = quantize(self._model.clone(), self._feeds, overflow_fix=self._overflow_fix)
        self._alone_base = self._full.clone()  # full int8 as NNCF wrote it, for write_alone
        self._float_ops = {op.get_friendly_name(): op for op in self._model.get_ordered_ops()}
        self._quantizers = quantizer_readers(self._alone_base)
        self.nodes = quantized_ops(self._model, self._full)

    def write_alone(self, quantized_nodes, destination: Path) -> dict:
        """Only ``quantized_nodes`` in int8, from the full int8 model: every other op's activation
        quantizers bypassed and its int8 weights replaced by the float ones. NNCF's statistics are
        collected once for the whole ranking."""
        import openvino as ov

        keep = set(quantized_nodes)
        model = self._alone_base.clone()
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize" and not self._quantizers.get(op.get_friendly_name(), set()) & keep:
                op.output(0).replace(op.input_value(0))
            elif op.get_friendly_name() not in keep:
                _float_weights(op, self._float_ops.get(op.get_friendly_name()))
        ov.save_model(_carry_options(model), str(destination), compress_to_fp16=False)
        return self._order

    def write(self, float_nodes, destination: Path) -> dict:
        import openvino as ov

        if not float_nodes and self._full is not None:  # full int8, quantized already to list the candidates
            quantized, self._full = self._full, None
        else:
            quantized = quantize(self._model.clone(), self._feeds, overflow_fix=self._overflow_fix,
                                 float_nodes=float_nodes)
        ov.save_model(_carry_options(_stable_names(quantized)), str(destination), compress_to_fp16=False)
        return self._order


def _decompressed(node) -> bool:
    """Is ``node`` NNCF's int8 weight decompression (Multiply of a Convert of an integer
    Constant, with a Subtract of the zero point between them when asymmetric)?"""
    if node.get_type_name() != "Multiply":
        return False
    source = node.input_value(0).get_node()
    if source.get_type_name() == "Subtract":
        source = source.input_value(0).get_node()
    if source.get_type_name() != "Convert":
        return False
    constant = source.input_value(0).get_node()
    return constant.get_type_name() == "Constant" and constant.get_output_element_type(0).is_integral()


def _float_weights(op, original) -> None:
    """Give ``op`` back the float weights it reads in the float model ``original`` came from, in
    place of NNCF's int8 ones."""
    import openvino.opset13 as opset

    if original is None:
        return
    for port, value in enumerate(op.input_values()):
        if port >= original.get_input_size() or not _decompressed(value.get_node()):
            continue
        weights = original.input_value(port).get_node()
        if weights.get_type_name() == "Constant":
            op.input(port).replace_source_output(opset.constant(weights.get_data().copy()).output(0))


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


def _carry_options(ov_model, options: dict = VERIFIED_OPTIONS):
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


class OpenVINORunner:
    """Runs an OpenVINO IR on the CPU plugin; a batch other than the IR's own static batch
    gets the IR reshaped to it and compiled once (kept for the next call of that size)."""

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
        key = None if self._batch is None or batch == self._batch else batch
        if key not in self._requests:
            model = self._core.read_model(str(self._artifact))
            model.reshape({i: [batch, *info.shape[1:]] for i, info in zip(self._in, self.inputs)})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._requests[key] = (compiled, compiled.create_infer_request())
        return self._requests[key][1]

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


def export(source, profile, calibration, workdir: Path) -> Exported:
    import openvino as ov

    ov_model = convert(source, workdir)
    order = {"input_order": name_order([i.name for i in source.inputs], [p.get_names() for p in ov_model.inputs]),
             "output_order": name_order([o.name for o in source.outputs], [p.get_names() for p in ov_model.outputs])}
    in_ir_order = _ir_order(calibration.feeds(source), order["input_order"]) if calibration is not None else None
    batch = profile.options.get("batch", 1)  # edge inference runs one sample at a time
    static = with_batch(ov_model, batch) if batch else None
    ov_model = static if static is not None else ov_model
    details = {"weights": "fp16" if profile.precision == "fp16" else "fp32"}
    if profile.precision == "int8":
        overflow_fix = profile.options.get("overflow_fix", "first_layer_only")
        float_nodes = list(profile.options.get("float_nodes", ()))
        preset = profile.options.get("preset", "performance")
        ov_model = quantize(ov_model, in_ir_order, overflow_fix=overflow_fix, float_nodes=float_nodes, preset=preset)
        details = {"weights": "int8", "activations": "int8", "quantizer": f"nncf.quantize ({preset} preset)",
                   "overflow_fix": overflow_fix, "float_nodes": float_nodes}
    elif profile.precision not in ("fp32", "fp16"):
        raise ConversionError(f"{profile.name}: OpenVINO has no precision '{profile.precision}' here")
    source_batch = fixed_batch([spec.shape for spec in source.inputs])
    details["batch"] = batch if static is not None else source_batch or "dynamic"
    if source_batch is not None:  # exported with its batch fixed: the runner feeds it that batch
        details["fixed_batch"] = source_batch
    details.update(order)
    details["compile_properties"] = dict(VERIFIED_OPTIONS)  # also in the IR's rt_info/runtime_options
    artifact = workdir / ARTIFACT_NAME
    ov.save_model(_carry_options(_stable_names(ov_model)), str(artifact), compress_to_fp16=profile.precision == "fp16")
    return Exported(artifact, [artifact.with_suffix(".bin")], details)


def _ir_order(arrays: list[np.ndarray], order: list[int] | None) -> list[np.ndarray]:
    """Arrays given in the source's input order, put in the IR's (``order[k]``: where source input k is)."""
    if order is None:
        return arrays
    placed = [None] * len(arrays)
    for array, position in zip(arrays, order):
        placed[position] = array
    return placed


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> OpenVINORunner:
    details = details or {}
    return OpenVINORunner(artifact, threads=threads, input_order=details.get("input_order"),
                          output_order=details.get("output_order"), fixed_batch=details.get("fixed_batch"))


def describe(artifact: Path) -> dict:
    """Op types (with their output element types), I/O, and the element types the weights are stored in."""
    import openvino as ov

    from compressor.errors import BadInputError

    try:
        model = ov.Core().read_model(str(artifact))
    except Exception as exc:
        raise BadInputError(f"{artifact}: not a readable OpenVINO IR ({one_line(exc)[:160]})") from None
    ops: dict[str, dict] = {}
    constants: dict[str, int] = {}
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        if kind in ("Parameter", "Result"):
            continue
        types = {node.get_output_element_type(i).get_type_name() for i in range(node.get_output_size())}
        if kind == "Constant":
            for t in types:
                constants[t] = constants.get(t, 0) + 1
            continue
        entry = ops.setdefault(kind, {"count": 0, "dtypes": set()})
        entry["count"] += 1
        entry["dtypes"] |= types

    def tensors(ports):
        return [{"name": next(iter(sorted(p.get_names())), ""), "shape": str(p.get_partial_shape()),
                 "dtype": p.get_element_type().get_type_name()} for p in ports]

    return {"ops": {name: {"count": e["count"], "dtypes": sorted(e["dtypes"])} for name, e in sorted(ops.items())},
            "inputs": tensors(model.inputs), "outputs": tensors(model.outputs), "constants": constants}


RUNTIME = Runtime("openvino", load, export, libraries=("onnx", "openvino", "nncf"), preimport=("openvino",),
                  accepts=("onnx", "keras"), describe=describe, suffix=".xml", mixed=MixedPrecision,
                  alternatives=ALTERNATIVES)
