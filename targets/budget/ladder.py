"""The budget's ladder: when a quantized artifact misses its accuracy budget (or the parity
floor), try the runtime's cheaper alternatives (another calibration, whole-model settings), then
find by measuring the layers that cost accuracy and keep the fewest of them in float
(:mod:`targets.budget.sensitivity`). Each rung is one export attempt (``targets.export.Attempt``),
judged by what it returns; the first that holds the budget is the artifact.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from compressor import interrupts
from compressor.errors import AccuracyBudgetError, CompressorError, ParityError
from compressor.metrics.loss import lost_text
from compressor.models.source import labelled_output
from targets.advice import budget_next_steps
from targets.budget import sensitivity
from targets.budget.measure import Budget, head_labels
from targets.runtime import get_runtime


@dataclass
class FullInt8:
    """How the profile's own int8 missed: in words, and the figures the records keep."""

    missed: str  # "full int8 loses 1.50 pt", "full int8 parity check failed ..."
    drop_pp: float | None = None
    snr_db: float | None = None
    floor: list = field(default_factory=list)  # the parity bounds it missed
    error: ParityError | None = None

    @classmethod
    def of(cls, outcome, profile) -> "FullInt8":
        what = "full int8" if profile.precision == "int8" else profile.precision  # int8w: weights only
        if isinstance(outcome, ParityError):
            text = str(outcome).split("; next:")[0].removeprefix(f"{profile.name}: ")
            return cls(f"{what} {text}", floor=list(getattr(outcome, "failed_checks", ())), error=outcome)
        measured = outcome.over_budget
        return cls(f"{what} {lost_text(measured)}", measured.get("drop_pp"), measured.get("snr_db"))

    def record(self) -> dict:
        return {"full_int8": self.missed, "full_int8_drop_pp": None if self.drop_pp is None else round(self.drop_pp, 4),
                "full_int8_snr_db": self.snr_db}


def within_budget(attempt, profile, on_progress=None) -> dict:
    """The manifest of ``profile``'s artifact within ``attempt.budget``: its own export, else the
    first rung of the ladder that holds. Raises AccuracyBudgetError (or the profile's own
    ParityError where nothing can be kept in float) with what came closest."""
    try:
        outcome = attempt(profile)
        if outcome.over_budget is None:
            return outcome.record
    except ParityError as exc:
        outcome = exc
    full = FullInt8.of(outcome, profile)
    limit = attempt.budget.describe(attempt.source)
    runtime = get_runtime(profile.runtime)
    if runtime.mixed is None or profile.builtin_int8_only or profile.precision != "int8" or attempt.calibration is None:
        if full.error is not None:
            raise full.error
        advice = budget_next_steps(profile, attempt.source, metric=attempt.budget.metric)
        raise AccuracyBudgetError(f"{profile.name}: {full.missed}, short of {limit}; "
                                  f"{profile.name} cannot keep layers in float; {advice}") from None
    tried: list[dict] = []
    record = _alternatives(attempt, profile, runtime, full, tried, on_progress)
    if record is not None:
        return record
    attempt.clear()
    found = recover(attempt, profile, on_progress)
    if found.float_nodes is None:
        raise AccuracyBudgetError(_nothing_met(profile, attempt, full, tried, found, limit))
    return _with_float_nodes(attempt, profile, found, full, tried, limit)


