"""Keras 3 models built with keras-hub: its backbone and task classes load without the opt-in
(the installed library defines them; a config only names them), the task is bridged as the
Functional graph it is (the backbone run as it is, called on its dict of inputs), the report
counts the backbone's Dense and embedding weights, and the artifacts compute what the model does.
Names keras-hub registers that are not layers (its preset upload, its samplers) stay refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli

keras_hub = pytest.importorskip("keras_hub")

VOCAB, TOKENS = 64, 16


def _classifier(arch: str = "bert"):
    from compressor import keras_env

    keras_env.keras3()
    keras_env.set_seed(0)
    config = dict(vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                  max_sequence_length=32)
    if arch == "distilbert":
        return keras_hub.models.DistilBertTextClassifier(keras_hub.models.DistilBertBackbone(**config), num_classes=3,
                                                         preprocessor=None, activation="softmax")
    return keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**config), num_classes=3,
                                               preprocessor=None, activation="softmax")


def _sentences(count: int, seed: int = 0, segments: bool = True) -> dict[str, np.ndarray]:
    """Token ids of mixed lengths, zero-padded, with their padding mask (and one segment)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, TOKENS + 1, count)
    mask = (np.arange(TOKENS)[None, :] < lengths[:, None]).astype(np.int32)
    arrays = {"token_ids": np.where(mask == 1, rng.integers(1, VOCAB, (count, TOKENS)), 0).astype(np.int32),
              "padding_mask": mask}
    if segments:
        arrays["segment_ids"] = np.zeros((count, TOKENS), np.int32)
    return arrays


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras-hub")
    model = _classifier()
    model.save(folder / "bert.keras")
    test = _sentences(64, seed=1)
    np.savez(folder / "test.npz", y=np.zeros(64, np.int64), **test)
    return folder, model, test


def test_a_keras_hub_classifier_loads_without_the_opt_in_and_is_bridged_as_it_computes(bert):
    from compressor import keras_env
    from compressor.models import load_source
    from targets.export import compatibility

    folder, model, test = bert
    source = load_source(folder / "bert.keras")  # no trust_model
    feeds = [test[spec.name] for spec in source.inputs]
    expected = np.asarray(model(test, training=False))
    got = np.asarray(source.model(keras_env.as_called(source.model, feeds)))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # padding is masked: what stands behind the mask does not change the scores
    changed = {**test, "token_ids": np.where(test["padding_mask"] == 1, test["token_ids"], 7).astype(np.int32)}
    again = np.asarray(source.model(keras_env.as_called(source.model, [changed[s.name] for s in source.inputs])))
    np.testing.assert_allclose(again, got, atol=1e-5)
    # the report sees inside the backbone: its attention and MLP Dense layers and its embeddings
    report = source.report()
    types = {layer.type for layer in report.layers}
    assert {"EinsumDense", "Dense", "ReversibleEmbedding", "Embedding"} <= types
    assert report.params == model.count_params()
    # MACs per token: the same architecture written in tf-keras (tools.encoder) counts the same
    from compressor.models import as_source
    from tools import encoder

    twin = as_source(encoder.build(encoder.Config(vocabulary=VOCAB, layers=1, hidden=16, heads=2, intermediate=32,
                                                  max_positions=32, classes=3)))
    assert report.macs == twin.report().macs > 0
    reasons = compatibility(source)
    assert reasons["onnx-int4w"] is None and reasons["openvino-int8w"] is None


@pytest.mark.parametrize("target", ["tflite-fp32", pytest.param("onnx-fp32", marks=pytest.mark.slow)])
def test_a_keras_hub_classifier_exports_artifacts_that_compute_what_it_does(bert, tmp_path, target):
    from compressor.data.dataset import Dataset
    from compressor.models import load_source
    from targets import export, open_artifact

    folder, model, test = bert
    source = load_source(folder / "bert.keras")
    validation = Dataset(test, np.zeros(64, np.int64), "keras-hub test")
    result = export(source, target, out_dir=tmp_path, validation=validation)
    assert result.manifest["parity"]["passed"]
    runner = open_artifact(result.folder).runner(threads=1)
    try:
        got = runner.run([test[spec.name][:8] for spec in source.inputs])[0]
    finally:
        runner.close()
    np.testing.assert_allclose(got, np.asarray(model({k: v[:8] for k, v in test.items()}, training=False)), atol=1e-4)


