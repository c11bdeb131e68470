"""compressor.data: every source, batching, seeded shuffling, clear errors."""

import numpy as np
import pytest

from compressor.data import samples as sample_data
from compressor.models import as_source
from compressor.data import Dataset, load_dataset
from compressor import keras_env
from compressor.errors import BadInputError
from tests.helpers import models


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_source(tmp_path):
    x = np.random.default_rng(0).random((10, 28, 28, 1), dtype=np.float32)
    y = np.arange(10) % 10
    data = load_dataset(_npz(tmp_path / "d.npz", x=x, y=y))
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, y)
    data.check_fits(as_source(models.tf_keras_mnist_cnn()))


def test_image_folder_is_resized_to_model_input(tmp_path):
    from PIL import Image

    for label, colour in (("cat", 40), ("dog", 200)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), colour + i, np.uint8)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # a notebook's hidden folder is not a third class
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / ".ipynb_checkpoints" / "0.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "dog" / ".hidden.png")
    data = load_dataset(tmp_path, input_shape=(28, 28, 1))
    assert data.x.shape == (6, 28, 28, 1) and data.x.dtype == np.float32
    assert list(data.y) == [0, 0, 0, 1, 1, 1] and data.name.endswith("(2 classes: cat, dog; pixels 0-255)")
    assert abs(float(data.x[0].mean()) - 40) < 1  # raw pixels, as keras.utils.image_dataset_from_directory gives
    unit = load_dataset(tmp_path, input_shape=(28, 28, 1), pixel_scale="unit")
    np.testing.assert_allclose(unit.x, data.x / 255, rtol=1e-6)
    assert unit.pixels == "unit" and "pixels / 255" in unit.name
    symmetric = load_dataset(tmp_path, input_shape=(28, 28, 1), pixel_scale="symmetric")
    np.testing.assert_allclose(symmetric.x, data.x / 127.5 - 1, atol=1e-6)


def test_pixel_scale_is_for_image_folders_only(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, int))
    with pytest.raises(BadInputError, match="--pixel-scale applies to image folders"):
        load_dataset(path, pixel_scale="unit")


def _rescaling_cnn():
    """As Keras' image examples build them: the model divides by 255 itself."""
    tfk = keras_env.tf_keras()
    return tfk.Sequential([tfk.Input((8, 8, 1)), tfk.layers.Rescaling(1 / 255), tfk.layers.Flatten(),
                           tfk.layers.Dense(3, activation="softmax")])


def test_images_already_in_unit_range_for_a_model_that_rescales_are_refused(tmp_path):
    """The silent failure: a Rescaling(1/255) model fed 0-1 pixels scores at chance with exit 0."""
    from PIL import Image

    source = as_source(_rescaling_cnn())
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 30 + 100 * i, np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    load_dataset(tmp_path / "imgs", input_shape=(8, 8, 1)).check_fits(source)  # raw: what the model wants
    refused = r"rescales its input itself \(x 0.003922.*already in 0-1.*--pixel-scale raw"
    with pytest.raises(BadInputError, match=refused):
        load_dataset(tmp_path / "imgs", input_shape=(8, 8, 1), pixel_scale="unit").check_fits(source)
    scaled = _npz(tmp_path / "d.npz", x=np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32),
                  y=np.zeros(4, int))
    with pytest.raises(BadInputError, match="give pixels 0-255 in the .npz"):
        load_dataset(scaled).check_fits(source)


def test_sample_sets_are_real_digits():
    train, test = load_dataset("sample:digits-28"), load_dataset("sample:digits-28:test")
    assert train.x.shape == (1347, 28, 28, 1) and test.x.shape == (450, 28, 28, 1)
    assert sorted(set(train.y.tolist())) == list(range(10))
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    tokens = load_dataset("sample:digits-tokens")
    assert tokens.x.dtype == np.int32 and tokens.x.max() == 16 and tokens.x.shape[1] == 64