def _alternatives(attempt, profile, runtime, full: FullInt8, tried: list, on_progress) -> dict | None:
    """The runtime's cheaper settings, cheapest first (another calibration, whole-model ones):
    the manifest of the first within the budget; what each measured goes into ``tried``."""
    for options in runtime.alternatives:
        if on_progress:
            on_progress(f"{profile.name}: trying {', '.join(f'{k}={v}' for k, v in options.items())}")
        attempt.clear()
        other = dataclasses.replace(profile, options={**profile.options, **options})
        try:
            outcome = attempt(other, {**full.record(), "full_int8_drop_pp": full.drop_pp, "alternative": options,
                                      "tried_alternatives": tried, "float_nodes": []})
        except ParityError:
            tried.append({**options, "drop_pp": None})
            continue
        except CompressorError as failed:  # this calibration cannot be made here: the next rung
            if interrupts.interrupted(failed):
                raise
            tried.append({**options, "error": str(failed)[:200]})
            continue
        if outcome.over_budget is None:
            return outcome.record
        measured = {k: outcome.over_budget.get(k) for k in ("drop_pp", "snr_db")
                    if outcome.over_budget.get(k) is not None}
        tried.append({**options, **{k: round(v, 4) for k, v in measured.items()}})
    return None


def _nothing_met(profile, attempt, full: FullInt8, tried: list, found, limit: str) -> str:
    """The refusal when no mix of int8 and float met the budget: what came closest, and what next."""
    closest = found.closest()
    under = f", under the parity floor: {'; '.join(closest['below_floor'])}" if closest and closest.get(
        "below_floor") else ""
    edited = " edited from full int8" if closest and closest.get("edited") else ""
    near = (f"closest: {closest['k']} layer(s) in float{edited}, {Budget.shortfall(closest)}{under} "
            f"({', '.join(closest['float_nodes'][:4])}{', ...' if closest['k'] > 4 else ''})" if closest
            else "no layer could be kept in float")
    also = "".join(f"; {', '.join(f'{k}={v}' for k, v in t.items() if k not in ('drop_pp', 'snr_db', 'error'))} "
                   + Budget.shortfall(t) for t in tried)
    floor = full.floor if not closest or closest.get("below_floor") else ()
    return (f"{profile.name}: {full.missed}{also}; no mix of int8 and float met {limit} "
            f"({near}); {budget_next_steps(profile, attempt.source, floor, attempt.budget.metric)}")


def _with_float_nodes(attempt, profile, found, full: FullInt8, tried: list, limit: str) -> dict:
    """The artifact with the layers the search chose kept in float, exported again."""
    mixed = dataclasses.replace(profile, options={**profile.options, "float_nodes": found.float_nodes})
    attempt.clear()
    outcome = attempt(mixed, {**found.to_dict(), **full.record(), "tried_alternatives": tried})
    if outcome.over_budget is not None:  # the search measured within budget; the rebuilt artifact is not
        raise AccuracyBudgetError(f"{profile.name}: with {len(found.float_nodes)} layer(s) in float it "
                                  f"{lost_text(outcome.over_budget)} on export, short of {limit}; "
                                  f"{budget_next_steps(profile, attempt.source, metric=attempt.budget.metric)}")
    return outcome.record


def recover(attempt, profile, on_progress=None) -> sensitivity.Recovery:
    """The sensitivity search of ``profile``'s int8 on the attempt's validation samples."""
    source, budget = attempt.source, attempt.budget
    classifier = labelled_output(source) is not None and budget.metric is None
    judged, passthrough = attempt.judged
    head = judged[0] if judged else 0  # the class scores; without them every judged output's SNR, worst first
    expected = sensitivity.Outputs(
        attempt.reference, head, classifier, labels=head_labels(source, attempt.validation) if classifier else None,
        baseline=budget.baseline, floor=attempt.rule, names=tuple(o.name for o in source.outputs),
        class_outputs=tuple(source.class_outputs()), also=() if classifier else tuple(judged[1:]),
        passthrough=passthrough, budget_pp=budget.max_drop_pp,
        min_snr_db=None if classifier or budget.metric is not None else budget.min_snr_db,
        metric=budget.metric, truth=attempt.validation.metric_truth)
    workdir = Path(tempfile.mkdtemp(prefix=".recovery.", dir=attempt.staging))
    try:
        return sensitivity.search(source, profile, attempt.calibration, attempt.inputs, expected, workdir=workdir,
                                  timer=attempt.options.timer, on_progress=on_progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
