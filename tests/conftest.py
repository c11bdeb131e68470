import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

import compressor  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tests.helpers import models  # noqa: E402


@pytest.fixture(scope="session")
def keras3_all_layers():
    return models.keras3_all_layers()


@pytest.fixture
def mnist_cnn_file(tmp_path):
    path = tmp_path / "mnist_cnn.keras"
    models.tf_keras_mnist_cnn().save(path)
    return path


@pytest.fixture(scope="session")
def tiny_cnn():
    return models.trained_tiny_cnn()


@pytest.fixture(scope="session")
def digits8():
    from compressor.data import samples as sample_data

    return sample_data.load("digits-8", "train"), sample_data.load("digits-8", "test")


@pytest.fixture(scope="session", autouse=True)
def nothing_is_left_in_the_working_directory():
    """Libraries that write temp files into the cwd (ONNX Runtime's shape inference saves
    sym_shape_infer_temp.onnx and its external data there) must be run in a work folder."""
    before = set(os.listdir("."))
    yield
    left = sorted(set(os.listdir(".")) - before - {".pytest_cache", ".hypothesis", "__pycache__"})
    assert not left, f"files left in the working directory: {left[:5]}"
