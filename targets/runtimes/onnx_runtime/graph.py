"""Graph surgery before quantization: ONNX Runtime's pre-processing, run in a scratch folder, and the
reshapes that do nothing removed."""

from __future__ import annotations

from pathlib import Path
import contextlib
import shutil
import tempfile

from compressor import interrupts, memory
from compressor.models import onnx_graph
from targets.runtimes.onnx_runtime.convert import opset_in


def pre_process(source: Path, workdir: Path, *, optimize: bool = True,
                 name: str = "prepared.onnx") -> tuple[Path, bool]:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization),
    which its docs ask for before static and dynamic quantization alike. Returns the
    prepared model and whether symbolic shape inference had to be skipped."""
    prepared = (workdir / name).resolve()
    source = source.resolve()  # before the chdir below: the paths may be relative to the caller's cwd
    unreshaped = (workdir / f"unreshaped-{name}").resolve()
    if _drop_identity_reshapes(source, unreshaped):
        source = unreshaped
    # in a folder of its own: on incomplete shape inference ORT saves sym_shape_infer_temp.onnx (and,
    # for a large model, a <uuid>.data beside it) in the cwd and leaves them there
    scratch = Path(tempfile.mkdtemp(prefix=".pre-process.", dir=workdir))
    try:
        with contextlib.chdir(scratch):
            shaped = scratch / "shaped.onnx"
            try:
                _symbolic_shapes(source, shaped)
                _optimized_and_shaped(shaped, prepared, optimize)
                return prepared, False
            except Exception as exc:  # "Incomplete symbolic shape inference" on some models: ORT's advice
                if interrupts.interrupted(exc):  # is to skip it
                    raise
            _optimized_and_shaped(source, prepared, optimize)  # out of the handler: its traceback held the model
            return prepared, True
    finally:
        unreshaped.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _symbolic_shapes(source: Path, destination: Path) -> None:
    """Write ``source`` with ONNX Runtime's symbolic shapes (the first step of its pre-processing)
    into ``destination``: inferred on the graph's skeleton, the weights then written back as they
    were. The same shapes as ``quant_pre_process`` infers, without the copies of the weights its
    inference makes (2.3 GB above a 500 MB BERT-base). Raises as the inference does."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    def infer(light):
        inferred = SymbolicShapeInference.infer_shapes(light)
        if inferred is None:
            raise ValueError("symbolic shape inference needs opset 7 or later")
        return inferred

    model = onnx_graph.on_skeleton(onnx.load(str(source)), infer)
    onnx_graph.write(model, destination)


def _optimized_and_shaped(source: Path, destination: Path, optimize: bool) -> None:
    """The rest of ONNX Runtime's pre-processing (``quant_pre_process`` with its symbolic shape
    inference skipped, done before: :func:`_symbolic_shapes`) in bounded memory: its basic graph
    optimization by a session reading the file, ONNX shape inference on the graph's skeleton, its
    pre-processing mark, then the model written. ``quant_pre_process`` holds the model while its
    session optimizes it and infers shapes on the whole file (the 110 M encoder: 1.8 GB above the
    process). As it does, an optimization that fails leaves the graph unoptimized."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.quant_utils import add_pre_process_metadata
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix=".optimized.", dir=destination.parent) as scratch:
        optimized = Path(scratch) / "optimized.onnx"
        memory.settle()  # the models the steps before read and dropped (a failed inference's traceback holds one)
        if optimize:
            options = ort.SessionOptions()
            options.optimized_model_filepath = str(optimized)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.add_session_config_entry("session.disable_prepacking", "1")  # it runs nothing: no kernel's copies
            try:
                ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - quant_pre_process logs it and goes on unoptimized
                if interrupts.interrupted(exc):
                    raise
            memory.release()  # what the session freed, before the model is read back
        model = onnx.load(str(optimized if optimized.is_file() else source))
    if opset_in(model) <= 10:  # its Upsample rewrite and opset conversion first: such a model is an old, small one
        del model
        quant_pre_process(str(source), str(destination), skip_symbolic_shape=True, skip_optimization=not optimize)
        return
    model = onnx_graph.on_skeleton(model, onnx.shape_inference.infer_shapes)
    add_pre_process_metadata(model)
    onnx_graph.write(model, destination)


def _drop_identity_reshapes(source: Path, destination: Path) -> int:
    """Write ``source`` without the Reshapes that give a tensor the shape it already has, and
    return how many there were (0: nothing written). tf2onnx puts one between a convolution
    with a 1x1 output map and its BatchNormalization (EfficientNetB0 at 32x32: 15 of them);
    there it stops ONNX Runtime's Conv+BatchNormalization fusion, and the convolution's output
    is quantized before the per-channel scale of BatchNormalization (46 % top-1 agreement)."""
    import onnx

    try:
        model = onnx.load(str(source), load_external_data=False)
        bypass = _identity_reshapes(model)
        if not bypass:
            return 0
        _bypass(model.graph, bypass)
        onnx_graph.write(model, destination)
        return len(bypass)
    except Exception as exc:  # noqa: BLE001 - an optional clean-up: the graph is quantized as it came
        if interrupts.interrupted(exc):
            raise
        return 0


def _identity_reshapes(model) -> dict[str, str]:
    """The Reshapes to a constant shape equal to their input's: output name -> input name."""
    import onnx

    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer) or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
            for a in n.attribute):
        return {}  # weights beside the file, or subgraphs: left as they are
    constants = onnx_graph.Constants(graph)
    if not any(n.op_type == "Reshape" and n.input[1] in constants for n in graph.node):
        return {}  # no Reshape to a constant shape: no shape inference needed (a second on ResNet50)
    shapes = onnx_graph.shapes_of(onnx_graph.inferred(model))
    outputs = {o.name for o in graph.output}
    bypass = {}
    for node in graph.node:
        if node.op_type != "Reshape" or node.output[0] in outputs or node.input[1] not in constants:
            continue
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        target, dims = [int(t) for t in constants[node.input[1]].ravel()], shapes.get(node.input[0])
        if dims is None or len(dims) != len(target) or target.count(-1) > 1 or (allowzero and 0 in target):
            continue
        if all(t in (0, -1) or (d is not None and t == d) for t, d in zip(target, dims)):
            bypass[node.output[0]] = node.input[0]
    return bypass


def _bypass(graph, bypass: dict[str, str]) -> None:
    """Remove the Reshapes of ``bypass`` from ``graph``: their readers read their inputs, and the
    shape constants no other node reads are dropped."""
    outputs = {o.name for o in graph.output}
    kept = [n for n in graph.node if not (n.op_type == "Reshape" and n.output[0] in bypass)]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in bypass:
                name = bypass[name]
            node.input[i] = name
    shapes_used = {n.input[1] for n in graph.node if n.op_type == "Reshape" and n.output[0] in bypass}
    still_used = {name for n in kept for name in n.input} | outputs
    for tensor in [t for t in graph.initializer if t.name in shapes_used and t.name not in still_used]:
        graph.initializer.remove(tensor)
    del graph.node[:]
    graph.node.extend(kept)
