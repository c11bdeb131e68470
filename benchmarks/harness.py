"""``measure``: every artifact and the float baseline, each in its own process, side by side.

Rounds are interleaved (A B C, B C A, C A B, ...) so that machine drift shows up as
spread between rounds rather than as a false ranking; the reported latency is the
median over rounds, and the spread is kept.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import machine, results, roofline
from benchmarks.latency import LatencyConfig, harness_overhead_ns
from compressor import interrupts
from compressor.data import Dataset
from compressor.errors import BadInputError, CompressorError
from compressor import metrics as accuracy
from compressor.metrics.compare import fidelity as compare_fidelity
from compressor.models.source import feed_list
from targets import find_artifacts, open_artifact

@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str  # "source" (the float model as it is) or "artifact"
    path: Path
    runtime: str
    precision: str
    size: dict
    labelled_output: int | None = 0  # the output labels apply to (a multi-head model's class scores)
    parity_outputs: tuple = ()  # the export's parity figures per output
    input_names: tuple = ()  # the source's input names, in the order the runner takes them
    device_class: str | None = None  # what the artifact ships to (its profile's device class)
    cpu_class: str | None = None  # the CPU class its settings were chosen for (None: not a CPU target)
    macs: int | None = None  # of the model the artifact was made from, for the roofline
    speed_caveat: str = ""  # the profile's reason why it may be slower than its runtime's fp32
    budget: dict | None = None  # the export's accuracy budget, its drop, and any layers kept in float
    task_metric: dict | None = None  # the task metric the export was judged by (compressor.metrics.task)


def baseline_name(runtime: str) -> str:
    """How the float source model is named in results, by the runtime that runs it."""
    return f"float ({BASELINE_LABELS.get(runtime, runtime)})"


BASELINE_LABELS = {"tensorflow": "TensorFlow", "onnxruntime": "ONNX Runtime"}


def _source_candidate(source: Path) -> Candidate:
    from compressor.models import detect_format
    from compressor.digests import file_record
    from targets.runtime import baseline_runtime

    fmt = detect_format(source)  # refuses a missing or unknown file before any worker starts
    runtime = baseline_runtime(fmt.source_format).name
    record = file_record(source) if source.is_file() else {  # a SavedModel directory: its files together
        "bytes": sum(f.stat().st_size for f in source.rglob("*") if f.is_file()), "gzip_bytes": None}
    return Candidate(baseline_name(runtime), "source", source, runtime, "fp32",
                     {"bytes": record["bytes"], "gzip_bytes": record["gzip_bytes"]})


def _candidates(artifacts: list[Path], source: Path | None) -> list[Candidate]:
    found = [] if source is None else [_source_candidate(source)]
    for folder in artifacts:
        artifact = open_artifact(folder)  # refuses a sha256 mismatch before anything runs
        found.append(Candidate(artifact.target, "artifact", artifact.folder, artifact.runtime, artifact.precision,
                               artifact.manifest["size"], artifact.manifest.get("labelled_output", 0),
                               tuple(artifact.manifest["parity"].get("outputs", ())),
                               tuple(artifact.manifest.get("input_names", ())),
                               artifact.manifest.get("profile", {}).get("device_class", "CPU"),
                               artifact.manifest.get("cpu_class"), (artifact.manifest.get("source") or {}).get("macs"),
                               artifact.manifest.get("profile", {}).get("speed_caveat", ""),
                               artifact.manifest.get("budget"), artifact.manifest.get("task_metric")))
    if not found:
        raise BadInputError("nothing to measure: no artifact folders (with manifest.json) and no source model")
    return _named_apart(found)


def _named_apart(found: list[Candidate]) -> list[Candidate]:
    """One target from several runs (a search's recipes) named by the folder each run wrote
    (``onnx-int8 [structured25]``), or by the artifact's own folder where those are one folder
    (``onnx-fp32 [onnx-fp32-before]``): every name in a results document is one artifact."""
    names = [c.name for c in found]
    by_run = [f"{c.name} [{c.path.parent.name}]" for c in found]
    return [c if names.count(c.name) == 1 else dataclasses.replace(
                c, name=run if by_run.count(run) == 1 else f"{c.name} [{c.path.name}]")
            for c, run in zip(found, by_run)]


def thread_env(threads: int) -> dict:
    """The environment of a measured process: ``threads`` for every math library, quiet logs."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[name] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env["COMPRESSOR_QUIET"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _run_worker(candidate: Candidate, tag: str, workdir: Path, inputs: Path, config: LatencyConfig,
                outputs: Path | None, trust_model: bool) -> dict:
    spec_path, result_path = workdir / f"spec-{tag}.json", workdir / f"result-{tag}.json"
    spec = {"kind": candidate.kind, "path": str(candidate.path), "runtime": candidate.runtime,
            "inputs": str(inputs), "latency": config.to_dict(), "threads": config.threads,
            "outputs": None if outputs is None else str(outputs), "result": str(result_path),
            "trust_model": trust_model}
    spec_path.write_text(json.dumps(spec))
    project_root = Path(__file__).resolve().parent.parent
    env = thread_env(config.threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project_root), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", str(spec_path)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompressorError(f"benchmark of {candidate.name} failed in its worker process: {tail}")
    return json.loads(result_path.read_text())


