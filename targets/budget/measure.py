"""The accuracy budget of a quantized artifact: what it may lose against the float model, how a
loss is measured on the validation samples, and whether it holds."""

from __future__ import annotations

from dataclasses import dataclass

from compressor.errors import AccuracyBudgetError
from compressor.metrics.loss import loss_text, lost_text, measure, within
from compressor.models import as_source
from compressor.models.source import judged_outputs, labelled_output


@dataclass(frozen=True)
class Budget:
    """What a quantized artifact may lose against the float model on the validation samples:
    ``max_drop_pp`` top-1 points where the model has class scores (points of disagreement
    without labels), else an SNR floor ``min_snr_db`` on the outputs that compute something
    (regressors, segmentation maps, embeddings)."""

    max_drop_pp: float
    min_snr_db: float = 30.0
    # the outputs of the model the budget is measured against, when it is not the exported one
    # (the user's model before compression steps), on the validation samples
    baseline: list | None = None
    # a task metric (compressor.metrics.task.ChosenMetric): the budget is in its points, against
    # the data's truth (t_* arrays) or the float model's own decoded outputs
    metric: object = None

    def measure(self, source, outputs, reference, labels, inputs, judged=None, truth=None) -> dict:
        """The budget record of one artifact: what it lost, in the budget's own measure, on the
        outputs that compute something (pass-through outputs named, never followed).
        ``judged``: ``judged_outputs(source, inputs, reference)`` when already known; ``truth``:
        the validation samples' ``t_*`` arrays, for a task metric."""
        head = labelled_output(source)
        judged, passthrough = judged or judged_outputs(source, inputs, reference)
        reference = reference if self.baseline is None else self.baseline
        names = [o.name for o in source.outputs]
        record = {"max_drop_pp": self.max_drop_pp, "samples": len(reference[0]),
                  "against": "the model before compression" if self.baseline is not None else "the exported model",
                  "outputs": [names[i] for i in judged],
                  "passthrough_outputs": {names[i]: why for i, why in passthrough.items()}}
        if self.metric is not None:
            return {**record, **metric_loss(self.metric, outputs, reference, truth)}
        if head is None:
            return {**record, **self._snr_record({names[i]: round(measure(outputs[i], reference[i], None, False)
                                                                   .snr_db, 2) for i in judged})}
        measured = measure(outputs[head], reference[head], labels, classifier=True)
        return {**record, "drop_pp": round(measured.drop_pp, 4),
                "metric": "top-1 points on the validation labels" if labels is not None
                else "points of top-1 disagreement with the float model (no labels)"}

    def _snr_record(self, snrs: dict) -> dict:
        worst = min(snrs, key=snrs.get) if snrs else None
        return {"min_snr_db": self.min_snr_db, "snr_db": snrs.get(worst), "drop_pp": None, "snr_db_per_output": snrs,
                "metric": (f"SNR of output {worst!r}" if len(snrs) == 1 else "SNR of the worst of outputs "
                           + ", ".join(repr(n) for n in snrs)) + " against the float model, dB (no class scores)"}

    @staticmethod
    def shortfall(measured: dict) -> str:
        """How a measurement reads: "+1.25 pt" or "24.1 dB"."""
        return loss_text(measured.get("drop_pp"), measured.get("snr_db"), missing="refused")

    def holds(self, measured: dict) -> bool:
        return within(measured.get("drop_pp"), measured.get("snr_db"), self.max_drop_pp, self.min_snr_db)

    def describe(self, source) -> str:
        if self.metric is not None:
            return f"the budget of {self.max_drop_pp:g} {self.metric.metric.unit}"
        return (f"the budget of {self.max_drop_pp:g} pt" if labelled_output(source) is not None
                else f"the SNR floor of {self.min_snr_db:g} dB")


def metric_loss(metric, outputs, reference, truth_arrays=None) -> dict:
    """What an artifact lost in a task metric's points: the metric of its ``outputs`` and of the
    float model's (``reference``), both against the same truth (the data's, else the float
    model's own decoded outputs)."""
    truth, source_of_truth = metric.truth(reference, truth_arrays)
    value, float_value = metric.score(outputs, truth), metric.score(reference, truth)
    return {"drop_pp": metric.drop_pp(value[metric.name], float_value[metric.name]),
            "task_metric": {**metric.to_dict(), "value": value, "float_value": float_value, "truth": source_of_truth},
            "metric": f"{metric.metric.unit} against {source_of_truth}"}


def head_labels(source, validation):
    """The labels of the source's class-score output in ``validation`` (None: no labels or no scores)."""
    head = labelled_output(source)
    return None if head is None else validation.labels_for(source.outputs[head].name, primary=True)


def budget_for(source, profile, validation, options) -> Budget:
    """The budget of ``profile``'s export (``options``: ``targets.export.ExportOptions``); against
    another float model (the user's, before a recipe's steps), whose outputs become the baseline,
    and which ``source`` must itself meet."""
    metric = chosen_metric(options.metric)
    if options.budget_against is None:
        return Budget(options.max_drop, options.min_snr, metric=metric)
    original = as_source(options.budget_against)
    budget = Budget(options.max_drop, options.min_snr, original.predict(validation.feeds(original)), metric)
    inputs = validation.feeds(source)
    own = source.predict(inputs)
    measured = budget.measure(source, own, own, head_labels(source, validation), inputs,
                              truth=validation.metric_truth)
    if not budget.holds(measured):
        raise AccuracyBudgetError(f"{profile.name}: the compressed float model itself {lost_text(measured)} "
                                  f"against the model before compression, short of {budget.describe(source)} "
                                  "before any quantization; fine-tune longer, compress less, or raise the budget")
    return budget


def chosen_metric(metric):
    """A task metric as given (a spec such as ``"miou"``, or already chosen), or None."""
    from compressor.metrics.task import ChosenMetric, parse_metric

    return metric if metric is None or isinstance(metric, ChosenMetric) else parse_metric(metric)
