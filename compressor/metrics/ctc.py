"""Sequences from a CTC head: greedy decoding (the best class per time step, repeats collapsed,
blanks dropped) and the character error rate, edit distance over the truth's length (rapidfuzz's
Levenshtein: a maintained C++ implementation, not a hand-written DP). Truth: ``t_sequence`` (one
row of class indices per sample, padded with -1), else the float model's own transcripts."""

from __future__ import annotations

import numpy as np

from compressor.metrics import register_task
from compressor.metrics.task import TaskMetric, output_index


def greedy_decode(outputs: list, options: dict) -> list[list[int]]:
    """Per sample, the greedy CTC transcript as class indices."""
    scores = np.asarray(outputs[output_index(options, outputs)])
    if int(options["time_axis"]) == 0:  # [T, batch, classes], as PyTorch's CTC models return
        scores = np.swapaxes(scores, 0, 1)
    best = np.argmax(scores, axis=-1)
    blank = int(options["blank"]) % scores.shape[-1]
    decoded = []
    for row in best:
        kept = row[np.concatenate([[True], row[1:] != row[:-1]])]
        decoded.append([int(c) for c in kept if c != blank])
    return decoded


def _labels(labels: dict, options: dict) -> list[list[int]]:
    return [[int(c) for c in row if c >= 0] for row in np.asarray(labels["t_sequence"])]


def _score(outputs: list, truth: list[list[int]], options: dict) -> dict:
    from rapidfuzz.distance import Levenshtein

    predicted = greedy_decode(outputs, options)
    errors = sum(Levenshtein.distance(p, t) for p, t in zip(predicted, truth))
    characters = sum(len(t) for t in truth)
    return {"cer": errors / max(1, characters),
            "sequence_accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])) if truth else 1.0}


register_task(TaskMetric(
    "cer", False, "CER points", _score, truth_from_outputs=greedy_decode, truth_from_labels=_labels,
    label_keys=("t_sequence",), defaults={"output": 0, "blank": 0, "time_axis": 1},
    description="character error rate of greedy CTC transcripts (exact-sequence accuracy beside it)"))
