"""Rewrites of an exported float graph into the ops ONNX Runtime has fast kernels (and quantizers)
for: what its transformer optimizer does for PyTorch exports, for the patterns tf2onnx writes.

- **Layer norms.** tf2onnx writes a Keras ``LayerNormalization`` as its moments, twelve ops over
  a (batch, sequence, channels) tensor (``GlobalAveragePool`` over the last axis for the mean and
  the variance, then ``Sqrt``, ``Reciprocal`` and four multiply-adds). ONNX Runtime fuses none of
  them (its LayerNormFusion expects ``ReduceMean``), and static int8 quantizes each one: on a
  4-layer encoder the nine norms were about a third of the int8 model's time. They become one
  ``LayerNormalization`` (opset 17).
- **Dense layers for dynamic int8.** tf2onnx writes a dense layer on a 2-D input as ``Gemm``,
  which ONNX Runtime's dynamic quantizer leaves in float (it quantizes ``MatMul`` only): on the
  encoder, the 16 attention projections. They become ``MatMul`` (plus ``Add`` for a bias), which
  it quantizes and then fuses back into one int8 kernel with the bias.
- **Masked softmax kept out of denormals.** An attention mask adds a large negative number
  (-1e4, -1e9) to the scores of padding tokens. ONNX Runtime's CPU softmax then computes
  ``exp`` of values 87 or more below the row's maximum, which come out as denormal floats; on an
  Intel Xeon one ``Softmax`` over ``[1, 4, 128, 128]`` took 0.31 ms with 97 of 128 columns
  masked against 0.03 ms unmasked (0.56 ms at exactly 87 below; 80 below: 0.03 ms), and
  ``session.set_denormal_as_zero`` did not change it. Each softmax fed by a mask (``Add``,
  ``Sub``, ``Where``) reads ``Max(x, ReduceMax(x) - 80)`` instead: exp(-80) = 1.8e-35 where the
  mask gave 0, a difference no float32 sum of probabilities can hold (0.06 ms masked).

- **Exact GELU in the form runtimes fuse.** Keras' exact GELU is ``0.5 x erfc(-x / sqrt 2)``;
  through this project's ``Erfc`` handler tf2onnx writes it as ``1 - Erf(Neg(x) * 0.7071)``
  (seven ops), which ONNX Runtime's ``GeluFusion`` does not match. It becomes
  ``1 + Erf(x / sqrt 2)`` (erf is odd), which it fuses into one ``Gelu``.

Each rewrite changes nothing it does not recognise exactly; the numbers are the same to float
rounding (the parity check of every export still compares against the source model).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from compressor import interrupts
from compressor.models import onnx_graph

LAYER_NORM_OPSET = 17


def fuse_layer_norms(model) -> int:
    """Replace each moments-form layer norm over the last axis of a rank-3 tensor in ``model``
    (an ``onnx.ModelProto``, edited in place) by ``LayerNormalization``; return how many."""
    from onnx import helper

    graph = model.graph
    facts = _facts(model)
    if facts is None:
        return 0
    remove, insert = set(), {}
    for node in graph.node:
        if node.op_type != "GlobalAveragePool" or id(node) in remove:
            continue
        found = _match(node, *facts)
        if found is None:
            continue
        x, gamma, beta, epsilon, nodes, y = found
        remove.update(id(n) for n in nodes[:-1])
        insert[id(nodes[-1])] = helper.make_node("LayerNormalization", [x, gamma, beta], [y], axis=-1,
                                                 epsilon=epsilon, name=f"{node.name}/LayerNormalization")
    if insert:
        read_before = {name for node in graph.node for name in node.input}
        kept = [insert.get(id(node), node) for node in graph.node if id(node) in insert or id(node) not in remove]
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unread(graph, read_before)
    return len(insert)


def _facts(model):
    """What matching reads: (tensor ranks, each tensor's readers, constants, graph outputs), or
    None when the model cannot hold the pattern (no pool, an opset before LayerNormalization) or
    its shapes cannot be inferred (over 2 GB in one message, say: the graph stays as it came)."""
    graph = model.graph
    if _opset(model) < LAYER_NORM_OPSET or not any(n.op_type == "GlobalAveragePool" for n in graph.node):
        return None
    try:
        ranks = {name: len(dims) for name, dims in onnx_graph.shapes_of(onnx_graph.inferred(model)).items()}
    except Exception as exc:  # noqa: BLE001
        if interrupts.interrupted(exc):
            raise
        return None
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):  # a node reading one tensor twice (x * x) counts once
            readers.setdefault(name, []).append(node)
    return ranks, readers, onnx_graph.Constants(graph), {o.name for o in graph.output}


def _match(mean, ranks, readers, constants, outputs):
    """``mean`` = GlobalAveragePool(x) as the start of a layer norm: (x, gamma, beta, epsilon,
    the nodes, the output name), or None. The last node is where the fused one goes (after
    every input it reads)."""
    x, mean_out = mean.input[0], mean.output[0]
    users = readers.get(mean_out, [])
    if ranks.get(x) != 3 or len(users) != 2:
        return None  # over a rank-3 tensor the pool averages the last axis only
    diff = next((n for n in users if n.op_type == "Sub" and list(n.input) == [x, mean_out]), None)
    scaled_mean = next((n for n in users if n.op_type == "Mul"), None)
    normalizer = diff and scaled_mean and _normalizer(diff, readers, constants)
    if not normalizer:
        return None
    *steps, scale, epsilon, gamma = normalizer
    if _other(scaled_mean, mean_out) != scale.output[0]:
        return None
    shifted = _scale_and_shift(x, scale, scaled_mean, readers, constants)
    if shifted is None or constants[shifted[0]].shape != constants[gamma].shape:
        return None
    beta, tail = shifted
    nodes = [mean, diff, *steps, scale, scaled_mean, *tail]
    if any(out in outputs for n in nodes[:-1] for out in n.output):
        return None
    return x, gamma, beta, float(constants[epsilon].ravel()[0]), nodes, nodes[-1].output[0]


def _normalizer(diff, readers, constants):
    """From x - mean to gamma / sqrt(var + eps): (square, variance, plus_eps, root, inverse,
    scale, epsilon, gamma), or None."""
    square = _only_reader(diff.output[0], readers, "Mul")
    if square is None or list(square.input) != [diff.output[0]] * 2:
        return None
    variance = _only_reader(square.output[0], readers, "GlobalAveragePool")
    plus_eps = variance and _only_reader(variance.output[0], readers, "Add")
    epsilon = plus_eps and _other(plus_eps, variance.output[0])
    if epsilon is None or epsilon not in constants or constants[epsilon].size != 1:
        return None
    root = _only_reader(plus_eps.output[0], readers, "Sqrt")
    inverse = root and _only_reader(root.output[0], readers, "Reciprocal")
    scale = inverse and _only_reader(inverse.output[0], readers, "Mul")
    gamma = scale and _other(scale, inverse.output[0])
    if gamma is None or gamma not in constants or constants[gamma].ndim != 1:
        return None
    return square, variance, plus_eps, root, inverse, scale, epsilon, gamma


def _scale_and_shift(x, scale, scaled_mean, readers, constants):
    """x * scale + (beta - mean * scale): (beta, [shift, scaled_x, total]), or None."""
    scale_users = readers.get(scale.output[0], [])
    scaled_x = next((n for n in scale_users if n is not scaled_mean and n.op_type == "Mul"
                     and _other(n, scale.output[0]) == x), None)
    if len(scale_users) != 2 or scaled_x is None:
        return None
    shift = _only_reader(scaled_mean.output[0], readers, "Sub")
    if shift is None or shift.input[1] != scaled_mean.output[0] or shift.input[0] not in constants:
        return None
    total = _only_reader(scaled_x.output[0], readers, "Add")
    if total is None or _other(total, scaled_x.output[0]) != shift.output[0] or \
            len(readers.get(shift.output[0], [])) != 1:
        return None
    return shift.input[0], [shift, scaled_x, total]


def _opset(model) -> int:
    """The default domain's opset of ``model`` (0 where it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _only_reader(name: str, readers, op_type: str):
    users = readers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _other(node, name: str):
    """The other input of a two-input ``node`` that reads ``name``, or None."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


MASKING_OPS = ("Add", "Sub", "Where")  # what writes an attention mask into the scores
SOFTMAX_FLOOR = 80.0  # below the row's maximum; exp(-87.3) is float32's smallest normal number


def guard_masked_softmax(model) -> int:
    """Before each float32 ``Softmax`` whose input a masking op writes (``MASKING_OPS``), hold
    the input at most ``SOFTMAX_FLOOR`` below its maximum along the softmax axis (``model``, an
    ``onnx.ModelProto``, edited in place); return how many. A softmax reading dequantized int8
    is left alone (ONNX Runtime runs it as one quantized kernel), as is any whose input type or,
    before opset 13 (which flattens the axes from ``axis`` on), rank is not known."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    found = masked_softmaxes(model)
    if not found:
        return 0
    facts = _types_and_ranks(model)
    if facts is None:
        return 0
    types, ranks = facts
    opset = _opset(model)
    taken = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {o for n in graph.node for o in n.output}
    guards = {}
    floor = _fresh("softmax_floor", taken)
    for node in found:
        x = node.input[0]
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"),
                    -1 if opset >= 13 else 1)
        rank = ranks.get(x)
        if rank is not None and axis < 0:
            axis += rank
        if types.get(x) != TensorProto.FLOAT or (opset < 13 and (rank is None or axis != rank - 1)):
            continue
        guards[node.output[0]] = _guard(graph, x, axis, opset >= 18, floor, taken)
        node.input[0] = guards[node.output[0]][-1].output[0]
    if guards:
        graph.initializer.append(numpy_helper.from_array(np.array(SOFTMAX_FLOOR, np.float32), floor))
        nodes = [n for node in graph.node for n in (*guards.get(node.output[0], ()), node)]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(guards)


