"""Zoo models whose task is not classification, each judged by its task's own metric against
the truth its sample set carries (``t_*`` arrays): a detector by COCO mAP, a CTC text
recogniser by character error rate, an embedding model by nearest-neighbour recall, a keypoint
regressor by PCK. (The U-Net in :mod:`tools.zoo` is judged by mIoU.) Registered into
:data:`tools.zoo.ZOO`; ``python -m tools.zoo --models NAME`` runs one.
"""

from __future__ import annotations

import numpy as np

from compressor.data import task_samples
from tools.zoo import _keras, conv_trunk, zoo_model

GRID = 4  # the detector's cells per side: 16 px each on a 64-px image


def _cells_of(data) -> np.ndarray:
    """A detector's training target per cell, ``[samples, GRID², 5 + classes]``: the box (centre
    x, y, width, height, 0-1), objectness 1 and the class one-hot in the cell holding the box's
    centre; zeros elsewhere."""
    boxes, classes = data.truth["t_boxes"], data.truth["t_box_classes"]
    target = np.zeros((len(boxes), GRID * GRID, 5 + len(task_samples.SHAPES)), np.float32)
    for sample, (sample_boxes, sample_classes) in enumerate(zip(boxes, classes)):
        for (x1, y1, x2, y2), kind in zip(sample_boxes, sample_classes):
            if kind < 0:
                continue
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            cell = min(int(cy * GRID), GRID - 1) * GRID + min(int(cx * GRID), GRID - 1)
            target[sample, cell, :5] = (cx, cy, x2 - x1, y2 - y1, 1.0)
            target[sample, cell, 5 + kind] = 1.0
    return target


def _detection_loss(y_true, y_pred):
    """YOLO's: box error and class cross-entropy where a shape is, objectness everywhere."""
    ops = _keras().ops
    owner = y_true[..., 4]
    box = ops.sum(ops.square(y_true[..., :4] - y_pred[..., :4]), axis=-1)
    bce = _keras().losses.binary_crossentropy
    objectness = bce(y_true[..., 4:5], y_pred[..., 4:5])
    classes = bce(y_true[..., 5:], y_pred[..., 5:])
    return ops.mean(20.0 * owner * box + objectness + owner * classes, axis=-1)


@zoo_model("shapes_detector", "YOLO-style detector: conv trunk, token-mixing layer from 8x8 positions to a "
           f"{GRID}x{GRID} grid, boxes + objectness + class scores per cell ([batch, cells, 5 + classes], YOLOv5's "
           "layout)", "shapes-boxes", epochs=60, learning_rate=2e-3, targets=_cells_of, loss=_detection_loss,
           metric="map:layout=yolov5")
def _shapes_detector():
    keras = _keras()
    L = keras.layers
    image = keras.Input((task_samples.SHAPE_SIDE, task_samples.SHAPE_SIDE, 3), name="image")
    x = image
    for index, filters in enumerate((16, 32, 64)):
        x = L.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{index}")(x)
    x = L.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.Permute((2, 1), name="channels_first")(L.Reshape((64, 128), name="positions")(x))
    x = L.Permute((2, 1), name="cells_first")(L.Dense(GRID * GRID, name="to_cells")(x))  # position-aware mixing
    x = L.Dense(128, activation="relu", name="cell_features")(x)
    per_cell = 5 + len(task_samples.SHAPES)
    return keras.Model(image, L.Dense(per_cell, activation="sigmoid", name="detections")(x), name="shapes_detector")


@zoo_model("ctc_recognizer", "CTC text recogniser: conv columns over the width, 24 time steps of 11 classes "
           "(logits; blank 0)", "digit-strings", epochs=30,
           targets=lambda data: np.maximum(data.truth["t_sequence"], 0), loss="ctc", metric="cer")
def _ctc_recognizer():
    keras = _keras()
    L = keras.layers
    image = keras.Input((task_samples.STRING_HEIGHT, task_samples.STRING_WIDTH, 1), name="image")
    x = image
    for index, (filters, pool) in enumerate(((32, (2, 2)), (64, (2, 2)), (64, (4, 1)))):
        x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index}")(x)
        x = L.MaxPooling2D(pool, name=f"pool{index}")(x)
    x = L.Reshape((task_samples.STRING_WIDTH // 4, 64), name="columns")(x)  # [batch, time, features]
    x = L.Conv1D(96, 3, padding="same", activation="relu", name="context")(x)
    return keras.Model(image, L.Dense(11, name="logits")(x), name="ctc_recognizer")


def _embedding_only(model):
    """The shipped encoder: the trained model up to its unit-length embedding."""
    return _keras().Model(model.inputs, model.get_layer("embedding").output, name="digit_embedding")


@zoo_model("digit_embedding", "embedding model: conv trunk, 32-d unit-length embedding (trained through a class "
           "head that is not shipped)", "digits-32rgb", epochs=8, deploy=_embedding_only,
           metric="retrieval:k=1", truth=lambda data: {"t_group": data.y})
def _digit_embedding():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.UnitNormalization(name="embedding")(L.Dense(32, name="project")(L.Flatten()(conv_trunk(image))))
    return keras.Model(image, L.Dense(10, activation="softmax", name="classes")(L.Rescaling(8.0)(x)))


def _keypoints(data) -> dict:
    """Three keypoints of each digit, x then y in 0-1: its ink box's top-left and bottom-right
    corners and its ink's centre of mass."""
    ink = data.x[..., 0]
    side = ink.shape[1]
    mask = ink > 0.5
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    top, left = np.argmax(rows, axis=1), np.argmax(cols, axis=1)
    bottom, right = side - np.argmax(rows[:, ::-1], axis=1), side - np.argmax(cols[:, ::-1], axis=1)
    grid = (np.arange(side) + 0.5)[None, :]
    mass = ink.sum(axis=(1, 2))
    cx, cy = (ink.sum(axis=1) * grid).sum(1) / mass, (ink.sum(axis=2) * grid).sum(1) / mass
    points = np.stack([left, top, right, bottom, cx, cy], axis=1) / side
    return {"t_target": points.astype(np.float32)}


@zoo_model("keypoints", "keypoint regressor: conv trunk, 3 (x, y) points of the digit (its box corners and "
           "centre of mass)", "digits-32rgb", epochs=20, targets=lambda data: data.truth["t_target"], loss="mse",
           metric="pck:threshold=0.02", truth=_keypoints)
def _keypoint_model():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.Dense(64, activation="relu", name="fc")(L.Flatten()(conv_trunk(image, strided=True)))
    return keras.Model(image, L.Dense(6, activation="sigmoid", name="points")(x), name="keypoints")
