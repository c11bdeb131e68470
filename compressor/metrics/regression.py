"""Regression and keypoints: the mean absolute error relative to the truth's range (RMSE beside
it), and PCK, the share of keypoints within a fraction of each sample's keypoint extent. Truth:
``t_target`` (same shape as the output), else the float model's own output."""

from __future__ import annotations

import numpy as np

from compressor.metrics import register_task
from compressor.metrics.task import TaskMetric, output_index


def _values(outputs: list, options: dict) -> np.ndarray:
    return np.asarray(outputs[output_index(options, outputs)], np.float64)


def _target(labels: dict, options: dict) -> np.ndarray:
    return np.asarray(labels["t_target"], np.float64)


def _errors(outputs: list, truth: np.ndarray, options: dict) -> dict:
    error = _values(outputs, options).reshape(truth.shape) - truth
    spread = float(np.max(truth) - np.min(truth)) or 1.0
    return {"mae": float(np.mean(np.abs(error))) / spread, "rmse": float(np.sqrt(np.mean(error**2))) / spread}


def _pck(outputs: list, truth: np.ndarray, options: dict) -> dict:
    points = _values(outputs, options).reshape(len(truth), -1, 2)
    truth = truth.reshape(len(truth), -1, 2)
    extent = np.linalg.norm(truth.max(axis=1) - truth.min(axis=1), axis=1)  # each sample's keypoint diagonal
    distance = np.linalg.norm(points - truth, axis=2)
    within = distance <= float(options["threshold"]) * np.where(extent > 0, extent, 1.0)[:, None]
    return {"pck": float(np.mean(within))}


register_task(TaskMetric(
    "mae", False, "points of the target's range", _errors, truth_from_outputs=_values, truth_from_labels=_target,
    label_keys=("t_target",), defaults={"output": 0},
    description="mean absolute error over the truth's range (RMSE beside it)"))
register_task(TaskMetric(
    "pck", True, "PCK points", _pck, truth_from_outputs=_values, truth_from_labels=_target,
    label_keys=("t_target",), defaults={"output": 0, "threshold": 0.05},
    description="share of keypoints (x, y pairs) within threshold x the sample's keypoint extent"))
