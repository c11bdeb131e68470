"""Fine-tuning and evaluation shared by every compression step."""

from __future__ import annotations

from compressor import keras_env
from compressor.data import Dataset
from compressor.errors import BadInputError
from compressor.metrics.compare import top1


def outputs_probabilities(model) -> bool:
    """True when the model ends in a softmax (its loss then takes probabilities, not logits)."""
    tfk = keras_env.tf_keras()
    last = model.layers[-1]
    while hasattr(last, "layers") and last.layers:  # a nested model or a tfmot wrapper
        last = last.layers[-1]
    inner = getattr(last, "layer", last)
    activation = getattr(inner, "activation", None)
    activation = getattr(activation, "activation", activation)  # QAT wraps activations too
    return isinstance(inner, tfk.layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def loss_for(model):
    tfk = keras_env.tf_keras()
    return tfk.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))


def fit(model, data: Dataset, fine_tune, *, seed: int, callbacks=(), loss=None) -> None:
    """Train ``model`` on ``data`` (labelled) with the recipe's fine-tuning settings."""
    if data is None or data.y is None:
        raise BadInputError("fine-tuning needs labelled training data (--data with labels)")
    if fine_tune.epochs == 0:
        return
    tfk = keras_env.tf_keras()
    keras_env.set_seed(seed)
    model.compile(optimizer=tfk.optimizers.Adam(fine_tune.learning_rate), loss=loss or loss_for(model),
                  metrics=["accuracy"])
    model.fit(keras_env.as_called(model, data.x), data.y, batch_size=fine_tune.batch_size, epochs=fine_tune.epochs, shuffle=True,
              callbacks=list(callbacks), verbose=0)


def accuracy(model, data: Dataset | None) -> float | None:
    """Top-1 accuracy of ``model`` on ``data`` (None without labelled data)."""
    if data is None or data.y is None:
        return None
    predictions = model.predict(keras_env.as_called(model, data.x), batch_size=256, verbose=0)
    return top1(predictions, data.y)


def is_excluded(layer, exclude) -> bool:
    return layer.name in exclude or type(layer).__name__ in exclude


def clone(model, clone_function, *, trust_model: bool = False):
    """``clone_model`` inside a Keras safe-mode scope.

    Cloning deserializes every layer; CVE-2026-12481 showed ``Lambda.from_config``
    running code when reached this way outside a safe-mode scope.
    """
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    tfk = keras_env.tf_keras()
    with SafeModeScope(safe_mode=not trust_model):
        return tfk.models.clone_model(model, clone_function=clone_function)


def copy(model, *, trust_model: bool = False):
    """An independent copy of ``model`` with the same weights."""
    duplicate = clone(model, None, trust_model=trust_model)
    duplicate.set_weights(model.get_weights())
    return duplicate
