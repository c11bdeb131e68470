"""ONNX / ONNX Runtime: tf2onnx for conversion, ONNX Runtime for quantization and running.

Static int8 follows ONNX Runtime's own advice for CNNs on x86 and ARM: QDQ format,
signed int8 activations and weights (S8S8), per-channel weights, after its
``quant_pre_process``. Dynamic int8 is the path for LSTM/transformer-like models.
Weight-only int8/int4 (``MatMulNBits``) for transformers. Every artifact's float graph has
tf2onnx's layer norms as one ``LayerNormalization`` each and its masked softmaxes kept out of
denormal floats (:mod:`.fusion`). One module each: :mod:`.convert`,
:mod:`.fusion`, :mod:`.graph`, :mod:`.quantize`, :mod:`.weights`, :mod:`.runner`.
"""

from __future__ import annotations

from pathlib import Path

from compressor import memory
from compressor.errors import ConversionError
from targets.runtime import Exported, Runtime
from targets.runtimes.onnx_runtime.convert import convert_keras, opset_of, write_float_model
from targets.runtimes.onnx_runtime.graph import pre_process
from targets.runtimes.onnx_runtime.quantize import ALTERNATIVES, MixedPrecision, quantize_dynamic, quantize_static
from targets.runtimes.onnx_runtime.runner import ONNXRunner, load
from targets.runtimes.onnx_runtime.weights import quantize_weights


ARTIFACT_NAME = "model.onnx"
WEIGHT_BITS = {"int8w": 8, "int4w": 4}  # weight-only profiles (MatMulNBits)


def export(source, profile, calibration, workdir: Path) -> Exported:
    artifact = workdir / ARTIFACT_NAME
    if profile.precision == "fp32":
        return Exported(artifact, [], {"opset": write_float_model(source, artifact)})
    float_model = workdir / "float.onnx"
    opset = write_float_model(source, float_model)
    memory.release()  # the fused copy of the graph
    if profile.precision == "int8":
        details = quantize_static(float_model, artifact, calibration.feeds(source), workdir,
                                  reduce_range=bool(profile.options.get("reduce_range", False)),
                                  activations=profile.options.get("activations", "int8"),
                                  calibration_method=profile.options.get("calibration", "minmax"),
                                  float_nodes=profile.options.get("float_nodes", ()))
    elif profile.precision in WEIGHT_BITS:
        details = quantize_weights(float_model, artifact, bits=WEIGHT_BITS[profile.precision],
                                   block_size=int(profile.options["block_size"]),
                                   accuracy_level=int(profile.options["accuracy_level"]))
    elif profile.precision == "dynamic-int8":
        details = quantize_dynamic(float_model, artifact, workdir)
        if not details["int8_weight_tensors"]:
            raise ConversionError(f"{profile.name}: ONNX Runtime quantized no weight of this model (no op it "
                                  "quantizes dynamically), so the artifact would be fp32 under another name")
    else:
        raise ConversionError(f"{profile.name}: ONNX Runtime has no precision '{profile.precision}' here")
    float_model.unlink()
    return Exported(artifact, [], {"opset": opset, "quantization": details})


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
            "constants": constants, "opset": opset_of(artifact)}


RUNTIME = Runtime("onnxruntime", load, export, libraries=("tf2onnx", "onnx", "onnxruntime"),
                  preimport=("onnxruntime",), accepts=("onnx", "keras"), runs_sources=("onnx",), describe=describe,
                  mixed=MixedPrecision, alternatives=ALTERNATIVES,
                  # MLAS's U8S8 int8 GEMM has an AMX kernel (onnxruntime PR #14042; the x86-amx settings
                  # quantize activations to uint8 for it); no AMX bf16 (onnxruntime issue #19937)
                  amx=("int8",))


__all__ = ["ARTIFACT_NAME", "MixedPrecision", "ONNXRunner", "RUNTIME", "convert_keras", "describe", "export", "load",
           "pre_process", "quantize_dynamic", "quantize_static", "write_float_model"]
