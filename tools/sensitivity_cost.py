"""What the accuracy budget's search costs, and whether its cheaper ways pick layers as good as
the costlier ones: side by side on zoo models.

For each model and runtime: one full int8 export timed alone, then the budget search
(``targets.budget.sensitivity.search``) on the same samples, each way in ``--modes``:

- ``edited``: each candidate ranked, and each number of layers in float tried, by editing the
  full int8 model (``write_alone``: no quantization); the number that holds is then quantized
  for real; on models with many layers, runs of layers are ranked first; a batch of candidates
  measured at once (ONNX Runtime, OpenVINO: threads; LiteRT: a helper process) (the search as it is);
- ``one at a time``: as ``edited``, each candidate measured alone (no threads, no helper process);
- ``every layer``: as ``one at a time``, every layer measured (no runs first);
- ``ranking edited``: ranked by editing, each number of layers in float quantized for real;
- ``quantized again``: the model quantized again per candidate, every other op in float.

Each row gives the search's seconds, the layers it kept in float and the loss it reached.

Usage: python -m tools.sensitivity_cost [--models NAME ...] [--zoo zoo-out] [--max-drop 1.0]
[--modes ...] [--write COST.md]. A zoo model not trained yet is trained as ``make zoo`` trains it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compressor import atomic

COMMAND = "python -m tools.sensitivity_cost --write COST.md"
TARGETS = ("tflite-int8", "onnx-int8", "openvino-int8")
PAGE_HEADER = """# What a compression job costs

Measured, not estimated: each section says the command that regenerates it and the machine it ran
on. `make cost` regenerates the page.

