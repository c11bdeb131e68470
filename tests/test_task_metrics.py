"""Task metrics, each against a computation it does not share: hand-worked cases, scikit-learn's
own IoU and F1, and COCO's interpolated AP worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.errors import BadInputError
from compressor.metrics.task import parse_metric


def _score(spec: str, outputs: list, reference: list | None = None, labels: dict | None = None) -> dict:
    chosen = parse_metric(spec)
    truth, _ = chosen.truth(reference if reference is not None else outputs, labels)
    return chosen.score(outputs, truth)


def test_specs_are_parsed_and_refused_in_one_line():
    chosen = parse_metric("map:layout=yolov8,iou=0.5")
    assert chosen.options["layout"] == "yolov8" and chosen.options["iou"] == 0.5
    assert chosen.spec == "map:iou=0.5,layout=yolov8"  # the defaults left out, sorted
    with pytest.raises(BadInputError, match="unknown metric 'mAP'; known: cer, mae, map, miou"):
        parse_metric("mAP")
    with pytest.raises(BadInputError, match="metric miou: unknown option 'classes=3'"):
        parse_metric("miou:classes=3")


def test_miou_and_dice_agree_with_scikit_learn():
    from sklearn.metrics import f1_score, jaccard_score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (6, 8, 8))
    scores = rng.normal(size=(6, 8, 8, 4)) + 2.0 * np.eye(4)[truth]  # mostly right
    predicted = scores.argmax(-1)
    got = _score("miou", [scores], labels={"t_mask": truth})
    labels = np.union1d(truth, predicted)
    assert got["miou"] == pytest.approx(jaccard_score(truth.ravel(), predicted.ravel(), labels=labels,
                                                      average="macro"))
    assert got["dice"] == pytest.approx(f1_score(truth.ravel(), predicted.ravel(), labels=labels, average="macro"))
    assert 0.5 < got["miou"] < 1.0


def test_miou_against_the_float_model_and_a_thresholded_mask():
    mask = np.array([[[0.9, 0.1], [0.8, 0.2]]])[..., None]  # one channel: a mask
    assert _score("miou", [mask])["miou"] == 1.0  # the float model against itself
    shifted = np.array([[[0.9, 0.9], [0.1, 0.2]]])[..., None]
    # foreground {(0,0), (1,0)} against {(0,0), (0,1)}: IoU 1/3; background likewise 1/3
    assert _score("miou", [shifted], reference=[mask])["miou"] == pytest.approx(1 / 3)


def test_greedy_ctc_and_the_character_error_rate():
    blank = 0
    steps = [1, 1, blank, 1, 2, 2, blank]  # decodes to 1 1 2
    scores = np.eye(3)[np.array([steps, [2, 2, 2, blank, blank, blank, blank]])]  # second: 2
    from compressor.metrics.ctc import greedy_decode

    assert greedy_decode([scores], {"output": 0, "blank": blank, "time_axis": 1}) == [[1, 1, 2], [2]]
    truth = np.array([[1, 2, 2, -1], [2, -1, -1, -1]])  # 1 2 2 (one substitution away) and 2
    got = _score("cer", [scores], labels={"t_sequence": truth})
    assert got["cer"] == pytest.approx(1 / 4) and got["sequence_accuracy"] == 0.5
    # PyTorch's [time, batch, classes]
    assert _score("cer:time_axis=0", [np.swapaxes(scores, 0, 1)], labels={"t_sequence": truth})["cer"] == 0.25


def test_retrieval_keeps_or_loses_the_float_neighbours():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(40, 16))
    assert _score("retrieval:k=5", [embeddings])["retrieval"] == 1.0
    noisy = embeddings + rng.normal(scale=0.5, size=embeddings.shape)
    partly = _score("retrieval:k=5", [noisy], reference=[embeddings])
    shuffled = _score("retrieval:k=5", [rng.permutation(embeddings)], reference=[embeddings])
    assert 0.2 < partly["retrieval"] < 1.0 and shuffled["retrieval"] < partly["retrieval"]
    assert partly["cosine_mean"] < 1.0 and partly["cosine_p5"] <= partly["cosine_mean"]
    groups = np.repeat(np.arange(8), 5)
    clustered = np.eye(8)[groups] + rng.normal(scale=0.01, size=(40, 8))
    assert _score("retrieval:k=4", [clustered], labels={"t_group": groups})["retrieval"] == 1.0
    with pytest.raises(BadInputError, match="needs more than 10 evaluation samples"):
        _score("retrieval", [embeddings[:10]])


def test_regression_error_and_pck_by_hand():
    truth = np.array([[0.0], [10.0]])
    got = _score("mae", [np.array([[1.0], [8.0]])], labels={"t_target": truth})
    assert got["mae"] == pytest.approx(1.5 / 10) and got["rmse"] == pytest.approx(np.sqrt(2.5) / 10)
    points = np.array([[[0.0, 0.0], [10.0, 0.0]]])  # one sample, two keypoints, extent 10
    moved = points + np.array([[[0.4, 0.0], [0.0, 0.6]]])  # 0.4 <= 0.5 within; 0.6 is not
    assert _score("pck", [moved], reference=[points])["pck"] == 0.5


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    from compressor.metrics.detection import nms

    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5, 100).tolist() == [0, 2, 3]  # box 1 overlaps 0 (IoU 0.81)
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [0, 2]


def _yolov8(boxes_xyxy: np.ndarray, classes: np.ndarray, scores: np.ndarray, num_classes: int) -> np.ndarray:
    """One image's raw YOLOv8 head, [1, 4 + classes, 16 anchors], from boxes in x1 y1 x2 y2 (the
    anchors past them score 0)."""
    centre = np.stack([(boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2, (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2,
                       boxes_xyxy[:, 2] - boxes_xyxy[:, 0], boxes_xyxy[:, 3] - boxes_xyxy[:, 1]], axis=1)
    class_scores = np.zeros((len(boxes_xyxy), num_classes))
    class_scores[np.arange(len(boxes_xyxy)), classes] = scores
    head = np.concatenate([centre, class_scores], axis=1)
    return np.concatenate([head, np.zeros((16 - len(head), head.shape[1]))]).T[None]


def test_map_of_the_float_model_against_itself_is_one_and_a_missed_box_halves_recall():
    boxes = np.array([[10, 10, 50, 50], [60, 60, 90, 95]], float)
    head = _yolov8(boxes, np.array([0, 0]), np.array([0.9, 0.8]), 2)
    got = _score("map", [head])
    assert got["map"] == pytest.approx(1.0) and got["map50"] == pytest.approx(1.0)
    labels = {"t_boxes": boxes[None], "t_box_classes": np.array([[0, 0]])}
    one = _yolov8(boxes[:1], np.array([0]), np.array([0.9]), 2)
    # recall reaches 1/2 at precision 1, then nothing: COCO's 101-point interpolated AP is 51/101
    assert _score("map:layout=yolov8", [one], labels=labels)["map50"] == pytest.approx(51 / 101)


def test_map_layouts_decode_the_same_boxes():
    boxes = np.array([[[5, 5, 25, 25], [40, 40, 70, 60]]], float)
    classes, scores = np.array([[1, 0]]), np.array([[0.95, 0.7]])
    labels = {"t_boxes": boxes, "t_box_classes": classes}
    decoded = _score("map", [boxes, scores, classes.astype(float)], labels=labels)
    class_scores = np.zeros((1, 2, 3))
    class_scores[0, [0, 1], classes[0]] = scores[0]
    ssd = _score("map", [boxes, class_scores], labels=labels)
    yolo = _score("map", [_yolov8(boxes[0], classes[0], scores[0], 3)], labels=labels)
    assert decoded["map"] == ssd["map"] == yolo["map"] == pytest.approx(1.0)
    with pytest.raises(BadInputError, match="cannot tell the output layout"):
        _score("map", [np.zeros((1, 4))])


def test_a_metric_that_returns_no_number_is_a_one_line_error():
    from compressor.metrics.task import ChosenMetric, TaskMetric

    broken = ChosenMetric(TaskMetric("broken", True, "points", lambda o, t, opts: {"broken": float("nan")},
                                     truth_from_outputs=lambda o, opts: None), {})
    with pytest.raises(BadInputError, match="metric 'broken' gave nan, not a finite number"):
        broken.score([np.zeros(2)], None)


def test_top1_of_one_head_against_its_labels_or_the_float_choices():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    other = np.zeros((4, 3))
    labels = {"y": np.array([0, 1, 1, 1]), "y_second": np.array([0, 0, 0, 0])}
    assert _score("top1", [scores, other], labels=labels)["top1"] == 0.75
    assert _score("top1:output=1,labels=y_second", [other, scores], labels=labels)["top1"] == 0.5
    flipped = scores[:, ::-1]
    assert _score("top1", [flipped], reference=[scores])["top1"] == 0.0  # against the float model's choices


def test_several_heads_each_within_its_own_budget():
    """Two heads: the model's drop is the worst head's, scaled to the run's budget, so it is
    within the run's budget exactly when each head is within its own; each head is reported."""
    rng = np.random.default_rng(0)
    reference = [rng.normal(size=(40, 3)), rng.normal(size=(40, 8))]
    labels = {"y": np.argmax(reference[0], axis=1)}
    heads = parse_metric("top1;retrieval:output=1,k=3,max_drop=40", max_drop=1.0)
    assert heads.spec == "top1;retrieval:output=1,k=3,max_drop=40"
    assert [h["max_drop_pp"] for h in heads.to_dict()["heads"]] == [1.0, 40.0]
    truth, source = heads.truth(reference, labels)
    assert source == "labels and the float model's outputs"
    assert heads.score(reference, truth)["heads"] == 1.0  # the float model loses nothing
    one_wrong = [reference[0].copy(), reference[1] + rng.normal(scale=0.5, size=(40, 8))]
    one_wrong[0][0] = -one_wrong[0][0]  # one of 40 samples' class flips: 2.5 top-1 points
    value = heads.score(one_wrong, truth)
    retrieval_drop = value["retrieval:k=3,output=1 drop_pp"]
    assert value["top1 drop_pp"] == pytest.approx(2.5) and retrieval_drop > 0
    expected = max(2.5, retrieval_drop * 1.0 / 40)
    assert heads.drop_pp(value["heads"], 1.0) == pytest.approx(expected)
    untied = heads.bound(None)  # no run budget (a benchmark without one): the worst head's own points
    assert untied.drop_pp(untied.score(one_wrong, truth)["heads"], 1.0) == pytest.approx(max(2.5, retrieval_drop))
    strict = parse_metric("top1:max_drop=0;retrieval:output=1,k=3", max_drop=50.0)
    assert strict.drop_pp(strict.score(one_wrong, strict.truth(reference, labels)[0])["heads"], 1.0) > 50
    with pytest.raises(BadInputError, match="max_drop='x' is not a number"):
        parse_metric("top1;retrieval:max_drop=x")
