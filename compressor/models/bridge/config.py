"""A Keras 3 model's config in tf-keras terms, layer by layer: each layer's options filtered (dropped
only at their default value), its values and call nodes translated, the layers tf-keras lacks
rewritten (affine ops, grouped and channel-wise convolutions, Lambda functions), nested models
translated the same way."""

from __future__ import annotations

import inspect
from typing import Any

from compressor import keras_env
from compressor.errors import UnsupportedModelError
from compressor.models import activations
from compressor.models.bridge.wrapper import WRAPPED


# Keyword arguments tf-keras' base Layer/RNN accept through **kwargs.
BASE_LAYER_KWARGS = {
    "input_dim", "input_shape", "batch_input_shape", "batch_size", "weights", "activity_regularizer",
    "autocast", "implementation", "name", "trainable", "dtype", "dynamic",
    "return_sequences", "return_state", "go_backwards", "stateful", "unroll", "time_major",
}


DEFAULT_LIKE = (None, False, "auto", (), [])


SERIALIZED_MODULES = {
    "keras.initializers": "initializers",
    "keras.regularizers": "regularizers",
    "keras.constraints": "constraints",
}


MODEL_CLASSES = ("Functional", "Sequential", "Model")


# Keys a layer's from_config consumes before calling __init__.
FROM_CONFIG_KEYS = {
    "Lambda": {"function_type", "module", "output_shape_type", "output_shape_module", "mask_type", "mask_module"},
    "MultiHeadAttention": {"query_shape", "key_shape", "value_shape"},
}


def _accepted_kwargs(cls) -> set[str]:
    """Names ``cls.__init__`` accepts, following ``**kwargs`` up the class hierarchy.

    The walk stops at tf-keras' base ``Layer``, whose ``**kwargs`` are the fixed set
    ``BASE_LAYER_KWARGS``.
    """
    layer_base = keras_env.tf_keras().layers.Layer
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is layer_base:
            return (names | BASE_LAYER_KWARGS) - {"self"}
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {"self"}


def _filter_kwargs(cls, config: dict, where: str) -> dict:
    accepted = _accepted_kwargs(cls) | FROM_CONFIG_KEYS.get(cls.__name__, set())
    kept = {}
    for key, value in config.items():
        if key in accepted:
            kept[key] = value
        elif not _is_default_like(value):
            raise UnsupportedModelError(
                f"{where}: option '{key}={value!r}' has no tf-keras equivalent; "
                "export the model as a SavedModel or remove that option"
            )
    return kept


def _is_default_like(value: Any) -> bool:
    return any(value is d or (type(value) is type(d) and value == d) for d in DEFAULT_LIKE)


def _translate_object(obj: dict, where: str) -> Any:
    """A serialized Keras 3 object (initializer, dtype policy, ...) in tf-keras form."""
    tfk = keras_env.tf_keras()
    class_name = obj.get("class_name")
    config = obj.get("config")
    if class_name in ("DTypePolicy", "FloatDTypePolicy") and isinstance(config, dict):
        return config.get("name", "float32")
    if class_name == "__tuple__":
        return tuple(_translate_value(v, where) for v in config.get("value", []))
    family = SERIALIZED_MODULES.get(str(obj.get("module", "")))
    if family is None or not isinstance(config, dict):
        return {"class_name": class_name, "config": _translate_value(config, where)}
    cls = getattr(getattr(tfk, family), str(class_name), None)
    if cls is None:
        raise UnsupportedModelError(f"{where}: {family[:-1]} '{class_name}' has no tf-keras equivalent")
    return {"class_name": class_name, "config": _filter_kwargs(cls, _translate_value(config, where), where)}


