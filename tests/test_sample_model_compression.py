"""(slow) The compression engine on the real sample models, with real data and fine-tuning."""

import pytest

import sample_models
from compressor.pipeline import compress


def _run(name, recipe):
    dataset = sample_models.SAMPLE_MODELS[name].dataset
    return compress(sample_models.path(name), recipe, data=f"sample:{dataset}:train",
                    eval_data=f"sample:{dataset}:test")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_cnn", "cifar_cnn", "mlp"])
@pytest.mark.parametrize("sparsity,allowed_drop", [(0.5, 0.01), (0.8, 0.02)])
def test_unstructured_pruning_keeps_accuracy(name, sparsity, allowed_drop):
    result = _run(name, {"fine_tune": {"epochs": 3}, "steps": [{"type": "prune", "sparsity": sparsity}]})
    step = result.steps[0]
    assert step.sparsity >= sparsity - 0.01
    assert step.accuracy >= result.baseline.accuracy - allowed_drop


@pytest.mark.slow
def test_structured_pruning_of_mobilenet_v2_cuts_macs_and_keeps_accuracy():
    recipe = {"fine_tune": {"epochs": 20, "learning_rate": 0.002},
              "steps": [{"type": "prune_structured", "fraction": 0.5, "exclude": ["Conv1"]}]}
    result = _run("mobilenet_v2", recipe)
    step = result.steps[0]
    assert 1 - step.macs / result.baseline.macs >= 0.40
    assert step.accuracy >= result.baseline.accuracy - 0.02


@pytest.mark.slow
def test_distilled_student_beats_the_same_student_from_scratch():
    recipe = {"fine_tune": {"epochs": 4, "learning_rate": 0.002},
              "steps": [{"type": "distill", "width": 0.5, "alpha": 0.1, "temperature": 4.0}]}
    result = _run("mnist_cnn", recipe)
    details = result.steps[0].details
    assert details["student_params"] <= 0.3 * details["teacher_params"]  # about a quarter
    assert details["distilled_accuracy"] > details["scratch_accuracy"], details
