"""Task metrics: a model judged in its task's own terms (mAP for a detector, mIoU for a
segmenter, CER for a text recognizer, retrieval for an encoder, error for a regressor).

A task metric reads all of a model's outputs and a *truth*: the dataset's own labels (its
``t_*`` arrays: ``t_boxes``, ``t_box_classes``, ``t_mask``, ``t_sequence``, ``t_group``,
``t_target``), or, when the data has none, the float model's own outputs decoded the same
way (its detections, its masks, its transcripts, its neighbours), so every model gets a
number. The drop of an artifact is counted in the metric's points: 100 × the change of its
value, positive when worse (a CER that rises, an mAP that falls).

A metric is chosen by a spec, ``NAME[:key=value,...]`` (``map:layout=yolov8``), recorded in
every manifest. A user's own metric is ``path.py:function``: the file is code, so it is loaded
only with ``trust=True`` (the CLI's ``--trust-model``, the opt-in custom layers take too). The
function is called as ``function(outputs, reference, truth)`` (the artifact's outputs, the float
model's, and the data's ``t_*`` arrays, each a list or dict of numpy arrays) and returns a
number, higher is better unless the function has ``higher_is_better = False``; a drop is 100 ×
its change, as for the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from compressor.errors import BadInputError


@dataclass(frozen=True)
class TaskMetric:
    """A task metric: ``score(outputs, truth, options)`` gives ``{name: value, ...extras}``;
    ``truth_from_outputs(reference_outputs, options)`` makes the truth from the float model's
    outputs; ``truth_from_labels(labels, options)`` from the dataset's ``t_*`` arrays (None: it
    takes none). Values are fractions (0.5 = 50 %); drops are 100 × their change."""

    name: str
    higher_is_better: bool
    unit: str  # what a point of it is, for reports: "mAP@0.5 points"
    score: Callable[[list, object, dict], dict]
    truth_from_outputs: Callable[[list, dict], object]
    truth_from_labels: Callable[[dict, dict], object] | None = None
    label_keys: tuple[str, ...] = ()  # the t_* arrays it reads (all present: the labels are the truth)
    defaults: dict = field(default_factory=dict)
    description: str = ""
    # ``truth(reference_outputs, labels, options)``, in place of the choice between the two above
    truth: Callable | None = None

    def keys(self, options: dict) -> tuple[str, ...]:
        """The label arrays it reads with these options (a key may name an option: ``{labels}``)."""
        return tuple(key.format(**options) for key in self.label_keys)


@dataclass(frozen=True)
class ChosenMetric:
    """A task metric with its options, as a user chose it."""

    metric: TaskMetric
    options: dict

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def spec(self) -> str:
        given = {k: v for k, v in self.options.items() if self.metric.defaults.get(k) != v}
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(given.items())) if given else "")

    def truth(self, reference_outputs: list, labels: dict | None = None) -> tuple[object, str]:
        """The truth to score against, and what it is: the dataset's labels when it has every
        array the metric reads, else the float model's own outputs."""
        if self.metric.truth is not None:
            found = self.metric.truth(reference_outputs, labels or {}, self.options)
            sources = found.get("sources") if isinstance(found, dict) else None  # several heads: each its own
            return found, " and ".join(dict.fromkeys(sources)) if sources else "the user's metric"
        keys = self.metric.keys(self.options)
        if labels and keys and all(k in labels for k in keys) and self.metric.truth_from_labels is not None:
            return self.metric.truth_from_labels(labels, self.options), "labels"
        return self.metric.truth_from_outputs(reference_outputs, self.options), "the float model's outputs"

    def score(self, outputs: list, truth) -> dict:
        """``{name: value, ...extras}``; a user metric's bad answer is a one-line error."""
        result = self.metric.score(list(outputs), truth, self.options)
        value = result.get(self.name) if isinstance(result, dict) else None
        if not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
            raise BadInputError(f"metric {self.spec!r} gave {value!r}, not a finite number")
        return {k: float(v) for k, v in result.items()}

    def drop_pp(self, value: float, reference: float) -> float:
        """Points lost against ``reference`` (positive = worse), rounded like the top-1 drop."""
        sign = 1.0 if self.metric.higher_is_better else -1.0
        return round(sign * (reference - value) * 100.0, 9)

    def outputs_read(self, count: int) -> dict[int, bool]:
        """The outputs of a model with ``count`` outputs this metric reads, each with whether it
        reads it as class scores (only top-1 does): the user said what those outputs are, so
        parity judges them as such (an embedding of 32 values is not 32 class scores). A metric
        without ``output=`` reads all of them (a detector's layouts); a user's says nothing."""
        if self.metric.truth is not None:
            return {}
        if "output" in self.options:
            return {int(self.options["output"]): self.name == "top1"}
        return {index: False for index in range(count)}

    def to_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "unit": self.metric.unit,
                "higher_is_better": self.metric.higher_is_better, "options": self.options}


