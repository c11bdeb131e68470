"""Keras 3 activations that tf-keras lacks or defines otherwise, with Keras 3's maths.

``keras.applications`` use several (MobileNetV3's ``hard_silu``, ``relu6``); tf-keras
cannot deserialize their names, and its ``hard_sigmoid`` is another function (0.2x + 0.5,
clipped) than Keras 3's (relu6(x + 3) / 6). Each is registered in tf-keras under its
Keras 3 name (``hard_sigmoid`` under ``hard_sigmoid_keras3``, so that tf-keras' own keeps
its meaning); the bridge renames where needed and verifies the copy's outputs as always.
These are arithmetic only: no code from a model file is run.
"""

from __future__ import annotations

from compressor import keras_env

RENAMED = {"hard_sigmoid": "hard_sigmoid_keras3", "silu": "swish"}  # Keras 3 name -> tf-keras name
BRIDGED = frozenset({"relu6", "hard_sigmoid_keras3", "hard_silu", "hard_swish", "leaky_relu", "log_softmax"})


def _functions() -> dict:
    tf = keras_env.tf()

    def relu6(x):
        return tf.nn.relu6(x)

    def hard_sigmoid_keras3(x):
        return tf.nn.relu6(x + 3.0) / 6.0

    def hard_silu(x):
        return x * tf.nn.relu6(x + 3.0) / 6.0

    def leaky_relu(x, negative_slope=0.2):
        return tf.nn.leaky_relu(x, alpha=negative_slope)

    def log_softmax(x, axis=-1):
        return tf.nn.log_softmax(x, axis=axis)

    return {"relu6": relu6, "hard_sigmoid_keras3": hard_sigmoid_keras3, "hard_silu": hard_silu,
            "hard_swish": hard_silu, "leaky_relu": leaky_relu, "log_softmax": log_softmax}


def register() -> None:
    """Make tf-keras resolve these names (idempotent)."""
    custom = keras_env.tf_keras().utils.get_custom_objects()
    for name, function in _functions().items():
        custom.setdefault(name, function)


def translate(name):
    """A Keras 3 activation name as the bridged tf-keras model names it."""
    if not isinstance(name, str):
        return name
    register()
    return RENAMED.get(name, name)
