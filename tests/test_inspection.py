"""MACs, parameters and sparsity of a model, against hand counts."""

import numpy as np

from compressor import inspect_model, keras_env, load_model
from tests.helpers import models


def test_mnist_cnn_macs_match_hand_count():
    report = inspect_model(models.tf_keras_mnist_cnn())
    conv = 26 * 26 * 32 * (3 * 3 * 1)  # output pixels x kernel
    hidden = 13 * 13 * 32 * 64
    classes = 64 * 10
    assert [layer.macs for layer in report.layers] == [conv, 0, 0, hidden, classes]
    assert report.macs == conv + hidden + classes == 541_440
    assert report.params == (9 * 32 + 32) + (5408 * 64 + 64) + (64 * 10 + 10)


def test_recurrent_and_separable_macs(keras3_all_layers):
    report = inspect_model(load_model(keras3_all_layers))
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["lstm"].macs == 6 * 4 * 8 * (8 + 8)
    assert by_name["gru"].macs == 6 * 3 * 8 * (8 + 8)
    assert by_name["dw"].macs == 12 * 12 * 3 * 3 * 8
    assert by_name["sep"].macs == 12 * 12 * (3 * 3 * 8 + 8 * 8)
    assert by_name["bn"].macs == 0


def test_sparsity_counts_zero_kernel_weights():
    model = models.tf_keras_mnist_cnn()
    hidden = model.layers[3]
    kernel, bias = hidden.get_weights()
    kernel[:, : kernel.shape[1] // 2] = 0.0
    hidden.set_weights([kernel, bias])
    report = inspect_model(model)
    assert report.layers[3].sparsity == 0.5
    total = 288 + 346_112 + 640
    assert abs(report.sparsity - (346_112 / 2) / total) < 1e-9


def test_report_round_trips_to_json_types():
    import json

    data = inspect_model(models.tf_keras_mnist_cnn()).to_dict()
    assert json.loads(json.dumps(data))["macs"] == 541_440
    assert data["inputs"][0]["shape"] == [None, 28, 28, 1]


def test_inspect_names_inputs_by_layer():
    tfk = keras_env.tf_keras()
    inp = tfk.Input((3,), name="features")
    model = tfk.Model(inp, tfk.layers.Dense(2, name="scores")(inp))
    report = inspect_model(model)
    assert report.inputs[0].name == "features" and report.outputs[0].name == "scores"
    assert np.isclose(report.sparsity, 0.0)
