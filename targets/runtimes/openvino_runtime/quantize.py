"""Int8 with NNCF (3.x: OpenVINO models only), the alternatives tried when it misses the budget, and
int8 with chosen nodes kept in float (NNCF's ignored scope, or one node alone from full int8)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from compressor import digests, keras_env
from compressor.models.source import fixed_batch
from targets.runtime import converted, in_artifact_order, name_order
from targets.runtimes.openvino_runtime.convert import conversion_key, stable_names, convert, with_batch
from targets.runtimes.openvino_runtime.runner import carry_options


def quantize(ov_model, calibration: list[np.ndarray], *, overflow_fix: str = "first_layer_only", float_nodes=(),
             subset_size: int | None = None, preset: str = "performance"):
    """NNCF post-training int8: its default ``performance`` preset (symmetric weights and
    activations) or ``mixed`` (asymmetric activations, for activations far from zero-centred).

    ``overflow_fix`` is NNCF's name: "enable" quantizes weights to 7 bits in every layer so
    that CPUs without VNNI, which add int8 products pairwise in saturating int16, do not clip.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # one sample at a time, one array per model input in the IR's own input order
    items = [[array[i : i + 1] for array in calibration] for i in range(len(calibration[0]))]
    items = [item[0] if len(item) == 1 else item for item in items]
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix))
    ignored = nncf.IgnoredScope(names=list(float_nodes)) if float_nodes else None
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    with keras_env.quiet_native():
        return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=min(subset_size or len(items), len(items)),
                             target_device=nncf.TargetDevice.CPU, advanced_parameters=advanced, preset=presets[preset],
                             **({"ignored_scope": ignored} if ignored else {}))


def quantized(source, ov_model, calibration: list[np.ndarray], *, overflow_fix: str = "first_layer_only",
              float_nodes=(), preset: str = "performance"):
    """``quantize``'s result for ``ov_model``, ``source``'s conversion, made once per process
    for the same model, data and settings; each caller gets its own copy. The last one of each
    preset is kept: the accuracy budget's search starts from the export's own full int8, and
    its artifact with layers in float is the quantization its confirmation measured (on
    EfficientNetB0 one ``nncf.quantize`` is 9-13 s)."""
    owner, digest = conversion_key(source)
    shapes = [str(port.get_partial_shape()) for port in ov_model.inputs]
    settings = json.dumps({"overflow_fix": overflow_fix, "float_nodes": sorted(float_nodes), "shapes": shapes})
    made = converted(owner, f"openvino-int8-{preset}",
                     lambda: quantize(ov_model.clone(), calibration, overflow_fix=overflow_fix,
                                      float_nodes=float_nodes, preset=preset),
                     digest=digest, inputs=digests.arrays(calibration) + settings)
    return made.clone()


WEIGHT_MODES = {"int8w": "INT8_ASYM", "int4w": "INT4_SYM"}  # profile precision -> NNCF's weight mode


def compress_weights(ov_model, precision: str, *, group_size: int = 32, ratio: float = 1.0):
    """Weight-only compression with NNCF's ``compress_weights``: ``int8w``, asymmetric per-channel
    int8 weights; ``int4w``, symmetric int4 in groups of ``group_size`` input channels, ``ratio``
    of the layers in int4 and the rest (with the embeddings and the last layer, NNCF's default)
    in int8. Activations stay float; weights are decompressed inside each layer. A layer whose
    input channels ``group_size`` does not divide gets the largest group that does (NNCF's
    ``ADJUST`` fallback; down to 16), else stays int8. Returns the model and what was compressed
    (weight tensors by element type)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    nncf.set_log_level(logging.WARNING)  # its INFO bit-width table goes to stdout, past --json
    before = _weight_types(ov_model)
    mode = getattr(nncf.CompressWeightsMode, WEIGHT_MODES[precision])
    kwargs = {"group_size": group_size, "ratio": ratio, "advanced_parameters": AdvancedCompressionParameters(
        group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)} if precision == "int4w" else {}
    with keras_env.quiet_native():
        compressed = nncf.compress_weights(ov_model, mode=mode, **kwargs)
    after = _weight_types(compressed)
    return compressed, {"weights": precision, "activations": "float", "quantizer": f"nncf.compress_weights "
                        f"({mode.value}{f', group {group_size}, ratio {ratio:g}' if kwargs else ''})",
                        "weight_tensors": {t: n for t, n in after.items() if t in ("u8", "i8", "u4", "i4")},
                        "float_weight_tensors_before": before.get("f32", 0)}


def _weight_types(ov_model) -> dict[str, int]:
    """Constants by element type: what weights a model stores."""
    found: dict[str, int] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            kind = op.get_output_element_type(0).get_type_name()
            found[kind] = found.get(kind, 0) + 1
    return found


ALTERNATIVES = ({"preset": "mixed"},)  # the accuracy budget's calibration rung, before mixed precision


# Mixed precision keeps an op in float by its name in the converted model (NNCF's ignored
# scope). Candidates: the ops NNCF quantizes, read from where its FakeQuantize nodes go. NNCF
# moves a quantizer up past the ops that only move or select values, so the op it quantizes
# is the first one below the FakeQuantize that computes.
PASS_THROUGH = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "MaxPool", "StridedSlice", "Slice",
                          "Split", "VariadicSplit", "Pad", "DepthToSpace", "SpaceToDepth", "ShuffleChannels",
                          "Gather", "Broadcast", "Tile", "Convert", "Relu", "Clamp", "ReduceMax"})


def _readers(fake_quantize) -> set[str]:
    """The names of the ops that read ``fake_quantize``'s output, past the ops that only move values."""
    readers, seen, stack = set(), set(), [fake_quantize]
    while stack:
        for output in stack.pop().outputs():
            for target in output.get_target_inputs():
                node = target.get_node()
                name = node.get_friendly_name()
                if node.get_type_name() in PASS_THROUGH:
                    if name not in seen:
                        seen.add(name)
                        stack.append(node)
                elif node.get_type_name() not in ("FakeQuantize", "Result"):
                    readers.add(name)
    return readers


