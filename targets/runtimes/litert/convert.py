"""Keras to TFLite with ``tf.lite.TFLiteConverter``: the converter configured per profile, run in a
child process (some quantized kernels abort the process that meets them), its errors in one line."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from targets import saved_model
from targets.runtimes.litert.calibration import lean_calibration
from targets.runtimes.litert.flatbuffer import lean_reencoding, signature_order, unclip_lstm_cells
from targets.runtimes.litert.runner import LiteRTRunner


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


def _batch_one_shapes(model, static: list[tuple] | None = None) -> list[tuple] | None:
    """For a recurrent model, its inputs with a batch of one; for any model with ``static``
    shapes (a profile's ``static_batch``: one per input, batch one, the other dimensions as the
    calibration data has them), those; None otherwise (the batch stays dynamic).

    With a dynamic batch, Keras' recurrent layers lower to TensorList ops that LiteRT's
    builtins lack; a fixed batch lets the converter fuse them into
    UNIDIRECTIONAL_SEQUENCE_LSTM (TensorFlow's own LSTM conversion guide does the same). A
    microcontroller or Edge TPU runs one sample on static shapes: with them fixed, a Reshape's
    target shape or a pooling's length is a constant instead of Shape/ReduceProd arithmetic
    that TFLite Micro has no kernel for.
    """
    from compressor.models.inspection import flat_layers

    if not static and not any(type(layer).__name__ in RECURRENT_LAYERS for layer in flat_layers(model)):
        return None
    return static or [(1, *t.shape[1:]) for t in model.inputs]


def _converter(model, work: Path, static: list[tuple] | None = None):
    """A converter for ``model``: recurrent models and ``static`` ones from their serving function
    on :func:`_batch_one_shapes`, others from the SavedModel it writes in ``work``
    (:mod:`targets.saved_model`).

    ``from_keras_model`` writes Keras' own SavedModel, and with it the Python stack of every op's
    creation (``save_debug_info``), for error locations the toolkit does not report: 180 MB of
    the process's peak on the 105-layer MobileNetV2 sample (1,165 -> 983 MB), and a flatbuffer
    that differs only in the conversion metadata's record of where the model came from."""
    tf = keras_env.tf()
    shapes = _batch_one_shapes(model, static)
    if shapes is not None:
        return tf.lite.TFLiteConverter.from_concrete_functions([saved_model.serving_function(model, shapes)], model)
    saved_model.save(model, work / "saved_model")
    return tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model"))


def convert(model, profile, calibration: list[np.ndarray] | None) -> bytes:
    """The ``.tflite`` flatbuffer for ``model`` at the profile's precision; ``calibration``:
    representative samples, one array per input in the model's input order.

    Calibrating conversions (int8, int16x8) run in a child process: the quantizer is native
    code that can abort the whole process on a model it does not handle (a ViT's attention
    under int16x8 does), and one target's crash must not take the run down.
    """
    if profile.precision in CALIBRATED:
        return unclip_lstm_cells(convert_isolated(model, profile, calibration))[0]
    with tempfile.TemporaryDirectory(prefix="compressor-tflite-") as work:
        try:
            converter = _converter(model, Path(work), _static(profile, calibration))
        except Exception as exc:  # as convert_isolated says it
            raise ConversionError(f"{profile.name}: the model could not be traced for the TFLite converter: "
                                  f"{str(exc).strip().splitlines()[0][:200]}") from None
        _configure(converter, profile, calibration, list(model.input_names))
        return unclip_lstm_cells(_run_converter(converter, profile.name))[0]


CALIBRATED = ("int8", "int16x8")


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


def quantized_content(calibrated: bytes, profile, float_nodes) -> bytes:
    """The int8 flatbuffer of a calibrated model with the ops named in ``float_nodes`` in float
    (the accuracy budget's candidates and artifact)."""
    return unclip_lstm_cells(quantize_calibrated(calibrated, profile, float_nodes))[0]


def _static(profile, calibration: list[np.ndarray] | None) -> list[tuple] | None:
    """A ``static_batch`` profile's input shapes: batch one, the rest as the calibration data's."""
    if getattr(profile, "static_batch", None) != 1 or not calibration:
        return None
    return [(1, *np.shape(array)[1:]) for array in calibration]


def _run_converter(converter, target: str) -> bytes:
    try:
        with keras_env.quiet_native(), lean_reencoding(), lean_calibration():
            return converter.convert()
    except Exception as exc:
        ops = _failed_ops(str(exc))
        detail = f"ops it cannot map: {', '.join(ops)}" if ops else str(exc).strip().splitlines()[0][:200]
        raise ConversionError(f"{target}: TFLite conversion failed; {detail}") from None


def _save_for_conversion(model, directory: Path, static: list[tuple] | None = None) -> None:
    """The model as a SavedModel for the converter's process (:mod:`targets.saved_model`), recurrent
    and ``static`` models on the shapes of :func:`_batch_one_shapes`."""
    saved_model.save(model, directory, _batch_one_shapes(model, static))


def convert_isolated(model, profile, calibration: list[np.ndarray], *, calibrate_only: bool = False,
                     keep_calibrated: bool = False):
    """The flatbuffer the converter makes in a child process (``calibrate_only``: the calibrated
    float model, quantized later); with ``keep_calibrated``, both: ``(quantized, calibrated)``,
    the quantized one made from the calibrated one as the accuracy budget's search makes its
    mixes (:func:`quantize_calibrated`), so the search needs no calibration of its own."""
    import json
    import os
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="compressor-tflite-") as tmp:
        work = Path(tmp)
        try:
            _save_for_conversion(model, work / "saved_model", _static(profile, calibration))
        except Exception as exc:  # the converter could not have read it either
            raise ConversionError(f"{profile.name}: the model could not be traced for the TFLite converter: "
                                  f"{str(exc).strip().splitlines()[0][:200]}") from None
        np.savez(work / "calibration.npz", **{f"input_{i}": a for i, a in enumerate(calibration)})
        spec = {"saved_model": str(work / "saved_model"), "calibration": str(work / "calibration.npz"),
                "names": list(model.input_names), "output": str(work / "model.tflite"),
                "error": str(work / "error.txt"), "stage": str(work / "stage.txt"), "calibrate_only": calibrate_only,
                "calibrated": str(work / "calibrated.tflite") if keep_calibrated else None,
                "profile": {"name": profile.name, "precision": profile.precision,
                            "input_type": profile.input_type, "output_type": profile.output_type}}
        (work / "spec.json").write_text(json.dumps(spec))
        root = Path(__file__).resolve().parents[3]
        env = dict(os.environ, COMPRESSOR_QUIET="1", TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, "-m", "targets.runtimes.litert", str(work / "spec.json")],
                              capture_output=True, text=True, env=env)
        if proc.returncode == 0 and Path(spec["output"]).is_file():
            content = Path(spec["output"]).read_bytes()
            return (content, Path(spec["calibrated"]).read_bytes()) if keep_calibrated else content
        raise _child_failure(proc, spec, profile)


