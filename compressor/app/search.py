"""``compressor search``: the fastest (or smallest) artifact per target within an accuracy budget.

Each **trial** is one recipe — int8 alone, quantization-aware fine-tuning, structured
pruning at 25 and 50 %, magnitude pruning at 50 and 80 % (fine-tuned; Keras sources
only) — taken through the whole job (:func:`compressor.app.workflow.run`, from a
:class:`~compressor.app.workflow.JobSpec`) in a worker process of its own: compression, export of every target with the budget (int8 keeps its most sensitive
layers in float when it must, or is refused), benchmark, report. Trials run through an
executor: a local process pool (``--jobs``) or Ray (``--executor ray``). Each trial's
folder is named by a hash of everything it depends on (model and data bytes, recipe,
targets, budget, CPU class, version), so a rerun skips every finished trial.

Latency measured while trials run in parallel is not trusted for the choice: every
candidate within the budget is measured again afterwards, alone and interleaved with the
others (the benchmark harness, three rounds), and the choice per target is made on that
measurement: the lowest p50 (``latency``; ties within 3 % go to the smaller file) or the
smallest file (``size``). The chosen artifacts are copied to ``OUT/<target>/``;
``OUT/search.json`` holds every trial, every candidate and the Pareto fronts; the reports
show the candidates side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compressor import atomic
from compressor.digests import sha256
from compressor.errors import BadInputError, CompressorError, UsageError
from compressor.metrics.loss import row_within
from compressor.app.workflow import refuse_inputs_inside
from compressor.progress import time_left
from compressor.version import __version__

# name -> recipe (a built-in name or a recipe dict); Keras sources take them all, ONNX the first
RECIPES: dict[str, object] = {
    "int8": "int8",
    "qat": "qat-int8",
    "structured25": "structured25-int8",
    "structured50": "structured50-int8",
    "prune50": "prune50-int8",
    "prune80": {"name": "prune80", "description": "80 % magnitude pruning, fine-tuned, sparsity-preserving QAT",
                "fine_tune": {"epochs": 3}, "steps": [{"type": "prune", "sparsity": 0.8}, {"type": "qat"}]},
}
OBJECTIVES = ("latency", "size")
CACHE = "trials"
SEARCH_FILE = "search.json"
TIES = 1.03  # p50s within 3 % of the fastest are a tie, won by the smaller file


@dataclass(frozen=True)
class SearchConfig:
    model: str
    targets: tuple[str, ...]
    data: str
    eval_data: str
    out_dir: str
    max_drop: float = 1.0
    min_snr: float = 30.0  # the budget of a model without class scores (dB)
    metric: str | None = None  # a task metric spec: the budget in its points
    objective: str = "latency"
    recipes: tuple[str, ...] = ()  # empty: every recipe the source takes
    cpu_class: str = "host"
    jobs: int = 1
    executor: str = "local"
    address: str | None = None  # a running Ray cluster; None: a local instance
    time_budget_s: float | None = None
    trust_model: bool = False
    rounds: int = 3

    def check(self) -> "SearchConfig":
        if self.objective not in OBJECTIVES:
            raise UsageError(f"unknown objective '{self.objective}' (valid: {', '.join(OBJECTIVES)})")
        unknown = [r for r in self.recipes if r not in RECIPES]
        if unknown:
            raise UsageError(f"unknown search recipe '{unknown[0]}' (valid: {', '.join(RECIPES)})")
        if self.executor not in EXECUTORS:
            raise UsageError(f"unknown executor '{self.executor}' (valid: {', '.join(EXECUTORS)})")
        if self.jobs < 1:
            raise BadInputError("--jobs must be at least 1")
        if not self.max_drop >= 0:
            raise BadInputError(f"the accuracy budget must be >= 0 top-1 points, not {self.max_drop}")
        return self


@dataclass
class Trial:
    recipe: str
    key: str
    folder: Path
    spec: object  # compressor.app.workflow.JobSpec: the whole job, run by the job API in a worker process
    cached: bool = False
    exit_code: int | None = None
    seconds: float | None = None
    record: dict = field(default_factory=dict)


def _identity(spec: str) -> str:
    """What a data or model argument is: its bytes' hash for a file or folder, else the spec itself."""
    path = Path(spec)
    return sha256(path) if not spec.startswith("sample:") and path.exists() else spec