def _translate_value(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            return _translate_object(value, where)
        return {k: _translate_value(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_translate_value(v, where) for v in value]
    return value


def _is_keras_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _keras_tensors(value: Any):
    if _is_keras_tensor(value):
        yield value["config"]["keras_history"]
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _keras_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _keras_tensors(item)


def _tensor_refs(value: Any) -> Any:
    """``value`` with each Keras 3 tensor replaced by tf-keras' ``[layer, node, tensor]``."""
    if _is_keras_tensor(value):
        return list(value["config"]["keras_history"][:3])
    if isinstance(value, (list, tuple)):
        return [_tensor_refs(item) for item in value]
    if isinstance(value, dict):
        return {key: _tensor_refs(item) for key, item in value.items()}
    return value


def _translate_nodes(inbound: list, where: str, cls=None) -> list:
    nodes = []
    for node in inbound:
        if not isinstance(node, dict):
            nodes.append(node)
            continue
        # a tensor passed by keyword (MultiHeadAttention's attention_mask) as tf-keras writes it:
        # [layer, node, tensor], which its functional rebuild turns back into the tensor
        kwargs = {k: _tensor_refs(v) for k, v in node.get("kwargs", {}).items()}
        args = node.get("args", [])
        if cls is not None and len(args) > 1 and all(_is_keras_tensor(a) for a in args) and _takes_tensors(cls, args):
            nodes.append([_positional_call(cls, args, kwargs)])
            continue
        history = list(_keras_tensors(args))
        if not history:
            raise UnsupportedModelError(f"{where}: a call with no tensor inputs cannot be bridged")
        nodes.append([[h[0], h[1], h[2], kwargs] for h in history])
    return nodes


def _call_parameters(cls) -> list[str]:
    return [p for p in inspect.signature(cls.call).parameters if p != "self"]


def _takes_tensors(cls, args: list) -> bool:
    """Whether ``cls.call`` takes these tensors as separate arguments (a merge layer takes one list)."""
    return len(_call_parameters(cls)) >= len(args)


def _positional_call(cls, args: list, kwargs: dict) -> list:
    """``layer(a, b)`` (MultiHeadAttention's query, value) in tf-keras' node format: the first
    tensor positional, the others as keyword tensors named after ``call``'s parameters."""
    names = _call_parameters(cls)
    first, *rest = (arg["config"]["keras_history"] for arg in args)
    return [first[0], first[1], first[2], {**kwargs, **{name: list(h[:3]) for name, h in zip(names[1:], rest)}}]


def _build_shapes(layer_config: dict, built: dict) -> dict:
    """The input shapes tf-keras' MultiHeadAttention.from_config needs to create its weights;
    Keras 3 keeps them on the layer object, not in its config."""
    shapes = built.get(layer_config.get("config", {}).get("name")) or {}
    query, value = shapes.get("query_shape"), shapes.get("value_shape")
    if query is None or value is None:
        return {}
    as_list = lambda shape: None if shape is None else list(shape)  # noqa: E731
    return {"query_shape": as_list(query), "value_shape": as_list(value),
            "key_shape": as_list(shapes.get("key_shape") or value)}


# Keras 3 arithmetic on a tensor and a number (x + 3.0 in MobileNetV3's hard sigmoid) is an
# op of keras.src.ops, not a layer: as tf-keras' Rescaling, x * scale + offset.
AFFINE_OPS = {
    "Add": lambda c, tensor_first: (1.0, c),
    "Subtract": lambda c, tensor_first: (1.0, -c) if tensor_first else (-1.0, c),
    "Multiply": lambda c, tensor_first: (c, 0.0),
    "Divide": lambda c, tensor_first: (1.0 / c, 0.0) if tensor_first else None,
    "TrueDivide": lambda c, tensor_first: (1.0 / c, 0.0) if tensor_first else None,
}


def _affine_op(layer: dict) -> dict | None:
    """A Keras 3 ``ops`` call on one tensor and one number, as an equivalent Rescaling layer."""
    if not str(layer.get("module", "")).startswith("keras.src.ops") or layer["class_name"] not in AFFINE_OPS:
        return None
    nodes = layer.get("inbound_nodes") or []
    args = nodes[0].get("args", []) if len(nodes) == 1 and isinstance(nodes[0], dict) else []
    if len(args) != 2 or sum(_is_keras_tensor(a) for a in args) != 1:
        return None
    tensor_first = _is_keras_tensor(args[0])
    constant = args[1] if tensor_first else args[0]
    if not isinstance(constant, (int, float)):
        return None
    affine = AFFINE_OPS[layer["class_name"]](float(constant), tensor_first)
    if affine is None:
        return None
    history = (args[0] if tensor_first else args[1])["config"]["keras_history"]
    return {"class_name": "Rescaling", "config": {"name": layer["config"]["name"], "scale": affine[0],
                                                   "offset": affine[1]},
            "name": layer.get("name", layer["config"]["name"]), "inbound_nodes": [[[*history[:3], {}]]]}


def _slice_spec(value: Any) -> Any:
    """A Keras 3 index (``[{"class_name": "__slice__", ...}, 0]``) as tf-keras writes slices."""
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        return {key: value["config"].get(key) for key in ("start", "stop", "step")}
    if isinstance(value, (list, tuple)):
        return [_slice_spec(item) for item in value]
    return value


def _getitem_op(layer: dict) -> dict | None:
    """``x[:, 0]`` (Keras 3's GetItem op: a transformer's first-token pooling) as tf-keras'
    SlicingOpLambda over ``tf.__operators__.getitem``, which its functional rebuild takes."""
    if layer.get("class_name") != "GetItem" or not str(layer.get("module", "")).startswith("keras.src.ops"):
        return None
    nodes = layer.get("inbound_nodes") or []
    args = nodes[0].get("args", []) if len(nodes) == 1 and isinstance(nodes[0], dict) else []
    if len(args) != 2 or not _is_keras_tensor(args[0]) or list(_keras_tensors(args[1])):
        return None
    name = layer.get("name", layer["config"]["name"])
    history = args[0]["config"]["keras_history"]
    return {"class_name": "SlicingOpLambda", "config": {"name": name, "function": "__operators__.getitem"},
            # one node, its tensor not in a list: an op layer keeps its input's structure
            "name": name, "inbound_nodes": [[*history[:3], {"slice_spec": _slice_spec(args[1])}]]}


def _translate_layer(layer: dict, built: dict) -> dict:
    tfk = keras_env.tf_keras()
    op = _affine_op(layer) or _getitem_op(layer)
    if op is not None:
        return op
    class_name = layer["class_name"]
    name = layer.get("name") or layer.get("config", {}).get("name", "?")
    where = f"layer '{name}' ({class_name})"
    if class_name in MODEL_CLASSES:
        translated = {"class_name": class_name, "config": translate_model_config(class_name, layer["config"], built)}
    elif getattr(tfk.layers, class_name, None) is None:  # run the Keras 3 layer itself (safety vetted it)
        translated = {"class_name": WRAPPED, "config": {"name": name, "wrapped_layer": name,
                                                   "wrapped_class": class_name, "input_keys": _dict_keys(layer)}}
    elif _channelwise_conv(layer, built):
        translated = _as_depthwise(layer, where)
    else:
        cls = getattr(tfk.layers, class_name)
        config = dict(layer.get("config", {}))
        if class_name == "Lambda":  # reached only with trust_model=True (see compressor.models.safety)
            config = _lambda_config(config)
        config = _translate_value(config, where)
        if "activation" in config:
            config["activation"] = activations.translate(config["activation"])
        if class_name == "MultiHeadAttention":
            config.update(_build_shapes(layer, built))
        if class_name == "InputLayer" and "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        translated = {"class_name": class_name, "config": _filter_kwargs(cls, config, where)}
    if "name" in layer:
        translated["name"] = layer["name"]
    if "inbound_nodes" in layer:
        cls = None if class_name in MODEL_CLASSES else getattr(tfk.layers, class_name, None)
        translated["inbound_nodes"] = _translate_nodes(layer["inbound_nodes"], where, cls)
    return translated


def _dict_keys(layer: dict) -> list[str]:
    """The keys of the dict a layer is called on (keras-hub's backbones take one), in the order
    its node lists their tensors; empty for any other call."""
    nodes = layer.get("inbound_nodes") or []
    args = nodes[0].get("args", []) if len(nodes) == 1 and isinstance(nodes[0], dict) else []
    return list(args[0]) if len(args) == 1 and isinstance(args[0], dict) else []


def _channelwise_conv(layer: dict, built: dict) -> bool:
    """A Conv2D with one group per input channel (ConvNeXt's 7x7 "depthwise" convolution):
    tf-keras runs a grouped Conv2D as an XLA-compiled function, which the ONNX converter
    leaves as an uncallable PartitionedCall and TensorFlow cannot run on a CPU without XLA.
    It is a DepthwiseConv2D, which every converter and runtime takes."""
    config = layer.get("config", {})
    groups = int(config.get("groups", 1) or 1)
    if layer.get("class_name") != "Conv2D" or groups <= 1 or config.get("data_format") == "channels_first":
        return False
    shape = (built.get(config.get("name")) or {}).get("input_shape")
    return bool(shape) and shape[-1] == groups and int(config.get("filters", 0)) % groups == 0


# Conv2D options that DepthwiseConv2D takes under another name
DEPTHWISE_NAMES = {"kernel_initializer": "depthwise_initializer", "kernel_regularizer": "depthwise_regularizer",
                   "kernel_constraint": "depthwise_constraint"}


def _as_depthwise(layer: dict, where: str) -> dict:
    tfk = keras_env.tf_keras()
    config = dict(layer["config"])
    multiplier = int(config.pop("filters")) // int(config.pop("groups"))
    config = {DEPTHWISE_NAMES.get(k, k): v for k, v in _translate_value(config, where).items()}
    config["depth_multiplier"] = multiplier
    if "activation" in config:
        config["activation"] = activations.translate(config["activation"])
    return {"class_name": "DepthwiseConv2D", "config": _filter_kwargs(tfk.layers.DepthwiseConv2D, config, where)}


def _serialized_function(value: Any) -> tuple[Any, str | None, str | None]:
    """Keras 3's serialized function as tf-keras' (function, type, module)."""
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":
        code = value["config"]
        return [code["code"], code.get("defaults"), code.get("closure")], "lambda", None
    if isinstance(value, dict) and value.get("class_name") == "function":
        return value.get("config"), "function", value.get("module")
    return value, "raw", None


def _lambda_config(config: dict) -> dict:
    config = dict(config)
    for key, type_key, module_key in (("function", "function_type", "module"),
                                      ("output_shape", "output_shape_type", "output_shape_module")):
        config[key], config[type_key], config[module_key] = _serialized_function(config.get(key))
    return config


def _as_node_list(value: Any) -> list | dict:
    """``["a", 0, 0]`` (one tensor) or ``[["a", 0, 0], ...]`` as a list of lists; a model called
    on a dict (``{"input_ids": ["input_ids", 0, 0], ...}``) keeps its dict, which tf-keras takes too."""
    if isinstance(value, dict):
        return dict(value)
    if value and isinstance(value[0], str):
        return [value]
    return list(value)


def translate_model_config(class_name: str, config: dict, built: dict) -> dict:
    layers = [_translate_layer(layer, built) for layer in config["layers"]]
    out = {"name": config.get("name", "model"), "layers": layers}
    if class_name != "Sequential":
        out["input_layers"] = _as_node_list(config["input_layers"])
        out["output_layers"] = _as_node_list(config["output_layers"])
    shifted = {layer.get("name") or layer["config"].get("name") for layer in config["layers"]
               if _sequential_with_input(layer)}
    if shifted:
        for layer in layers:
            layer["inbound_nodes"] = [_shift_nodes(node, shifted) for node in layer.get("inbound_nodes", [])]
        if "output_layers" in out:
            out["output_layers"] = [_shift_nodes(ref, shifted) for ref in out["output_layers"]]
    return out


def _sequential_with_input(layer: dict) -> bool:
    """A nested Sequential that starts with an Input. tf-keras builds it as a network with a
    node of its own (input to output) and counts its calls from 1; Keras 3 counts them from 0
    (it offsets nested Functional models only). ConvNeXt's stem and downsampling blocks."""
    inner = layer.get("config", {}).get("layers") if layer.get("class_name") == "Sequential" else None
    return bool(inner) and inner[0].get("class_name") == "InputLayer"


def _shift_nodes(value: Any, shifted: set) -> Any:
    """Node references ``[layer, node index, tensor index, ...]`` to the layers in ``shifted``
    moved one node on, anywhere in a translated inbound node (keyword tensors included)."""
    if isinstance(value, list):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
            head = [value[0], value[1] + (value[0] in shifted), value[2]]
            return head + [_shift_nodes(v, shifted) for v in value[3:]]
        return [_shift_nodes(v, shifted) for v in value]
    if isinstance(value, dict):
        return {k: _shift_nodes(v, shifted) for k, v in value.items()}
    return value