def save_inputs(path: Path, inputs) -> None:
    """Evaluation inputs for the worker: one array per model input, in the runners' input order."""
    np.savez(path, **{f"input_{i}": array for i, array in enumerate(feed_list(inputs))})


def _eval_inputs(eval_data: Dataset, candidates: list[Candidate]) -> list[np.ndarray]:
    names = next((c.input_names for c in candidates if c.input_names), None)
    return eval_data.feeds_named(names) if names else [eval_data.feeds_named(["x"])[0]]


def artifact_latency(folder, x, config: LatencyConfig = LatencyConfig()) -> dict:
    """The latency record of one artifact on inputs ``x``, measured in its own worker
    process exactly as :func:`measure` measures each candidate (one round)."""
    artifact = open_artifact(folder)
    candidate = Candidate(artifact.target, "artifact", artifact.folder, artifact.runtime, artifact.precision,
                          artifact.manifest["size"])
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        save_inputs(inputs, x)
        return _run_worker(candidate, "single", Path(tmp), inputs, config, None, False)["latency"]


def _median_latency(rounds: list[dict]) -> dict:
    keys = rounds[0]["latency"].keys()
    merged = {k: statistics.median(r["latency"][k] for r in rounds) for k in keys}
    p50s = [r["latency"]["p50_ms"] for r in rounds]
    merged.update(rounds=len(rounds), p50_spread_ms=[min(p50s), max(p50s)])
    return merged


def measure(paths, *, eval_data: Dataset | None = None, source=None, config: LatencyConfig = LatencyConfig(),
            rounds: int = 3, trust_model: bool = False, on_progress=None) -> dict:
    """Measure artifacts (folders, or output folders holding them) and the float source model.

    Args:
        paths: artifact folders or output folders of ``targets.export``.
        eval_data: labelled samples for accuracy (and inputs for latency).
        source: the float source model file: the baseline for speed-ups and accuracy drop.
        config: latency settings (warm-up, runs, seconds, batch, threads).
        rounds: interleaved repetitions per candidate.
        on_progress: called with a line per measurement (which, how many left, estimated time left).

    Returns:
        The results document (see :mod:`benchmarks.results`).

    Example:
        >>> doc = measure(["out"], eval_data=test, source="model.keras")
    """
    if rounds < 1:
        raise BadInputError("rounds must be at least 1")
    folders = [folder for path in (paths or []) for folder in find_artifacts(path)]
    candidates = _candidates(folders, None if source is None else Path(source))
    if eval_data is None:
        raise BadInputError("benchmarks need evaluation data (--eval-data)")
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        workdir = Path(tmp)
        inputs = workdir / "inputs.npz"
        save_inputs(inputs, _eval_inputs(eval_data, candidates))
        per_candidate, outputs = _interleaved(candidates, workdir, inputs, config, rounds, trust_model, on_progress)
    return _assemble(candidates, per_candidate, outputs, eval_data, config, rounds, trust_model)


