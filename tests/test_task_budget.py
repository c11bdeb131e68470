"""The budget in the task's own metric: a small segmenter through the CLI with ``--metric miou``
(truth from the data's ``t_mask``), judged in mIoU points by the export, recorded in every
manifest and measured again by the benchmarks; and a bad ``--metric`` refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli


def _squares(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grey images with a bright square somewhere; the mask is the square."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (count, 16, 16, 1)).astype(np.float32)
    masks = np.zeros((count, 16, 16), np.int64)
    for image, mask in zip(images, masks):
        top, left, size = rng.integers(0, 9), rng.integers(0, 9), rng.integers(4, 8)
        image[top:top + size, left:left + size] += 0.7
        mask[top:top + size, left:left + size] = 1
    return images, masks


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    from compressor import keras_env

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    model = tfk.Sequential([tfk.Input((16, 16, 1), name="image"), L.Conv2D(8, 3, padding="same", activation="relu"),
                            L.Conv2D(8, 3, padding="same", activation="relu"),
                            L.Conv2D(2, 1, activation="softmax", name="mask")])
    x, masks = _squares(400, 0)
    model.compile(tfk.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, masks, epochs=10, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("segmenter")
    model.save(folder / "seg.keras")
    for name, seed in (("train", 1), ("test", 2)):
        images, truth = _squares(120, seed)
        np.savez(folder / f"{name}.npz", x=images, t_mask=truth)
    return folder


def test_the_budget_and_the_reports_are_in_miou_points(segmenter, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["-q", "compress", str(segmenter / "seg.keras"), "-r", "int8", "-t", "onnx-int8",
                            "-t", "onnx-fp32", "--data", str(segmenter / "train.npz"), "--eval-data",
                            str(segmenter / "test.npz"), "-o", str(out), "--metric", "miou", "--max-drop", "2",
                            "--rounds", "1", "--min-seconds", "0.05"], capsys)
    assert code == 0, err
    manifest = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    budget = manifest["budget"]
    assert manifest["task_metric"]["spec"] == "miou" and budget["task_metric"]["truth"] == "labels"
    float_miou = budget["task_metric"]["float_value"]["miou"]
    assert float_miou > 0.8  # the model learned the squares: the metric measures something
    assert budget["drop_pp"] == pytest.approx(100 * (float_miou - budget["task_metric"]["value"]["miou"]))
    assert budget["drop_pp"] <= 2.0 and budget["metric"] == "mIoU points against labels"
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    measured = rows["onnx-int8"]["task_metric"]
    assert measured["name"] == "miou" and measured["truth"] == "labels"
    assert measured["value"]["miou"] == pytest.approx(budget["task_metric"]["value"]["miou"], abs=1e-9)
    assert rows["onnx-fp32"]["task_metric"]["drop_pp"] == pytest.approx(0.0, abs=0.5)
    report = (out / "report.md").read_text()
    assert f"miou {measured['value']['miou'] * 100:.2f}" in report


def test_an_unknown_metric_is_refused_before_any_work(segmenter, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_cli(["compress", str(segmenter / "seg.keras"), "-r", "int8", "-t", "onnx-int8", "--data",
                            str(segmenter / "train.npz"), "--eval-data", str(segmenter / "test.npz"), "-o", str(out),
                            "--metric", "miou:classes=2"], capsys)
    assert code == 3 and "metric miou: unknown option 'classes=2'" in err and not out.exists()


USER_METRIC = '''
import numpy as np


def foreground_dice(outputs, reference, truth):
    """Dice of the predicted square against the data's own mask."""
    predicted, mask = outputs[0].argmax(-1) == 1, truth["t_mask"] == 1
    return 2 * np.sum(predicted & mask) / (np.sum(predicted) + np.sum(mask))


def broken(outputs, reference, truth):
    raise KeyError("t_boxes")


def words(outputs, reference, truth):
    return "fine"