def _types_and_ranks(model):
    """Each tensor's element type and rank by shape inference, or None where it fails."""
    try:
        inferred = onnx_graph.inferred(model)
    except Exception as exc:  # noqa: BLE001
        if interrupts.interrupted(exc):
            raise
        return None
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    return types, {name: len(dims) for name, dims in onnx_graph.shapes_of(inferred).items()}


def _guard(graph, x: str, axis: int, axes_as_input: bool, floor: str, taken: set[str]) -> list:
    """The nodes of ``Max(x, ReduceMax(x, axis) - floor)``, the last one writing the guarded
    tensor (ReduceMax reads its axes as an input from opset 18 on)."""
    from onnx import helper, numpy_helper

    top, low, kept = (_fresh(f"{x}/softmax_{part}", taken) for part in ("max", "floor", "guarded"))
    if axes_as_input:
        axes = _fresh(f"{x}/softmax_axis", taken)
        graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), axes))
        reduce = helper.make_node("ReduceMax", [x, axes], [top], keepdims=1, name=top)
    else:
        reduce = helper.make_node("ReduceMax", [x], [top], axes=[axis], keepdims=1, name=top)
    return [reduce, helper.make_node("Sub", [top, floor], [low], name=low),
            helper.make_node("Max", [x, low], [kept], name=kept)]


