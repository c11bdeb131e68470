"""Weight-only compression of a float ``.tflite`` model by the LiteRT (AI Edge) Quantizer, the
library Google ships LiteRT's blockwise int4 and int8 weight recipes in (its own code rather
than ours: the recipes are what LiteRT's kernels are written for).

- ``int8w``: int8 weights per output channel, symmetric, dequantized to float in the graph
  (``weight_only_wi8_afp32``): a quarter of the fp32 size, float arithmetic;
- ``int4w``: int4 weights in blocks of 32 input channels, symmetric, computed by XNNPACK's
  blockwise kernels with the activations quantized on the fly (``dynamic_wi4b32_afp32``), as
  ONNX Runtime's MatMulNBits does at accuracy level 4; the output layer, and a layer whose input
  channels are not a multiple of 32, keep int8 weights per channel (``int8_layers``).

Only fully connected and embedding-lookup weights are compressed (the layers the
other runtimes' weight-only profiles take); convolutions stay float.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re

from compressor.errors import ConversionError
from compressor.progress import off_stdout

RECIPES = {"int8w": "weight_only_wi8_afp32", "int4w": "dynamic_wi4b32_afp32"}
# int4 in blocks needs a layer's input channels to be a multiple of the block: such a layer (a
# 2,704-wide flatten) keeps int8 weights per channel, as NNCF keeps some layers at int8
INT8_FOR = {"dynamic_wi4b32_afp32": "dynamic_wi8_afp32"}
UNDIVIDED = re.compile(r"tensor: (?P<name>.+?)\. Error: .*not divisible by block size")


def quantize_weights(content: bytes, precision: str, target: str) -> tuple[bytes, dict]:
    """The float model ``content`` with its weights compressed for ``precision``; and the details
    (the recipe, and the layers kept at int8 where blocks did not divide them)."""
    from ai_edge_quantizer import recipe

    name = RECIPES[precision]
    entries, int8_layers = _matmul_only(getattr(recipe, name)()), []
    last = _last_dense(content) if name in INT8_FOR else None
    if last:  # the output layer at int8, as NNCF's int4 keeps it (a 10-class head in 4 bits lost 1.8 pt)
        int8_layers.append(last)
        entries += _int8_entries(name, last)
    while True:
        try:
            quantized = _quantize(content, entries)
            break
        except Exception as exc:  # noqa: BLE001 - the quantizer's own refusal, in one line
            found = UNDIVIDED.search(str(exc))
            if not found or name not in INT8_FOR or found["name"] in int8_layers:
                raise ConversionError(f"{target}: the LiteRT Quantizer could not compress this model's weights "
                                      f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from None
            int8_layers.append(found["name"])
            entries += _int8_entries(name, found["name"])
    return quantized, {"recipe": name, "float_bytes": len(content),
                       **({"int8_layers": int8_layers} if int8_layers else {})}


MATMUL_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")  # dense and embedding weights (a batch matmul has none)


def _int8_entries(name: str, layer: str) -> list:
    """Recipe entries that keep ``layer`` (an op's output tensor name) at int8; later entries win."""
    from ai_edge_quantizer import recipe

    return [{**entry, "regex": re.escape(layer)} for entry in _matmul_only(getattr(recipe, INT8_FOR[name])())]


def _matmul_only(entries: list) -> list:
    """A recipe's entries for the ops weight-only compresses (dense layers, embedding lookups),
    not the convolutions its ``ALL_SUPPORTED`` would take too."""
    from ai_edge_quantizer.recipe import TFLOperationName

    return [{**copy.deepcopy(entry), "operation": getattr(TFLOperationName, op)}
            for entry in entries for op in MATMUL_OPS]


def _last_dense(content: bytes) -> str | None:
    """The output tensor's name of the model's last fully connected op (its output layer)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    dense = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    return names.get(int(dense[-1]["outputs"][0])) if dense else None


def _quantize(content: bytes, entries: list) -> bytes:
    from ai_edge_quantizer import quantizer

    with off_stdout(), contextlib.redirect_stderr(io.StringIO()):  # its summary, and its progress bars
        job = quantizer.Quantizer(bytearray(content))
        job.load_quantization_recipe(entries)
        return bytes(job.quantize().quantized_model)
