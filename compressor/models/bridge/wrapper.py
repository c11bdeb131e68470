"""The tf-keras layer that runs a Keras 3 layer as it is, inside a bridged model: for custom layers
the user trusts, Keras 3 layers tf-keras lacks, and keras-hub's backbones (called on a dict)."""

from __future__ import annotations

from compressor import keras_env

WRAPPED = "Keras3Layer"


def wrapper_class(layers: dict):
    """A tf-keras layer that runs one Keras 3 layer as it is (Keras 3 on the TensorFlow
    backend builds TensorFlow ops): for custom layers the user trusts and Keras 3 layers
    tf-keras lacks. Its variables are tracked here, so weight copies, SavedModel tracing and
    the converters see them."""
    tfk = keras_env.tf_keras()

    class Keras3Layer(tfk.layers.Layer):
        def __init__(self, wrapped_layer: str, wrapped_class: str = "", input_keys=(), **kwargs):
            super().__init__(**kwargs)
            self.wrapped_layer, self.wrapped_class, self.input_keys = wrapped_layer, wrapped_class, list(input_keys)
            self._wrapped = [layers[wrapped_layer]]  # in a list: tf-keras does not track Keras 3 layers
            self.wrapped_variables = [v.value for v in getattr(layers[wrapped_layer], "weights", [])]

        def call(self, inputs, *args, **kwargs):
            kwargs.pop("training", None)  # inference: the wrapped layer runs in its inference mode
            if self.input_keys and isinstance(inputs, (list, tuple)):
                # called on a dict (keras-hub's backbones): tf-keras' node passes its tensors as a list
                inputs = dict(zip(self.input_keys, inputs))
                kwargs.pop("mask", None)
            result = self._wrapped[0](inputs, *args, **kwargs)
            if isinstance(result, dict):  # a SavedModel signature's named outputs, flattened as Keras 3 does
                result = [result[key] for key in sorted(result)]
                return result[0] if len(result) == 1 else result
            return result

        def get_config(self):
            return {**super().get_config(), "wrapped_layer": self.wrapped_layer, "wrapped_class": self.wrapped_class,
                    "input_keys": self.input_keys}

    return Keras3Layer
