"""tf2onnx's Keras-to-ONNX conversion in memory that grows with the model once, not once per
stage: its freezing as a graph def only, the weights kept from TensorFlow's graph optimizer
(grappler), and held once by tf2onnx's own graph through its optimizers and in the model it
makes.

Each is a patch around tf2onnx 1.17's own functions, applied for one conversion (context
managers); the converted model is the same (the zoo's 21 architectures: the same ops, weights
and outputs, but for the Reshape and BatchNormalization counts tf2onnx itself varies from run to
run)."""

from __future__ import annotations

import contextlib
import copy
import gc
from types import SimpleNamespace

from compressor import keras_env
from compressor.memory import settle

HIDDEN_BYTES = 1 << 16  # a weight this large is kept from grappler and held once by tf2onnx's graph
WEIGHT_READERS = {"Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMulV3",
                  "Conv2DBackpropInput", "Conv3DBackpropInputV2", "Einsum", "GatherV2", "ResourceGather"}


@contextlib.contextmanager
def freezing_to_a_graph_def():
    """tf2onnx's freezing (``tf_loader.from_function``) as a graph def only. Its own way builds a
    TensorFlow function from the frozen graph, writes that function out as a graph def again and
    imports it into a third graph before grappler runs, each copy holding the weights; its
    large-model freezing (``convert_variables_to_constants_large_model``) gives the same graph
    def in 490 MB less at the peak on ResNet50 (3.23 -> 2.74 GB) and 40 % less time. Grappler
    then runs with the weights kept out (:func:`hide_weights`), and the weights reach the
    converter by name (``const_node_values``, as tf2onnx's large-model path does), so the
    TensorFlow graph it imports to read shapes holds none either; they are dropped once its
    graph holds them (the 110 M encoder: 418 MB less through its optimizers)."""
    from tf2onnx import convert, tf_loader, tf_utils

    tf = keras_env.tf()
    own = tf_loader.from_function, convert.process_tf_graph
    weights: dict = {}

    def frozen(func, input_names, output_names, large_model=False):
        graph_def = tf_loader.convert_variables_to_constants_large_model(func)
        graph_def = tf_loader.fix_freezing_errors_part2(tf_loader.fix_freezing_errors(graph_def))
        hidden = hide_weights(graph_def, weights)
        gc.collect()  # the freezing's garbage, before grappler copies the graph
        with tf.Graph().as_default():
            graph_def = tf_loader.tf_optimize(input_names, output_names, graph_def)
        _put_back(graph_def, hidden)
        weights.update(tf_utils.compress_graph_def(graph_def))
        return graph_def

    def process(tf_graph, const_node_values=None, **options):
        try:
            return own[1](tf_graph, const_node_values=const_node_values or weights, **options)
        finally:  # tf2onnx's graph holds them as ONNX tensors now: the bytes they were read from go
            weights.clear()

    tf_loader.from_function, convert.process_tf_graph = frozen, process
    try:
        yield
    finally:
        tf_loader.from_function, convert.process_tf_graph = own


def hide_weights(graph_def, weights: dict) -> dict:
    """The frozen graph's weights kept from grappler: each constant of more than 64 KB that only
    convolutions, matrix products or gathers read (through Identity nodes) becomes a placeholder
    of its type and shape; its value goes in ``weights`` (by node name, as tf2onnx's
    ``const_node_values``) and its node, emptied, is returned by name to be put back after.

    Grappler serialises the graph in and out and copies it per pass, each copy with the
    weights: ResNet50 (98 MB of weights) rose from 1.52 to 2.52 GB in it, and now does not
    rise (0.07 s instead of 1.6 s). Grappler does nothing with such a constant: its folding
    needs every input of a node constant, and these ops read the model's activations (or a
    gather's indices fed to it). The one difference seen: a bias of exactly zero (an untrained
    layer's) added after a hidden weight's product stays an Add, where grappler dropped it."""
    from tensorflow.core.framework import node_def_pb2

    hidden = {}
    for node in _weights_of(graph_def):
        tensor = node.attr["value"].tensor
        weights[node.name] = tensor.tensor_content
        tensor.tensor_content = b""
        hidden[node.name] = node_def_pb2.NodeDef()
        hidden[node.name].CopyFrom(node)
        dtype, shape = tensor.dtype, tensor.tensor_shape
        node.op = "Placeholder"
        node.attr.clear()
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(shape)
    return hidden