def _trial_key(config: SearchConfig, recipe: str, inputs: dict) -> str:
    from compressor.recipes import load_recipe
    from compressor.cpu import get_class

    # the recipe in full, with every step's defaults: a built-in that changes is another trial
    facts = {"version": __version__, **inputs, "recipe": load_recipe(RECIPES[recipe]).to_dict(),
             "targets": sorted(config.targets),
             "max_drop": config.max_drop, "min_snr": config.min_snr, "metric": config.metric,
             "cpu_class": get_class(config.cpu_class).name}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan(config: SearchConfig, source) -> list[Trial]:
    """The trials for ``source`` (a source that is no Keras model takes no training step: int8 alone)."""
    trainable = "keras" in source.provides
    names = list(config.recipes) or (list(RECIPES) if trainable else ["int8"])
    training = [n for n in names if n != "int8"]
    if training and not trainable:
        raise BadInputError(f"search recipe '{training[0]}' fine-tunes, which needs a Keras model; "
                            f"{config.model} is {source.format} (int8 alone applies)")
    inputs = {"model": _identity(config.model), "data": _identity(config.data), "eval": _identity(config.eval_data)}
    cache = Path(config.out_dir) / CACHE
    trials = []
    for name in names:
        key = _trial_key(config, name, inputs)
        folder = cache / key
        trials.append(Trial(name, key, folder, _job_spec(config, RECIPES[name], folder / name)))
    return trials


def _job_spec(config: SearchConfig, recipe, out_dir: Path):
    """One trial's whole job: the recipe through every target with the budget, measured once."""
    from benchmarks.latency import LatencyConfig
    from compressor.app.workflow import JobSpec

    return JobSpec(config.model, recipe, config.data, config.eval_data, str(out_dir), targets=tuple(config.targets),
                   overwrite=True, bench_config=LatencyConfig(min_seconds=0.3), rounds=1,
                   trust_model=config.trust_model, cpu_class=config.cpu_class, max_drop=config.max_drop,
                   min_snr=config.min_snr, metric=config.metric)


def run_trial(spec, folder: str) -> tuple[int, float, dict]:
    """One trial, in the worker process that runs it: the job through :func:`workflow.run`, its
    log in ``trial.log``; its exit code, wall time and record (what it exported, what failed,
    its benchmark rows). The executors' unit of work."""
    from compressor.app.options import quiet_libraries
    from compressor.app.workflow import run

    quiet_libraries()
    start = time.perf_counter()
    with open(Path(folder) / "trial.log", "w") as log:
        os.dup2(log.fileno(), 1)  # the libraries' own output (C++ logs included) to the trial's log
        os.dup2(log.fileno(), 2)
        try:
            outcome = run(spec, progress=lambda line: print(line, flush=True))
        except CompressorError as exc:
            print(f"Error: {exc}", flush=True)
            return exc.exit_code, time.perf_counter() - start, {"error": str(exc)}
    record = {"exported": [r.target for r in outcome.exported],
              "failed": {f.target: {"exit_code": f.exit_code, "error": f.message} for f in outcome.failed},
              "compression": outcome.compression, "rows": (outcome.results or {}).get("results", [])}
    return outcome.exit_code, time.perf_counter() - start, record


