"""OpenVINO: ``openvino.convert_model`` from a SavedModel or ONNX, NNCF for int8, the CPU plugin to
run.

NNCF 3.x has no TensorFlow backend, so int8 quantizes the converted OpenVINO model.
``openvino.save_model`` compresses weights to fp16 by default; here the profile's
precision decides, and the manifest records what was written. One module each:
:mod:`.convert`, :mod:`.quantize`, :mod:`.runner`.
"""

from __future__ import annotations

from pathlib import Path

from compressor.errors import ConversionError, one_line
from compressor.models.source import fixed_batch
from targets.runtime import Exported, Runtime, in_artifact_order, name_order
from targets.runtimes.openvino_runtime.convert import convert, decline_telemetry, stable_names, with_batch
from targets.runtimes.openvino_runtime.quantize import (ALTERNATIVES, WEIGHT_MODES, MixedPrecision, compress_weights,
                                                       quantize, quantized)
from targets.runtimes.openvino_runtime.runner import (VERIFIED_OPTIONS, OpenVINORunner, carry_options, cpu_config,
                                                     kernels, load, runtime_options)


decline_telemetry()

ARTIFACT_NAME = "model.xml"


def export(source, profile, calibration, workdir: Path) -> Exported:
    import openvino as ov

    ov_model = convert(source, workdir)
    order = {"input_order": name_order([i.name for i in source.inputs], [p.get_names() for p in ov_model.inputs]),
             "output_order": name_order([o.name for o in source.outputs], [p.get_names() for p in ov_model.outputs])}
    in_ir_order = in_artifact_order(calibration.feeds(source), order["input_order"]) if calibration is not None else None
    batch = profile.options.get("batch", 1)  # edge inference runs one sample at a time
    static = with_batch(ov_model, batch) if batch else None
    ov_model = static if static is not None else ov_model
    details = {"weights": "fp16" if profile.precision == "fp16" else "fp32"}
    if profile.precision == "int8":
        overflow_fix = profile.options.get("overflow_fix", "first_layer_only")
        float_nodes = list(profile.options.get("float_nodes", ()))
        preset = profile.options.get("preset", "performance")
        ov_model = quantized(source, ov_model, in_ir_order, overflow_fix=overflow_fix, float_nodes=float_nodes,
                             preset=preset)
        details = {"weights": "int8", "activations": "int8", "quantizer": f"nncf.quantize ({preset} preset)",
                   "overflow_fix": overflow_fix, "float_nodes": float_nodes}
    elif profile.precision in WEIGHT_MODES:
        ov_model, details = compress_weights(ov_model, profile.precision,
                                             group_size=int(profile.options.get("group_size", 32)),
                                             ratio=float(profile.options.get("ratio", 1.0)))
        if not details["weight_tensors"]:
            raise ConversionError(f"{profile.name}: NNCF compressed no weight of this model (it compresses MatMul "
                                  "and embedding weights), so the artifact would be fp32 under another name")
    elif profile.precision not in ("fp32", "fp16", "bf16"):
        raise ConversionError(f"{profile.name}: OpenVINO has no precision '{profile.precision}' here")
    source_batch = fixed_batch([spec.shape for spec in source.inputs])
    details["batch"] = batch if static is not None else source_batch or "dynamic"
    if source_batch is not None:  # exported with its batch fixed: the runner feeds it that batch
        details["fixed_batch"] = source_batch
    details.update(order)
    options = {**VERIFIED_OPTIONS, **({"INFERENCE_PRECISION_HINT": "bf16"} if profile.precision == "bf16" else {})}
    details["compile_properties"] = options  # also in the IR's rt_info/runtime_options
    artifact = workdir / ARTIFACT_NAME
    ov.save_model(carry_options(stable_names(ov_model), options), str(artifact),
                  compress_to_fp16=profile.precision == "fp16")
    return Exported(artifact, [artifact.with_suffix(".bin")], details)


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

    compiled = ov.Core().compile_model(model, "CPU", cpu_config(1, runtime_options(model)))
    return {"ops": {name: {"count": e["count"], "dtypes": sorted(e["dtypes"])} for name, e in sorted(ops.items())},
            "inputs": tensors(model.inputs), "outputs": tensors(model.outputs), "constants": constants,
            "runtime_options": runtime_options(model),
            "cpu_kernels_here": kernels(compiled)}  # what the CPU plugin runs it with on this machine


RUNTIME = Runtime("openvino", load, export, libraries=("onnx", "openvino", "nncf"), preimport=("openvino",),
                  accepts=("onnx", "keras"), describe=describe, suffix=".xml", mixed=MixedPrecision,
                  alternatives=ALTERNATIVES,
                  # measured: oneDNN's brgconv_avx512_amx_*_I8 / _bf16 kernels on ResNet50 (inspect's cpu_kernels_here)
                  amx=("int8", "bf16"))


__all__ = ["ARTIFACT_NAME", "MixedPrecision", "OpenVINORunner", "RUNTIME", "VERIFIED_OPTIONS", "convert", "cpu_config",
           "describe", "export", "load", "quantize", "runtime_options"]
