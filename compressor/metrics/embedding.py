"""Embeddings: does nearest-neighbour search still return the same samples? Recall@k of the
float model's k nearest neighbours (cosine) among an artifact's k nearest, over the evaluation
samples; with group labels (``t_group``), the share of queries whose k nearest hold one of their
group. The cosine of each embedding to the float model's is reported beside it (mean, 5th
percentile)."""

from __future__ import annotations

import numpy as np

from compressor.errors import BadInputError
from compressor.metrics import register_task
from compressor.metrics.task import TaskMetric, output_index


def _unit(outputs: list, options: dict) -> np.ndarray:
    vectors = np.asarray(outputs[output_index(options, outputs)], np.float64)
    vectors = vectors.reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def nearest(vectors: np.ndarray, k: int) -> np.ndarray:
    """Per sample, the ``k`` others nearest by cosine (ties by index)."""
    if len(vectors) <= k:
        raise BadInputError(f"retrieval@{k} needs more than {k} evaluation samples, not {len(vectors)}")
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def _from_outputs(outputs: list, options: dict) -> dict:
    vectors = _unit(outputs, options)
    return {"neighbours": nearest(vectors, int(options["k"])), "vectors": vectors}


def _score(outputs: list, truth: dict, options: dict) -> dict:
    vectors = _unit(outputs, options)
    found = nearest(vectors, int(options["k"]))
    if "groups" in truth:
        groups = truth["groups"]
        return {"retrieval": float(np.mean([np.any(groups[row] == groups[i]) for i, row in enumerate(found)]))}
    overlap = [len(set(a) & set(b)) / len(a) for a, b in zip(found, truth["neighbours"])]
    cosines = np.sum(vectors * truth["vectors"], axis=1)
    return {"retrieval": float(np.mean(overlap)), "cosine_mean": float(np.mean(cosines)),
            "cosine_p5": float(np.percentile(cosines, 5))}


register_task(TaskMetric(
    "retrieval", True, "recall@k points", _score, truth_from_outputs=_from_outputs,
    truth_from_labels=lambda labels, options: {"groups": np.asarray(labels["t_group"])},
    label_keys=("t_group",), defaults={"output": 0, "k": 10},
    description="recall@k of the float model's nearest neighbours (or of the group, with t_group)"))
