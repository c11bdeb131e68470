"""Keras to ONNX with tf2onnx: the handlers for ops it lacks, the conversion, and the float ONNX model
of any source."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from targets.runtime import converted
from targets.runtimes.onnx_runtime.fusion import fuse_layer_norms, guard_masked_softmax, masked_softmaxes


OPSET = 17


_HANDLERS = []


def _register_handlers() -> None:
    """Ops tf2onnx 1.17 passes through untranslated, leaving an invalid ONNX graph. ``Erfc``:
    TensorFlow's exact GELU is ``0.5 x erfc(-x / sqrt 2)`` (ViT, ConvNeXt); ONNX has ``Erf``
    only, and erfc(x) = 1 - erf(x)."""
    if _HANDLERS:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            shapes, dtypes = node.output_shapes, node.output_dtypes
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=[node.output[0]], shapes=shapes,
                          dtypes=dtypes)

    _HANDLERS.append(Erfc)


def convert_keras(model, destination: Path) -> None:
    """Write ``model`` as ONNX (opset ``OPSET``) with a dynamic batch axis (converted once per
    process while its weights stay the same)."""
    destination.write_bytes(_keras_onnx(model))


def _keras_onnx(model) -> bytes:
    return converted(model, "onnx", lambda: _keras_to_onnx(model))


FUNCTION_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


def _keras_to_onnx(model) -> bytes:
    import onnx
    import tf2onnx

    _register_handlers()

    tf = keras_env.tf()
    signature = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
                 for name, t in zip(model.input_names, model.inputs)]
    try:
        with keras_env.quiet_native(), _collections_of_new_objects_only(), _freezing_to_a_graph_def():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET,
                                                  optimizers=_collecting_optimizers())
    except Exception as exc:
        raise ConversionError(f"ONNX conversion failed: {one_line(exc)}") from None
    calls = sorted({node.name.rsplit("/", 2)[-2] if node.name.count("/") >= 1 else node.name
                    for node in proto.graph.node if node.op_type in FUNCTION_CALLS})
    if calls:  # tf-keras runs a grouped Conv2D as an XLA-compiled function, which tf2onnx passes through
        raise ConversionError(
            f"ONNX conversion: layer(s) {', '.join(repr(c) for c in calls[:3])} run as compiled TensorFlow functions "
            "(a grouped Conv2D does) that tf2onnx cannot convert; try the tflite or openvino targets, which convert "
            "from TensorFlow, or export the model to ONNX with the framework that trained it")
    fuse_layer_norms(proto)
    serialized = proto.SerializeToString()
    del proto  # checked as the bytes it is written as: one copy of the weights less
    try:
        onnx.checker.check_model(serialized)
    except Exception as exc:
        raise ConversionError(f"ONNX conversion produced an invalid model: {one_line(exc)}") from None
    return serialized


@contextlib.contextmanager
def _freezing_to_a_graph_def():
    """tf2onnx's freezing (``tf_loader.from_function``) as a graph def only. Its own way builds a
    TensorFlow function from the frozen graph, writes that function out as a graph def again and
    imports it into a third graph before TensorFlow's graph optimizer (grappler) runs, each copy
    holding the weights; its large-model freezing (``convert_variables_to_constants_large_model``:
    the variables replaced by constants, nothing built from them) gives the same graph def, the
    same ONNX model after grappler (ResNet50: the same nodes and weights; the name kept of
    weights that are equal can differ, as it does from run to run) in 490 MB less at the peak
    (3.23 -> 2.74 GB) and 40 % less time. The frozen graph's weights then leave it
    (``compress_graph_def``, as tf2onnx's large-model path does) and reach the converter by name
    (``const_node_values``), so the TensorFlow graph it imports to read shapes holds none: a
    further 160 MB (2.67 -> 2.52 GB)."""
    import gc

    from tf2onnx import convert, tf_loader, tf_utils

    tf = keras_env.tf()
    own = tf_loader.from_function, convert.process_tf_graph
    weights: dict = {}

    def frozen(func, input_names, output_names, large_model=False):
        graph_def = tf_loader.convert_variables_to_constants_large_model(func)
        graph_def = tf_loader.fix_freezing_errors_part2(tf_loader.fix_freezing_errors(graph_def))
        gc.collect()  # the freezing's garbage, before grappler copies the graph again
        with tf.Graph().as_default():
            graph_def = tf_loader.tf_optimize(input_names, output_names, graph_def)
        weights.update(tf_utils.compress_graph_def(graph_def))
        return graph_def

    def process(tf_graph, const_node_values=None, **options):
        return own[1](tf_graph, const_node_values=const_node_values or weights, **options)

    tf_loader.from_function, convert.process_tf_graph = frozen, process
    try:
        yield
    finally:
        tf_loader.from_function, convert.process_tf_graph = own


@contextlib.contextmanager
def _collections_of_new_objects_only():
    """The collections ``_collecting_optimizers`` asks for scan only what the conversion made:
    the objects alive before it (TensorFlow's, the model's: millions) are frozen meanwhile
    (``gc.freeze``). A full collection with TensorFlow loaded took 0.17 s, 24 of them per
    conversion: 4 s of a small model's 4.6 s conversion."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _collecting_optimizers() -> dict:
    """tf2onnx's own graph optimizers, each started after a garbage collection. Before each one
    tf2onnx deep-copies the whole graph (to roll back one that fails); the copies it drops sit in
    reference cycles until Python's cyclic collector runs, which counts objects, not bytes, so
    a model's weights pile up copy after copy: ResNet50 (98 MB of weights) peaked at 7.4 GB in
    conversion, 2.6 GB with a collection before each optimizer (same optimizers, same graph)."""
    import gc

    from tf2onnx import optimizer

    def collected(factory):
        def make():
            gc.collect()
            return factory()
        return make

    return {name: collected(factory) for name, factory in optimizer._get_optimizers().items()}


def write_float_model(source, destination: Path) -> int:
    """Write the float ONNX model: the source's own ONNX graph re-saved inline, or its Keras model
    converted; tf2onnx's layer norms as one op each (``fusion.fuse_layer_norms``), masked
    softmaxes guarded (``fusion.guard_masked_softmax``). Returns its opset."""
    import onnx

    graph = source.representation("onnx")
    if graph is None:
        serialized = _keras_onnx(source.representation("keras"))
        graph = onnx.load_from_string(serialized) if b"Softmax" in serialized else None
        if graph is not None and guard_masked_softmax(graph):
            onnx.save_model(graph, str(destination))
        else:  # no masked softmax: the conversion as it is
            destination.write_bytes(serialized)
        return OPSET
    if _may_rewrite(graph):  # the source's graph stays as it is
        graph = _copy(graph)
        fuse_layer_norms(graph)
        guard_masked_softmax(graph)
    onnx.save_model(graph, str(destination))
    return opset_in(graph)


def _may_rewrite(model) -> bool:
    """Whether ``model`` may hold tf2onnx's layer norms or a masked softmax (``fusion``)."""
    return any(n.op_type == "GlobalAveragePool" for n in model.graph.node) or bool(masked_softmaxes(model))


def _copy(model):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def opset_of(path: Path) -> int:
    import onnx

    return opset_in(onnx.load(str(path), load_external_data=False))


def opset_in(model) -> int:
    """The default domain's opset of an ``onnx.ModelProto``."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