def _child_failure(proc, spec: dict, profile) -> ConversionError:
    """Why the converter's process wrote no model, in one line."""
    import signal

    if Path(spec["error"]).is_file():
        return ConversionError(Path(spec["error"]).read_text().strip())
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        what = ("the LiteRT interpreter crashed ({}) running the converted model (a kernel that does not "
                "handle it at this precision)" if Path(spec["stage"]).is_file() else
                "the TFLite converter crashed ({}) while quantizing this model").format(name)
        return ConversionError(
            f"{profile.name}: {what}; the other targets are unaffected. Try another LiteRT precision "
            "(tflite-int8, tflite-fp16) or another runtime's int8 (onnx-int8, openvino-int8)")
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return ConversionError(f"{profile.name}: the TFLite converter's process failed (exit {proc.returncode}): {tail}")


def convert_child(spec_path: str) -> int:
    """The child side of :func:`convert_isolated`: convert the SavedModel, write the flatbuffer."""
    import json
    from types import SimpleNamespace

    spec = json.loads(Path(spec_path).read_text())
    tf = keras_env.tf()
    profile = SimpleNamespace(**spec["profile"])
    with np.load(spec["calibration"]) as saved:
        calibration = [saved[f"input_{i}"] for i in range(len(saved.files))]
    converter = tf.lite.TFLiteConverter.from_saved_model(spec["saved_model"])
    _configure(converter, profile, calibration, spec["names"])
    calibrate_only = spec.get("calibrate_only", False)  # ranges only: quantized later by the caller
    # int8 calibrates only and is quantized below, as the budget's mixes are: the converter's own
    # quantization ran with its float result still held (the 110 M encoder's edgetpu: 3,419 MB)
    converter._experimental_calibrate_only = calibrate_only or profile.precision == "int8"
    try:
        content = _run_converter(converter, profile.name)
        if spec.get("calibrated"):
            Path(spec["calibrated"]).write_bytes(content)
        if profile.precision == "int8" and not calibrate_only:
            content = quantize_calibrated(content, profile)
    except ConversionError as exc:
        Path(spec["error"]).write_text(str(exc))
        return 3
    draft = Path(spec["output"] + ".tmp")
    draft.write_bytes(content)
    if calibrate_only:
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