def _interleaved(candidates, workdir: Path, inputs: Path, config, rounds: int, trust_model: bool, on_progress):
    """Each candidate measured ``rounds`` times, each in its own process, in an order that shifts
    every round; the first round also keeps each candidate's outputs."""
    per_candidate: dict[str, list[dict]] = {c.name: [] for c in candidates}
    outputs: dict[str, list[np.ndarray]] = {}
    total, done, started = rounds * len(candidates), 0, time.perf_counter()
    for round_index in range(rounds):
        shift = round_index % len(candidates)
        for index, candidate in enumerate(candidates[shift:] + candidates[:shift]):
            interrupts.check()  # a signal the interpreter swallowed stops the run here
            if on_progress:
                on_progress(_progress_line(candidate.name, done, total, time.perf_counter() - started, rounds,
                                           round_index))
            done += 1
            tag = f"{round_index}-{index}"
            out_path = workdir / f"outputs-{tag}.npz" if round_index == 0 else None
            per_candidate[candidate.name].append(
                _run_worker(candidate, tag, workdir, inputs, config, out_path, trust_model))
            if out_path is not None:
                with np.load(out_path) as data:
                    outputs[candidate.name] = [data[f"arr_{i}"] for i in range(len(data.files))]
    return per_candidate, outputs


def _progress_line(name: str, done: int, total: int, elapsed: float, rounds: int, round_index: int) -> str:
    """``benchmark 3/9: tflite-int8 (round 1/3), about 40 s left`` (the estimate from the mean so far)."""
    left = f", about {elapsed / done * (total - done):.0f} s left" if done else ""
    which = f" (round {round_index + 1}/{rounds})" if rounds > 1 else ""
    return f"benchmark {done + 1}/{total}: {name}{which}{left}"


def _reference(candidates: list[Candidate]) -> Candidate | None:
    """The float model that accuracy drops and speed-ups are measured against."""
    for candidate in candidates:
        if candidate.kind == "source":
            return candidate
    return next((c for c in candidates if c.precision == "fp32"), None)


def _judged(candidates) -> tuple[int | None, list[int]]:
    """The labelled output (class scores, or None) and the outputs the figures follow, as the
    exports recorded them: every output that computes something (pass-through outputs, such as
    an integer copy of an input, are left out); the class scores first."""
    for c in candidates:
        if c.kind == "artifact":
            judged = [i for i, o in enumerate(c.parity_outputs) if not o.get("passthrough")]
            head = c.labelled_output
            return head, ([head] + [i for i in judged if i != head]) if head is not None else judged or [0]
    return 0, [0]


@dataclass
class _Truth:
    """What every candidate's outputs are judged against: the labels of the class-score output
    (and of every other head with labels), and the float reference's outputs and metrics."""

    head: int
    labelled: int | None
    judged: list[int]
    names: list[str]
    labels: object
    heads: dict  # output index -> (name, labels), for a multi-head model
    reference: list | None  # the reference's outputs
    ref_metrics: dict
    ref_heads: dict
    task: object = None  # (chosen task metric, its truth, what the truth is, the reference's scores)

    @classmethod
    def of(cls, candidates, outputs, eval_data, reference, trust_model: bool = False) -> "_Truth":
        labelled, judged = _judged(candidates)
        head = judged[0]
        names = next(([o["name"] for o in c.parity_outputs] for c in candidates if c.parity_outputs), [])
        labels = eval_data.labels_for(names[head], primary=True) if len(names) > head else eval_data.y
        # a multi-head model: accuracy of every head that has labels (y_<output>), beside the primary one
        heads = {i: (name, eval_data.labels_for(name, primary=i == head)) for i, name in enumerate(names)}
        heads = {i: pair for i, pair in heads.items() if pair[1] is not None} if len(names) > 1 else {}
        ref = outputs[reference.name] if reference else None
        return cls(head, labelled, judged, names, labels, heads, ref,
                   accuracy.evaluate(ref[head], labels) if ref else {},
                   {name: accuracy.evaluate(ref[i], y) for i, (name, y) in heads.items()} if ref else {},
                   _task(candidates, ref, eval_data, trust_model))

    def figures(self, outputs: list) -> dict:
        """A candidate's accuracy, its drop, and how closely it follows the reference, per output too."""
        head, ref = self.head, self.reference
        metrics = accuracy.evaluate(outputs[head], self.labels)
        per_head = {name: accuracy.evaluate(outputs[i], y) for i, (name, y) in self.heads.items()}
        fidelity = compare_fidelity(ref[head], outputs[head], scores=self.labelled is not None) if ref else {}
        per_output = {self.names[i]: fidelity if i == head else compare_fidelity(ref[i], outputs[i],
                                                                                  scores=i == self.labelled)
                      for i in self.judged} if ref and len(self.names) > 1 else {}
        return {
            "accuracy": metrics, "accuracy_drop_pp": accuracy.drop_points(metrics, self.ref_metrics),
            "fidelity": fidelity, "fidelity_per_output": per_output,
            # the worst SNR among the outputs the figures follow (pass-through outputs left out)
            "worst_snr_db": min((f["snr_db"] for f in (per_output or {"": fidelity}).values() if "snr_db" in f),
                                default=None),
            "accuracy_per_output": {name: {"accuracy": m, "accuracy_drop_pp": accuracy.drop_points(
                m, self.ref_heads.get(name, {}))} for name, m in per_head.items()},
            **({"task_metric": self._task_figures(outputs)} if self.task else {}),
        }

    def _task_figures(self, outputs: list) -> dict:
        """The task metric's value on these outputs, and its drop against the reference's."""
        metric, truth, source_of_truth, reference = self.task
        value = metric.score(outputs, truth)
        return {**metric.to_dict(), "value": value, "truth": source_of_truth,
                "drop_pp": None if reference is None else metric.drop_pp(value[metric.name], reference[metric.name])}


