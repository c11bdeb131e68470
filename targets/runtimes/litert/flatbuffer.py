"""Reading and patching a ``.tflite`` flatbuffer: the signature's input and output order, the op table,
integer-only checks, LSTM cells unclipped."""

from __future__ import annotations

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
