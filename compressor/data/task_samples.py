"""Built-in sample sets for tasks beyond classification, each with its truth as ``t_*`` arrays
(the keys ``compressor.metrics.task`` reads), generated here, all offline:

- ``shapes-boxes``: images of one to three filled shapes (square, disc, triangle) with their
  tight boxes, for a detector judged by mAP;
- ``digit-strings``: three to five real handwritten digits (scikit-learn's, the test split's
  digits for the test set) written side by side, for a CTC text recogniser judged by CER.

Seeded by split: the same split is the same array every time.
"""

from __future__ import annotations

import numpy as np

from compressor.data.dataset import Dataset
from compressor.data.samples import SPLITS, _digits, _resize, sample_set
from compressor.errors import BadInputError

SHAPES = ("square", "disc", "triangle")  # class index = position here
SHAPE_SIDE, MAX_SHAPES = 64, 3
STRING_HEIGHT, STRING_WIDTH, DIGIT_SIDE, MAX_DIGITS = 16, 96, 16, 5


def _count(split: str, train: int, test: int) -> tuple[np.random.Generator, int]:
    if split not in SPLITS:
        raise BadInputError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    return np.random.default_rng(SPLITS.index(split) + 23), (train if split == "train" else test)


def _shape_mask(kind: int, centre: np.ndarray, radius: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    dy, dx = rows - centre[0], cols - centre[1]
    if kind == 0:
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if kind == 1:
        return dy**2 + dx**2 <= radius**2
    return (np.abs(dy) <= radius) & (np.abs(dx) <= (dy + radius) / 2)  # apex up, base at the bottom


def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    for other in boxes:
        lt, rb = np.maximum(box[:2], other[:2]), np.minimum(box[2:], other[2:])
        if np.all(rb > lt):
            return True
    return False


def _shapes_image(rng: np.random.Generator, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    side = SHAPE_SIDE
    image = rng.uniform(0.0, 0.15, (side, side, 3)).astype(np.float32)
    boxes = np.full((MAX_SHAPES, 4), -1.0, np.float32)
    classes = np.full(MAX_SHAPES, -1, np.int64)
    placed: list[np.ndarray] = []
    for slot in range(int(rng.integers(1, MAX_SHAPES + 1))):
        for _ in range(20):  # a place that overlaps no other shape's box
            kind, radius = int(rng.integers(0, len(SHAPES))), float(rng.uniform(5, 12))
            centre = rng.uniform(radius + 1, side - radius - 1, 2)
            mask = _shape_mask(kind, centre, radius, rows, cols)
            ys, xs = np.nonzero(mask)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) / side
            if not _overlaps(box, placed):
                break
        else:
            break
        image[mask] = rng.uniform(0.5, 1.0, 3)
        boxes[slot], classes[slot] = box, kind
        placed.append(box)
    return image, boxes, classes


@sample_set("shapes-boxes", f"{SHAPE_SIDE}x{SHAPE_SIDE}x3 images of 1-{MAX_SHAPES} filled shapes ({', '.join(SHAPES)}) "
                            "with their boxes (t_boxes x1 y1 x2 y2 in 0-1, t_box_classes; -1 pads), for mAP")
def _shapes_boxes(split: str) -> Dataset:
    rng, count = _count(split, 2000, 500)
    rows, cols = np.mgrid[0:SHAPE_SIDE, 0:SHAPE_SIDE]
    images, boxes, classes = zip(*(_shapes_image(rng, rows, cols) for _ in range(count)))
    return Dataset(np.stack(images), None, f"sample:shapes-boxes:{split}",
                   truth={"t_boxes": np.stack(boxes), "t_box_classes": np.stack(classes)})


@sample_set("digit-strings", f"{STRING_HEIGHT}x{STRING_WIDTH}x1 strings of 3-{MAX_DIGITS} real handwritten digits "
                             "(t_sequence: digit + 1 per character, 0 is the CTC blank, -1 pads), for CER")
def _digit_strings(split: str) -> Dataset:
    rng, count = _count(split, 3000, 500)
    images, labels = _digits(split)
    glyphs = _resize(images, DIGIT_SIDE)
    x = np.zeros((count, STRING_HEIGHT, STRING_WIDTH, 1), np.float32)
    sequence = np.full((count, MAX_DIGITS), -1, np.int64)
    for row in range(count):
        picks = rng.integers(0, len(glyphs), int(rng.integers(3, MAX_DIGITS + 1)))
        gaps = rng.integers(0, 3, len(picks))
        width = len(picks) * DIGIT_SIDE + int(gaps.sum())
        left = int(rng.integers(0, STRING_WIDTH - width + 1))
        for index, (pick, gap) in enumerate(zip(picks, gaps)):
            x[row, :, left:left + DIGIT_SIDE, 0] = np.maximum(x[row, :, left:left + DIGIT_SIDE, 0], glyphs[pick])
            left += DIGIT_SIDE + int(gap)
        sequence[row, :len(picks)] = labels[picks] + 1  # class 0 is the CTC blank
    return Dataset(x, None, f"sample:digit-strings:{split}", truth={"t_sequence": sequence})
