"""TFLite / LiteRT: conversion with ``tf.lite.TFLiteConverter``, running with the
``ai_edge_litert`` interpreter (``tf.lite.Interpreter`` is deprecated since TF 2.19/2.20).
"""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from compressor.models.source import feed_list
from targets.runtime import Exported, Runtime, TensorInfo

ARTIFACT_NAME = "model.tflite"
INT_TYPES = {"int8", "int16", "int32", "int64", "uint8", "bool"}


def _representative(calibration: list[np.ndarray], names: list[str]):
    """One sample at a time; several inputs by name (the converter's own input order may differ)."""

    def generator():
        for i in range(len(calibration[0])):
            sample = [array[i : i + 1] for array in calibration]
            yield sample if len(sample) == 1 else dict(zip(names, sample))

    return generator


def _configure(converter, profile, calibration, names) -> None:
    tf = keras_env.tf()
    precision = profile.precision
    if precision == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.representative_dataset = _representative(calibration, names)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(profile.input_type)
        converter.inference_output_type = tf.as_dtype(profile.output_type)
    elif precision == "int16x8":
        converter.representative_dataset = _representative(calibration, names)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    elif precision != "dynamic-int8":
        raise ConversionError(f"{profile.name}: LiteRT has no precision '{precision}'")


def _failed_ops(message: str) -> list[str]:
    """TensorFlow ops the converter could not map (``tfl.*`` ops in its dump are already mapped)."""
    ops = set(re.findall(r"\btf\.[A-Z][A-Za-z0-9_]*", message))
    return sorted(ops)


RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")


def _batch_one_signature(model):
    """For a recurrent model, a concrete function with a batch of one (inputs named as the
    model's); None for other models.

    With a dynamic batch, Keras' recurrent layers lower to TensorList ops that LiteRT's
    builtins lack; a fixed batch lets the converter fuse them into
    UNIDIRECTIONAL_SEQUENCE_LSTM (TensorFlow's own LSTM conversion guide does the same).
    """
    tf = keras_env.tf()
    from compressor.models.inspection import flat_layers

    if not any(type(layer).__name__ in RECURRENT_LAYERS for layer in flat_layers(model)):
        return None
    specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype, name=name) for t, name in zip(model.inputs, model.input_names)]
    function = tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=False))
    return function.get_concrete_function(*specs)


def _converter(model):
    """A converter for ``model`` (recurrent models through :func:`_batch_one_signature`)."""
    tf = keras_env.tf()
    concrete = _batch_one_signature(model)
    if concrete is None:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


def convert(model, profile, calibration: list[np.ndarray] | None) -> bytes:
    """The ``.tflite`` flatbuffer for ``model`` at the profile's precision; ``calibration``:
    representative samples, one array per input in the model's input order.

    Calibrating conversions (int8, int16x8) run in a child process: the quantizer is native
    code that can abort the whole process on a model it does not handle (a ViT's attention
    under int16x8 does), and one target's crash must not take the run down.
    """
    if profile.precision in CALIBRATED:
        return unclip_lstm_cells(_convert_isolated(model, profile, calibration))[0]
    converter = _converter(model)
    _configure(converter, profile, calibration, list(model.input_names))
    return unclip_lstm_cells(_run_converter(converter, profile.name))[0]


CALIBRATED = ("int8", "int16x8")


def _run_converter(converter, target: str) -> bytes:
    try:
        with keras_env.quiet_native():
            return converter.convert()
    except Exception as exc:
        ops = _failed_ops(str(exc))
        detail = f"ops it cannot map: {', '.join(ops)}" if ops else str(exc).strip().splitlines()[0][:200]
        raise ConversionError(f"{target}: TFLite conversion failed; {detail}") from None


def _save_for_conversion(model, directory: Path) -> None:
    """The model as a SavedModel, which is what ``from_keras_model`` converts internally too;
    recurrent models with the signature of :func:`_batch_one_signature`."""
    tf = keras_env.tf()
    with keras_env.quiet_native():
        concrete = _batch_one_signature(model)
        if concrete is None:
            tf.saved_model.save(model, str(directory))
        else:
            tf.saved_model.save(model, str(directory), signatures=concrete)


