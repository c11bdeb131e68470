"""Weight-only compression on ONNX Runtime: MatMul weights in blocks of int4 or int8
(``MatMulNBits``) and embedding tables likewise (``GatherBlockQuantized``), with ONNX Runtime's
own ``MatMulNBitsQuantizer``; activations stay float. What LLM and encoder users ship on CPU.

Linear layers that an exporter wrote as ``Gemm`` (tf2onnx does for 2-D inputs) are first
rewritten as ``MatMul`` + ``Add``, the same arithmetic, so their weights are compressed too."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from compressor.errors import ConversionError

COMPRESSED_OPS = {"MatMulNBits", "GatherBlockQuantized"}
INT4_OPSET = 21  # the first with an int4 type; the quantizer only relabels an older model, which
#                  then fails to load where an op changed since (ReduceProd's axes became an input)


def _at_opset(model, opset: int):
    """``model`` converted to ``opset`` by ONNX's version converter when it is older."""
    from onnx import version_converter

    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter's message names the op it cannot move
        raise ConversionError(f"int4 weights need ONNX opset {opset}; this model's opset {current} could not be "
                              f"converted ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None


def gemm_as_matmul(model) -> int:
    """Rewrite, in place, each ``Gemm`` whose B is a constant (alpha = beta = 1, A not
    transposed) as ``MatMul`` + ``Add``; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)  # a shared weight stays as it is
    nodes, rewritten = [], 0
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        has_bias = len(node.input) > 2 and bool(node.input[2])  # beta scales the bias only
        if (node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in constants or attributes.get(
                "transA", 0) or attributes.get("alpha", 1.0) != 1.0 or (has_bias and attributes.get("beta", 1.0) != 1.0)
                or uses[node.input[1]] > 1):
            nodes.append(node)
            continue
        weight = constants[node.input[1]]
        if attributes.get("transB", 0):  # stored (out, in): MatMul wants (in, out)
            weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(weight).T),
                                                    weight.name))
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", list(node.input[:2]), [product], name=f"{node.name}_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


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
