"""Edits of ONNX QDQ graphs (QuantizeLinear/DequantizeLinear around each quantized op).

The accuracy budget's sensitivity pass asks what quantizing some ops *alone* does to the
output. Quantizing the model again for each candidate costs one ONNX Runtime quantization
each (198 candidates x 6.5 s on a 672-node text detector); taking the full int8 graph and
giving every other op its float inputs back costs a graph edit.
"""

from __future__ import annotations

QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


def name_nodes(model) -> int:
    """Give every unnamed node of ``model`` a unique name (``<op type>_<index>``), in place: ONNX
    Runtime keeps ops in float by name (``nodes_to_exclude``), and exporters do not always name
    them. Returns how many were named."""
    taken = {node.name for node in model.graph.node if node.name}
    named = 0
    for index, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named


def name_file_nodes(path) -> None:
    """Name the unnamed nodes of the ONNX file at ``path`` in place, as :func:`name_nodes` does: the
    accuracy budget's search names them so in its pre-processed graph, and an artifact quantized
    again from the same graph finds the nodes kept in float by those names."""
    import onnx

    model = onnx.load(str(path))
    if name_nodes(model):
        onnx.save(model, str(path))


def alone(quantized, prepared, keep: set[str]):
    """The float model ``prepared`` with only the ops named in ``keep`` reading quantized inputs,
    each input quantized and dequantized as in ``quantized`` (the full int8 QDQ model made from
    ``prepared``): what quantizing those ops alone does, without quantizing again. Ops the
    quantizer folded away (a Relu into the quantized range before it) stay float."""
    model = type(prepared)()
    model.CopyFrom(prepared)
    graph = model.graph
    q = _Quantized(quantized, graph)
    outputs = {o.name for o in graph.output}
    nodes, needed, renamed, pending = [], set(), {}, {}
    for node in graph.node:
        for position, name in enumerate(node.input):  # consumers read a kept op's quantized output
            node.input[position] = renamed.get(name, name)
        if node.name in keep and node.name in q.ops:
            for position, name in enumerate(q.ops[node.name].input[:len(node.input)]):
                chain = _chain(name, q.producer, q.weights, q.available)
                if chain:
                    node.input[position] = _insert(chain, f"{node.name}.{position}", nodes, needed)
            pending.update(_output_chains(q.ops[node.name], node, q.readers, q.available))
        nodes.append(node)
        for position, name in enumerate(node.output):  # the quantizer's output QDQ, where the tensor is made
            if name in pending:
                if name in outputs:  # a graph output keeps its name: the float value is renamed
                    node.output[position] = f"{name}.float"
                    _insert(pending.pop(name), f"{node.name}.out", nodes, needed, source=node.output[position],
                            final=name)
                else:
                    renamed[name] = _insert(pending.pop(name), f"{node.name}.out", nodes, needed, source=name)
    del graph.node[:]
    graph.node.extend(nodes)
    have = {t.name for t in graph.initializer}
    graph.initializer.extend(q.weights[name] for name in sorted(needed - have))
    return model


class _Quantized:
    """The full int8 QDQ model, indexed: its quantized ops by name, each tensor's producer and
    readers, its initializers, and which tensors the float ``graph`` already has."""

    def __init__(self, quantized, graph) -> None:
        self.ops = {node.name: node for node in quantized.graph.node if node.name and node.op_type not in QDQ}
        self.producer = {name: node for node in quantized.graph.node for name in node.output}
        self.weights = {t.name: t for t in quantized.graph.initializer}
        self.available = ({i.name for i in graph.input} | {t.name for t in graph.initializer}
                          | {name for node in graph.node for name in node.output})
        self.readers: dict[str, list] = {}
        for node in quantized.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)


def _chain(name: str, producer: dict, weights: dict, available: set) -> list | None:
    """The quantize/dequantize nodes behind ``name`` in the quantized graph: [Q, DQ] for an
    activation whose float tensor the float model has, [DQ] for a weight; None otherwise."""
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    if q is None:
        return [dq] if dq.input[0] in weights else None
    return [q, dq] if q.op_type == "QuantizeLinear" and q.input[0] in available else None


def _output_chains(quantized_op, float_op, readers: dict, available: set) -> dict:
    """The quantize/dequantize pairs the quantized graph puts on an op's outputs, by the float
    model's tensor they apply to: the op's own output, or the output of an op the quantizer
    folded into it (a Relu after a convolution: the pair comes after the Relu)."""
    chains = {}
    for position, name in enumerate(quantized_op.output):
        q = next((node for node in readers.get(name, []) if node.op_type == "QuantizeLinear"), None)
        dq = next((n for n in readers.get(q.output[0], []) if n.op_type == "DequantizeLinear"), None) if q else None
        if dq is not None:
            target = name if name in available else float_op.output[position] if position < len(
                float_op.output) else None
            if target is not None:
                chains[target] = [q, dq]
    return chains


def _insert(chain: list, tag: str, nodes: list, needed: set, *, source: str | None = None,
            final: str | None = None) -> str:
    """Copies of ``chain`` appended to ``nodes`` with outputs of their own (the last one named
    ``final`` when given), reading ``source`` when given; the dequantized name."""
    from onnx import NodeProto

    previous = source
    for original in chain:
        node = NodeProto()
        node.CopyFrom(original)
        node.name = f"{original.name}.{tag}"
        if previous is not None:
            node.input[0] = previous
        del node.output[:]
        node.output.append(final if final and original is chain[-1] else f"{original.output[0]}.{tag}")
        needed.update(name for name in node.input[1:] if name)
        if previous is None and original.op_type == "DequantizeLinear":  # a weight: its int8 tensor
            needed.add(original.input[0])
        nodes.append(node)
        previous = node.output[0]
    return previous
