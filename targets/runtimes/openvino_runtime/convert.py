"""Any source to an OpenVINO model with ``openvino.convert_model`` (ONNX, Keras through a SavedModel),
with stable node names and the IR's batch; OpenVINO's telemetry declined for this process."""

from __future__ import annotations

from pathlib import Path
import re
import shutil

from compressor import keras_env
from compressor.errors import ConversionError, one_line
from compressor.models import onnx_graph
from targets import saved_model
from targets.runtime import converted


def decline_telemetry() -> None:
    """Keep OpenVINO's converter and NNCF from sending usage telemetry.

    ``openvino_telemetry`` sends events unless the user opted out with a consent file
    under ``~/intel``. This toolkit sends nothing, and it changes no file in the user's
    home either: consent is declined for this process only. Without a network, the
    sender's forked child can also deadlock in ``getaddrinfo`` and hang the process at
    exit (seen in ``compressor demo``).
    """
    try:
        from openvino_telemetry.utils import opt_in_checker, sender
    except ImportError:  # not installed: nothing to decline
        return
    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: opt_in_checker.ConsentCheckResult.DECLINED
    sender.TelemetrySender.send = lambda self, backend, message: None


# OpenVINO errors start with a source location; the unmapped op is named further down
UNMAPPED_OP = "no conversion rule found"


def _without_paths(ov_model, name: str):
    """Drop the temporary conversion path the IR would record: same inputs, same bytes (and no
    machine paths inside a shipped artifact)."""
    if ov_model.has_rt_info(["conversion_parameters", "input_model"]):
        ov_model.set_rt_info(name, ["conversion_parameters", "input_model"])
    return ov_model


def convert(source, workdir: Path):
    """The OpenVINO model for a source: its ONNX graph as it is, or its tf-keras model via a
    temporary SavedModel."""
    graph = source.representation("onnx")
    if graph is not None:  # once per source: automatic node names (mixed precision's handles) stay the same
        return converted(source, "openvino", lambda: _convert_onnx(graph, source.path, workdir), digest="").clone()
    return _convert_keras(source.representation("keras"), workdir)


def conversion_key(source) -> tuple[object, str | None]:
    """What ``convert``'s result for ``source`` is kept under, and its digest (None: the Keras
    model's weights): results made from that conversion are kept the same way."""
    return (source, "") if source.representation("onnx") is not None else (source.representation("keras"), None)


def _convert_onnx(graph, path: Path, workdir: Path):
    import openvino as ov

    inline = workdir / "source.onnx"
    onnx_graph.write(graph, inline)
    try:
        return _without_paths(ov.convert_model(str(inline)), path.name)
    except Exception as exc:
        reason = one_line(exc, prefer=UNMAPPED_OP)
        raise ConversionError(f"OpenVINO conversion of {path} failed: {reason}") from None
    finally:
        inline.unlink(missing_ok=True)


def _convert_keras(model, workdir: Path):
    """The OpenVINO model of a Keras model (converted once per process while its weights stay
    the same; each caller gets its own copy)."""
    return converted(model, "openvino", lambda: _convert_saved_model(model, workdir)).clone()


def _convert_saved_model(model, workdir: Path):
    import openvino as ov

    saved = workdir / "saved_model"
    try:
        saved_model.save(model, saved)  # its serving signature, not Keras' own SavedModel
        with keras_env.quiet_native():
            return _without_paths(ov.convert_model(str(saved)), "saved_model")
    except Exception as exc:
        raise ConversionError(f"OpenVINO conversion failed: {one_line(exc, prefer=UNMAPPED_OP)}") from None
    finally:
        shutil.rmtree(saved, ignore_errors=True)


# An automatic OpenVINO node name: its type and a process-wide counter ("Multiply_2896"),
# alone or as a segment of a derived name ("Multiply_2896/fq_weights_1").
AUTO_NAME = re.compile(r"(?<![A-Za-z0-9_])([A-Z][A-Za-z0-9]*)_(\d+)(?![A-Za-z0-9_])")


def stable_names(ov_model):
    """Renumber automatic node names in graph order.

    Their counters count the nodes the process made before (in the converter, in NNCF):
    the same model exported twice in one process, or in two processes whose libraries
    did slightly different work, would otherwise write different IR bytes.
    """
    renamed: dict[str, str] = {}
    io_names = {name for port in [*ov_model.inputs, *ov_model.outputs] for name in port.get_names()}

    def stable(name: str) -> str:  # the model's input and output names are the user's: kept
        if name in io_names:
            return name
        return AUTO_NAME.sub(lambda m: renamed.setdefault(m.group(0), f"{m.group(1)}_{len(renamed)}"), name)

    for node in ov_model.get_ordered_ops():
        if node.get_type_name() not in ("Parameter", "Result"):
            node.set_friendly_name(stable(node.get_friendly_name()))
        for port in node.outputs():
            if port.get_names():
                port.get_tensor().set_names({stable(name) for name in port.get_names()})
    return ov_model


def with_batch(ov_model, batch: int):
    """``ov_model`` with its dynamic batch axis (the first) fixed to ``batch``, or None.

    The CPU plugin compiles a static shape into a faster program: batch 1 against the
    dynamic IR ran 1.08-1.23x faster on the sample models (median of 5 alternating rounds).
    None when no input has a dynamic first axis or the graph cannot take the shape.
    """
    import openvino as ov

    shapes = {}
    for index, port in enumerate(ov_model.inputs):
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_dynamic:
            shapes[index] = ov.PartialShape([ov.Dimension(batch)] + [shape[i] for i in range(1, len(shape))])
    if not shapes:
        return None
    fixed = ov_model.clone()
    try:
        fixed.reshape(shapes)
    except Exception:  # e.g. a Reshape with the batch baked in: keep the dynamic model
        return None
    return fixed