"""
HEADER = ("| model | target | candidates | full int8 export s | search | ranking's measurements | search s "
          "| × full int8 | layers in float | loss | within budget |", "|---|---|---|---|---|---|---|---|---|---|---|")


MODES = ("edited", "one at a time", "every layer", "ranking edited", "quantized again")


def _search(source, profile, train_set, test_set, max_drop: float, mode: str) -> dict:
    """One budget search (ranking and confirmation) on the test samples, timed: the budget's own
    (``targets.budget.ladder.recover``) on an attempt as the export makes it."""
    from targets.attempt import Attempt
    from targets.budget import Budget
    from targets.budget.ladder import recover
    from targets.export import ExportOptions

    staging = Path(tempfile.mkdtemp(prefix="sensitivity-"))
    try:
        attempt = Attempt(staging, source, profile.parity, train_set, test_set, ExportOptions(max_drop=max_drop),
                          Budget(max_drop, 30.0))
        with _mode(profile.runtime, mode):
            start = time.perf_counter()
            found = recover(attempt, profile)
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    last = found.tried[-1] if found.tried else found.full_int8_subset or {}
    return {"seconds": round(seconds, 1), "candidates": found.candidates, "measurements": found.measurements,
            "float_nodes": None if found.float_nodes is None else len(found.float_nodes),
            "chosen": found.float_nodes,
            "loss": last.get("drop_pp") if last.get("drop_pp") is not None else last.get("snr_db"),
            "within": found.float_nodes is not None}


def _calibrate(source, profile, train_set) -> None:
    """LiteRT's calibrated model for the searches, made before any is timed: every way then
    starts from it (as a budgeted export's search starts from its full int8's)."""
    from targets.runtimes.litert import mixed

    if profile.runtime == "litert" and mixed.mixable(profile):
        mixed.calibrated(source.representation("keras"), profile, train_set.feeds(source))


@contextlib.contextmanager
def _mode(runtime_name: str, mode: str):
    """Within the block, the search runs ``mode`` (one of MODES): without edits the runtime's
    mixed precision has no ``write_alone``; with edits for the ranking only, no confirmation by
    edit."""
    from targets import runtime as runtimes
    from targets.budget import sensitivity
    from targets.runtimes.litert import mixed as litert_mixed

    original, confirm, runs = runtimes.get_runtime(runtime_name), sensitivity.CONFIRM_BY_EDIT, sensitivity.RUNS
    threads, helper = sensitivity.MAX_THREADS, litert_mixed.HELPER_WORTH_SECONDS
    if mode != "edited":  # each candidate measured alone
        sensitivity.MAX_THREADS, litert_mixed.HELPER_WORTH_SECONDS = 1, float("inf")
    if mode not in ("edited", "one at a time"):  # every layer measured one by one
        sensitivity.RUNS = 0
    if mode == "quantized again":
        runtimes._REGISTRY[runtime_name] = dataclasses.replace(
            original, mixed=type("Exhaustive", (original.mixed,), {"write_alone": None}))
    sensitivity.CONFIRM_BY_EDIT = mode in ("edited", "one at a time", "every layer")
    try:
        yield
    finally:
        runtimes._REGISTRY[runtime_name], sensitivity.CONFIRM_BY_EDIT, sensitivity.RUNS = original, confirm, runs
        sensitivity.MAX_THREADS, litert_mixed.HELPER_WORTH_SECONDS = threads, helper


def run_model(name: str, zoo_out: Path, max_drop: float, targets=TARGETS, modes=MODES) -> dict:
    from compressor.models import load_source
    from targets import Parity, export
    from targets.profiles import get_profile
    from tools import budget_zoo, zoo

    model_path, trust_model, train_set, test_set = budget_zoo._model_and_data(name, zoo_out)
    test_set = test_set.take(zoo.EVAL_SAMPLES)
    train_set = train_set.shuffled(0).take(200)
    source = load_source(model_path, trust_model=trust_model)
    record = {"model": name, "max_drop_pp": max_drop, "targets": {}}
    for target in targets:
        profile = get_profile(target).for_cpu()
        out = Path(tempfile.mkdtemp(prefix="full-int8-"))
        try:
            start = time.perf_counter()
            export(source, target, out_dir=out, calibration=train_set, validation=test_set,
                   parity_rule=Parity(min_agreement=1e-6))
            full = round(time.perf_counter() - start, 1)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        _calibrate(source, profile, train_set)
        record["targets"][target] = {"full_int8_s": full, **{
            mode: _search(source, profile, train_set, test_set, max_drop, mode) for mode in modes}}
    return record


def _rows(record: dict) -> list[str]:
    rows = []
    for target, cell in record["targets"].items():
        for mode in [m for m in MODES if m in cell]:
            m = cell[mode]
            loss = "-" if m["loss"] is None else f"{m['loss']:+.2f} pt"
            rows.append(f"| {record['model']} | {target} | {m['candidates']} | {cell['full_int8_s']:.1f} | {mode} | "
                        f"{m.get('measurements', '-')} | {m['seconds']:.1f} | "
                        f"{m['seconds'] / max(cell['full_int8_s'], 0.1):.1f}× | "
                        f"{'-' if m['float_nodes'] is None else m['float_nodes']} | {loss} | "
                        f"{'yes' if m['within'] else 'no'} |")
    return rows


def render(records: list[dict], host: str) -> str:
    lines = ["## The budget search: edited from full int8 against quantizing again", "",
             f"Regenerated by `{COMMAND}` on {host}; budget {records[0]['max_drop_pp']:g} pt top-1 against the float "
             "model, 200 calibration and 200 held-out samples. Search s: ranking and confirmation together; × full "
             "int8: against one full int8 export of the same target, timed alone beforehand.", "", *HEADER]
    for record in records:
        lines += _rows(record)
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0", "resnet50"])
    parser.add_argument("--zoo", type=Path, default=Path("zoo-out"))
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--append", action="store_true", help="add the section below the page --write names")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one model, JSON out
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_model(args.one, args.zoo, args.max_drop, args.targets, args.modes)))
        return
    records = []
    for name in args.models:  # one process per model: memory and library state start clean
        done = subprocess.run([sys.executable, "-m", "tools.sensitivity_cost", "--one", name, "--zoo", str(args.zoo),
                               "--max-drop", str(args.max_drop), "--targets", *args.targets, "--modes", *args.modes],
                              capture_output=True, text=True, check=True)
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: {json.dumps(records[-1])}", file=sys.stderr)  # kept in the log as each model ends
    from benchmarks.machine import capture

    host = capture()
    text = render(records, f"{host.get('cpu', '?')} (class {host.get('cpu_class', '?')})")
    print(text)
    if args.write:
        before = args.write.read_text() + "\n" if args.append and args.write.is_file() else PAGE_HEADER
        atomic.write_text(args.write, before + text)


if __name__ == "__main__":
    main()
