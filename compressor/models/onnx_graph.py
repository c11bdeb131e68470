"""Reading an ONNX graph without copying its weights: shape inference on the graph's skeleton, and
its constants converted to arrays only when one is read.

ONNX's shape inference serialises the whole model and parses it back (four copies of the weights
at once: a BERT-base export of 500 MB peaked 2.5 GB above the model); it needs the weights' types
and shapes only, and the values of the small integer tensors that shape computations read. So it
runs on a skeleton in which each larger float initializer is a graph input of the same type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

SKELETON_MAX_ELEMENTS = 64  # float initializers above this are inputs in the skeleton
FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto's FLOAT, FLOAT16, DOUBLE, BFLOAT16


def skeleton(model, max_elements: int = SKELETON_MAX_ELEMENTS):
    """A copy of ``model`` (an ``onnx.ModelProto``) without its large float initializers' data:
    each becomes a graph input of the same type and shape. Nodes, subgraphs and small or integer
    constants are copied as they are."""
    import onnx
    from onnx import helper

    graph = model.graph
    light = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(light, field, getattr(model, field))
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    skel = light.graph
    skel.name = graph.name
    skel.node.extend(graph.node)
    skel.input.extend(graph.input)
    skel.output.extend(graph.output)
    skel.value_info.extend(graph.value_info)
    declared = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if _is_large_float(tensor, max_elements):
            if tensor.name not in declared:
                skel.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        else:
            skel.initializer.append(tensor)
    return light


def on_skeleton(model, transform):
    """``model`` (edited in place) with the graph ``transform`` makes of its skeleton: nodes,
    inputs, outputs, shapes, opsets; its own weights kept. For passes that read the graph but not
    the weights' values (shape inference, the opset converter), which otherwise copy every weight
    several times over. ``transform`` takes and returns an ``onnx.ModelProto``."""
    light = skeleton(model)
    moved = {value.name for value in light.graph.input} - {value.name for value in model.graph.input}
    small = [(t.name, t.SerializeToString()) for t in light.graph.initializer]
    done = transform(light)
    graph = model.graph
    for field in ("node", "input", "output", "value_info"):
        del getattr(graph, field)[:]
        getattr(graph, field).extend(v for v in getattr(done.graph, field) if field == "node" or v.name not in moved)
    if [(t.name, t.SerializeToString()) for t in done.graph.initializer] != small:  # the pass changed a constant
        large = [t for t in graph.initializer if t.name in moved]
        del graph.initializer[:]
        graph.initializer.extend([*done.graph.initializer, *large])
    del model.opset_import[:]
    model.opset_import.extend(done.opset_import)
    model.ir_version = done.ir_version
    return model


def write(model, path) -> None:
    """``model`` written to the file ``path`` one initializer at a time, with no copy of the whole
    encoding in memory: the bytes ``SerializeToString`` gives, but for the order of the fields (the
    graph last, its initializers last in it). Protobuf's own encoding of the 110 M-parameter
    encoder's model (498 MB) peaked 1.2 GB above the model. Raises ValueError, as protobuf does,
    for a model of 2 GB or more (one message cannot hold it)."""
    chunks = _encoded(model)
    if next(chunks) >= 1 << 31:
        raise ValueError("the model exceeds protobuf's 2 GB limit for one message; save its weights as external data")
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


def _encoded(model) -> Iterator:
    """The size of ``model``'s encoding, then its chunks in order: the fields but the graph, the graph's
    key and length (field 7), its fields but the initializers, then each initializer (field 5)."""
    import onnx

    graph = model.graph
    head, body = _fields_but(model, onnx.ModelProto(), "graph"), _fields_but(graph, onnx.GraphProto(), "initializer")
    sizes = [tensor.ByteSize() for tensor in graph.initializer]
    graph_size = len(body) + sum(1 + len(_varint(size)) + size for size in sizes)
    start = head + b"\x3a" + _varint(graph_size) + body
    yield len(start) + graph_size - len(body)
    yield start
    for tensor, size in zip(graph.initializer, sizes, strict=True):
        yield b"\x2a" + _varint(size)
        yield tensor.SerializeToString()


def _fields_but(message, empty, skipped: str) -> bytes:
    """``message`` encoded without its field ``skipped`` (the others copied into ``empty``)."""
    for field, value in message.ListFields():
        if field.name == skipped:
            continue
        if field.is_repeated:
            getattr(empty, field.name).extend(value)
        elif field.message_type is not None:
            getattr(empty, field.name).CopyFrom(value)
        else:
            setattr(empty, field.name, value)
    return empty.SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _is_large_float(tensor, max_elements: int) -> bool:
    return tensor.data_type in FLOAT_TYPES and int(np.prod(tensor.dims, dtype=np.int64)) > max_elements


def inferred(model, *, data_prop: bool = False, batch: int | None = None):
    """ONNX shape inference of ``model``'s skeleton: the inferred graph (its ``value_info``,
    inputs and outputs carry the shapes). ``data_prop`` also follows the values of shape
    computations (Shape, Gather, Concat: how tf2onnx reshapes around a dense layer); ``batch``
    sets each input's dynamic leading dimension. Raises what shape inference raises."""
    from onnx import shape_inference

    light = skeleton(model)
    if batch is not None:
        for value in light.graph.input:
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = batch
    return shape_inference.infer_shapes(light, data_prop=data_prop).graph


def shapes_of(graph) -> dict[str, list]:
    """Each typed tensor of an inferred graph: its dimensions (None where unknown)."""
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.value_info, *graph.output] if v.type.tensor_type.HasField("shape")}


class Constants(Mapping):
    """A graph's initializers and ``Constant`` node values by name, each converted to an array
    the first time it is read (and kept), so a pass that reads a few does not copy every weight."""

    def __init__(self, graph) -> None:
        self._tensors = {t.name: t for t in graph.initializer}
        self._tensors.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                              for a in n.attribute if a.name == "value"})
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            from onnx import numpy_helper

            self._arrays[name] = numpy_helper.to_array(self._tensors[name])
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)