def test_iterables_and_arrays():
    items = [(np.full((3,), i, np.float32), i % 2) for i in range(5)]
    data = load_dataset(iter(items))
    assert data.x.shape == (5, 3) and list(data.y) == [0, 1, 0, 1, 0]
    unlabelled = load_dataset([np.zeros(3, np.float32)] * 4)
    assert unlabelled.y is None and len(unlabelled) == 4
    assert len(load_dataset((np.zeros((2, 3), np.float32), np.array([0, 1])))) == 2


def test_batches_cover_all_samples_and_shuffle_is_seeded():
    data = Dataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    sizes = [len(x) for x, _ in data.batches(4)]
    assert sizes == [4, 4, 2]
    first = np.concatenate([y for _, y in data.batches(3, shuffle=True, seed=1)])
    again = np.concatenate([y for _, y in data.batches(3, shuffle=True, seed=1)])
    other = np.concatenate([y for _, y in data.batches(3, shuffle=True, seed=2)])
    assert sorted(first) == list(range(10))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_split_is_disjoint_and_seeded():
    data = Dataset(np.arange(20, dtype=np.float32)[:, None], np.arange(20) % 10)
    a, b = data.split(0.25, seed=0)
    assert len(a) == 15 and len(b) == 5
    assert not set(a.x[:, 0]) & set(b.x[:, 0])


def test_mnist_file_present_locally_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert "digits" in sample_data.load("mnist", "train").name  # fallback when absent
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "datasets" / "mnist.npz",
             x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), y_test=np.arange(8) % 10)
    data = sample_data.load("mnist", "test")
    assert "MNIST" in data.name and data.x.shape == (8, 28, 28, 1) and data.x.max() <= 1.0
    assert sample_data.load("mnist-flat", "train").x.shape == (30, 784)


def test_cifar_files_present_locally_are_used(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert "digits" in sample_data.load("cifar10", "test").name
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4]}
        (folder / name).write_bytes(pickle.dumps(batch))
    test = sample_data.load("cifar10", "test")
    assert "CIFAR-10" in test.name and test.x.shape == (4, 32, 32, 3)
    assert len(sample_data.load("cifar10", "train")) == 20


