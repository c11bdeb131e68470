"""Keras to ONNX with tf2onnx: the handlers for ops it lacks, the conversion, and the float ONNX model
of any source."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from compressor.memory import settle
from compressor.models import onnx_graph
from targets.runtime import converted
from targets.runtimes.onnx_runtime import lean
from targets.runtimes.onnx_runtime.fusion import erf_gelus, fuse_layer_norms, guard_masked_softmax, masked_softmaxes


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
    """Write ``model`` as ONNX (opset ``OPSET``) with a dynamic batch axis, its layer norms and
    GELUs fused and its masked softmaxes guarded (converted once per process while its weights
    stay the same)."""
    shutil.copyfile(_keras_onnx(model), destination)


def _keras_onnx(model) -> Path:
    """The file of ``model``'s conversion, made once per process while its weights stay the same,
    for every ONNX target and rung to copy: a temporary file, removed with the model or as the
    process exits, so no copy of the weights stays in memory for them (the 110 M encoder: 498 MB)."""
    return converted(model, "onnx", lambda: _conversion_file(model))


def _conversion_file(model) -> Path:
    handle, name = tempfile.mkstemp(prefix="compressor-onnx-", suffix=".onnx")
    os.close(handle)
    path = Path(name)
    try:
        _keras_to_onnx(model, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    weakref.finalize(model, path.unlink, missing_ok=True)  # also run at exit
    return path


FUNCTION_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


def _keras_to_onnx(model, destination: Path) -> Path:
    """Convert ``model`` with tf2onnx into the file ``destination`` (returned)."""
    import onnx
    import tf2onnx

    _register_handlers()

    tf = keras_env.tf()
    signature = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
                 for name, t in zip(model.input_names, model.inputs)]
    try:
        with keras_env.quiet_native(), lean.new_objects_only(), lean.freezing_to_a_graph_def(), \
                lean.weights_held_once():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    except Exception as exc:
        raise ConversionError(f"ONNX conversion failed: {one_line(exc)}") from None
    settle()  # tf2onnx's graph, in reference cycles, before the model is serialised beside it
    calls = sorted({node.name.rsplit("/", 2)[-2] if node.name.count("/") >= 1 else node.name
                    for node in proto.graph.node if node.op_type in FUNCTION_CALLS})
    if calls:  # tf-keras runs a grouped Conv2D as an XLA-compiled function, which tf2onnx passes through
        raise ConversionError(
            f"ONNX conversion: layer(s) {', '.join(repr(c) for c in calls[:3])} run as compiled TensorFlow functions "
            "(a grouped Conv2D does) that tf2onnx cannot convert; try the tflite or openvino targets, which convert "
            "from TensorFlow, or export the model to ONNX with the framework that trained it")
    fuse_layer_norms(proto)
    erf_gelus(proto)
    guard_masked_softmax(proto)  # here, not on the float model's copy: the file kept is the model written
    try:  # the graph, its large weights as typed inputs: the checker reading the file held two copies of them
        onnx.checker.check_model(onnx_graph.skeleton(proto))
    except Exception as exc:
        raise ConversionError(f"ONNX conversion produced an invalid model: {one_line(exc)}") from None
    onnx_graph.write(proto, destination)
    del proto
    settle()
    return destination


def write_float_model(source, destination: Path) -> int:
    """Write the float ONNX model: the source's own ONNX graph re-saved inline, or its Keras model
    converted; tf2onnx's layer norms as one op each (``fusion.fuse_layer_norms``), masked
    softmaxes guarded (``fusion.guard_masked_softmax``). Returns its opset."""
    graph = source.representation("onnx")
    if graph is None:  # the conversion as it is, fused and guarded already
        shutil.copyfile(_keras_onnx(source.representation("keras")), destination)
        return OPSET
    if _may_rewrite(graph):  # the source's graph stays as it is
        graph = _copy(graph)
        fuse_layer_norms(graph)
        guard_masked_softmax(graph)
    onnx_graph.write(graph, destination)
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
