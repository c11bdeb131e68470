"""Bridge Keras 3 models to tf-keras, which the compression engine works on.

tensorflow-model-optimization rejects Keras 3 models (tfmot #1119, #1141, #1167), and
Keras 3 files do not load in tf-keras: the config differs (``batch_shape`` vs
``batch_input_shape``, dtype-policy objects, a new node format, new options such as
``lora_rank``). The bridge translates the architecture config, rebuilds the model with
tf-keras, copies the weights layer by layer, and checks that both give the same outputs.
Options that tf-keras lacks are dropped only when they hold their default value;
anything else is an error naming the layer and the option.

The config's translation is in :mod:`.config`, the layer that runs a Keras 3 layer as it is in
:mod:`.wrapper`; the rebuild, the weights and the check here.
"""

from __future__ import annotations

import numpy as np

from compressor import keras_env
from compressor.errors import CompressorError, ConversionError, UnsupportedModelError, one_line
from compressor.models.bridge.config import MODEL_CLASSES, translate_model_config
from compressor.models.bridge.wrapper import WRAPPED, wrapper_class


# The fp32 parity bound, scaled by the output range like it: a correct copy of
# keras.applications.EfficientNetV2B0 differs by 1.1e-5 (Keras 3 and tf-keras pick other
# kernels); a translation error (tf-keras' own hard_sigmoid in place of Keras 3's) by 0.074.
BRIDGE_TOLERANCE = 1e-4


def _rebuild(model, trust_model: bool):
    tfk = keras_env.tf_keras()
    class_name = type(model).__name__
    if class_name not in MODEL_CLASSES or (class_name == "Model" and not hasattr(model, "_nodes_by_depth")):
        raise UnsupportedModelError(
            f"model '{model.name}' is a subclassed Keras 3 model ({type(model).__name__}); the bridge "
            "takes Functional and Sequential models: rebuild it functionally or export a SavedModel"
        )
    built = {layer.name: getattr(layer, "_build_shapes_dict", None) for layer in _all_layers(model)}
    config = translate_model_config(class_name, model.get_config(), built)
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    wrapper = wrapper_class({layer.name: layer for layer in _all_layers(model)})
    with SafeModeScope(safe_mode=not trust_model), tfk.utils.custom_object_scope({WRAPPED: wrapper}):
        try:
            return (tfk.Sequential if class_name == "Sequential" else tfk.Model).from_config(config)
        except CompressorError:
            raise
        except Exception as exc:  # tf-keras cannot rebuild what the translated config describes
            raise ConversionError(f"model '{model.name}': tf-keras cannot rebuild it from its Keras 3 config "
                                  f"({type(exc).__name__}: {one_line(exc)}); save it as a tf-keras model or "
                                  "export it to ONNX") from None


def as_functional(model):
    """``model`` as a plain Functional model of the same layers when it is a subclass of Keras'
    Functional class built from its inputs and outputs (keras-hub's backbones and tasks: their
    configs hold constructor arguments, not the layer graph); any other model as it is."""
    from keras.src.models.functional import Functional

    if type(model).__name__ in MODEL_CLASSES or not isinstance(model, Functional):
        return model
    return keras_env.keras3().Model(model.input, model.output, name=model.name)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers") and type(layer).__name__ in MODEL_CLASSES:
            yield from _all_layers(layer)


def _copy_weights(source, target) -> None:
    targets = {layer.name: layer for layer in _all_layers(target)}
    for layer in _all_layers(source):
        weights = layer.get_weights()
        if not weights or type(layer).__name__ in MODEL_CLASSES:
            continue
        twin = targets.get(layer.name)
        if twin is None:
            raise ConversionError(f"bridge: layer '{layer.name}' is missing after translation")
        expected = [w.shape for w in twin.get_weights()]
        if type(twin).__name__ == "DepthwiseConv2D" and type(layer).__name__ == "Conv2D":
            # a channel-wise Conv2D's (kh, kw, 1, C x M) kernel: output channel g x M + m reads input g
            weights = [weights[0].reshape(expected[0]), *weights[1:]]
        if expected != [w.shape for w in weights]:
            raise ConversionError(
                f"bridge: layer '{layer.name}' weight shapes differ ({[w.shape for w in weights]} vs {expected})"
            )
        twin.set_weights(weights)


def sample_inputs(model, *, batch: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that fit ``model`` (integers below the smallest vocabulary for int inputs)."""
    rng = np.random.default_rng(seed)
    layers = model._flatten_layers() if hasattr(model, "_flatten_layers") else _all_layers(model)  # nested too
    vocab = min((layer.input_dim for layer in layers if isinstance(getattr(layer, "input_dim", None), int)), default=10)
    arrays = []
    for tensor in model.inputs:
        shape = [batch] + [8 if d is None else int(d) for d in tuple(tensor.shape)[1:]]
        dtype = np.dtype(str(getattr(tensor.dtype, "name", tensor.dtype)))
        if np.issubdtype(dtype, np.integer) and "mask" in tensor.name.lower():
            # an attention mask holds 0 and 1 (tf-keras adds (1 - mask) x -1e4 to the scores, Keras 3
            # reads any non-zero as 1: they agree on masks only): ones, then padding
            arrays.append((np.arange(shape[-1]) < rng.integers(1, shape[-1] + 1, size=shape[:-1] + [1])
                           ).astype(dtype))
        elif np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, vocab, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def _outputs(model, inputs) -> list[np.ndarray]:
    """The model called eagerly on ``inputs``, one sample at a time: eager execution keeps the
    memory of the largest batch it ran for the rest of the process (150 MB a sample on ResNet50 at
    224x224: a batch of 4 left the loaded model 560 MB larger than unverified, one at a time 110 MB)."""
    samples = []
    for index in range(len(inputs[0])):
        result = model(keras_env.as_called(model, [a[index:index + 1] for a in inputs]), training=False)
        if isinstance(result, dict):
            result = [result[k] for k in sorted(result)]
        samples.append([np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])])
    return [np.concatenate(parts) if parts[0].ndim else np.stack(parts) for parts in zip(*samples)]


def max_output_difference(first, second, inputs, expected: list[np.ndarray] | None = None) -> float:
    """Largest absolute difference between two models' outputs on ``inputs`` (``expected``: the
    first's, when already computed)."""
    pairs = zip(_outputs(first, inputs) if expected is None else expected, _outputs(second, inputs), strict=True)
    return max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in pairs)


def to_tf_keras(model, *, verify: bool = True, trust_model: bool = False):
    """Return a tf-keras copy of a Keras 3 Functional or Sequential ``model``.

    ``trust_model`` lets tf-keras rebuild Lambda layers (their code runs).

    Raises:
        UnsupportedModelError: a subclassed model, or a layer/option tf-keras lacks.
        ConversionError: the copy's outputs differ from the original's.
    """
    model = as_functional(model)
    rebuilt = _rebuild(model, trust_model)
    _copy_weights(model, rebuilt)
    if verify:
        inputs = sample_inputs(model)
        expected = _outputs(model, inputs)
        diff = max_output_difference(model, rebuilt, inputs, expected)
        scale = max([1.0] + [float(np.max(np.abs(o))) for o in expected if o.size])
        if not diff <= BRIDGE_TOLERANCE * scale:
            raise ConversionError(
                f"bridge: tf-keras copy of '{model.name}' differs from the Keras 3 model "
                f"(max abs diff {diff:.3g} > {BRIDGE_TOLERANCE * scale:.3g})"
            )
    return rebuilt