def quantizer_readers(quantized) -> dict[str, set[str]]:
    """For each FakeQuantize of ``quantized`` (by name), the ops it quantizes the inputs of."""
    return {op.get_friendly_name(): _readers(op) for op in quantized.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize"}


def quantized_ops(model, quantized) -> list[str]:
    """The names of ``model``'s ops whose inputs NNCF quantized in ``quantized``, in graph order."""
    readers = set().union(*quantizer_readers(quantized).values())
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in readers]


class MixedPrecision:
    """NNCF int8 with chosen ops kept in float, cheaply repeated: the model is converted once,
    then quantized once per candidate set of float ops. The sensitivity pass's "these ops alone
    in int8" costs no quantization: full int8 with every other FakeQuantize bypassed."""

    suffix = ".xml"
    concurrent = True  # write_alone edits a clone: candidates may be written, compiled and run in threads

    def __init__(self, source, profile, calibration, workdir: Path) -> None:
        self._source = source
        ov_model = convert(source, workdir)
        order = name_order([i.name for i in source.inputs], [p.get_names() for p in ov_model.inputs])
        self._order = {"input_order": order, "output_order": name_order(
            [o.name for o in source.outputs], [p.get_names() for p in ov_model.outputs]),
            "fixed_batch": fixed_batch([spec.shape for spec in source.inputs])}
        static = with_batch(ov_model, profile.options.get("batch", 1)) if profile.options.get("batch", 1) else None
        self._model = static if static is not None else ov_model
        self._feeds = in_artifact_order(calibration.feeds(source), order)
        self._overflow_fix = profile.options.get("overflow_fix", "first_layer_only")
        self._full = quantized(source, self._model, self._feeds, overflow_fix=self._overflow_fix)
        self._alone_base = self._full.clone()  # full int8 as NNCF wrote it, for write_alone
        if static is not None:  # the edited candidates keep the source's dynamic batch: run in batches
            #                      of 64, a static batch-1 IR is compiled again at each new batch size
            self._alone_base = _with_shapes(self._alone_base, [p.get_partial_shape() for p in ov_model.inputs])
        self._float_ops = {op.get_friendly_name(): op for op in self._model.get_ordered_ops()}
        self._quantizers = quantizer_readers(self._alone_base)
        self.nodes = quantized_ops(self._model, self._full)

    def write_alone(self, quantized_nodes, destination: Path) -> dict:
        """Only ``quantized_nodes`` in int8, from the full int8 model: every other op's activation
        quantizers bypassed and its int8 weights replaced by the float ones. NNCF's statistics are
        collected once for the whole ranking."""
        import openvino as ov

        keep = set(quantized_nodes)
        model = self._alone_base.clone()
        for op in model.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize" and not self._quantizers.get(op.get_friendly_name(), set()) & keep:
                op.output(0).replace(op.input_value(0))
            elif op.get_friendly_name() not in keep:
                _float_weights(op, self._float_ops.get(op.get_friendly_name()))
        ov.save_model(carry_options(model), str(destination), compress_to_fp16=False)
        return self._order

    def write(self, float_nodes, destination: Path) -> dict:
        import openvino as ov

        if not float_nodes and self._full is not None:  # full int8, quantized already to list the candidates
            made, self._full = self._full, None
        else:
            made = quantized(self._source, self._model, self._feeds, overflow_fix=self._overflow_fix,
                             float_nodes=float_nodes)
        ov.save_model(carry_options(stable_names(made)), str(destination), compress_to_fp16=False)
        return self._order


def _with_shapes(ov_model, shapes: list):
    """``ov_model`` reshaped to ``shapes`` (one per input), or as it is when its graph cannot take
    them (a Reshape that holds its batch, say)."""
    try:
        reshaped = ov_model.clone()
        reshaped.reshape(dict(enumerate(shapes)))
        return reshaped
    except Exception:  # noqa: BLE001 - compiled per batch size, as before
        return ov_model


def _decompressed(node) -> bool:
    """Is ``node`` NNCF's int8 weight decompression (Multiply of a Convert of an integer
    Constant, with a Subtract of the zero point between them when asymmetric)?"""
    if node.get_type_name() != "Multiply":
        return False
    source = node.input_value(0).get_node()
    if source.get_type_name() == "Subtract":
        source = source.input_value(0).get_node()
    if source.get_type_name() != "Convert":
        return False
    constant = source.input_value(0).get_node()
    return constant.get_type_name() == "Constant" and constant.get_output_element_type(0).is_integral()


def _float_weights(op, original) -> None:
    """Give ``op`` back the float weights it reads in the float model ``original`` came from, in
    place of NNCF's int8 ones."""
    import openvino.opset13 as opset

    if original is None:
        return
    for port, value in enumerate(op.input_values()):
        if port >= original.get_input_size() or not _decompressed(value.get_node()):
            continue
        weights = original.input_value(port).get_node()
        if weights.get_type_name() == "Constant":
            op.input(port).replace_source_output(opset.constant(weights.get_data().copy()).output(0))
