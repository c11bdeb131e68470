"""``export``: one model to one target, verified, with its manifest.

Work happens in a hidden staging folder inside the output folder; only an artifact
that passed its parity check is renamed into place, so a failure (a converter error, a
parity failure, an interrupt) never leaves a folder that looks valid.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor import interrupts, memory
from compressor.data import Dataset
from compressor.errors import (AccuracyBudgetError, BadInputError, CompressorError, ParityError,
                               UnsupportedModelError)
from compressor.models import as_source
from compressor.models.source import judged_outputs, labelled_output
from targets import cpu, devices, parity, recovery
from targets.advice import budget_next_steps, next_steps
from targets import manifest as manifests
from targets.artifact import Artifact
from targets.profiles import PROFILES, Parity, TargetProfile, get_profile, why_not
from targets.runtime import get_runtime, run_batched, runtimes

DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_VALIDATION_SAMPLES = 500


@dataclass(frozen=True)
class ExportResult(Artifact):
    """An artifact just written, its parity check passed."""

    @property
    def artifact(self) -> Path:
        return self.path

    @property
    def parity(self) -> dict:
        return self.manifest["parity"]


@dataclass
class ExportFailure:
    """A target that could not be exported: its exit code, one-line message, the error, and,
    for an unexpected exception (a bug), the traceback."""

    target: str
    exit_code: int
    message: str
    error: BaseException
    traceback: str | None = None


def _calibration_set(profile: TargetProfile, calibration, source, samples: int, seed: int) -> Dataset | None:
    if profile.precision not in ("int8", "int16x8"):
        return None
    if calibration is None:
        raise BadInputError(f"{profile.name}: needs calibration data (representative samples of real inputs)")
    if isinstance(calibration, str) and calibration == "random":
        return _random_calibration(source, samples, seed)
    return calibration.shuffled(seed).take(samples)


def _random_calibration(source, samples: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in source.inputs:
        size = (samples, *[8 if d is None else int(d) for d in spec.shape[1:]])
        dtype = np.dtype(spec.dtype)
        arrays[spec.name] = (rng.integers(0, 2, size=size) if dtype.kind in "iu" else rng.standard_normal(size)
                             ).astype(dtype)
    x = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return Dataset(x, None, "random noise (asked for)")


def _io_records(infos) -> list[dict]:
    return [vars(info) for info in infos]


def why_not_source(profile: TargetProfile, source) -> str | None:
    """Why ``profile`` cannot take ``source`` (its format or its layers), or None if it can."""
    runtime = get_runtime(profile.runtime)
    if not runtime.takes(source):
        others = [name for name, other in runtimes().items() if other.takes(source)]
        return (f"{runtime.name} exports from {' or '.join(runtime.accepts)} models, not {source.format} ones"
                + (f"; {source.format} models go to the {' and '.join(others)} targets" if others else ""))
    return why_not(profile, source.op_types())


def compatibility(model) -> dict[str, str | None]:
    """For every profile: None if it can take ``model`` (a source or a Keras model), else why not."""
    source = as_source(model)
    return {name: why_not_source(profile, source) for name, profile in PROFILES.items()}


def profiles_for(model) -> list[str]:
    """Names of the profiles that can take ``model`` (what ``--target all`` means)."""
    return [name for name, reason in compatibility(model).items() if reason is None]


def export(model, target: str, *, out_dir: str | Path, validation: Dataset, calibration=None,
           calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
           validation_samples: int = DEFAULT_VALIDATION_SAMPLES, source_path=None, recipe: dict | None = None,
           threads: int = 1, seed: int = 0, overwrite: bool = False,
           parity_rule: Parity | None = None, device: str | None = None, cpu_class: str = cpu.HOST,
           max_drop: float | None = None, min_snr: float = 30.0, budget_against=None, timer=None,
           on_progress=None) -> ExportResult:
    """Export a model to ``target``, check parity, write the manifest.

    Args:
        model: a source model (:func:`compressor.load_source`) or a Keras model.
        target: a registered profile name (``compressor targets`` lists them).
        out_dir: the artifact goes to ``out_dir/target/``.
        validation: samples for the parity check (keep them apart from calibration).
        calibration: representative samples for int8 calibration, or ``"random"``
            to calibrate on noise deliberately.
        source_path: the model file, recorded by name and sha256.
        recipe: the recipe that produced the model, recorded in the manifest.
        parity_rule: the user's own bounds, in place of the profile's (``max_abs`` for
            float targets, ``min_agreement`` for quantized ones); recorded in the manifest.
        device: a named microcontroller budget (``targets.devices``); an artifact with a
            measured tensor arena (mcu) that does not fit it is refused.
        cpu_class: the CPU class the artifact ships to (``targets.cpu.CLASSES``; ``host``:
            this machine's); CPU profiles choose their quantization settings for it.
        max_drop: the accuracy budget of a quantized target, in top-1 points against the float
            model on the validation labels (in points of disagreement without labels). When
            the profile's int8 misses it, the layers that cost accuracy are found by measuring
            and kept in float (runtimes that can mix precisions), or the target is refused
            (AccuracyBudgetError) with what came closest. The parity floor stays the hard floor.
        min_snr: the budget of a model without class scores (regressors, segmentation maps):
            the SNR floor of its first output against the float model, in dB (with ``max_drop``).
        budget_against: the float model the budget is measured against when it is not ``model``
            (the user's model before a recipe's steps): the drop then counts what pruning or
            fine-tuning lost too, and a compressed model that alone misses the budget is refused.
        timer: ``timer(runner, feeds) -> ms``, a loaded artifact's p50 on one sample
            (``benchmarks.latency.runner_p50_ms``); with it, the budget's search records the
            latency of full int8 and of each number of layers it tried in float.

    Raises:
        UnsupportedModelError / ConversionError: the target cannot take the model.
        ParityError: the artifact disagrees with the model; nothing is left behind.
        AccuracyBudgetError: no setting met ``max_drop``; nothing is left behind.

    Example:
        >>> export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    """
    profile = get_profile(target).for_cpu(cpu_class)
    rule = profile.parity.override(parity_rule)
    if max_drop is not None and not max_drop >= 0:
        raise BadInputError(f"the accuracy budget must be >= 0 top-1 points, not {max_drop}")
    if not min_snr > 0:
        raise BadInputError(f"the SNR floor must be > 0 dB, not {min_snr}")
    if device is not None:
        devices.get_device(device)
    source = as_source(model)
    reason = why_not_source(profile, source)
    if reason:
        raise UnsupportedModelError(f"{profile.name}: cannot take model '{source.name}': {reason}")
    validation.check_fits(source)
    calibration_set = _calibration_set(profile, calibration, source, calibration_samples, seed)
    if calibration_set is not None:
        calibration_set.check_fits(source)
    validation = validation.take(validation_samples)
    budget = None if max_drop is None or not profile.quantized else \
        _budget(source, profile, validation, max_drop, min_snr, budget_against)
    final = Path(out_dir) / profile.name
    if final.exists() and not overwrite:
        raise BadInputError(f"{final}: already exists; choose another output folder or overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{profile.name}.", suffix=".partial", dir=final.parent))
    try:
        try:
            result = _export_within(staging, source, profile, rule, calibration_set, validation, source_path,
                                    recipe, threads, device, budget, on_progress, timer)
        except OSError as exc:  # a full disk, a vanished folder: say so, leave nothing half-written
            raise BadInputError(f"{final}: cannot write the artifact ({exc.strerror or exc})") from None
        if final.exists():
            shutil.rmtree(final)
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(final, final / result["artifact"]["file"], result)


def export_many(model, targets: list[str], *, on_progress=None, costs: dict | None = None,
                **options) -> tuple[list[ExportResult], list[ExportFailure]]:
    """Export ``model`` to each of ``targets``; one target's failure never stops the others.

    ``all`` among the names means every profile that can take the model. ``options`` are
    :func:`export`'s. A failure the user can act on keeps its typed error's exit code and
    message; an unexpected exception is recorded as a bug (exit 1) with its traceback.
    ``on_progress(message)`` is told as each target starts and fails. ``costs``, when given, gets
    each target's wall time and peak resident memory (``compressor.memory``).

    Example:
        >>> exported, failed = export_many(model, ["all"], out_dir="out", calibration=train, validation=test)
    """
    source = as_source(model)
    names = profiles_for(source) if "all" in targets else list(dict.fromkeys(targets))
    exported, failed = [], []
    for index, name in enumerate(names):
        interrupts.check()
        if on_progress:
            on_progress(f"export: {name} ({index + 1}/{len(names)})")
        started, own_peak = time.perf_counter(), memory.reset_peak()
        try:
            exported.append(export(source, name, on_progress=on_progress, **options))
        except Exception as exc:
            if interrupts.interrupted(exc):  # Ctrl-C or SIGTERM surfaced inside a library: stop everything
                raise
            failed.append(_failure(name, exc))
            if on_progress:
                on_progress(f"export: {name} FAILED: {failed[-1].message}")
        finally:
            if costs is not None:
                costs[name] = {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": memory.peak_mb(),
                               "peak_since": "the export's start" if own_peak else "the process's start"}
    interrupts.check()
    return exported, failed


def _failure(target: str, exc: Exception) -> ExportFailure:
    """A typed error keeps its exit code and message; anything else is a bug (exit 1), traceback kept."""
    if isinstance(exc, CompressorError):
        return ExportFailure(target, exc.exit_code, str(exc), exc)
    return ExportFailure(target, CompressorError.exit_code, f"{target}: {type(exc).__name__}: {exc}", exc,
                         traceback.format_exc())


def _total_size(artifact: dict, extra: list[dict]) -> dict:
    """What the deployable files cost together (an OpenVINO IR is .xml + .bin; C sources excluded),
    from their records (each file hashed and gzipped once)."""
    records = [artifact] + [r for r in extra if Path(r["file"]).suffix not in (".cc", ".h")]
    return {"bytes": sum(r["bytes"] for r in records), "gzip_bytes": sum(r["gzip_bytes"] for r in records)}


@dataclass(frozen=True)
class Budget:
    """What a quantized artifact may lose against the float model on the validation samples:
    ``max_drop_pp`` top-1 points where the model has class scores (points of disagreement
    without labels), else an SNR floor ``min_snr_db`` on its first output (regressors,
    segmentation maps, embeddings)."""

    max_drop_pp: float
    min_snr_db: float = 30.0
    # the outputs of the model the budget is measured against, when it is not the exported one
    # (the user's model before compression steps), on the validation samples
    baseline: list | None = None

    def measure(self, source, outputs, reference, labels, inputs) -> dict:
        """The budget record of one artifact: what it lost, in the budget's own measure, on the
        outputs that compute something (pass-through outputs named, never followed)."""
        head = labelled_output(source)
        judged, passthrough = judged_outputs(source, inputs, reference)
        reference = reference if self.baseline is None else self.baseline
        names = [o.name for o in source.outputs]
        record = {"max_drop_pp": self.max_drop_pp, "samples": len(reference[0]),
                  "against": "the model before compression" if self.baseline is not None else "the exported model",
                  "outputs": [names[i] for i in judged],
                  "passthrough_outputs": {names[i]: why for i, why in passthrough.items()}}
        if head is None:
            snrs = {names[i]: round(recovery.quality(outputs[i], reference[i], None, False).snr_db, 2)
                    for i in judged}
            worst = min(snrs, key=snrs.get) if snrs else None
            return {**record, "min_snr_db": self.min_snr_db, "snr_db": snrs.get(worst), "drop_pp": None,
                    "snr_db_per_output": snrs,
                    "metric": (f"SNR of output {worst!r}" if len(snrs) == 1 else "SNR of the worst of outputs "
                               + ", ".join(repr(n) for n in snrs)) + " against the float model, dB (no class scores)"}
        measured = recovery.quality(outputs[head], reference[head], labels, classifier=True)
        return {**record, "drop_pp": round(measured.drop_pp, 4),
                "metric": "top-1 points on the validation labels" if labels is not None
                else "points of top-1 disagreement with the float model (no labels)"}

    @staticmethod
    def shortfall(measured: dict) -> str:
        """How a measurement reads: "+1.25 pt" or "24.1 dB"."""
        return recovery.loss_text(measured.get("drop_pp"), measured.get("snr_db"), missing="refused")

    def holds(self, measured: dict) -> bool:
        return recovery.within(measured.get("drop_pp"), measured.get("snr_db"), self.max_drop_pp, self.min_snr_db)

    def describe(self, source) -> str:
        return (f"the budget of {self.max_drop_pp:g} pt" if labelled_output(source) is not None
                else f"the SNR floor of {self.min_snr_db:g} dB")


def _budget(source, profile, validation, max_drop, min_snr, against) -> Budget:
    """The budget of ``profile``'s export; against another float model (the user's, before a
    recipe's steps), whose outputs become the baseline, and which ``source`` must itself meet."""
    if against is None:
        return Budget(max_drop, min_snr)
    original = as_source(against)
    budget = Budget(max_drop, min_snr, original.predict(validation.feeds(original)))
    head = labelled_output(source)
    labels = None if head is None else validation.labels_for(source.outputs[head].name, primary=True)
    inputs = validation.feeds(source)
    own = source.predict(inputs)
    measured = budget.measure(source, own, own, labels, inputs)
    if not budget.holds(measured):
        raise AccuracyBudgetError(f"{profile.name}: the compressed float model itself {_OverBudget(measured).lost} "
                                  f"against the model before compression, short of {budget.describe(source)} "
                                  "before any quantization; fine-tune longer, compress less, or raise the budget")
    return budget


class _OverBudget(Exception):
    def __init__(self, measured: dict) -> None:
        self.measured = {k: measured.get(k) for k in ("drop_pp", "snr_db") if measured.get(k) is not None}
        super().__init__(self.lost)

    @property
    def lost(self) -> str:
        if "drop_pp" in self.measured:
            return f"loses {self.measured['drop_pp']:.2f} pt"
        return f"reaches {self.measured['snr_db']:.1f} dB SNR"

    @property
    def drop_pp(self) -> float | None:
        return self.measured.get("drop_pp")


def _budget_record(source, profile, validation, outputs, reference, budget: Budget | None) -> dict | None:
    """The artifact's loss against the float model on the validation set, in the budget's measure."""
    if budget is None or not profile.quantized:
        return None
    head = labelled_output(source)
    labels = None if head is None else validation.labels_for(source.outputs[head].name, primary=True)
    return budget.measure(source, outputs, reference, labels, validation.feeds(source))


def _export_within(staging: Path, source, profile, rule, calibration, validation, source_path, recipe, threads,
                   device, budget: Budget | None, on_progress, timer=None) -> dict:
    """The profile's own export; when it misses the budget (or the parity floor) and the runtime
    can mix precisions, the layers that cost accuracy are kept in float and it is exported again."""
    try:
        return _export_into(staging, source, profile, rule, calibration, validation, source_path, recipe, threads,
                            device, budget)
    except (_OverBudget, ParityError) as exc:
        runtime = get_runtime(profile.runtime)
        if isinstance(exc, ParityError) and budget is None:
            raise
        missed = (f"full int8 {exc.lost}" if isinstance(exc, _OverBudget)
                  else "full int8 " + str(exc).split("; next:")[0].removeprefix(f"{profile.name}: "))
        full_drop = exc.drop_pp if isinstance(exc, _OverBudget) else None
        full_snr = exc.measured.get("snr_db") if isinstance(exc, _OverBudget) else None
        full_floor = list(getattr(exc, "failed_checks", ()))  # the parity bounds full int8 missed
        limit = budget.describe(source)
        if runtime.mixed is None or profile.builtin_int8_only or profile.precision != "int8" or calibration is None:
            if isinstance(exc, ParityError):
                raise
            raise AccuracyBudgetError(f"{profile.name}: {missed}, short of {limit}; "
                                      f"{profile.name} cannot keep layers in float; "
                                      f"{budget_next_steps(profile, source)}") from None
        tried = []
        for options in runtime.alternatives:  # cheapest first: another calibration, whole-model
            if on_progress:
                on_progress(f"{profile.name}: trying {', '.join(f'{k}={v}' for k, v in options.items())}")
            _clear(staging)
            other = dataclasses.replace(profile, options={**profile.options, **options})
            try:
                return _export_into(staging, source, other, rule, calibration, validation, source_path, recipe,
                                    threads, device, budget, recovery_record={
                                        "full_int8": missed, "full_int8_drop_pp": full_drop,
                                        "full_int8_snr_db": full_snr, "alternative": options,
                                        "tried_alternatives": tried, "float_nodes": []})
            except _OverBudget as miss:
                tried.append({**options, **{k: round(v, 4) for k, v in miss.measured.items()}})
            except ParityError:
                tried.append({**options, "drop_pp": None})
            except CompressorError as failed:  # this calibration cannot be made here: the next rung
                if interrupts.interrupted(failed):
                    raise
                tried.append({**options, "error": str(failed)[:200]})
        _clear(staging)
        found = _recover(staging, source, profile, rule, calibration, validation, budget, on_progress, timer)
    if found.float_nodes is None:
        closest = found.closest()
        under = f", under the parity floor: {'; '.join(closest['below_floor'])}" if closest and closest.get(
            "below_floor") else ""
        near = (f"closest: {closest['k']} layer(s) in float, {Budget.shortfall(closest)}{under} "
                f"({', '.join(closest['float_nodes'][:4])}{', ...' if closest['k'] > 4 else ''})" if closest
                else "no layer could be kept in float")
        also = "".join(f"; {', '.join(f'{k}={v}' for k, v in t.items() if k not in ('drop_pp', 'snr_db', 'error'))} "
                       + Budget.shortfall(t) for t in tried)
        floor = full_floor if not closest or closest.get("below_floor") else ()
        raise AccuracyBudgetError(f"{profile.name}: {missed}{also}; no mix of int8 and float met {limit} "
                                  f"({near}); {budget_next_steps(profile, source, floor)}")
    mixed = dataclasses.replace(profile, options={**profile.options, "float_nodes": found.float_nodes})
    _clear(staging)
    try:
        full = {"full_int8_drop_pp": None if full_drop is None else round(full_drop, 4), "full_int8": missed,
                "full_int8_snr_db": full_snr, "tried_alternatives": tried}
        return _export_into(staging, source, mixed, rule, calibration, validation, source_path, recipe, threads,
                            device, budget, recovery_record={**found.to_dict(), **full})
    except _OverBudget as exc:  # the search measured within budget; the rebuilt artifact is not
        raise AccuracyBudgetError(f"{profile.name}: with {len(found.float_nodes)} layer(s) in float it {exc.lost} "
                                  f"on export, short of {limit}; {budget_next_steps(profile, source)}") from None


def _drop_unnamed(staging: Path, exported) -> None:
    """Remove what a library left beside the artifact that the manifest would not name (a shape
    inference's temporary model, a quantizer's external-data file): every file shipped is named."""
    named = {exported.artifact.resolve(), *(Path(p).resolve() for p in exported.extra_files)}
    for path in staging.iterdir():
        if path.name.startswith(".recovery.") or path.resolve() in named:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _clear(staging: Path) -> None:
    """Empty the staging folder of a previous attempt's files."""
    for leftover in staging.iterdir():
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _recover(staging: Path, source, profile, rule, calibration, validation, budget: Budget,
             on_progress, timer=None) -> recovery.Recovery:
    classifier = labelled_output(source) is not None
    inputs = validation.feeds(source)
    references = source.predict(inputs)
    judged, passthrough = judged_outputs(source, inputs, references)
    head = judged[0] if judged else 0  # the class scores; without them every judged output's SNR, worst first
    expected = recovery.Outputs(
        references, head, classifier,
        labels=validation.labels_for(source.outputs[head].name, primary=True) if classifier else None,
        baseline=budget.baseline, floor=rule, names=tuple(o.name for o in source.outputs),
        class_outputs=tuple(source.class_outputs()), also=() if classifier else tuple(judged[1:]),
        passthrough=passthrough)
    workdir = Path(tempfile.mkdtemp(prefix=".recovery.", dir=staging))
    try:
        return recovery.search(source, profile, calibration, inputs, expected, budget_pp=budget.max_drop_pp,
                               min_snr_db=None if classifier else budget.min_snr_db, workdir=workdir,
                               timer=timer, on_progress=on_progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _export_into(staging: Path, source, profile, rule, calibration, validation, source_path, recipe, threads,
                 device, budget: Budget | None = None, recovery_record=None) -> dict:
    runtime = get_runtime(profile.runtime)
    exported = runtime.export(source, profile, calibration, staging)
    _drop_unnamed(staging, exported)
    if device is not None:
        devices.check_fits(device, exported.details, profile.name)
    runner = runtime.load(exported.artifact, threads=threads, details=exported.details)
    try:
        inputs = validation.feeds(source)
        outputs = run_batched(runner, inputs)
        io = {"inputs": _io_records(runner.inputs), "outputs": _io_records(runner.outputs)}
    finally:
        runner.close()
    check, reference = _check_parity(source, inputs, outputs, rule, profile, validation)
    budget_record = _budget_record(source, profile, validation, outputs, reference, budget)
    if budget_record is not None and not budget.holds(budget_record):
        raise _OverBudget(budget_record)
    if budget_record is not None:
        budget_record["recovery"] = recovery_record
    artifact, extra = manifests.file_record(exported.artifact), [manifests.file_record(p) for p in exported.extra_files]
    record = {
        "target": profile.name, "profile": profile.to_dict(), "runtime": profile.runtime,
        "cpu_class": profile.cpu_class,  # the CPU class its settings were chosen for (None: not a CPU target)
        "precision": profile.precision, "libraries": manifests.library_versions(runtime.libraries),
        "artifact": artifact, "extra_files": extra, "size": _total_size(artifact, extra),
        **io, "labelled_output": labelled_output(source),
        "input_names": [spec.name for spec in source.inputs],  # the order runners take their inputs in
        "source": source.record(source_path), "recipe": recipe,
        "calibration": None if calibration is None else {"samples": len(calibration), "source": calibration.name},
        "validation": {"samples": len(validation), "source": validation.name},
        "parity": {**check.to_dict(), "reference_weights": rule.weights or "float32",
                   "min_snr_db": rule.min_snr_db if rule.min_agreement is not None else None,
                   "rule_set_by": "profile" if rule == profile.parity else "user"},
        "details": exported.details, "threads": threads, **({"device": device} if device is not None else {}),
        "budget": budget_record,
    }
    manifests.write(staging, record)
    return record


def _check_parity(source, inputs, outputs, rule, profile, validation=None) -> tuple[parity.ParityResult, list]:
    """The artifact's outputs against the source's (at the profile's precision where it says so)."""
    reference = source.predict(inputs)
    at_precision = source.predict_with_weights(rule.weights, inputs) if rule.weights else None
    try:
        check = parity.compare(reference, outputs, rule, at_precision=at_precision,
                               names=[o.name for o in source.outputs], class_outputs=source.class_outputs(),
                               passthrough=judged_outputs(source, inputs, reference)[1])
    except ParityError as exc:  # outputs that cannot even be compared (count, shape)
        raise ParityError(f"{profile.name}: {exc}") from None
    if not check.passed:
        error = ParityError(f"{profile.name}: parity check failed on {check.samples} validation samples: "
                            f"{'; '.join(check.failures)}{_measured(source, reference, outputs, validation)}; "
                            f"{next_steps(profile, source, check.failed_checks)}")
        error.failed_checks = check.failed_checks  # the bounds a user's option would replace
        raise error
    return check, reference


def _measured(source, reference, outputs, validation) -> str:
    """The refused artifact's own top-1 beside the float model's, when the samples are labelled."""
    head = labelled_output(source)
    if validation is None or head is None:
        return ""
    labels = validation.labels_for(source.outputs[head].name, primary=True)
    if labels is None:
        return ""
    top1 = [float(np.mean(np.argmax(o[head], axis=-1) == labels)) for o in (outputs, reference)]
    return f" (its top-1 {top1[0]:.1%} against the float model's {top1[1]:.1%})"