def _convert_isolated(model, profile, calibration: list[np.ndarray], *, calibrate_only: bool = False) -> bytes:
    import json
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="compressor-tflite-") as tmp:
        work = Path(tmp)
        try:
            _save_for_conversion(model, work / "saved_model")
        except Exception as exc:  # the converter could not have read it either
            raise ConversionError(f"{profile.name}: the model could not be traced for the TFLite converter: "
                                  f"{str(exc).strip().splitlines()[0][:200]}") from None
        np.savez(work / "calibration.npz", **{f"input_{i}": a for i, a in enumerate(calibration)})
        spec = {"saved_model": str(work / "saved_model"), "calibration": str(work / "calibration.npz"),
                "names": list(model.input_names), "output": str(work / "model.tflite"),
                "error": str(work / "error.txt"), "stage": str(work / "stage.txt"), "calibrate_only": calibrate_only,
                "profile": {"name": profile.name, "precision": profile.precision,
                            "input_type": profile.input_type, "output_type": profile.output_type}}
        (work / "spec.json").write_text(json.dumps(spec))
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, COMPRESSOR_QUIET="1", TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, "-m", "targets.runtimes.litert", str(work / "spec.json")],
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0 and Path(spec["output"]).is_file():
            return Path(spec["output"]).read_bytes()
        if Path(spec["error"]).is_file():
            raise ConversionError(Path(spec["error"]).read_text().strip())
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            what = ("the LiteRT interpreter crashed ({}) running the converted model (a kernel that does not "
                    "handle it at this precision)" if Path(spec["stage"]).is_file() else
                    "the TFLite converter crashed ({}) while quantizing this model").format(name)
            raise ConversionError(
                f"{profile.name}: {what}; the other targets are unaffected. Try another LiteRT precision "
                "(tflite-int8, tflite-fp16) or another runtime's int8 (onnx-int8, openvino-int8)")
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ConversionError(f"{profile.name}: the TFLite converter's process failed (exit {proc.returncode}): {tail}")


def _convert_child(spec_path: str) -> int:
    """The child side of :func:`_convert_isolated`: convert the SavedModel, write the flatbuffer."""
    import json
    from types import SimpleNamespace

    spec = json.loads(Path(spec_path).read_text())
    tf = keras_env.tf()
    profile = SimpleNamespace(**spec["profile"])
    with np.load(spec["calibration"]) as saved:
        calibration = [saved[f"input_{i}"] for i in range(len(saved.files))]
    converter = tf.lite.TFLiteConverter.from_saved_model(spec["saved_model"])
    _configure(converter, profile, calibration, spec["names"])
    converter._experimental_calibrate_only = spec.get("calibrate_only", False)  # ranges only: quantized later
    try:
        content = _run_converter(converter, profile.name)
    except ConversionError as exc:
        Path(spec["error"]).write_text(str(exc))
        return 3
    draft = Path(spec["output"] + ".tmp")
    draft.write_bytes(content)
    if converter._experimental_calibrate_only:
        draft.rename(spec["output"])
        return 0
    # A first run here, not in the caller: some quantized kernels abort the process on
    # models they do not handle (int16x8 attention does), and the caller runs parity next.
    Path(spec["stage"]).write_text("run")
    runner = LiteRTRunner(draft, input_order=signature_order(content, spec["names"], "inputs"))
    runner.run([array[:PROBE_SAMPLES] for array in calibration])
    draft.rename(spec["output"])
    return 0


PROBE_SAMPLES = 4


def unclip_lstm_cells(content: bytes) -> tuple[bytes, int]:
    """Remove the cell-state clipping the converter adds to fused Keras LSTMs.

    When the converter fuses a Keras ``LSTM`` into ``UNIDIRECTIONAL_SEQUENCE_LSTM`` it sets
    ``cell_clip=10``, which the Keras layer does not have: any sequence whose cell state
    passes ±10 then follows another trajectory (on the LSTM sample model, 16 of 450 test
    sequences moved the softmax by up to 0.013 in fp32). ``cell_clip=0`` means "no clipping"
    to every LiteRT LSTM kernel, float and quantized alike. The float is overwritten in
    place, so every other byte of the flatbuffer is the converter's own.
    Returns the new content and the number of ops changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    lstm_ops = {schema.BuiltinOperator.LSTM, schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM,
                schema.BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM}
    buffer = bytearray(content)
    model = schema.Model.GetRootAs(buffer, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    opcodes = [max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) for code in codes]
    changed = 0
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for k in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(k)
            options = op.BuiltinOptions() if opcodes[op.OpcodeIndex()] in lstm_ops else None
            slot = options.Offset(6) if options is not None else 0  # cell_clip, in all three option tables
            if slot and struct.unpack_from("<f", buffer, options.Pos + slot)[0] != 0.0:
                struct.pack_into("<f", buffer, options.Pos + slot, 0.0)
                changed += 1
    return bytes(buffer), changed


def _inspect(content: bytes) -> tuple[list[dict], list[str]]:
    """The model's ops with the dtypes of their tensors, and the dtype of every tensor."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():  # the interpreter's public API has no op listing
        tensors = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) >= 0]
        ops.append({"op": op["op_name"], "dtypes": sorted({dtypes[i] for i in tensors if i in dtypes})})
    return ops, list(dtypes.values())