def run_local(calls: list[tuple], config: SearchConfig) -> list[tuple[int, float, dict]]:
    """A local pool of ``jobs`` worker processes, a fresh one per trial (spawned: no state of this
    process, and each trial's memory returned when it ends)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=config.jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        return list(pool.map(run_trial, *zip(*calls)))


def run_ray(calls: list[tuple], config: SearchConfig) -> list[tuple[int, float, dict]]:
    """Ray tasks, one CPU each: a running cluster (``address``; its nodes need this project and the
    data at the same paths), or a local instance of ``jobs`` CPUs."""
    try:
        import ray
    except ImportError:
        raise BadInputError("--executor ray needs Ray: pip install '.[distributed]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": config.address} if config.address else {"num_cpus": config.jobs}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        task = ray.remote(num_cpus=1, max_calls=1)(run_trial)
        return ray.get([task.remote(spec, folder) for spec, folder in calls])
    finally:
        if started_here:
            ray.shutdown()


EXECUTORS: dict[str, Callable] = {"local": run_local, "ray": run_ray}


def run_trials(config: SearchConfig, trials: list[Trial], progress=lambda line: None) -> None:
    todo = []
    for trial in trials:
        done = trial.folder / "trial.json"
        saved = json.loads(done.read_text()) if done.is_file() else {}
        if "record" in saved:
            trial.cached, trial.exit_code, trial.seconds = True, saved["exit_code"], saved["seconds"]
            trial.record = saved["record"]
            continue
        shutil.rmtree(trial.folder, ignore_errors=True)
        trial.folder.mkdir(parents=True)
        todo.append(trial)
    progress(f"search: {len(trials)} trial(s), {len(trials) - len(todo)} cached, {len(todo)} to run "
             f"({config.executor}, {config.jobs} at a time)")
    started = time.perf_counter()
    batch = config.jobs
    for index in range(0, len(todo), batch):
        if config.time_budget_s is not None and time.perf_counter() - started > config.time_budget_s:
            for trial in todo[index:]:
                trial.record = {"skipped": "the time budget ran out before it started"}
            break
        group = todo[index:index + batch]
        progress(f"search: trial {index + 1}{f'-{index + len(group)}' if len(group) > 1 else ''}/{len(todo)}: "
                 + ", ".join(t.recipe for t in group) + time_left(started, index, len(todo)))
        for trial, (code, seconds, record) in zip(group, EXECUTORS[config.executor](
                [(t.spec, str(t.folder)) for t in group], config)):
            trial.exit_code, trial.seconds, trial.record = code, seconds, record
            atomic.write_text(trial.folder / "trial.json", json.dumps(
                {"recipe": trial.recipe, "exit_code": code, "seconds": seconds, "record": record}, default=str))


def _drop(row: dict) -> float | None:
    """A measured candidate's loss in the budget's points: its task metric's drop, else top-1's."""
    task = row.get("task_metric") or {}
    return task["drop_pp"] if task.get("drop_pp") is not None else (row.get("accuracy_drop_pp") or {}).get("top1")


def _within(row: dict, budget: float) -> bool:
    """A measured candidate within the budget, by the same predicate as the reports'."""
    # no class scores: an int8 artifact was written only within its SNR budget, a float one within parity
    record = row.get("budget") or {}
    return row_within(_drop(row), (row.get("fidelity") or {}).get("agreement"), record.get("snr_db"), budget,
                      record.get("min_snr_db", 0))


def pareto(points: list[dict], cost: str) -> list[str]:
    """Candidates no other beats on both ``cost`` (lower) and top-1 drop (lower)."""
    from benchmarks.results import pareto_front

    drop = lambda p: p["drop_pp"] if p["drop_pp"] is not None else 1e9  # noqa: E731
    return [p["candidate"] for p in pareto_front(points, cost=lambda p: p[cost], loss=drop)]


def choose(doc: dict, candidates: dict[str, dict], objective: str, budget: float) -> dict[str, dict]:
    """Per target, the candidate to ship from the final side-by-side measurement."""
    rows = {Path(r["path"]).resolve(): r for r in doc["results"] if r["kind"] == "artifact"}
    by_target: dict[str, list] = {}
    for path, info in candidates.items():
        row = rows.get(Path(path).resolve())
        if row is not None and _within(row, budget):
            by_target.setdefault(info["target"], []).append((row, info))
    chosen = {}
    for target, options in by_target.items():
        if objective == "size":
            row, info = min(options, key=lambda o: (o[0]["size"]["bytes"], o[0]["latency"]["p50_ms"]))
        else:
            fastest = min(o[0]["latency"]["p50_ms"] for o in options)
            row, info = min((o for o in options if o[0]["latency"]["p50_ms"] <= fastest * TIES),
                            key=lambda o: (o[0]["size"]["bytes"], o[0]["latency"]["p50_ms"]))
        chosen[target] = {**info, "p50_ms": row["latency"]["p50_ms"], "bytes": row["size"]["bytes"],
                          "drop_pp": _drop(row), "name": row["name"]}
    return chosen


