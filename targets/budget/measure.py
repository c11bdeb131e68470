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

    def measure(self, source, outputs, reference, labels, inputs, judged=None) -> dict:
        """The budget record of one artifact: what it lost, in the budget's own measure, on the
        outputs that compute something (pass-through outputs named, never followed).
        ``judged``: ``judged_outputs(source, inputs, reference)`` when already known."""
        head = labelled_output(source)
        judged, passthrough = judged or judged_outputs(source, inputs, reference)
        reference = reference if self.baseline is None else self.baseline
        names = [o.name for o in source.outputs]
        record = {"max_drop_pp": self.max_drop_pp, "samples": len(reference[0]),
                  "against": "the model before compression" if self.baseline is not None else "the exported model",
                  "outputs": [names[i] for i in judged],
                  "passthrough_outputs": {names[i]: why for i, why in passthrough.items()}}
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
        return (f"the budget of {self.max_drop_pp:g} pt" if labelled_output(source) is not None
                else f"the SNR floor of {self.min_snr_db:g} dB")


def head_labels(source, validation):
    """The labels of the source's class-score output in ``validation`` (None: no labels or no scores)."""
    head = labelled_output(source)
    return None if head is None else validation.labels_for(source.outputs[head].name, primary=True)


def budget_for(source, profile, validation, max_drop: float, min_snr: float, against) -> Budget:
    """The budget of ``profile``'s export; against another float model (the user's, before a
    recipe's steps), whose outputs become the baseline, and which ``source`` must itself meet."""
    if against is None:
        return Budget(max_drop, min_snr)
    original = as_source(against)
    budget = Budget(max_drop, min_snr, original.predict(validation.feeds(original)))
    inputs = validation.feeds(source)
    own = source.predict(inputs)
    measured = budget.measure(source, own, own, head_labels(source, validation), inputs)
    if not budget.holds(measured):
        raise AccuracyBudgetError(f"{profile.name}: the compressed float model itself {lost_text(measured)} "
                                  f"against the model before compression, short of {budget.describe(source)} "
                                  "before any quantization; fine-tune longer, compress less, or raise the budget")
    return budget
