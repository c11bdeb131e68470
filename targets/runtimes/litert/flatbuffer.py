"""Reading and patching a ``.tflite`` flatbuffer: the signature's input and output order, the op table,
integer-only checks, LSTM cells unclipped."""

from __future__ import annotations

import contextlib
import struct

import numpy as np

from compressor.errors import ConversionError


INT_TYPES = {"int8", "int16", "int32", "int64", "uint8", "bool"}


def unclip_lstm_cells(content: bytes) -> tuple[bytes, int]:
    """Remove the cell-state clipping the converter adds to fused Keras LSTMs.

    When the converter fuses a Keras ``LSTM`` into ``UNIDIRECTIONAL_SEQUENCE_LSTM`` it sets
    ``cell_clip=10``, which the Keras layer does not have: any sequence whose cell state
    passes ±10 then follows another trajectory (on the LSTM sample model, 16 of 450 test
    sequences moved the softmax by up to 0.013 in fp32). ``cell_clip=0`` means "no clipping"
    to every LiteRT LSTM kernel, float and quantized alike. The float is overwritten in
    place, so every other byte of the flatbuffer is the converter's own; a model with no
    clipped cell is handed back as it is, not copied (400 MB on a BERT-base encoder).
    Returns the new content and the number of ops changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    lstm_ops = {schema.BuiltinOperator.LSTM, schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM,
                schema.BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM}
    model = schema.Model.GetRootAs(content, 0)
    opcodes = builtin_codes(model)
    clipped = []  # the byte position of each nonzero cell_clip
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for k in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(k)
            options = op.BuiltinOptions() if opcodes[op.OpcodeIndex()] in lstm_ops else None
            slot = options.Offset(6) if options is not None else 0  # cell_clip, in all three option tables
            if slot and struct.unpack_from("<f", content, options.Pos + slot)[0] != 0.0:
                clipped.append(options.Pos + slot)
    if not clipped:
        return content, 0
    buffer = bytearray(content)
    for position in clipped:
        struct.pack_into("<f", buffer, position, 0.0)
    return bytes(buffer), len(clipped)


def builtin_codes(model) -> list[int]:
    """Each operator code's builtin op of a flatbuffer ``Model`` read in place (the schema keeps
    codes above 127 in a second field, the first then holding 127)."""
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    return [max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) for code in codes]


@contextlib.contextmanager
def lean_reencoding():
    """The TFLite converter with its Python re-encodings of the model written into a buffer of
    the model's size, copied out once.

    After its native conversion, ``TFLiteConverter.convert`` decodes the flatbuffer into
    objects and encodes it again twice (read-only buffers de-duplicated, then the conversion
    metadata added) with ``flatbuffer_utils.convert_object_to_bytearray``, whose builder starts
    at 1 KB and doubles as it fills, and whose output is copied twice (``Output()``, then
    ``bytes``): 1.35 GB above the converter's result on a 418 MB BERT-base encoder, the export's
    peak. :func:`_encoded` writes the same bytes (a flatbuffer's bytes do not depend on its
    builder's starting size), from a builder sized to the model's constant data. Not
    thread-safe: it replaces the library function for the ``with`` block."""
    from tensorflow.lite.tools import flatbuffer_utils

    original = flatbuffer_utils.convert_object_to_bytearray
    flatbuffer_utils.convert_object_to_bytearray = _encoded
    try:
        yield
    finally:
        flatbuffer_utils.convert_object_to_bytearray = original


def _encoded(model_object, extra_buffer: bytes = b"") -> bytes:
    """``flatbuffer_utils.convert_object_to_bytearray``'s bytes, with one copy of the model at a time
    beside the objects: the builder starts at the constant data's size plus an eighth (names,
    shapes, the graph), so it rarely grows, and its used part is copied out once."""
    import flatbuffers
    from tensorflow.lite.tools import flatbuffer_utils

    data = sum(len(buffer.data) for buffer in model_object.buffers or () if buffer.data is not None)  # [ubyte]
    builder = flatbuffers.Builder(min(data + data // 8 + 2**20, flatbuffers.Builder.MAX_BUFFER_SIZE))
    builder.Finish(model_object.Pack(builder), file_identifier=flatbuffer_utils._TFLITE_FILE_IDENTIFIER)
    with memoryview(builder.Bytes) as written:
        content = bytes(written[builder.Head():])
    del builder
    return content + extra_buffer


def inspect_model(content: bytes) -> tuple[list[dict], list[str]]:
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
    return inspect_model(content)[0]


def check_integer_only(content: bytes, profile) -> None:
    """Every op must compute in integers (Edge TPU, microcontrollers)."""
    float_ops = sorted({op["op"] for op in op_table(content) if set(op["dtypes"]) - INT_TYPES})
    if float_ops:
        raise ConversionError(f"{profile.name}: ops left in float, not int8: {', '.join(float_ops)}")