def _task(candidates, reference: list | None, eval_data, trust_model: bool):
    """The task metric the exports were judged by, its truth on the evaluation data (its ``t_*``
    arrays, else the reference's decoded outputs), and the reference's scores; None without one."""
    from compressor.metrics.task import parse_metric

    spec = next((c.task_metric["spec"] for c in candidates if c.task_metric), None)
    if spec is None:
        return None
    max_drop = next(((c.budget or {}).get("max_drop_pp") for c in candidates if c.budget), None)
    metric = parse_metric(spec, trust=trust_model, max_drop=max_drop)
    if reference is None and not all(k in eval_data.metric_truth for k in metric.metric.keys(metric.options)):
        return None
    truth, source_of_truth = metric.truth(reference, eval_data.metric_truth)
    return metric, truth, source_of_truth, None if reference is None else metric.score(reference, truth)


def _assemble(candidates, per_candidate, outputs, eval_data, config, rounds, trust_model=False) -> dict:
    reference = _reference(candidates)
    truth = _Truth.of(candidates, outputs, eval_data, reference, trust_model)
    ref_latency = statistics.median(r["latency"]["p50_ms"] for r in per_candidate[reference.name]) \
        if reference else None
    host = machine.capture()
    roof = roofline.ceiling(host, config.threads)
    rows = []
    for candidate in candidates:
        runs = per_candidate[candidate.name]
        latency = _median_latency(runs)
        rows.append({
            "name": candidate.name, "kind": candidate.kind, "runtime": candidate.runtime,
            "precision": candidate.precision, "path": str(candidate.path), "size": candidate.size,
            "latency": latency, "load_ms": statistics.median(r["load_ms"] for r in runs),
            "memory": max((r["memory"] for r in runs), key=lambda m: m["peak_above_baseline_mb"]),
            **truth.figures(outputs[candidate.name]),
            "speedup_vs_reference": (ref_latency / latency["p50_ms"]) if ref_latency else None,
            "parity_outputs": list(candidate.parity_outputs), "device_class": candidate.device_class,
            "cpu_class": candidate.cpu_class, "speed_caveat": candidate.speed_caveat, "budget": candidate.budget,
            "roofline": roofline.point(candidate.macs, candidate.precision, latency["p50_ms"], config.batch, roof,
                                       _amx(candidate.runtime)),
        })
    _runtime_ratios(rows)
    return results.document(
        rows=rows, machine={**host, "peak": roof}, config={**config.to_dict(), "rounds": rounds},
        dataset={"name": eval_data.name, "samples": len(eval_data)},
        reference=reference.name if reference else None, harness_overhead_ns=harness_overhead_ns(),
    )


def _amx(runtime: str) -> tuple:
    """The precisions ``runtime`` runs on AMX tiles (``Runtime.amx``)."""
    from targets.runtime import get_runtime

    return get_runtime(runtime).amx


def _runtime_ratios(rows: list[dict]) -> None:
    """Each artifact's speed-up against the fp32 artifact of the same runtime: is int8 faster here?"""
    fp32 = {r["runtime"]: r["latency"]["p50_ms"] for r in rows if r["precision"] == "fp32" and r["kind"] == "artifact"}
    for row in rows:
        base = fp32.get(row["runtime"])
        row["speedup_vs_runtime_fp32"] = base / row["latency"]["p50_ms"] if base and row["kind"] == "artifact" else None