def _weights_of(graph_def) -> list:
    """The constants of more than ``HIDDEN_BYTES`` read only as an op's weights."""
    readers: dict = {}
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):  # an order, not a read
                readers.setdefault(name.split(":")[0], []).append(node)

    def read_as_weight(name, depth=0) -> bool:
        users = readers.get(name, [])
        return bool(users) and depth < 8 and all(
            user.op in WEIGHT_READERS or (user.op == "Identity" and read_as_weight(user.name, depth + 1))
            for user in users)

    return [node for node in graph_def.node if node.op == "Const"
            and len(node.attr["value"].tensor.tensor_content) > HIDDEN_BYTES and read_as_weight(node.name)]


def _put_back(graph_def, hidden: dict) -> None:
    for node in graph_def.node:
        if node.name in hidden and node.op == "Placeholder":
            node.CopyFrom(hidden[node.name])


@contextlib.contextmanager
def new_objects_only():
    """The garbage collections of a conversion scan only what it made: the objects alive before
    it (TensorFlow's, the model's: millions) are frozen meanwhile (``gc.freeze``). A full
    collection with TensorFlow loaded took 0.17 s, 24 of them per conversion: 4 s of a small
    model's 4.6 s conversion."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def weights_held_once():
    """tf2onnx's graph holding each weight (a constant of more than 64 KB) once through its
    optimizers, where it gained a copy per optimizer (ResNet50, 98 MB of weights: the process
    at the optimizers' end 2,574 -> 1,818 MB).

    - Each node keeps its attributes twice, in a dictionary and in its ``NodeProto``, written
      again from the dictionary after every optimizer (``Node.update_proto``). A constant's
      proto is never written out (it becomes an initializer, from the dictionary), yet each
      copy stays in the proto's arena while the node lives: here it gets no copy of the value.
    - Before each optimizer tf2onnx deep-copies the whole graph, to roll back one that fails;
      here the copy shares the weights (``Node.set_tensor_value`` sets a new attribute, never
      edits one in place, so the graph to roll back to keeps its values), taken after a
      collection: the copies it drops sit in reference cycles that Python's collector, which
      counts objects, not bytes, would leave (7.4 GB with no collection)."""
    from tf2onnx import optimizer
    from tf2onnx.graph import Node

    own_copy, own_update = optimizer.copy, Node.update_proto
    optimizer.copy = SimpleNamespace(deepcopy=_sharing_weights)
    Node.update_proto = _without_weights(own_update)
    try:
        with _model_built_around_its_graph():
            yield
    finally:
        optimizer.copy, Node.update_proto = own_copy, own_update


@contextlib.contextmanager
def _model_built_around_its_graph():
    """tf2onnx's ModelProto made with the weights written into it once: its ``make_model`` builds
    a GraphProto (``helper.make_graph``, a copy of every weight) and then a ModelProto around a
    copy of that (``helper.make_model``), the graph's own weights alive beside both. Here the
    GraphProto is made inside the ModelProto that ``make_model`` then completes (the 110 M
    encoder: 418 MB less at that stage)."""
    from onnx import GraphProto, ModelProto, helper

    own_graph, own_model = helper.make_graph, helper.make_model
    models: dict = {}

    def make_graph(nodes, name, inputs, outputs, initializer=None, **options):
        model = ModelProto()
        model.graph.CopyFrom(own_graph(nodes, name, inputs, outputs, **options))
        model.graph.initializer.extend(initializer or [])
        graph = model.graph
        models[id(graph)] = model, graph
        return graph

    def make_model(graph, **options):
        model, _ = models.pop(id(graph), (None, None))
        if model is None:
            return own_model(graph, **options)
        fields = own_model(GraphProto(), **options)  # the version, opsets and producer as it sets them
        fields.ClearField("graph")
        model.MergeFrom(fields)
        return model

    helper.make_graph, helper.make_model = make_graph, make_model
    try:
        yield
    finally:
        helper.make_graph, helper.make_model = own_graph, own_model


def _without_weights(own_update):
    """``Node.update_proto`` leaving a large constant's value out of its ``NodeProto``."""
    def update_proto(node, external_tensor_storage=None):
        value = _large(node) if external_tensor_storage is None else None
        if value is None:
            return own_update(node, external_tensor_storage)
        del node.attr["value"]
        try:
            return own_update(node)
        finally:
            node.attr["value"] = value

    return update_proto


def _sharing_weights(graph):
    """tf2onnx's roll-back copy of a graph, after a collection, sharing its large constants."""
    from tf2onnx.graph import Graph

    if not isinstance(graph, Graph):  # the node counts it logs
        return copy.deepcopy(graph)
    settle()
    return copy.deepcopy(graph, {id(value): value for value in map(_large, graph.get_nodes()) if value is not None})


def _large(node):
    """A tf2onnx constant's value attribute when it holds more than ``HIDDEN_BYTES``."""
    value = node.attr.get("value") if node.type == "Const" else None
    return value if value is not None and len(value.t.raw_data) > HIDDEN_BYTES else None

