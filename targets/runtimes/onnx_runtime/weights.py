"""Weight-only compression on ONNX Runtime: MatMul weights in blocks of int4 or int8
(``MatMulNBits``) and embedding tables likewise (``GatherBlockQuantized``), with ONNX Runtime's
own ``MatMulNBitsQuantizer``; activations stay float. What LLM and encoder users ship on CPU.

Linear layers that an exporter wrote as ``Gemm`` (tf2onnx does for 2-D inputs) are first
rewritten as ``MatMul`` + ``Add``, the same arithmetic, so their weights are compressed too."""

from __future__ import annotations

import logging
from pathlib import Path


from compressor.errors import ConversionError
from compressor.models import onnx_graph
from targets.runtimes.onnx_runtime.fusion import gemm_as_matmul

COMPRESSED_OPS = {"MatMulNBits", "GatherBlockQuantized"}
INT4_OPSET = 21  # the first with an int4 type; the quantizer only relabels an older model, which
#                  then fails to load where an op changed since (ReduceProd's axes became an input)


def _at_opset(model, opset: int):
    """``model`` converted to ``opset`` by ONNX's version converter when it is older."""
    from onnx import version_converter

    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if current >= opset:
        return model
    try:  # on the skeleton: the converter copies every weight several times over
        return onnx_graph.on_skeleton(model, lambda light: version_converter.convert_version(light, opset))
    except Exception as exc:  # the converter's message names the op it cannot move
        raise ConversionError(f"int4 weights need ONNX opset {opset}; this model's opset {current} could not be "
                              f"converted ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None


def quantize_weights(source: Path, destination: Path, *, bits: int, block_size: int, accuracy_level: int) -> dict:
    """``source``'s MatMul weights and embedding tables in ``bits``-bit symmetric blocks of
    ``block_size`` input channels, written to ``destination``; what was compressed."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    rewritten = gemm_as_matmul(model)
    if bits == 4:
        model = _at_opset(model, INT4_OPSET)
    # a line per node, and a notice that int4 needs opset 21 (it raises the model's opset itself)
    quiet = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level, quiet.level = quiet.level, logging.ERROR
    ops = ("MatMul", "Gather") if bits == 4 else ("MatMul",)  # GatherBlockQuantized is 4-bit only
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True,
                                         accuracy_level=accuracy_level, op_types_to_quantize=ops,
                                         quant_axes=(("MatMul", 0), ("Gather", 1)))
        quantizer.process()
    finally:
        quiet.setLevel(level)
    quantizer.model.save_model_to_file(str(destination), use_external_data_format=False)
    written = onnx.load(str(destination), load_external_data=False)
    counts = {op: sum(node.op_type == op for node in written.graph.node) for op in sorted(COMPRESSED_OPS)}
    if not any(counts.values()):
        destination.unlink()
        raise ConversionError("ONNX Runtime compressed no weight of this model (no MatMul or Gather with a "
                              "constant weight)")
    return {"weights": f"int{bits}", "block_size": block_size, "accuracy_level": accuracy_level,
            "activations": "float", "compressed_ops": counts, "gemm_rewritten": rewritten}
