"""Refuse model configs that would run code, before anything is deserialized.

Keras' ``safe_mode`` has had bypasses (CVE-2025-1550: a config naming arbitrary
functions; CVE-2025-9905: ``.h5`` ignored ``safe_mode``; CVE-2026-12481:
``Lambda.from_config`` reached through ``clone_model``). So every model config is
scanned here first, as plain JSON, and a model that names a Lambda layer, a
``TFSMLayer`` (loads another SavedModel from any path) or an object outside Keras
itself is refused unless the user opts in with ``trust_model=True``.

Model classes of a few well-kept Keras libraries (keras-hub's backbones, tasks and layers) are
Keras' kind of code, not the file's: a config names them by their registered name and the
installed library defines them, as Keras' own layers. They load without the opt-in when the
library is installed and the name resolves, through the library's registry, to one of its own
layer or model classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from compressor.errors import BadInputError, UnsafeModelError

CODE_LAYERS = {
    "Lambda": "a Lambda layer runs arbitrary Python code",
    "TFSMLayer": "a TFSMLayer loads and runs another SavedModel from any path",
}
MODEL_CLASSES = {"Functional", "Sequential", "Model"}
KERAS_MODULES = ("keras", "tf_keras")
# package -> (the name it registers its classes under, the distribution that installs it)
KERAS_LIBRARIES = {"keras_hub": ("keras_hub", "keras-hub")}


@dataclass(frozen=True)
class Finding:
    layer: str
    reason: str

    def __str__(self) -> str:
        return f"layer '{self.layer}': {self.reason}"


def _known_layer(class_name: str) -> bool:
    from compressor import keras_env

    return (
        class_name in MODEL_CLASSES
        or hasattr(keras_env.tf_keras().layers, class_name)
        or hasattr(keras_env.keras3().layers, class_name)
    )


def _object_finding(obj: dict, layer: str) -> Finding | None:
    class_name = str(obj.get("class_name", ""))
    if class_name in CODE_LAYERS:
        return Finding(layer, CODE_LAYERS[class_name])
    if _bridged_activation(obj) or _library_class(obj):
        return None
    module = obj.get("module")
    if module is not None and not str(module).startswith(KERAS_MODULES):
        return Finding(layer, f"'{class_name}' comes from module '{module}', not from Keras (custom code)")
    registered = obj.get("registered_name")
    if registered and ">" in str(registered):
        return Finding(layer, f"'{registered}' is a registered custom object (custom code)")
    return None


def _library_class(obj: dict) -> bool:
    """A layer or model class of a known Keras library (``KERAS_LIBRARIES``), named in the config
    by the module and registered name the library gives it. Raises BadInputError when the library
    is not installed, since the model cannot be built without it."""
    import importlib

    module, registered = str(obj.get("module") or ""), str(obj.get("registered_name") or "")
    package = module.split(".")[0]
    if package not in KERAS_LIBRARIES or not module.startswith(f"{package}.src."):
        return False
    prefix, distribution = KERAS_LIBRARIES[package]
    if registered != f"{prefix}>{obj.get('class_name')}":
        return False
    try:
        importlib.import_module(package)  # registers its classes
    except ImportError:
        raise BadInputError(f"the model is built of {distribution} classes ('{registered}'); install "
                            f"{distribution} to load it (pip install 'edge-compressor[transformers]')") from None
    from compressor import keras_env

    keras = keras_env.keras3()
    found = keras.saving.get_registered_object(registered)
    return (isinstance(found, type) and issubclass(found, keras.layers.Layer)
            and found.__module__.startswith(f"{package}.src."))


def _bridged_activation(obj: dict) -> bool:
    """tf-keras writes the Keras 3 activations the bridge adds (compressor.models.activations) as
    builtins functions named after them; those names resolve to that arithmetic, nothing else."""
    from compressor.models.activations import BRIDGED

    return obj.get("class_name") == "function" and obj.get("module") == "builtins" and obj.get("config") in BRIDGED


def _walk(node: Any, layer: str) -> Iterator[Finding]:
    if isinstance(node, dict):
        if "class_name" in node:
            finding = _object_finding(node, layer)
            if finding:
                yield finding
        for key, value in node.items():
            if key == "layers" and isinstance(value, list):
                for item in value:
                    yield from _walk_layer(item)
            else:
                yield from _walk(value, layer)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, layer)


# tf-keras records a TensorFlow call in a functional model (``tf.range(tf.shape(ids)[1])``) as a
# TFOpLambda naming the function; on loading it calls whatever TensorFlow function the config names,
# file writes included. Pure tensor arithmetic is let through; any other name is custom code.
TF_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda"}
TF_OP_NAMESPACES = ("math.", "nn.", "linalg.", "__operators__.", "signal.")
TF_OPS = frozenset({"shape", "compat.v1.shape", "range", "cast", "reshape", "expand_dims", "squeeze", "concat",
                    "stack", "unstack", "transpose", "gather", "gather_nd", "where", "tile", "ones_like",
                    "zeros_like", "fill", "pad", "split", "broadcast_to", "clip_by_value", "identity", "einsum",
                    "compat.v1.transpose", "compat.v1.gather", "size", "rank", "one_hot", "sequence_mask",
                    "slice", "strided_slice", "reverse", "roll", "repeat", "meshgrid", "boolean_mask"})


def _tf_op(layer_cfg: dict) -> bool:
    """A tf-keras op layer whose TensorFlow function is pure tensor arithmetic."""
    function = str(layer_cfg.get("config", {}).get("function", ""))
    return layer_cfg.get("class_name") in TF_OP_LAYERS and (function in TF_OPS or function.startswith(
        TF_OP_NAMESPACES))


KERAS_APPLICATIONS = "keras.src.applications."  # keras.applications' own layer classes
KERAS_OP_MODULES = ("keras.src.ops.numpy", "keras.src.ops.math", "keras.src.ops.nn", "keras.src.ops.core")


def _keras_op(layer_cfg: dict) -> bool:
    """A Keras 3 ``ops`` call recorded in a functional model (``x / 4.0`` is ``TrueDivide``), or a
    layer class ``keras.applications`` define for their models (ConvNeXt's ``LayerScale``):
    Keras' own classes, from a fixed list of Keras modules, looked up without importing others."""
    import importlib

    module = layer_cfg.get("module")
    if module not in KERAS_OP_MODULES and not str(module).startswith(KERAS_APPLICATIONS):
        return False
    try:
        found = importlib.import_module(module)  # within the Keras package only (checked above)
    except ImportError:  # a made-up module name: not Keras' own class
        return False
    return isinstance(getattr(found, str(layer_cfg.get("class_name")), None), type)


def _walk_layer(layer_cfg: Any) -> Iterator[Finding]:
    if not isinstance(layer_cfg, dict):
        return
    config = layer_cfg.get("config") if isinstance(layer_cfg.get("config"), dict) else {}
    name = str(layer_cfg.get("name") or config.get("name") or "?")
    class_name = str(layer_cfg.get("class_name", ""))
    if class_name in TF_OP_LAYERS and not _tf_op(layer_cfg):
        function = layer_cfg.get("config", {}).get("function")
        yield Finding(name, f"'{class_name}' calls TensorFlow's '{function}', which is not tensor arithmetic")
    elif (class_name not in {*CODE_LAYERS, *TF_OP_LAYERS} and not _known_layer(class_name)
          and not _keras_op(layer_cfg) and not _library_class(layer_cfg)):
        yield Finding(name, f"'{class_name}' is not a built-in Keras layer (custom code)")
    yield from _walk(layer_cfg, name)


def scan_config(config: dict) -> list[Finding]:
    """Return every place in a Keras model config that would run non-Keras code."""
    if "class_name" in config and isinstance(config.get("config"), dict):
        return list(_walk_layer(config))
    return list(_walk(config, "?"))


def check_config(config: dict, *, source: str, trust_model: bool) -> None:
    """Raise UnsafeModelError if ``config`` runs code and the user did not opt in. The training
    setup (``compile_config``: a custom loss, metrics) is left out: models load with
    ``compile=False``, which Keras drops it for, so none of it is ever built."""
    config = {key: value for key, value in config.items() if key != "compile_config"}
    if trust_model:
        _check_registered(config, source)
        return
    findings = scan_config(config)
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise UnsafeModelError(
            f"{source}: refused to load, {findings[0]}{more}; "
            "pass --trust-model / trust_model=True only if you trust where this model came from"
        )


def _custom_classes(value: Any) -> Iterator[tuple[str, str]]:
    """(registered name, module) of every object in a config that comes from outside Keras."""
    if isinstance(value, dict):
        module = value.get("module")
        if "class_name" in value and module and not str(module).startswith(KERAS_MODULES):
            yield str(value.get("registered_name") or value["class_name"]), str(module)
        for item in value.values():
            yield from _custom_classes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _custom_classes(item)


def _check_registered(config: dict, source: str) -> None:
    """A trusted model's custom classes must be registered before loading; say how, by name."""
    from compressor import keras_env

    known = set(keras_env.keras3().saving.get_custom_objects()) | set(keras_env.tf_keras().utils.get_custom_objects())
    for name, module in _custom_classes(config):
        if _library_class({"module": module, "registered_name": name, "class_name": name.split(">")[-1]}):
            continue
        if name not in known and name.split(">")[-1] not in known:
            raise UnsafeModelError(
                f"{source}: the model needs the custom class '{name}' (from module '{module}'), which is not "
                "registered here; pass the file or module that defines it with --custom-code (and --trust-model)")