def parse_metric(spec: str, *, trust: bool = False, max_drop: float | None = None) -> ChosenMetric:
    """``NAME[:key=value,...]`` as a chosen metric; an unknown name or option is a one-line error.
    Values read as int, float or text. ``path.py:function``: the user's own (with ``trust``).
    Several heads: ``"A;B:max_drop=5"`` (:mod:`.heads`), judged against the run's ``max_drop``."""
    from compressor.metrics import TASKS
    from compressor.metrics.heads import BUDGET, SEPARATOR, parse_heads

    if SEPARATOR in str(spec) or f"{BUDGET}=" in str(spec):
        return parse_heads(str(spec), lambda one: parse_metric(one, trust=trust), max_drop)
    name, _, rest = str(spec).partition(":")
    if name.endswith(".py"):
        return user_metric(name, rest, trust=trust)
    if name not in TASKS:
        raise BadInputError(f"unknown metric {name!r}; known: {', '.join(sorted(TASKS))}")
    metric = TASKS[name]
    options = dict(metric.defaults)
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in metric.defaults:
            raise BadInputError(f"metric {name}: unknown option {item!r}; its options: "
                                f"{', '.join(f'{k}={v}' for k, v in metric.defaults.items()) or 'none'}")
        options[key] = _value(value)
    return ChosenMetric(metric, options)


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def output_index(options: dict, outputs: list, key: str = "output") -> int:
    """Which output a metric reads: ``options[key]`` as an index, else the first."""
    index = int(options.get(key, 0) or 0)
    if not 0 <= index < len(outputs):
        raise BadInputError(f"the model has {len(outputs)} output(s); there is no output {index}")
    return index


def user_metric(path: str, function: str, *, trust: bool) -> ChosenMetric:
    """The user's metric ``function`` of the Python file ``path`` (it runs that file's code)."""
    import importlib.util
    from pathlib import Path

    from compressor.errors import UsageError, one_line

    spec = f"{path}:{function}"
    if not trust:
        raise UsageError(f"--metric {spec} runs the code of {path}: pass --trust-model with it "
                         "(in Python: compressor.metrics.task.parse_metric(spec, trust=True))")
    if not Path(path).is_file():
        raise BadInputError(f"{path}: metric file not found")
    try:
        loader = importlib.util.spec_from_file_location(f"compressor_metric_{Path(path).stem}", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot import the metric ({type(exc).__name__}: {one_line(exc)})") from None
    call = getattr(module, function, None)
    if not callable(call):
        raise BadInputError(f"{path}: no function {function!r} (--metric takes path.py:function)")

    def score(outputs, truth, options):
        try:
            value = call(outputs, truth["reference"], truth["arrays"])
        except Exception as exc:
            raise BadInputError(f"metric {spec} raised {type(exc).__name__}: {one_line(exc)}") from None
        return {spec: value}

    metric = TaskMetric(spec, bool(getattr(call, "higher_is_better", True)), "points of the user's metric", score,
                        truth_from_outputs=lambda outputs, options: None,
                        truth=lambda reference, labels, options: {"reference": reference, "arrays": labels})
    return ChosenMetric(metric, {})