@pytest.mark.parametrize("registered, module", [
    ("keras_hub>upload_preset", "keras_hub.src.utils.preset_utils"),  # a function keras-hub registers
    ("keras_hub>GreedySampler", "keras_hub.src.samplers.greedy_sampler"),  # registered, but not a layer
    ("keras_hub>BertBackbone", "evil.src.models"),  # a keras-hub name from another module
])
def test_names_keras_hub_registers_that_are_not_its_layers_are_refused(registered, module):
    from compressor.errors import UnsafeModelError
    from compressor.models import safety

    name = registered.split(">")[1]
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": name, "module": module, "registered_name": registered, "name": "x", "config": {}}]}}
    with pytest.raises(UnsafeModelError, match="refused to load"):
        safety.check_config(config, source="m.keras", trust_model=False)
    # and a real keras-hub layer passes the same check
    config["config"]["layers"][0].update(class_name="BertBackbone", module="keras_hub.src.models.bert.bert_backbone",
                                         registered_name="keras_hub>BertBackbone")
    safety.check_config(config, source="m.keras", trust_model=False)


def test_a_library_that_is_not_installed_is_named_in_one_line(monkeypatch):
    from compressor.errors import BadInputError
    from compressor.models import safety

    monkeypatch.setitem(safety.KERAS_LIBRARIES, "no_such_keras_lib", ("no_such_keras_lib", "no-such-keras-lib"))
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "Encoder", "module": "no_such_keras_lib.src.layers", "registered_name": "no_such_keras_lib>Encoder",
         "name": "x", "config": {}}]}}
    with pytest.raises(BadInputError, match="install no-such-keras-lib"):
        safety.check_config(config, source="m.keras", trust_model=False)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_a_trained_keras_hub_classifier_goes_through_every_target_within_the_budget(tmp_path, capsys, arch):
    from compressor.data import samples

    def arrays(split):
        data = samples.load("topics-text", split)
        ids, mask = data.x["input_ids"].astype(np.int32), data.x["attention_mask"].astype(np.int32)
        x = {"token_ids": ids, "padding_mask": mask}
        if arch == "bert":
            x["segment_ids"] = np.zeros_like(ids)
        return x, data.y

    import keras

    (xtr, ytr), (xte, yte) = arrays("train"), arrays("test")
    config = dict(vocabulary_size=256, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128,
                  max_sequence_length=64)
    keras.utils.set_random_seed(0)
    if arch == "bert":
        model = keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**config), num_classes=4,
                                                    preprocessor=None, activation="softmax")
    else:
        model = keras_hub.models.DistilBertTextClassifier(keras_hub.models.DistilBertBackbone(**config), num_classes=4,
                                                          preprocessor=None, activation="softmax")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=4, batch_size=32, verbose=0)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "train.npz", y=ytr, **xtr)
    np.savez(tmp_path / "test.npz", y=yte, **xte)
    out = tmp_path / "out"
    code, _, err = run_cli(["export", str(tmp_path / "model.keras"), "-t", "all", "--data", str(tmp_path / "train.npz"),
                            "--eval-data", str(tmp_path / "test.npz"), "-o", str(out)], capsys)
    assert "Internal error" not in err
    written = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/manifest.json")}
    for target in ("tflite-fp32", "tflite-dynamic-int8", "tflite-int8", "tflite-int8w", "onnx-fp32",
                   "onnx-dynamic-int8", "onnx-int8", "onnx-int8w", "onnx-int4w", "openvino-fp32", "openvino-int8",
                   "openvino-int8w", "openvino-int4w"):
        assert written[target]["parity"]["passed"], target
        assert written[target].get("budget") is None or written[target]["budget"]["drop_pp"] <= 1.0, target
    # integer-only targets cannot take the embeddings' float ops: refused in one line each
    assert code == 4 and "mcu: ops left in float, not int8" in err


def test_a_recipe_that_fine_tunes_is_refused_in_one_line_before_any_work(bert):
    """The backbone runs as the Keras 3 model it is: tfmot can neither wrap its layers nor train a
    copy of it (a copy would share its weights), so steps that fine-tune are refused up front."""
    from compressor.errors import UnsupportedModelError
    from compressor.models import load_source
    from compressor.pipeline import check_steps_fit
    from compressor.recipes import load_recipe

    folder, _, _ = bert
    source = load_source(folder / "bert.keras")
    for recipe in ("prune50-int8", "structured25-int8", "cluster16", "qat-int8"):
        with pytest.raises(UnsupportedModelError, match=r"layer 'bert_backbone' \(BertBackbone\) .* -r int8"):
            check_steps_fit(load_recipe(recipe), source)
    check_steps_fit(load_recipe("int8"), source)  # no steps: post-training quantization per target
