"""Segmentation: mean IoU (primary) and Dice over class maps (argmax over the class axis) or masks
(one channel, thresholded). Truth: ``t_mask`` (one class index per pixel), else the float model's
own map."""

from __future__ import annotations

import numpy as np

from compressor.metrics import register_task
from compressor.metrics.task import TaskMetric, output_index


def class_map(outputs: list, options: dict) -> np.ndarray:
    """One class index per pixel: the argmax over the class axis, or a thresholded single channel."""
    scores = np.asarray(outputs[output_index(options, outputs)])
    axis = int(options["axis"])
    if options["mode"] == "threshold" or scores.shape[axis] == 1:
        return (np.take(scores, 0, axis=axis) > float(options["threshold"])).astype(np.int64)
    return np.argmax(scores, axis=axis)


def _score(outputs: list, truth: np.ndarray, options: dict) -> dict:
    predicted = class_map(outputs, options).reshape(len(truth), -1)
    truth = np.asarray(truth).reshape(len(truth), -1)
    classes = np.union1d(np.unique(predicted), np.unique(truth))
    ious, dices = [], []
    for c in classes:
        p, t = predicted == c, truth == c
        intersection, union = int(np.sum(p & t)), int(np.sum(p | t))
        if union:
            ious.append(intersection / union)
            dices.append(2 * intersection / (int(np.sum(p)) + int(np.sum(t))))
    return {"miou": float(np.mean(ious)) if ious else 1.0, "dice": float(np.mean(dices)) if dices else 1.0,
            "pixel_accuracy": float(np.mean(predicted == truth))}


register_task(TaskMetric(
    "miou", True, "mIoU points", _score,
    truth_from_outputs=class_map, truth_from_labels=lambda labels, options: np.asarray(labels["t_mask"]),
    label_keys=("t_mask",), defaults={"output": 0, "mode": "argmax", "threshold": 0.5, "axis": -1},
    description="mean IoU over the classes present (Dice and pixel accuracy beside it)"))