def signature_order(content: bytes, names: list[str], kind: str) -> list[int] | None:
    """For each of the source's ``kind`` ("inputs" or "outputs"), by name, its position among
    the artifact's.

    The converter may list them in another order than the Keras model (a three-head model
    came out as classes, box, score for box, classes, score); the serving signature names
    them. None when the signature does not carry the source's names.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    listed = interpreter.get_input_details() if kind == "inputs" else interpreter.get_output_details()
    position = {d["index"]: i for i, d in enumerate(listed)}
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return None
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    named = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
    if not set(names) <= set(named):
        return None
    return [position[named[name]["index"]] for name in names]


def io_order(content: bytes, source) -> dict:
    """The artifact's inputs and outputs in the source's order, for the manifest (see :func:`signature_order`)."""
    return {"input_order": signature_order(content, [i.name for i in source.inputs], "inputs"),
            "output_order": signature_order(content, [o.name for o in source.outputs], "outputs")}


def op_table(content: bytes) -> list[dict]:
    """The model's ops with the dtypes of their tensors."""
    return _inspect(content)[0]


def check_integer_only(content: bytes, profile) -> None:
    """Every op must compute in integers (Edge TPU, microcontrollers)."""
    float_ops = sorted({op["op"] for op in op_table(content) if set(op["dtypes"]) - INT_TYPES})
    if float_ops:
        raise ConversionError(f"{profile.name}: ops left in float, not int8: {', '.join(float_ops)}")


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
        self._input_details = reorder(self._interpreter.get_input_details(), input_order)
        self._output_details = reorder(self._interpreter.get_output_details(), output_order)
        self.inputs = [_tensor_info(d) for d in self._input_details]
        self.outputs = [_tensor_info(d) for d in self._output_details]
        self._batch = None
        # Fused recurrent ops keep their state in variable tensors across invocations;
        # each inference of a stateless Keras layer starts from zero state.
        self._stateful = any("SEQUENCE" in op["op_name"] for op in self._interpreter._get_ops_details())

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        for detail in self._input_details:
            shape = list(detail["shape_signature"])
            shape[0] = batch
            self._interpreter.resize_tensor_input(detail["index"], shape)
        self._interpreter.allocate_tensors()
        self._batch = batch

    def _fixed_batch(self) -> int | None:
        first = self._input_details[0]["shape_signature"]
        return None if first[0] == -1 else int(first[0])

    def run(self, x) -> list[np.ndarray]:
        inputs = feed_list(x)
        count, fixed = len(inputs[0]), self._fixed_batch()
        if fixed is not None and count != fixed:
            parts = [self.run([a[i : i + fixed] for a in inputs]) for i in range(0, count, fixed)]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]
        if fixed is None:
            self._resize(count)
        if self._stateful:
            self._interpreter.reset_all_variables()
        for info, detail, array in zip(self.inputs, self._input_details, inputs):
            self._interpreter.set_tensor(detail["index"], info.quantize(array))
        self._interpreter.invoke()
        return [info.dequantize(self._interpreter.get_tensor(d["index"]))
                for info, d in zip(self.outputs, self._output_details)]

    def close(self) -> None:
        self._interpreter = None


def reorder(items: list, order: list[int] | None) -> list:
    """``items`` in the source's output order (see :func:`output_order`)."""
    return list(items) if order is None else [items[i] for i in order]


def _tensor_info(detail: dict) -> TensorInfo:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    quantized = dtype in ("int8", "uint8", "int16") and scale != 0.0
    return TensorInfo(detail["name"], [int(d) for d in detail["shape_signature"]], dtype,
                      float(scale) if quantized else None, int(zero_point) if quantized else None)


# Mixed precision keeps an op in float by the name of its output tensor (the converter's
# "denylisted nodes", as its quantization debugger uses them). Candidates: every op of the
# calibrated model that computes a float tensor, the quantizer's own I/O ops aside: layer
# norms, softmax and the reshapes at a model's input cost accuracy as weighted ops do.
NOT_CANDIDATES = ("QUANTIZE", "DEQUANTIZE")


