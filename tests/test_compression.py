"""Compression algorithms on tiny models: what each promises, checked element by element."""

import numpy as np
import pytest

from compressor import inspect_model, keras_env, recipes
from compressor.algorithms import clustering, distillation, pruning, qat, structured
from compressor.data import Dataset
from compressor.errors import BadInputError
from compressor.pipeline import compress
from compressor.recipes import FineTune
from tests.helpers import models

FAST = FineTune(epochs=1, batch_size=64, learning_rate=1e-3)


def _rgb(data: Dataset) -> Dataset:
    return Dataset(np.repeat(data.x, 3, axis=-1), data.y, data.name + " rgb")


@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_magnitude_pruning_reaches_target_sparsity_per_layer(tiny_cnn, digits8, schedule, sparsity):
    pruned, record = pruning.prune_magnitude(tiny_cnn, digits8[0], pruning.Prune(sparsity=sparsity, schedule=schedule),
                                             FAST)
    for name in ("conv", "classes"):
        kernel = pruned.get_layer(name).kernel.numpy()
        assert np.mean(kernel == 0) >= sparsity - 0.01
        assert record["layer_sparsity"][name] == pytest.approx(np.mean(kernel == 0))
    assert not np.any(tiny_cnn.get_layer("classes").kernel.numpy() == 0), "the caller's model is left untouched"


def test_pruning_excludes_layers_by_name(tiny_cnn, digits8):
    pruned, record = pruning.prune_magnitude(tiny_cnn, digits8[0], pruning.Prune(sparsity=0.5, exclude=("conv",)),
                                             FAST)
    assert set(record["layer_sparsity"]) == {"classes"}
    assert np.mean(pruned.get_layer("conv").kernel.numpy() == 0) < 0.05


def test_two_four_sparsity_pattern_holds_element_wise(digits8):
    model = models.two_conv_cnn()
    pruned, record = pruning.prune_nm(model, digits8[0], pruning.PruneNM(n=2, m=4), FAST)
    assert set(record["layer_sparsity"]) == {"conv2", "classes"} and record["skipped_layers"] == ["conv1"]
    for name in ("conv2", "classes"):
        kernel = pruned.get_layer(name).kernel.numpy()
        groups = np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2] // 4, 4)
        assert np.all(np.sum(groups == 0, axis=-1) >= 2), name
    broken = np.ones((3, 3, 8, 4))
    assert not pruning.nm_pattern_holds(broken, 2, 4)


def test_structured_pruning_follows_residual_adds_and_batchnorm():
    model = models.residual_cnn()
    pruned, record = structured.prune_channels(model, structured.PruneStructured(fraction=0.5))
    widths = {layer.name: layer.filters for layer in pruned.layers if type(layer).__name__ == "Conv2D"}
    assert widths == {"conv1": 8, "conv2": 8, "project": 6}  # conv1/conv2 tied by the Add
    hw = 8 * 8
    before = hw * 9 * 3 * 16 + hw * 9 * 16 * 16 + hw * 9 * 16 + hw * 16 * 12 + 12 * 10
    after = hw * 9 * 3 * 8 + hw * 9 * 8 * 8 + hw * 9 * 8 + hw * 8 * 6 + 6 * 10
    assert record["macs_before"] == before == inspect_model(model).macs
    assert record["macs_after"] == after == inspect_model(pruned).macs
    assert record["mac_reduction"] == pytest.approx(1 - after / before)
    assert "classes: reaches the model's output" in record["groups_kept"]


def test_structured_pruning_of_zero_filters_keeps_outputs_exact():
    model = models.residual_cnn()
    dead = np.arange(0, 16, 2)  # half of the tied channels carry nothing
    for name in ("conv1", "conv2"):
        kernel, bias = model.get_layer(name).get_weights()
        kernel[..., dead] = 0.0
        bias[dead] = 0.0
        model.get_layer(name).set_weights([kernel, bias])
    for name in ("bn1", "bn2"):  # a zero channel stays zero through BatchNorm
        gamma, beta, mean, var = model.get_layer(name).get_weights()
        beta[dead], mean[dead] = 0.0, 0.0
        gamma[:] = np.linspace(0.5, 1.5, 16)
        model.get_layer(name).set_weights([gamma, beta, mean, var])
    kernel, bias = model.get_layer("project").get_weights()
    kernel[..., ::2] = 0.0
    bias[::2] = 0.0
    model.get_layer("project").set_weights([kernel, bias])
    pruned, _ = structured.prune_channels(model, structured.PruneStructured(fraction=0.5))
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(x).numpy(), model(x).numpy(), atol=1e-5)
    assert pruned.get_layer("conv1").filters == 8


