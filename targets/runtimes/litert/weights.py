"""Weight-only compression of a float ``.tflite`` model by the LiteRT (AI Edge) Quantizer, the
library Google ships LiteRT's blockwise int4 and int8 weight recipes in (its own code rather
than ours: the recipes are what LiteRT's kernels are written for).

- ``int8w``: int8 weights per output channel, symmetric, dequantized to float in the graph
  (``weight_only_wi8_afp32``): a quarter of the fp32 size, float arithmetic;
- ``int4w``: int4 weights in blocks of 32 input channels, symmetric, computed by XNNPACK's
  blockwise kernels with the activations quantized on the fly (``dynamic_wi4b32_afp32``), as
  ONNX Runtime's MatMulNBits does at accuracy level 4.

The quantizer takes the ops it supports (fully connected, batch matmul, embedding lookups,
convolutions); the rest stay float.
"""

from __future__ import annotations

import contextlib
import io

from compressor.errors import ConversionError

RECIPES = {"int8w": "weight_only_wi8_afp32", "int4w": "dynamic_wi4b32_afp32"}


def quantize_weights(content: bytes, precision: str, target: str) -> tuple[bytes, dict]:
    """The float model ``content`` with its weights compressed for ``precision``; and the details."""
    from ai_edge_quantizer import quantizer, recipe

    name = RECIPES[precision]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress
            job = quantizer.Quantizer(bytearray(content))
            job.load_quantization_recipe(getattr(recipe, name)())
            quantized = bytes(job.quantize().quantized_model)
    except Exception as exc:  # the quantizer's own refusal of an op or a graph, in one line
        raise ConversionError(f"{target}: the LiteRT Quantizer could not compress this model's weights "
                              f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from None
    return quantized, {"recipe": name, "float_bytes": len(content)}
