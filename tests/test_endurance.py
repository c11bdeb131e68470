"""Long-lived processes: compressing model after model must not pin every training graph."""

import gc

from compressor import keras_env
from compressor.pipeline import compress

RECIPE = {"fine_tune": {"epochs": 1}, "steps": [{"type": "prune", "sparsity": 0.5}]}


def _live_function_graphs() -> int:
    gc.collect()
    return sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())


def _custom_gradients() -> set:
    from tensorflow.python.framework import ops

    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


def test_repeated_compression_releases_its_training_graphs(tiny_cnn, digits8):
    train, _ = digits8
    registered, counts = _custom_gradients(), []
    for _ in range(3):
        result = compress(tiny_cnn, RECIPE, data=train)
        assert result.steps[0].sparsity > 0.3  # the step really trained and pruned
        del result
        keras_env.tf_keras().backend.clear_session()
        counts.append(_live_function_graphs())
    assert _custom_gradients() == registered
    assert counts[2] <= counts[0], f"live FuncGraphs grew across runs: {counts}"


def test_plain_fit_pins_graphs_without_release(digits8):
    """The TensorFlow behaviour ``releasing_graphs`` works around, shown on a bare fit."""
    tfk = keras_env.tf_keras()
    train, _ = digits8

    def fit_once():
        model = tfk.Sequential([tfk.Input((8, 8, 1)), tfk.layers.Flatten(), tfk.layers.Dense(10)])
        model.compile("adam", tfk.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train.x[:64], train.y[:64], epochs=1, verbose=0)

    before = _custom_gradients()
    fit_once()
    leaked = _custom_gradients() - before
    assert leaked, "TensorFlow no longer registers a custom gradient per traced fit"
    with keras_env.releasing_graphs():
        fit_once()
    assert _custom_gradients() - before == leaked
    from tensorflow.python.framework import ops

    for name in leaked:  # leave the registry as found
        ops._gradient_registry._registry.pop(name, None)