def test_batch_norm_recalibration_measures_the_pruned_models_own_statistics():
    model = models.residual_cnn()
    pruned, _ = structured.prune_channels(model, structured.PruneStructured(fraction=0.5))
    x = np.random.default_rng(1).uniform(0, 4, (96, 8, 8, 3)).astype(np.float32)
    bn1 = pruned.get_layer("bn1")
    momentum = bn1.momentum
    assert structured.recalibrate_batch_norm(pruned, Dataset(x, np.zeros(96, np.int64)), batch_size=32) == 2
    # the moving mean is now the mean of conv1's output over all 96 samples (three batches of 32)
    conv1 = keras_env.tf_keras().Model(pruned.inputs, pruned.get_layer("conv1").output)
    np.testing.assert_allclose(bn1.moving_mean.numpy(), conv1(x).numpy().mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    assert bn1.momentum == momentum  # the layer trains as before afterwards


def test_structured_pruning_fine_tunes_from_the_unpruned_teacher(tiny_cnn, digits8):
    step = {"type": "prune_structured", "fraction": 0.5}
    for weight, how in ((0.5, "distilled from the unpruned model"), (0.0, "labels")):
        result = compress(tiny_cnn, {"fine_tune": {"epochs": 1}, "steps": [{**step, "teacher_weight": weight}]},
                          data=digits8[0], eval_data=digits8[1])
        assert result.steps[0].details["fine_tuned_on"] == how
    with pytest.raises(BadInputError, match="teacher_weight: must be in \\[0, 1\\)"):
        recipes.load_recipe({"steps": [{**step, "teacher_weight": 1.0}]})


def test_structured_pruning_of_a_sequential_cnn_through_flatten(digits8):
    model = models.two_conv_cnn()
    pruned, record = structured.prune_channels(model, structured.PruneStructured(fraction=0.5))
    assert [pruned.get_layer(n).filters for n in ("conv1", "conv2")] == [4, 4]
    assert pruned.get_layer("classes").kernel.shape == (8 * 8 * 4, 10)
    assert record["params_after"] < record["params_before"]


def test_clustering_leaves_at_most_n_values_per_kernel(tiny_cnn, digits8):
    clustered, record = clustering.cluster(tiny_cnn, digits8[0], clustering.Cluster(clusters=8), FAST)
    for name in ("conv", "classes"):
        assert np.unique(clustered.get_layer(name).kernel.numpy()).size <= 8
    assert record["unique_values"]["classes"] <= 8
    assert record["weights_gzip_after"] < record["weights_gzip_before"]


def test_qat_model_exports_and_runs(tiny_cnn, digits8, tmp_path):
    from targets import export, open_artifact

    train, test = digits8
    model, record = qat.quantize_aware(tiny_cnn, train, qat.QAT(), FAST)
    assert record["preserve"] == "none"
    result = export(model, "tflite-int8", out_dir=tmp_path, calibration=train, validation=test)
    assert result.parity["agreement"] >= 0.95
    out = open_artifact(result.folder).runner().run(test.x[:4])[0]
    assert out.shape == (4, 10)


def test_qat_keeps_sparsity_of_a_pruned_model(tiny_cnn, digits8):
    pruned, _ = pruning.prune_magnitude(tiny_cnn, digits8[0], pruning.Prune(sparsity=0.5), FAST)
    model, record = qat.quantize_aware(pruned, digits8[0], qat.QAT(), FAST)
    assert record["preserve"] == "sparsity"
    kernel = next(w for w in model.weights if "classes" in w.name and w.name.endswith("kernel:0")).numpy()
    assert np.mean(kernel == 0) >= 0.49


def test_distillation_loss_matches_a_hand_computation():
    labels = np.array([0, 2])
    teacher = np.array([[2.0, 1.0, 0.1], [0.5, 0.2, 3.0]], np.float32)
    student = np.array([[1.0, 0.5, 0.2], [0.1, 0.4, 1.5]], np.float32)
    alpha, temperature = 0.3, 2.0

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    ce = -np.log(softmax(student)[np.arange(2), labels])
    p, q = softmax(teacher / temperature), softmax(student / temperature)
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    expected = np.mean(alpha * ce + (1 - alpha) * temperature**2 * kl)
    got = distillation.distillation_loss(labels, teacher, student, alpha=alpha, temperature=temperature)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_distillation_reports_teacher_scratch_and_distilled(tiny_cnn, digits8):
    train, test = digits8
    student, record = distillation.distill(tiny_cnn, train, distillation.Distill(width=0.5), FineTune(epochs=2),
                                           eval_data=test)
    assert student.get_layer("conv").filters == 4 and record["student_params"] < record["teacher_params"]
    for key in ("teacher_accuracy", "distilled_accuracy", "scratch_accuracy", "verdict"):
        assert key in record
    assert ("did NOT" in record["verdict"]) == (record["distilled_accuracy"] <= record["scratch_accuracy"])


def test_same_inputs_and_seed_give_the_same_weights(tiny_cnn, digits8):
    recipe = {"seed": 3, "fine_tune": {"epochs": 1}, "steps": [{"type": "prune", "sparsity": 0.5}]}
    first = compress(tiny_cnn, recipe, data=digits8[0]).model.get_weights()
    second = compress(tiny_cnn, recipe, data=digits8[0]).model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_keras3_model_goes_through_pruning_and_qat(digits8):
    keras = keras_env.keras3()
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    recipe = {"fine_tune": {"epochs": 1}, "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "qat"}]}
    result = compress(model, recipe, data=digits8[0], eval_data=digits8[1])
    assert [s.type for s in result.steps] == ["prune", "qat"]
    assert result.steps[0].sparsity >= 0.49 and result.steps[1].details["preserve"] == "sparsity"
    assert any("Quantize" in type(layer).__name__ for layer in result.model.layers)
    assert result.steps[1].accuracy is not None and result.baseline.macs == result.steps[1].macs


def test_pipeline_records_each_step(tiny_cnn, digits8):
    recipe = {"fine_tune": {"epochs": 1}, "steps": [{"type": "prune_structured", "fraction": 0.5}]}
    result = compress(tiny_cnn, recipe, data=digits8[0], eval_data=digits8[1])
    step = result.steps[0]
    assert step.macs < result.baseline.macs and step.params < result.baseline.params
    assert 0 <= step.accuracy <= 1 and "accuracy_before_fine_tune" in step.details
    assert result.to_dict()["recipe"]["steps"][0]["fraction"] == 0.5


BAD_RECIPES = {
    "unknown key": ({"stepz": []}, "unknown key 'stepz' \\(valid: "),
    "unknown step": ({"steps": [{"type": "quantise"}]},
                     "unknown step type 'quantise' \\(valid: cluster, distill, prune, prune_nm, prune_structured, qat\\)"),
    "step without type": ({"steps": [{"sparsity": 0.5}]}, "needs a 'type'"),
    "wrong type": ({"steps": [{"type": "prune", "sparsity": "half"}]}, "sparsity: must be float"),
    "sparsity 1.5": ({"steps": [{"type": "prune", "sparsity": 1.5}]}, "between 0 and 1"),
    "zero clusters": ({"steps": [{"type": "cluster", "clusters": 0}]}, "at least 2 clusters"),
    "bad n:m": ({"steps": [{"type": "prune_nm", "n": 4, "m": 4}]}, "1 <= n < m"),
    "negative epochs": ({"fine_tune": {"epochs": -1}}, "epochs: must be >= 0"),
    "bad schedule": ({"steps": [{"type": "prune", "schedule": "cubic"}]}, "not one of: constant, polynomial"),
    "qat not last": ({"steps": [{"type": "qat"}, {"type": "prune"}]}, "must be the last step"),
    "not a mapping": (["prune"], "must be a mapping"),
    "unknown step key": ({"steps": [{"type": "cluster", "k": 3}]}, "unknown key 'k'"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipes_are_refused_with_the_valid_choices(case):
    data, message = BAD_RECIPES[case]
    with pytest.raises(BadInputError, match=message):
        recipes.load_recipe(data)


def test_builtin_recipes_round_trip(tmp_path):
    import yaml

    for name in recipes.BUILTIN:
        recipe = recipes.load_recipe(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe.to_dict()))
        assert recipes.load_recipe(str(path)) == recipe


def test_recipe_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [unclosed")
    with pytest.raises(BadInputError, match="not valid YAML"):
        recipes.load_recipe(str(bad))
    with pytest.raises(BadInputError, match="not a file, not a built-in \\(valid: int8"):
        recipes.load_recipe(str(tmp_path / "missing.yaml"))