BAD_DATA = {
    "wrong shape": (lambda d: _npz(d / "a.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, int)),
                    "shape 8x8x1 but the model takes 28x28x1"),
    "wrong dtype": (lambda d: _npz(d / "a.npz", x=np.array([["a"] * 4] * 2), y=np.zeros(2, int)),
                    "non-numeric dtype"),
    "nan": (lambda d: _npz(d / "a.npz", x=np.full((2, 28, 28, 1), np.nan, np.float32), y=np.zeros(2, int)),
            "NaN or Inf"),
    "inf": (lambda d: _npz(d / "a.npz", x=np.full((2, 28, 28, 1), np.inf, np.float32), y=np.zeros(2, int)),
            "NaN or Inf"),
    "zero samples": (lambda d: _npz(d / "a.npz", x=np.zeros((0, 28, 28, 1), np.float32)), "zero samples"),
    "label count": (lambda d: _npz(d / "a.npz", x=np.zeros((3, 28, 28, 1), np.float32), y=np.zeros(2, int)),
                    "2 labels for 3 samples"),
    "label out of range": (lambda d: _npz(d / "a.npz", x=np.zeros((2, 28, 28, 1), np.float32), y=np.array([0, 10])),
                           "label 10 is out of range for a model with 10 classes"),
    "float labels": (lambda d: _npz(d / "a.npz", x=np.zeros((2, 28, 28, 1), np.float32), y=np.array([0.5, 1.0])),
                     "integer class indices"),
    "no x array": (lambda d: _npz(d / "a.npz", data=np.zeros(3)), "no 'x' array"),
    "pickled npz": (lambda d: _npz(d / "a.npz", x=np.array([{"a": 1}], dtype=object)), "pickled"),
    "truncated npz": (lambda d: _truncated_npz(d), "corrupt .npz"),
    "missing": (lambda d: d / "none.npz", "no such file"),
    "file for folder": (lambda d: _write(d / "x.csv"), "unknown dataset format"),
    "empty image folder": (lambda d: (d / "imgs").mkdir() or d / "imgs", "one sub-folder per class"),
}


def _write(path):
    path.write_text("1,2,3")
    return path


def _truncated_npz(d):
    path = _npz(d / "t.npz", x=np.zeros((10, 28, 28, 1), np.float32))
    path.write_bytes(path.read_bytes()[:200])
    return path


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_refused_with_a_clear_message(tmp_path, case):
    make, message = BAD_DATA[case]
    source = make(tmp_path)
    with pytest.raises(BadInputError, match=message) as info:
        load_dataset(source, input_shape=(28, 28, 1)).check_fits(as_source(models.tf_keras_mnist_cnn()))
    assert "\n" not in str(info.value)


def test_integer_model_refuses_float_data():
    data = Dataset(np.zeros((2, 64), np.float32))
    with pytest.raises(BadInputError, match="integer inputs"):
        data.check_shape((64,), np.int32)


def test_unknown_sample_set_lists_valid_names():
    with pytest.raises(BadInputError, match="valid: .*digits-28"):
        load_dataset("sample:imagenet")


def test_shapes_boxes_carry_tight_boxes_of_their_shapes():
    """shapes-boxes: every box holds its shape's pixels edge to edge, classes and padding line up,
    and the same split is the same array every time."""
    data = sample_data.load("shapes-boxes", "test")
    boxes, classes = data.truth["t_boxes"], data.truth["t_box_classes"]
    assert data.x.shape == (500, 64, 64, 3) and boxes.shape == (500, 3, 4) and classes.shape == (500, 3)
    assert set(np.unique(classes)) == {-1, 0, 1, 2}
    assert np.all((classes >= 0) == np.all(boxes >= 0, axis=2))  # a real row has a box, a padding row has -1s
    assert np.all(np.diff((classes >= 0).astype(int), axis=1) <= 0)  # padding only after the real boxes
    for image, sample_boxes, sample_classes in zip(data.x[:50], boxes[:50], classes[:50]):
        lit = image.max(axis=2) >= 0.5  # shapes are drawn at 0.5-1.0, the background at most 0.15
        inside = np.zeros_like(lit)
        for box in sample_boxes[sample_classes >= 0]:
            x1, y1, x2, y2 = np.rint(box * 64).astype(int)
            assert lit[y1:y2, x1:x2].any(axis=0).all() and lit[y1:y2, x1:x2].any(axis=1).all()  # tight
            inside[y1:y2, x1:x2] = True
        assert not (lit & ~inside).any()  # no shape pixel outside every box
    again = sample_data.load("shapes-boxes", "test")
    assert np.array_equal(again.x, data.x) and np.array_equal(again.truth["t_boxes"], boxes)


def test_digit_strings_are_real_digits_with_their_transcripts():
    """digit-strings: 3 to 5 digits per image; each transcript is digit + 1 (0 is
    the CTC blank), -1 padded; the ink spans as many 16-pixel glyphs as the transcript says."""
    data = sample_data.load("digit-strings", "test")
    sequence = data.truth["t_sequence"]
    assert data.x.shape == (500, 16, 96, 1) and sequence.shape == (500, 5)
    lengths = (sequence >= 0).sum(axis=1)
    assert set(np.unique(lengths)) == {3, 4, 5} and sequence[sequence >= 0].min() >= 1
    assert sequence[sequence >= 0].max() <= 10
    ink = data.x[..., 0].max(axis=1) > 0.05  # the columns with ink
    spans = [np.flatnonzero(row)[-1] - np.flatnonzero(row)[0] + 1 for row in ink]
    assert np.all(np.asarray(spans) <= lengths * 16 + (lengths - 1) * 2)
    assert np.all(np.asarray(spans) > (lengths - 1) * 16)