def search(config: SearchConfig, progress=lambda line: None) -> dict:
    """Run the search; return its record (what ``search.json`` holds)."""
    config, source, test = _preflight(config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials = plan(config, source)
    run_trials(config, trials, progress)
    candidates = {}
    for trial in trials:
        for target in trial.record.get("exported", []):
            folder = trial.folder / trial.recipe / target
            candidates[str(folder)] = {"target": target, "recipe": trial.recipe, "trial": trial.key,
                                       "folder": str(folder)}
    measured = {str(Path(row["path"])): row for t in trials for row in t.record.get("rows", [])
                if row["kind"] == "artifact"}
    keep = {p: c for p, c in candidates.items() if p in measured and _within(measured[p], config.max_drop)}
    doc, chosen = _measure_and_choose(config, keep, test, progress) if keep else (None, {})
    for target, pick in chosen.items():  # the winner beside the trials, swapped in atomically
        staging = out / f".{target}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(pick["folder"], staging)
        shutil.rmtree(out / target, ignore_errors=True)
        staging.rename(out / target)
    record = _summary(config, trials, candidates, measured, chosen, doc)
    atomic.write_text(out / SEARCH_FILE, json.dumps(record, indent=2, default=str) + "\n")
    return record


def _preflight(config: SearchConfig):
    """The search's configuration checked once (named targets, the model, the evaluation data
    fitting it, the output folder): the configuration, the source and the evaluation set."""
    from compressor.data import load_dataset
    from compressor.models import load_source
    from targets import validate_targets

    config.check()
    targets = [t for t in validate_targets(config.targets) if t != "all"]
    if not targets:
        raise BadInputError("search needs named targets (-t), not 'all'")
    config = SearchConfig(**{**vars(config), "targets": tuple(targets)})
    source = load_source(config.model, trust_model=config.trust_model)
    test = load_dataset(config.eval_data, input_shape=source.data_spec()[0])
    from compressor.metrics.task import parse_metric

    test.check_fits(source, metric=None if config.metric is None else parse_metric(config.metric,
                                                                                    trust=config.trust_model))
    out = Path(config.out_dir)
    refuse_inputs_inside(out, [Path(g) for g in (config.model, config.data, config.eval_data)
                               if not g.startswith("sample:")])
    if out.is_dir() and any(out.iterdir()) and not (out / CACHE).is_dir():
        raise BadInputError(f"{out}: exists, is not empty and holds no search; choose a new folder (a search "
                            "resumes in its own folder only)")
    return config, source, test


def _measure_and_choose(config: SearchConfig, keep: dict, test, progress) -> tuple[dict, dict]:
    """The candidates within the budget measured again side by side, the reports written, and
    the one to ship per target."""
    from benchmarks import reports
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig

    progress(f"search: measuring the {len(keep)} candidate(s) within the budget side by side, alone")
    doc = measure(list(keep), eval_data=test, source=config.model, config=LatencyConfig(),
                  rounds=config.rounds, trust_model=config.trust_model, on_progress=progress)
    chosen = choose(doc, keep, config.objective, config.max_drop)
    best = "fastest" if config.objective == "latency" else "smallest"
    doc["title"] = f"search: {Path(config.model).name}, the {best} within {config.max_drop:g} pt"
    doc["budget_pp"] = config.max_drop
    reports.write_reports(doc, Path(config.out_dir))
    return doc, chosen


def _summary(config, trials, candidates, measured, chosen, doc) -> dict:
    final = {Path(r["path"]).resolve(): r for r in (doc or {}).get("results", []) if r["kind"] == "artifact"}
    rows = []
    for path, info in candidates.items():
        trial_row = measured.get(path, {})
        row = final.get(Path(path).resolve(), trial_row)
        rows.append({**info, "within_budget": bool(trial_row) and _within(trial_row, config.max_drop),
                     "drop_pp": _drop(row),
                     "p50_ms": (row.get("latency") or {}).get("p50_ms"), "bytes": (row.get("size") or {}).get("bytes"),
                     "float_layers": len(((row.get("budget") or {}).get("recovery") or {}).get("float_nodes") or []),
                     "remeasured": Path(path).resolve() in final})
    fronts = {}
    for target in config.targets:
        points = [{"candidate": f"{r['recipe']}", "p50_ms": r["p50_ms"], "bytes": r["bytes"], "drop_pp": r["drop_pp"]}
                  for r in rows if r["target"] == target and r["p50_ms"] is not None]
        fronts[target] = {"latency": pareto(points, "p50_ms"), "size": pareto(points, "bytes")}
    refused = {f"{t.recipe}/{target}": failure for t in trials
               for target, failure in t.record.get("failed", {}).items()}
    return {"config": dict(vars(config)), "trials": [
        {"recipe": t.recipe, "key": t.key, "cached": t.cached, "exit_code": t.exit_code, "seconds": t.seconds,
         **({"skipped": t.record["skipped"]} if "skipped" in t.record else {})} for t in trials],
        "candidates": rows, "refused": refused, "pareto": fronts,
        "chosen": chosen}