def quantize_calibrated(calibrated: bytes, profile, float_nodes=()) -> bytes:
    """The int8 flatbuffer from a calibrated float one (the converter's own second half),
    the ops whose outputs are named in ``float_nodes`` kept in float."""
    from tensorflow.lite.python import convert as tflite_convert

    tf = keras_env.tf()
    try:
        with keras_env.quiet_native():
            return tflite_convert.mlir_quantize(calibrated, False, input_data_type=tf.as_dtype(profile.input_type),
                                                output_data_type=tf.as_dtype(profile.output_type),
                                                denylisted_nodes=list(float_nodes) or None)
    except Exception as exc:
        raise ConversionError(f"{profile.name}: TFLite quantization failed: {one_line(exc)}") from None


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


class MixedPrecision:
    """LiteRT int8 with chosen ops kept in float, cheaply repeated: calibrated once (in a child
    process, as every calibrating conversion), then quantized once per candidate set."""

    suffix = ".tflite"

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        if profile.precision != "int8" or profile.builtin_int8_only:
            raise ConversionError(f"{profile.name}: only float-I/O int8 can keep layers in float")
        self._source, self._profile = source, profile
        self._calibrated = _convert_isolated(source.representation("keras"), profile, calibration.feeds(source),
                                             calibrate_only=True)
        self.nodes = _float_op_outputs(self._calibrated)

    def write(self, float_nodes, destination: Path) -> dict:
        content = unclip_lstm_cells(quantize_calibrated(self._calibrated, self._profile, float_nodes))[0]
        destination.write_bytes(content)
        return io_order(content, self._source)


def export(source, profile, calibration, workdir: Path) -> Exported:
    feeds = None if calibration is None else calibration.feeds(source)
    float_nodes = list(profile.options.get("float_nodes", ()))
    if float_nodes:  # mixed precision: calibrate, then quantize with those ops left in float
        calibrated = _convert_isolated(source.representation("keras"), profile, feeds, calibrate_only=True)
        content = unclip_lstm_cells(quantize_calibrated(calibrated, profile, float_nodes))[0]
    else:
        content = convert(source.representation("keras"), profile, feeds)
    if profile.builtin_int8_only:
        check_integer_only(content, profile)
    artifact = workdir / ARTIFACT_NAME
    artifact.write_bytes(content)
    table, tensor_dtypes = _inspect(content)
    ops = sorted({op["op"] for op in table})
    details = {"ops": ops, **io_order(content, source), **({"float_nodes": float_nodes} if float_nodes else {})}
    if profile.precision == "dynamic-int8":
        details["int8_weight_tensors"] = tensor_dtypes.count("int8")
        if not details["int8_weight_tensors"]:
            raise ConversionError(f"{profile.name}: the converter quantized no weight of this model (it keeps "
                                  "tensors under 1024 elements in float), so the artifact would be fp32 under "
                                  "another name; use tflite-int8")
    if any("LSTM" in op for op in ops):
        details["lstm_cell_clip"] = "none, as in Keras"
    return Exported(artifact, [], details)


def load(artifact: Path, *, threads: int = 1, details: dict | None = None) -> LiteRTRunner:
    details = details or {}
    return LiteRTRunner(artifact, threads=threads, input_order=details.get("input_order"),
                        output_order=details.get("output_order"))


def describe(artifact: Path) -> dict:
    """Ops (with the dtypes they compute in) and the I/O tensors of a ``.tflite`` file."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        content = Path(artifact).read_bytes()
        interpreter = Interpreter(model_content=content)
    except Exception as exc:
        from compressor.errors import BadInputError

        raise BadInputError(f"{artifact}: not a readable .tflite file ({str(exc).strip().splitlines()[0][:160]})") \
            from None
    table = op_table(content)
    ops: dict[str, dict] = {}
    for op in table:
        entry = ops.setdefault(op["op"], {"count": 0, "dtypes": set()})
        entry["count"] += 1
        entry["dtypes"] |= set(op["dtypes"])
    tensors = lambda details: [vars(_tensor_info(d)) for d in details]  # noqa: E731
    return {"ops": {name: {"count": e["count"], "dtypes": sorted(e["dtypes"])} for name, e in sorted(ops.items())},
            "inputs": tensors(interpreter.get_input_details()), "outputs": tensors(interpreter.get_output_details())}


RUNTIME = Runtime("litert", load, export, libraries=("tensorflow", "tf-keras", "ai-edge-litert"),
                  preimport=("ai_edge_litert.interpreter",), accepts=("keras",), describe=describe, suffix=".tflite",
                  mixed=MixedPrecision)


if __name__ == "__main__":
    import sys

    sys.exit(_convert_child(sys.argv[1]))
