"""One export attempt: convert the source for a profile into a staging folder, run the artifact on
the validation samples, check parity, measure the accuracy budget, write the manifest. It knows
nothing of the budget's ladder (``targets.budget``), which calls attempts and judges what they
return."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from compressor import memory
from compressor.data import Dataset
from compressor.digests import file_record
from compressor.errors import ParityError
from compressor.metrics.compare import top1
from compressor.models.source import class_outputs_for, judged_outputs, labelled_output
from compressor.version import library_versions
from targets import devices, parity
from targets import manifest as manifests
from targets.advice import next_steps
from targets.budget.measure import Budget, head_labels
from targets.profiles import Parity, TargetProfile
from targets.runtime import get_runtime, run_batched


@dataclass
class Outcome:
    """What one attempt came to: the manifest it wrote, or (``over_budget``) the budget record
    of an artifact that passed parity but missed the budget, and was not written."""

    record: dict | None
    over_budget: dict | None = None


@dataclass
class Attempt:
    """One export of ``source`` to a profile into ``staging``: what stays the same for every
    rung of the budget's ladder (the data, the parity rule, the float model's outputs)."""

    staging: Path
    source: object
    rule: Parity
    calibration: Dataset | None
    validation: Dataset
    options: object  # targets.export.ExportOptions
    budget: Budget | None = None

    @cached_property
    def inputs(self) -> list:
        return self.validation.feeds(self.source)

    @cached_property
    def reference(self) -> list:
        """The float source's outputs on the validation samples."""
        return self.source.predict(self.inputs)

    @cached_property
    def judged(self) -> tuple[list[int], dict[int, str]]:
        """The outputs that compute something, and the pass-through ones (``judged_outputs``)."""
        return judged_outputs(self.source, self.inputs, self.reference)

    def clear(self) -> None:
        """Empty the staging folder of a previous attempt's files."""
        for leftover in self.staging.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    def __call__(self, profile: TargetProfile, recovery_record: dict | None = None) -> Outcome:
        """Convert, run on the validation samples, check parity (ParityError), measure the budget,
        write the manifest; ``recovery_record``: what the budget's ladder did to get here."""
        runtime = get_runtime(profile.runtime)
        exported = runtime.export(self.source, profile, self.calibration, self.staging)
        memory.settle()  # the conversion's garbage, before the artifact and the source run beside each other
        _drop_unnamed(self.staging, exported)
        if self.options.device is not None:
            devices.check_fits(self.options.device, exported.details, profile.name)
        runner = runtime.load(exported.artifact, threads=self.options.threads, details=exported.details)
        try:
            outputs = run_batched(runner, self.inputs)
            io = {"inputs": _io_records(runner.inputs), "outputs": _io_records(runner.outputs)}
        finally:
            runner.close()
        check = self._parity(outputs, profile)
        budget_record = self._budget_record(outputs, profile)
        if budget_record is not None and not self.budget.holds(budget_record):
            return Outcome(None, budget_record)
        if budget_record is not None:
            budget_record["recovery"] = recovery_record
        record = self._manifest(profile, runtime, exported, io, check, budget_record)
        manifests.write(self.staging, record)
        return Outcome(record)

    def _budget_record(self, outputs, profile) -> dict | None:
        """The artifact's loss against the float model on the validation set, in the budget's measure."""
        if self.budget is None or not profile.quantized:
            return None
        return self.budget.measure(self.source, outputs, self.reference, head_labels(self.source, self.validation),
                                   self.inputs, self.judged, self.validation.metric_truth)

    def _manifest(self, profile, runtime, exported, io, check, budget_record) -> dict:
        options, source, rule, calibration = self.options, self.source, self.rule, self.calibration
        artifact = file_record(exported.artifact)
        extra = [file_record(p, compressed=not _is_source_code(p)) for p in exported.extra_files]
        return {
            "target": profile.name, "profile": profile.to_dict(), "runtime": profile.runtime,
            "cpu_class": profile.cpu_class,  # the CPU class its settings were chosen for (None: not a CPU target)
            "precision": profile.precision, "libraries": library_versions(runtime.libraries),
            "artifact": artifact, "extra_files": extra, "size": _total_size(artifact, extra),
            **io, "labelled_output": labelled_output(source, options.metric),
            "input_names": [spec.name for spec in source.inputs],  # the order runners take their inputs in
            "source": source.record(options.source_path), "recipe": options.recipe,
            "calibration": None if calibration is None else {"samples": len(calibration), "source": calibration.name},
            "validation": {"samples": len(self.validation), "source": self.validation.name},
            "parity": {**check.to_dict(), "reference_weights": rule.weights or "float32",
                       "min_snr_db": rule.min_snr_db if rule.min_agreement is not None else None,
                       "rule_set_by": "profile" if rule == profile.parity else
                       "user" if options.parity_rule is not None else "task metric"},
            "details": exported.details, "threads": options.threads,
            **({"device": options.device} if options.device is not None else {}),
            "budget": budget_record,
            **({"task_metric": options.metric.to_dict()} if options.metric is not None else {}),
        }

    def _parity(self, outputs, profile) -> parity.ParityResult:
        """The artifact's outputs against the source's (at the profile's precision where it says so)."""
        source, rule = self.source, self.rule
        at_precision = source.predict_with_weights(rule.weights, self.inputs) if rule.weights else None
        try:
            check = parity.compare(self.reference, outputs, rule, at_precision=at_precision,
                                   names=[o.name for o in source.outputs],
                                   class_outputs=class_outputs_for(source, self.options.metric),
                                   passthrough=self.judged[1])
        except ParityError as exc:  # outputs that cannot even be compared (count, shape)
            raise ParityError(f"{profile.name}: {exc}") from None
        if not check.passed:
            error = ParityError(f"{profile.name}: parity check failed on {check.samples} validation samples: "
                                f"{'; '.join(check.failures)}{self._top1_text(outputs)}; "
                                f"{next_steps(profile, source, check.failed_checks)}")
            error.failed_checks = check.failed_checks  # the bounds a user's option would replace
            raise error
        return check

    def _top1_text(self, outputs) -> str:
        """The refused artifact's own top-1 beside the float model's, when the samples are labelled."""
        head, labels = labelled_output(self.source, self.options.metric), head_labels(self.source, self.validation)
        if labels is None or head is None:
            return ""
        return (f" (its top-1 {top1(outputs[head], labels):.1%} against the float model's "
                f"{top1(self.reference[head], labels):.1%})")


def _io_records(infos) -> list[dict]:
    return [vars(info) for info in infos]


def _is_source_code(path) -> bool:
    """A C source beside the artifact (TFLite Micro's model array): built into firmware, never
    downloaded as it is, so what it costs is the artifact's bytes. Its gzip size is not measured:
    gzip -9 of ResNet50's 150 MB array text took 109 s, most of the export."""
    return Path(path).suffix in (".cc", ".h")


def _total_size(artifact: dict, extra: list[dict]) -> dict:
    """What the deployable files cost together (an OpenVINO IR is .xml + .bin; C sources excluded),
    from their records (each file hashed and gzipped once)."""
    records = [artifact] + [r for r in extra if not _is_source_code(r["file"])]
    return {"bytes": sum(r["bytes"] for r in records), "gzip_bytes": sum(r["gzip_bytes"] for r in records)}


def _drop_unnamed(staging: Path, exported) -> None:
    """Remove what a library left beside the artifact that the manifest would not name (a shape
    inference's temporary model, a quantizer's external-data file): every file shipped is named."""
    named = {exported.artifact.resolve(), *(Path(p).resolve() for p in exported.extra_files)}
    for path in staging.iterdir():
        if path.name.startswith(".recovery.") or path.resolve() in named:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
