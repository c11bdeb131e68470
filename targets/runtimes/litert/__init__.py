"""TFLite / LiteRT: conversion with ``tf.lite.TFLiteConverter``, running with the
``ai_edge_litert`` interpreter. One module each: :mod:`.convert`, :mod:`.flatbuffer`, :mod:`.runner`,
:mod:`.mixed`; ``python -m targets.runtimes.litert SPEC`` is the converter's child process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from compressor.errors import ConversionError
from targets.runtime import Exported, Runtime
from targets.runtimes.litert.convert import convert
from targets.runtimes.litert.flatbuffer import (check_integer_only, inspect_model, io_order, op_table, signature_order,
                                               unclip_lstm_cells)
from targets.runtimes.litert.mixed import MixedPrecision, calibrated, full_int8, mixable, quantize_calibrated
from targets.runtimes.litert.runner import LiteRTRunner, load, tensor_info
from targets.runtimes.litert.weights import RECIPES, quantize_weights


ARTIFACT_NAME = "model.tflite"


def export(source, profile, calibration, workdir: Path) -> Exported:
    feeds = None if calibration is None else calibration.feeds(source)
    float_nodes = list(profile.options.get("float_nodes", ()))
    compressed = {}
    if float_nodes:  # mixed precision: calibrate, then quantize with those ops left in float
        content = unclip_lstm_cells(quantize_calibrated(calibrated(source.representation("keras"), profile, feeds),
                                                        profile, float_nodes))[0]
    elif profile.precision in RECIPES:  # weight-only: the float model, its weights compressed after
        content = convert(source.representation("keras"), dataclasses.replace(profile, precision="fp32"), feeds)
        content, compressed = quantize_weights(content, profile.precision, profile.name)
    elif mixable(profile) and feeds is not None:  # its calibrated model kept for a budget's search
        content = unclip_lstm_cells(full_int8(source.representation("keras"), profile, feeds))[0]
    else:
        content = convert(source.representation("keras"), profile, feeds)
    if profile.builtin_int8_only:
        check_integer_only(content, profile)
    artifact = workdir / ARTIFACT_NAME
    artifact.write_bytes(content)
    table, tensor_dtypes = inspect_model(content)
    ops = sorted({op["op"] for op in table})
    details = {"ops": ops, **io_order(content, source), **({"float_nodes": float_nodes} if float_nodes else {}),
               **compressed}
    if compressed:
        details["compressed_weight_tensors"] = sum(tensor_dtypes.count(kind) for kind in ("int8", "int4"))
        if not details["compressed_weight_tensors"]:
            raise ConversionError(f"{profile.name}: the LiteRT Quantizer compressed no weight of this model")
    if profile.precision == "dynamic-int8":
        details["int8_weight_tensors"] = tensor_dtypes.count("int8")
        if not details["int8_weight_tensors"]:
            raise ConversionError(f"{profile.name}: the converter quantized no weight of this model (it keeps "
                                  "tensors under 1024 elements in float), so the artifact would be fp32 under "
                                  "another name; use tflite-int8")
    if any("LSTM" in op for op in ops):
        details["lstm_cell_clip"] = "none, as in Keras"
    return Exported(artifact, [], details)


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
    tensors = lambda details: [vars(tensor_info(d)) for d in details]  # noqa: E731
    return {"ops": {name: {"count": e["count"], "dtypes": sorted(e["dtypes"])} for name, e in sorted(ops.items())},
            "inputs": tensors(interpreter.get_input_details()), "outputs": tensors(interpreter.get_output_details())}


RUNTIME = Runtime("litert", load, export, libraries=("tensorflow", "tf-keras", "ai-edge-litert", "ai-edge-quantizer"),
                  preimport=("ai_edge_litert.interpreter",), accepts=("keras",), describe=describe, suffix=".tflite",
                  mixed=MixedPrecision,
                  # XNNPACK picks AMX GEMM kernels for static int8 (qs8-qc8w), dynamic int8 and int4
                  # weights (qd8-f32-qc8w / -qc4w) where the CPU has the tiles (its gemm-config.c);
                  # ai-edge-litert's library carries them. Measured: ResNet50 tflite-int8 7.5x its
                  # fp32 on an AMX Xeon (SPEED.md), 3.4x on AVX-512 VNNI without AMX
                  amx=("int8",))


__all__ = ["ARTIFACT_NAME", "LiteRTRunner", "MixedPrecision", "RUNTIME", "check_integer_only", "convert", "describe",
           "export", "io_order", "load", "op_table", "signature_order", "unclip_lstm_cells"]