def masked_softmaxes(model) -> list:
    """The ``Softmax`` nodes of ``model`` whose input a masking op (``MASKING_OPS``) computes from
    a computed mask: scores plus a mask term, or ``Where`` on a computed condition; not a
    layer's bias added to its output."""
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                         for o in n.output}
    producers = {out: node for node in graph.node for out in node.output}

    def masked(node) -> bool:  # Where(condition, a, b): the condition is the mask
        computed = node.input[:1] if node.op_type == "Where" else node.input
        return node.op_type in MASKING_OPS and not any(name in constants for name in computed)

    return [n for n in graph.node if n.op_type == "Softmax" and n.domain in ("", "ai.onnx")
            and n.input[0] in producers and masked(producers[n.input[0]])]


def _fresh(name: str, taken: set[str]) -> str:
    """``name``, or with a number added if the graph has it; taken from then on."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def gemm_as_matmul(model) -> int:
    """Rewrite, in place, each ``Gemm`` whose B is a constant (alpha = beta = 1, A not
    transposed) as ``MatMul`` + ``Add``; returns how many. The same arithmetic, in the op that
    ONNX Runtime's dynamic and weight-only quantizers take."""
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


def _drop_unread(graph, read_before: set[str]) -> None:
    """Remove the initializers that nodes read before an edit and no node or output reads now."""
    still = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for tensor in [t for t in graph.initializer if t.name in read_before and t.name not in still]:
        graph.initializer.remove(tensor)


def erf_gelus(model) -> int:
    """Rewrite, in place, each ``1 - Erf(Neg(x) * c)`` with c = 1/sqrt(2) (float32) as
    ``1 + Erf(x / sqrt 2)``, the exact GELU's form that ONNX Runtime's ``GeluFusion`` matches
    (``Div`` by sqrt 2, ``Erf``, ``Add`` 1, then the two ``Mul`` that follow it already);
    returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    found = _erfc_gelus(graph)
    if not found:
        return 0
    root2 = _fresh("gelu_sqrt2", {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output})
    replaced = {}
    for neg, scale, erf, sub in found:
        replaced[id(neg)] = None
        replaced[id(scale)] = helper.make_node("Div", [neg.input[0], root2], [scale.output[0]],
                                               name=f"{scale.name}/Div")
        replaced[id(sub)] = helper.make_node("Add", [erf.output[0], sub.input[0]], [sub.output[0]],
                                             name=f"{sub.name}/Add")
    read_before = {name for node in graph.node for name in node.input}
    kept = [replaced.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(node for node in kept if node is not None)
    graph.initializer.append(numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), root2))
    _drop_unread(graph, read_before)
    return len(found)


def _erfc_gelus(graph) -> list:
    """Each (Neg, Mul, Erf, Sub) of ``1 - Erf(Neg(x) * 0.7071...)`` whose inner results nothing
    else reads."""
    constants = onnx_graph.Constants(graph)
    producer = {out: node for node in graph.node for out in node.output}
    readers = Counter(name for node in graph.node for name in node.input) + Counter(o.name for o in graph.output)

    def scalar(name, value) -> bool:
        return (name in constants and constants[name].size == 1 and constants[name].dtype == np.float32
                and abs(float(constants[name].ravel()[0]) - value) < 1e-6)

    found = []
    for sub in graph.node:
        if sub.op_type != "Sub" or len(sub.input) != 2 or not scalar(sub.input[0], 1.0):
            continue
        erf = producer.get(sub.input[1])
        if erf is None or erf.op_type != "Erf" or readers[erf.output[0]] != 1:
            continue
        scale = producer.get(erf.input[0])
        if scale is None or scale.op_type != "Mul" or readers[scale.output[0]] != 1:
            continue
        neg = next((producer[i] for i in scale.input if i in producer and producer[i].op_type == "Neg"), None)
        if neg is not None and readers[neg.output[0]] == 1 and scalar(_other(scale, neg.output[0]), 0.5 ** 0.5):
            found.append((neg, scale, erf, sub))
    return found
