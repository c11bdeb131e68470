"""Detection: COCO mAP of an artifact's boxes, computed by pycocotools (the reference COCO
evaluation; writing it again by hand is how detection numbers go wrong). Primary: mAP@0.5:0.95;
mAP@0.5 beside it.

Layouts (``layout=``; ``auto`` decides by the outputs' shapes where that is unambiguous):
- ``yolov8``: one output ``[batch, 4 + classes, anchors]``, boxes as centre x, y, width, height;
- ``yolov5``: one output ``[batch, anchors, 5 + classes]`` (an objectness score before the classes);
- ``ssd``: two outputs, boxes ``[batch, anchors, 4]`` (x1, y1, x2, y2) and class scores
  ``[batch, anchors, classes]``;
- ``decoded``: three outputs, boxes ``[batch, n, 4]`` (x1, y1, x2, y2), scores ``[batch, n]``,
  classes ``[batch, n]`` (already after NMS).
The raw layouts go through per-class non-maximum suppression (``iou``), keeping ``max_det``
boxes above ``conf``. Truth: ``t_boxes`` (``[samples, m, 4]``, x1 y1 x2 y2, rows of -1 as
padding) with ``t_box_classes`` (``[samples, m]``), else the float model's own detections with
a score of at least ``truth_conf``.
"""

from __future__ import annotations

import numpy as np

from compressor.errors import BadInputError
from compressor.metrics import register_task
from compressor.metrics.task import TaskMetric
from compressor.progress import off_stdout

DEFAULTS = {"layout": "auto", "conf": 0.001, "iou": 0.6, "max_det": 100, "truth_conf": 0.25}


def layout_of(outputs: list, options: dict) -> str:
    """The output layout: the one given, or the one the shapes allow."""
    if options["layout"] != "auto":
        return options["layout"]
    shapes = [np.shape(o) for o in outputs]
    if len(outputs) == 1 and len(shapes[0]) == 3:
        return "yolov8" if shapes[0][1] < shapes[0][2] else "yolov5"
    if len(outputs) == 2 and all(len(s) == 3 for s in shapes) and shapes[0][-1] == 4:
        return "ssd"
    if len(outputs) == 3 and len(shapes[0]) == 3 and shapes[0][-1] == 4:
        return "decoded"
    raise BadInputError(f"detection: cannot tell the output layout from shapes {shapes}; give "
                        "--metric map:layout=yolov8|yolov5|ssd|decoded")


def _xyxy(centre: np.ndarray) -> np.ndarray:
    x, y, w, h = np.moveaxis(centre, -1, 0)
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def _raw(outputs: list, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[batch, anchors, 4]`` (x1 y1 x2 y2) and class scores ``[batch, anchors, classes]``."""
    if layout == "yolov8":
        head = np.swapaxes(np.asarray(outputs[0], np.float64), 1, 2)
        return _xyxy(head[..., :4]), head[..., 4:]
    if layout == "yolov5":
        head = np.asarray(outputs[0], np.float64)
        return _xyxy(head[..., :4]), head[..., 4:5] * head[..., 5:]
    return np.asarray(outputs[0], np.float64), np.asarray(outputs[1], np.float64)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(others) - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best first, at most ``max_det``."""
    order, kept = np.argsort(-scores, kind="stable"), []
    while len(order) and len(kept) < max_det:
        best, rest = order[0], order[1:]
        kept.append(best)
        same = classes[rest] == classes[best]
        order = rest[~(same & (_iou(boxes[best], boxes[rest]) > iou))]
    return np.asarray(kept, dtype=np.int64)


def detections(outputs: list, options: dict, conf: float | None = None) -> list[tuple]:
    """Per sample, ``(boxes, scores, classes)`` after decoding and NMS, scores of at least ``conf``."""
    conf = float(options["conf"] if conf is None else conf)
    layout = layout_of(outputs, options)
    if layout == "decoded":
        boxes, scores, classes = (np.asarray(o) for o in outputs[:3])
        return [(b[s >= conf], s[s >= conf], c[s >= conf].astype(np.int64)) for b, s, c in zip(boxes, scores, classes)]
    all_boxes, all_scores = _raw(outputs, layout)
    found = []
    for boxes, scores in zip(all_boxes, all_scores):
        classes, best = np.argmax(scores, axis=-1), np.max(scores, axis=-1)
        keep = np.flatnonzero(best >= conf)
        kept = keep[nms(boxes[keep], best[keep], classes[keep], float(options["iou"]), int(options["max_det"]))]
        found.append((boxes[kept], best[kept], classes[kept]))
    return found


def _truth_from_outputs(outputs: list, options: dict) -> list[tuple]:
    return [(b, c) for b, _, c in detections(outputs, options, conf=float(options["truth_conf"]))]


def _truth_from_labels(labels: dict, options: dict) -> list[tuple]:
    truth = []
    for boxes, classes in zip(np.asarray(labels["t_boxes"], np.float64), np.asarray(labels["t_box_classes"])):
        real = classes >= 0
        truth.append((boxes[real], classes[real].astype(np.int64)))
    return truth


def coco_map(found: list[tuple], truth: list[tuple]) -> dict:
    """mAP@0.5:0.95 and mAP@0.5 of ``found`` (boxes, scores, classes per image) against ``truth``
    (boxes, classes per image), by pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    boxes = [(i, b, c) for i, (image_boxes, classes) in enumerate(truth) for b, c in zip(image_boxes, classes)]
    annotations = [{"id": n + 1, "image_id": i, "category_id": int(c), "bbox": xywh(b), "iscrowd": 0,
                    "area": float((b[2] - b[0]) * (b[3] - b[1]))} for n, (i, b, c) in enumerate(boxes)]
    if not annotations:
        raise BadInputError("detection: the truth holds no box (the float model detects nothing above "
                            "truth_conf, and the data has no t_boxes); lower truth_conf or give t_boxes")
    categories = sorted({a["category_id"] for a in annotations} | {int(c) for _, _, cs in found for c in cs})
    ground = COCO()
    ground.dataset = {"images": [{"id": i} for i in range(len(truth))], "annotations": annotations,
                      "categories": [{"id": c} for c in categories]}
    results = [{"image_id": i, "category_id": int(c), "bbox": xywh(b), "score": float(s)}
               for i, (boxes, scores, classes) in enumerate(found) for b, s, c in zip(boxes, scores, classes)]
    if not results:
        return {"map": 0.0, "map50": 0.0}
    with off_stdout():  # pycocotools prints its progress and tables
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map": max(0.0, float(evaluation.stats[0])), "map50": max(0.0, float(evaluation.stats[1]))}


def _score(outputs: list, truth: list[tuple], options: dict) -> dict:
    return coco_map(detections(outputs, options), truth)


register_task(TaskMetric(
    "map", True, "mAP@0.5:0.95 points", _score, truth_from_outputs=_truth_from_outputs,
    truth_from_labels=_truth_from_labels, label_keys=("t_boxes", "t_box_classes"), defaults=dict(DEFAULTS),
    description="COCO mAP@0.5:0.95 by pycocotools (mAP@0.5 beside it); YOLO, SSD and decoded layouts"))
