"""The accuracy budget on the zoo: each int8 target of each model with ``--max-drop``, the
full-int8 drop beside the recovered one and the latency each costs, measured side by side.

Usage: python -m tools.budget_zoo [--models NAME ...] [--zoo zoo-out] [--out budget-out]
[--max-drop 1.0] [--write BUDGET.md]. Reads the trained models ``make zoo`` left in its
output folder (``zoo-out/NAME/NAME.keras``; a zoo model named with ``--models`` and not there
is trained as ``make zoo`` trains it, same seed, and saved there) and the five sample models
(trained and cached on first use); each model runs in its own process, whose peak memory is
recorded. A finished model is kept; ``--fresh`` redoes it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from compressor import atomic

COMMAND = "python -m tools.budget_zoo --write BUDGET.md"
TARGETS = ("tflite-int8", "onnx-int8", "openvino-int8")
RESULT = "budget.json"
HEADER = ("| model | target | full int8 | p50 ms | within budget | layers in float | drop pp | p50 ms | cost "
          "| search s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|")
NEAR_CHANCE = 0.2  # as in tools.zoo: a float model below it learned too little for agreement to mean much


def run_model(name: str, zoo_out: Path, out: Path, max_drop: float) -> dict:
    from compressor.models import load_source
    from targets import Parity, export
    from tools import zoo

    model_path, trust_model, train_set, test_set = _model_and_data(name, zoo_out)
    test_set = test_set.take(zoo.EVAL_SAMPLES)
    source = load_source(model_path, trust_model=trust_model)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    metric = zoo.ZOO[name].metric if name in zoo.ZOO else None  # the task's metric: the budget is in its points
    record = {"model": name, "max_drop_pp": max_drop, "targets": {}, "metric": metric}
    for target in TARGETS:
        cell: dict = {}
        start = time.perf_counter()
        # full int8 as the profile makes it, kept whatever it loses: the baseline of the recovery (with
        # a task metric the profile's parity keeps only the floor of broken conversions already)
        try:
            plain = export(source, target, out_dir=folder / "plain", calibration=train_set, validation=test_set,
                           parity_rule=None if metric else Parity(min_agreement=1e-6), metric=metric)
            cell["plain_agreement"] = plain.manifest["parity"]["agreement"]
            cell["plain_seconds"] = time.perf_counter() - start  # one full int8 export: what the search is against
        except Exception as exc:  # noqa: BLE001 - recorded, the other targets go on
            from compressor.errors import ParityError

            cell["plain_error"] = f"{type(exc).__name__}: {exc}"[:300]
            if not isinstance(exc, ParityError):  # the runtime cannot take the model at all
                record["targets"][target] = cell
                continue
            cell["plain_refused"] = True  # below a floor even the budget keeps (another output's SNR): try it
        started = time.perf_counter()
        try:
            result = export(source, target, out_dir=folder / "budget", calibration=train_set, validation=test_set,
                            max_drop=max_drop, metric=metric)
            budget = result.manifest["budget"] or {}
            found = budget.get("recovery") or {}
            cell.update(status="met", drop_pp=budget.get("drop_pp"), snr_db=budget.get("snr_db"),
                        full_int8_snr_db=found.get("full_int8_snr_db"), float_nodes=found.get("float_nodes") or [],
                        full_int8_drop_pp=found.get("full_int8_drop_pp", budget.get("drop_pp")),
                        full_int8=found.get("full_int8"), candidates=found.get("candidates"),
                        search_seconds=found.get("seconds"), tried=found.get("tried"),
                        sensitivity=(found.get("sensitivity") or [])[:5])
            cell["budget_seconds"] = time.perf_counter() - started  # the whole export with --max-drop
        except Exception as exc:  # noqa: BLE001
            from compressor.errors import CompressorError

            cell.update(status="refused" if isinstance(exc, CompressorError) and exc.exit_code == 5 else "error",
                        reason=f"{type(exc).__name__}: {exc}"[:400])
        cell["seconds"] = time.perf_counter() - start
        record["targets"][target] = cell
    _measure(record, folder, test_set, model_path, trust_model)
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / name).mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / name / RESULT, json.dumps(record, indent=2, default=str))
    return record


def remeasure(name: str, zoo_out: Path, out: Path) -> dict:
    """The latency and accuracy of a finished model's artifacts measured again (on a quiet
    machine, after a search that ran beside other work); what the searches found is kept."""
    from tools import zoo

    model_path, trust_model, _, test_set = _model_and_data(name, zoo_out)
    record = json.loads((out / name / RESULT).read_text())
    _measure(record, out / name, test_set.take(zoo.EVAL_SAMPLES), model_path, trust_model)
    atomic.write_text(out / name / RESULT, json.dumps(record, indent=2, default=str))
    return record


def _measure(record: dict, folder: Path, test_set, model_path: Path, trust_model: bool) -> None:
    """Full int8 and what the budget wrote, per target, measured side by side in one harness run."""
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig

    folders = [p for p in (folder / "plain").iterdir() if p.is_dir()] if (folder / "plain").is_dir() else []
    folders += [p for p in (folder / "budget").iterdir() if p.is_dir()] if (folder / "budget").is_dir() else []
    if folders:
        doc = measure(folders, eval_data=test_set, source=model_path, trust_model=trust_model,
                      config=LatencyConfig(warmup_seconds=0.2, min_runs=30, min_seconds=0.3), rounds=2)
        by_path = {Path(r["path"]).resolve(): r for r in doc["results"]}
        reference = next((r for r in doc["results"] if r["name"] == doc["reference"]), {})
        record["float_top1"] = (reference.get("accuracy") or {}).get("top1")
        task = reference.get("task_metric")
        if task:
            record["float_metric"] = task["value"][task["name"]]
        for target, cell in record["targets"].items():
            manifest = folder / "budget" / target / "manifest.json"
            if manifest.is_file():  # the calibration that met the budget, where it was not the profile's own
                found = (json.loads(manifest.read_text()).get("budget") or {}).get("recovery") or {}
                cell["alternative"] = found.get("alternative")
            for kind in ("plain", "budget"):
                row = by_path.get((folder / kind / target).resolve())
                if row:
                    cell[f"{kind}_p50_ms"] = row["latency"]["p50_ms"]
                    cell[f"{kind}_top1_drop_pp"] = (row.get("task_metric") or {}).get(
                        "drop_pp", row["accuracy_drop_pp"].get("top1"))  # in the task metric's points, if any


def _model_and_data(name: str, zoo_out: Path):
    """A zoo model (trained by ``make zoo``) or a sample model (trained and cached on first use):
    its file, whether it needs its own code, and its train and test sets."""
    from compressor.data import samples
    from tools import zoo

    if name in zoo.ZOO:
        spec = zoo.ZOO[name]
        if not (zoo_out / name / f"{name}.keras").is_file():
            _train(spec, zoo_out / name / f"{name}.keras")
        if spec.trust_model:
            import os

            from compressor.models import custom_code

            os.environ[custom_code.ENV] = "tools.zoo"
        return (zoo_out / name / f"{name}.keras", spec.trust_model, *(zoo.judged(spec, d) for d in zoo.datasets(spec)))
    import sample_models

    spec = sample_models.SAMPLE_MODELS[name]
    return (sample_models.path(name), False, samples.load(spec.dataset, "train"), samples.load(spec.dataset, "test"))


def _train(spec, path: Path) -> None:
    """A zoo model trained as ``make zoo`` trains it (same code, same seed), saved atomically."""
    from tools import zoo

    model, _, _ = zoo.train(spec)
    with atomic.atomic_path(path) as tmp:
        model.save(tmp)


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def render(records: list[dict], not_run: list[str] = (), heading: str | None = None, command: str = "",
           remark: str = "") -> str:
    from compressor.cpu import host

    facts = host()
    if heading:  # a later run of some models, added below the page's own table: the same columns
        lines = [f"## {heading}", "", f"`{command} --section ... --write BUDGET.md` on a {facts['cpu']} (class "
                 f"{facts['cpu_class']}); columns as above.{f' {remark}' if remark else ''}", "",
                 *HEADER]
        return "\n".join(lines + _rows(records, not_run))
    lines = ["# The accuracy budget on the zoo", "",
             f"Regenerated by `{COMMAND}` on a {facts['cpu']} (class {facts['cpu_class']}), with the trained zoo "
             f"models of `make zoo`, budget {records[0]['max_drop_pp'] if records else '-'} top-1 points (an SNR "
             "floor of 30 dB on the output of a model without class scores), 200 "
             "held-out samples (one sample is 0.5 pt). Per cell: full int8 as the profile makes it (its top-1 drop "
             "against the float model, or its SNR; `under floor`: its export is refused by the profile's parity "
             "floor) → what the budget search wrote (its drop, the layers kept in float out of the ops the runtime "
             "quantizes), and the p50 of each (1 thread, batch 1, measured side by side; `cost`: the written "
             "artifact's p50 over full int8's). `refused`: nothing met the budget (exit 5); the reasons follow "
             "the table. Peak RSS: the model's whole process, sensitivity passes included.", "",
             *HEADER]
    return "\n".join(lines + _rows(records, not_run))


def _rows(records: list[dict], not_run: list[str]) -> list[str]:
    """The table's rows, then its counts, the refusals' reasons and the models not run."""
    lines = []
    counts = {"met": 0, "refused": 0, "error": 0, "mixed": 0}
    mixed_models: dict[str, set] = {}
    reasons = []
    for record in records:
        for target, cell in record["targets"].items():
            top1 = record.get("float_top1")
            chance = f" (float {top1:.1%}, near chance)" if top1 is not None and top1 < NEAR_CHANCE else ""
            judged = f" ({record['metric']}, float {record['float_metric']:.3f})" if record.get("float_metric") else ""
            where = f"| {record['model']}{judged}{chance} | {target} |"
            if "plain_error" in cell and not cell.get("plain_refused"):
                lines.append(f"{where} cannot take | - | - | - | - | - | - | - | {record['peak_rss_mb']:.0f} |")
                reasons.append(f"- {record['model']} {target}: {cell['plain_error'][:200]}")
                continue
            status = cell.get("status", "error")
            counts[status] = counts.get(status, 0) + 1
            layers = cell.get("float_nodes") or []
            counts["mixed"] += bool(layers)
            if layers:
                mixed_models.setdefault(target, set()).add(record["model"])
            if status != "met":
                reasons.append(f"- {record['model']} {target} ({status}): {cell.get('reason', '')[:400]}")
            plain = "refused" if cell.get("plain_refused") else (
                _fmt(cell.get("plain_top1_drop_pp"), "+.2f") if cell.get("plain_top1_drop_pp") is not None
                else _fmt(cell.get("full_int8_snr_db"), ".1f", " dB"))
            if cell.get("plain_refused") or "parity check failed" in str(cell.get("full_int8") or "") \
                    or "parity check failed" in str(cell.get("reason") or "").split("no mix")[0]:
                plain += " (under floor)"
            cost = (f"{cell['budget_p50_ms'] / cell['plain_p50_ms']:.2f}x"
                    if cell.get("budget_p50_ms") and cell.get("plain_p50_ms") else "-")
            candidates = f" of {cell['candidates']}" if layers and cell.get("candidates") else ""
            if cell.get("alternative"):  # another calibration met the budget before any layer was kept in float
                candidates += " (" + ", ".join(f"{k}={v}" for k, v in cell["alternative"].items()) + ")"
            lines.append(
                f"{where} {plain} | {_fmt(cell.get('plain_p50_ms'), '.3f')} | "
                f"{'yes' if status == 'met' else status} | {len(layers)}{candidates} | "
                f"{_budget_cell(cell)} | {_fmt(cell.get('budget_p50_ms'), '.3f')} | {cost} | "
                f"{_fmt(cell.get('search_seconds'), '.0f')} | {record['peak_rss_mb']:.0f} |")
    taken = counts["met"] + counts["refused"] + counts["error"]
    lines += ["", f"Met the budget: {counts['met']} of the {taken} cells the runtime can take "
              f"({_fmt(100 * counts['met'] / taken if taken else None, '.0f', ' %')}); mixed precision the answer in "
              f"{counts['mixed']}; refused (exit 5): {counts['refused']}; errors: {counts['error']}.",
              "Models where mixed precision was the answer, per target: "
              + ("; ".join(f"{t} {len(m)} ({', '.join(sorted(m))})" for t, m in sorted(mixed_models.items())) or "none")
              + ".", ""]
    if reasons:
        lines += ["Refusals, errors and cells the runtime cannot take:", "", *reasons, ""]
    if not_run:
        lines += [f"Zoo models not in this run (`--models` names them): {', '.join(not_run)}.", ""]
    return lines


COMPARED = ("| model | target | candidates | full int8 export s | search s before | search s now | budgeted export s "
            "(× full int8) | layers in float before → now | drop pp before → now | within budget before → now |",
            "|---|---|---:|---:|---:|---:|---|---|---|---|")


def first_table(page: Path) -> dict[tuple[str, str], dict]:
    """The rows of the page's first table (the run the page was regenerated by), by model and
    target: what a later run is compared with."""
    rows, columns = {}, None
    for line in page.read_text().splitlines():
        if not line.startswith("|"):
            if columns and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            columns = cells
        elif not set(cells[0]) <= set("-: "):
            row = dict(zip(columns, cells))
            rows[(row["model"].split(" (")[0], row["target"])] = row
    return rows


def render_comparison(records: list[dict], before: dict, heading: str, command: str, remark: str = "") -> str:
    """The same cells searched again, beside what the page's first run found: the search's time
    (ranking and confirmation), the whole budgeted export against one full int8 export of the
    same target in the same process, and what each chose."""
    from compressor.cpu import host

    facts = host()
    lines = [f"## {heading}", "", f"`{command} --compare --section ... --write BUDGET.md` on a {facts['cpu']} "
             f"(class {facts['cpu_class']}), each model in its own process. Before: this page's first table. Search s: "
             "the ranking and the confirmation; budgeted export s: the whole export with the budget (full int8, "
             "its parity, the search), against one full int8 export of the same target timed just before it in "
             f"the same process.{f' {remark}' if remark else ''}", "", *COMPARED]
    ratios = []
    for record in records:
        for target, cell in record["targets"].items():
            old = before.get((record["model"], target), {})
            if "plain_error" in cell and not cell.get("plain_refused"):
                continue  # the runtime cannot take the model: no search either time
            layers = cell.get("float_nodes") or []
            now_layers = f"{len(layers)}" + (f" of {cell['candidates']}" if layers and cell.get("candidates") else "")
            status = "yes" if cell.get("status") == "met" else cell.get("status", "error")
            ratio = (cell["budget_seconds"] / cell["plain_seconds"]
                     if cell.get("budget_seconds") and cell.get("plain_seconds") else None)
            if ratio is not None and layers:
                ratios.append(ratio)
            lines.append(
                f"| {record['model']} | {target} | {_fmt(cell.get('candidates'), 'd')} | "
                f"{_fmt(cell.get('plain_seconds'), '.1f')} | {old.get('search s', '-')} | "
                f"{_fmt(cell.get('search_seconds'), '.0f')} | {_fmt(cell.get('budget_seconds'), '.1f')}"
                f"{f' ({ratio:.1f}×)' if ratio is not None else ''} | {old.get('layers in float', '-')} → {now_layers} | "
                f"{old.get('drop pp', '-')} → {_budget_cell(cell)} | {old.get('within budget', '-')} → {status} |")
    if ratios:
        lines += ["", f"Where a search ran (layers kept in float), the budgeted export took {min(ratios):.1f}–"
                  f"{max(ratios):.1f}× one full int8 export (median {sorted(ratios)[len(ratios) // 2]:.1f}×)."]
    return "\n".join(lines + [""])


def _budget_cell(cell: dict) -> str:
    """The written artifact's loss as its export measured it against the float model (what the
    budget judged), and the benchmark's own measure beside it where they differ (the benchmark's
    float baseline runs in another process: a near-tie sample can fall the other way)."""
    bench = cell.get("budget_top1_drop_pp")
    if cell.get("drop_pp") is None:
        return _fmt(cell.get("snr_db"), ".1f", " dB") if cell.get("snr_db") is not None else _fmt(bench, "+.2f")
    at_export = f"{cell['drop_pp']:+.2f}"
    return at_export if bench is None or abs(bench - cell["drop_pp"]) < 1e-6 else f"{at_export} (bench {bench:+.2f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--zoo", type=Path, default=Path("zoo-out"))
    parser.add_argument("--out", type=Path, default=Path("budget-out"))
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--remeasure", action="store_true",
                        help="measure the finished models' artifacts again, keeping what the searches found")
    parser.add_argument("--remark", default="", help="what else the machine did while it measured (printed)")
    parser.add_argument("--compare", action="store_true",
                        help="with --section: the table beside the page's first run (search time, layers, drop)")
    parser.add_argument("--section", metavar="TITLE",
                        help="add these models' table to the page --write names, under this heading, "
                             "instead of writing the page anew")
    args = parser.parse_args(argv)
    from tools import zoo
    from tools.publish import publish

    import sample_models

    names = args.models or [n for n in zoo.ZOO if (args.zoo / n / f"{n}.keras").is_file()] + list(
        sample_models.SAMPLE_MODELS)
    if args.in_process:
        run_model(names[0], args.zoo, args.out, args.max_drop)
        return 0
    records = []
    for name in names:
        done = args.out / name / RESULT
        if args.remeasure and done.is_file():
            remeasure(name, args.zoo, args.out)
        elif args.fresh or not done.is_file():
            args.out.mkdir(parents=True, exist_ok=True)
            with open(args.out / f"{name}.log", "w") as log:
                subprocess.run([sys.executable, "-m", "tools.budget_zoo", "--in-process", "--models", name,
                                "--zoo", str(args.zoo), "--out", str(args.out), "--max-drop", str(args.max_drop)],
                               stdout=log, stderr=subprocess.STDOUT)
        if done.is_file():
            records.append(json.loads(done.read_text()))
        print(f"{name}: done", file=sys.stderr, flush=True)
    if args.section:
        budget = ["--max-drop", str(args.max_drop)] if args.max_drop != 1.0 else []
        argv_text = " ".join(["--models", *names, *budget])
        command = f"python -m tools.budget_zoo {argv_text}"
        if args.compare:
            if not (args.write and args.write.is_file()):
                parser.error("--compare reads the page --write names: it must exist")
            table = render_comparison(records, first_table(args.write), args.section, command, args.remark)
        else:
            table = render(records, heading=args.section, command=command, remark=args.remark)
        return publish(table, args.write, append=True)
    not_run = [n for n in [*zoo.ZOO, *sample_models.SAMPLE_MODELS] if n not in names]
    return publish(render(records, not_run), args.write)


if __name__ == "__main__":
    sys.exit(main())