'''


@pytest.mark.slow
def test_a_users_metric_file_needs_the_opt_in_and_then_judges_the_budget(segmenter, tmp_path, capsys):
    metric = tmp_path / "my_metric.py"
    metric.write_text(USER_METRIC)
    args = ["-q", "compress", str(segmenter / "seg.keras"), "-r", "int8", "-t", "onnx-int8", "--data",
            str(segmenter / "train.npz"), "--eval-data", str(segmenter / "test.npz"), "--max-drop", "2",
            "--rounds", "1", "--min-seconds", "0.05"]
    code, _, err = run_cli([*args, "-o", str(tmp_path / "refused"), "--metric", f"{metric}:foreground_dice"], capsys)
    assert code == 2 and "runs the code of" in err and "--trust-model" in err
    assert not (tmp_path / "refused").exists()
    code, _, err = run_cli([*args, "-o", str(tmp_path / "out"), "--metric", f"{metric}:foreground_dice",
                            "--trust-model"], capsys)
    assert code == 0, err
    budget = json.loads((tmp_path / "out" / "onnx-int8" / "manifest.json").read_text())["budget"]
    value = budget["task_metric"]["value"][f"{metric}:foreground_dice"]
    assert 0.8 < value <= 1.0 and budget["drop_pp"] <= 2.0
    export = ["export", str(segmenter / "seg.keras"), "-t", "onnx-int8", "--data", str(segmenter / "train.npz"),
              "--eval-data", str(segmenter / "test.npz")]  # judged by the budget alone: no benchmark
    for function, message in (("broken", "raised KeyError: 't_boxes'"), ("words", "gave 'fine', not a finite number")):
        code, out, err = run_cli([*export, "-o", str(tmp_path / function), "--metric", f"{metric}:{function}",
                                  "--trust-model"], capsys)
        assert code == 3 and message in out + err


def test_a_users_metric_in_the_python_api(segmenter, tmp_path):
    from compressor.data import load_dataset
    from compressor.metrics.task import parse_metric
    from compressor.models import load_source
    from targets import export

    metric = tmp_path / "my_metric.py"
    metric.write_text(USER_METRIC)
    source = load_source(segmenter / "seg.keras")
    train, test = (load_dataset(str(segmenter / f"{n}.npz")) for n in ("train", "test"))
    result = export(source, "onnx-int8", out_dir=tmp_path / "api", calibration=train, validation=test,
                    metric=parse_metric(f"{metric}:foreground_dice", trust=True), max_drop=2.0)
    assert result.manifest["task_metric"]["name"] == f"{metric}:foreground_dice"
    assert result.manifest["budget"]["drop_pp"] <= 2.0


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    """A digit classifier whose hidden embedding is a second output (classes first)."""
    from compressor import keras_env
    from compressor.data import samples

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    L = tfk.layers
    image = tfk.Input((8, 8, 1), name="image")
    embedding = L.Dense(16, name="embedding")(L.Dense(32, activation="relu")(L.Flatten()(image)))
    classes = L.Dense(10, activation="softmax", name="classes")(L.Activation("relu")(embedding))
    model = tfk.Model(image, [classes, embedding])
    train, test = samples.load("digits-8", "train"), samples.load("digits-8", "test")
    model.compile(tfk.optimizers.Adam(0.01), ["sparse_categorical_crossentropy", None])
    model.fit(train.x, train.y, epochs=15, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("two_heads")
    model.save(folder / "heads.keras")
    tfk.Model(image, embedding).save(folder / "embedding.keras")  # the embedding alone: (batch, 16)
    np.savez(folder / "train.npz", x=train.x, y=train.y)
    np.savez(folder / "test.npz", x=test.x[:200], y=test.y[:200])
    return folder


def test_each_head_is_judged_by_its_own_metric_and_budget(two_heads, tmp_path, capsys):
    """Two --metric options: the class head by top-1 within --max-drop, the embedding head by
    recall@5 within its own max_drop; the manifest and the benchmarks carry both heads' figures,
    and the budget's drop is the worst head's against its own budget. The --json document on
    stdout stays clean while the budget tries ONNX Runtime's histogram calibrations (they print)."""
    out = tmp_path / "out"
    code, stdout, err = run_cli(["-q", "compress", str(two_heads / "heads.keras"), "-r", "int8", "-t", "onnx-int8",
                                 "--data", str(two_heads / "train.npz"), "--eval-data", str(two_heads / "test.npz"),
                                 "-o", str(out), "--metric", "top1", "--metric", "retrieval:output=1,k=5,max_drop=10",
                                 "--max-drop", "1", "--rounds", "1", "--min-seconds", "0.05", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["exported"]
    manifest = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    assert manifest["task_metric"]["spec"] == "top1;retrieval:output=1,k=5,max_drop=10"
    assert [h["max_drop_pp"] for h in manifest["task_metric"]["heads"]] == [1.0, 10.0]
    budget = manifest["budget"]
    value, float_value = budget["task_metric"]["value"], budget["task_metric"]["float_value"]
    assert float_value["top1"] > 0.8 and float_value["retrieval:k=5,output=1"] == 1.0
    top1_drop, retrieval_drop = value["top1 drop_pp"], value["retrieval:k=5,output=1 drop_pp"]
    assert top1_drop == pytest.approx(100 * (float_value["top1"] - value["top1"]))
    assert budget["drop_pp"] == pytest.approx(max(top1_drop, retrieval_drop / 10)) and budget["drop_pp"] <= 1.0
    row = next(r for r in json.loads((out / "results.json").read_text())["results"] if r["name"] == "onnx-int8")
    assert row["task_metric"]["value"]["top1 drop_pp"] == pytest.approx(top1_drop)
    assert row["task_metric"]["drop_pp"] == pytest.approx(budget["drop_pp"])


def test_an_output_the_metric_reads_is_what_the_metric_says_it_is(two_heads, tmp_path):
    """A single (batch, 16) output looks like 16 class scores; judged by --metric retrieval it is an
    embedding: parity follows its SNR, not the agreement of its argmax (which refused artifacts
    whose neighbours were all kept), no labels apply to it, and the budget is in recall points."""
    from compressor.data import samples
    from compressor.models import load_source
    from targets import export

    source = load_source(two_heads / "embedding.keras")
    assert source.class_outputs() == [True]  # the guess from its shape alone
    train, test = samples.load("digits-8", "train"), samples.load("digits-8", "test").take(200)
    result = export(source, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test,
                    metric="retrieval:k=5", max_drop=5)
    manifest = result.manifest
    assert manifest["labelled_output"] is None and manifest["parity"]["agreement"] is None
    assert manifest["parity"]["snr_db"] > 6 and manifest["budget"]["task_metric"]["name"] == "retrieval"
    assert manifest["budget"]["drop_pp"] <= 5
    from compressor.app.views import _parity_bound

    assert _parity_bound(manifest["parity"]) == "SNR >= 6 dB (task metric)"  # what the export table says it met


def test_labels_for_another_task_do_not_block_a_model_judged_by_its_metric(tmp_path):
    """A regressor's data that also carries class labels (its images' digits): judged by --metric mae,
    its 6 outputs are not 6 class scores, so labels up to 9 are no error; without a metric they
    are refused in one line as before."""
    from compressor import keras_env
    from compressor.data import Dataset, samples
    from compressor.errors import BadInputError
    from targets import export

    keras_env.set_seed(0)
    tfk = keras_env.tf_keras()
    model = tfk.Sequential([tfk.Input((8, 8, 1)), tfk.layers.Flatten(), tfk.layers.Dense(6, activation="sigmoid")])
    digits = samples.load("digits-8", "test").take(60)
    data = Dataset(digits.x, digits.y, "digits with targets", truth={"t_target": model.predict(digits.x, verbose=0)})
    with pytest.raises(BadInputError, match="label 9 is out of range for a model with 6 classes"):
        export(model, "onnx-fp32", out_dir=tmp_path, validation=data)
    result = export(model, "onnx-fp32", out_dir=tmp_path, validation=data, metric="mae")
    assert result.manifest["parity"]["passed"] and result.manifest["labelled_output"] is None
