"""The house's rules, read from the code: rooms of one job each (no file over 400 lines, no
function over 40, no public function over 8 parameters), imports that follow the data one way,
runtime libraries only in their runtime's own package, and no branch on a format's or a
runtime's name (a source or a runtime is asked what it can do)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compressor", "targets", "benchmarks")
RUNTIME_LIBRARIES = ("onnxruntime", "openvino", "nncf", "ai_edge_litert", "ai_edge_quantizer", "tf2onnx")
# what benchmarks may take from targets: the runner interface (runtimes and their runners, artifacts)
RUNNER_INTERFACE = {"targets", "targets.runtime", "targets.artifact"}


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text())


def _imports(tree) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _functions(tree):
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_rooms_stay_small():
    too_long = [f"{path} ({len(path.read_text().splitlines())} lines)" for path in
                (ROOT / p for p, _ in _modules()) if len(path.read_text().splitlines()) > 400]
    assert not too_long, f"files over 400 lines: {too_long}"
    long_functions, many_parameters = [], []
    for path, tree in _modules():
        for function in _functions(tree):
            if function.end_lineno - function.lineno + 1 > 40:
                long_functions.append(f"{path}:{function.name}")
            args = function.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            count -= bool(args.args) and args.args[0].arg in ("self", "cls")
            if count > 8 and not function.name.startswith("_"):
                many_parameters.append(f"{path}:{function.name} ({count})")
    assert not long_functions, f"functions over 40 lines: {long_functions}"
    assert not many_parameters, f"public functions over 8 parameters (use an options record): {many_parameters}"


def test_imports_follow_the_data_one_way():
    wrong = []
    for path, tree in _modules():
        imported = _imports(tree)
        top = path.parts[0]
        if top == "benchmarks":
            wrong += [f"{path} -> {name}" for name in imported
                      if name.split(".")[0] == "targets" and name not in RUNNER_INTERFACE]
            wrong += [f"{path} -> {name}" for name in imported if name.startswith("compressor.algorithms")]
        if top == "targets":
            wrong += [f"{path} -> {name}" for name in imported
                      if name.split(".")[0] == "benchmarks" or name.startswith("compressor.algorithms")]
        if path.parts[:2] == ("compressor", "algorithms") or path.parts[:2] == ("compressor", "metrics"):
            wrong += [f"{path} -> {name}" for name in imported if name.split(".")[0] in ("targets", "benchmarks")]
    assert not wrong, f"imports against the data's direction: {wrong}"


def test_runtime_libraries_only_in_their_runtime():
    allowed = {
        Path("compressor/models/onnx_source.py"),  # an ONNX source computes its own float outputs
    }
    stray = []
    for path, tree in _modules():
        if path.parts[:2] == ("targets", "runtimes") or path in allowed:
            continue
        stray += [f"{path} -> {name}" for name in _imports(tree) if name.split(".")[0] in RUNTIME_LIBRARIES]
    assert not stray, f"runtime libraries imported outside targets/runtimes/: {stray}"


@pytest.mark.parametrize("pattern", [r"\.format\s*[!=]=\s*[\"']", r"runtime\s*[!=]=\s*[\"']"])
def test_no_branch_on_a_format_or_runtime_name(pattern):
    found = [f"{path}:{number}" for path, _ in _modules()
             for number, line in enumerate((ROOT / path).read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not found, f"ask the source or the runtime what it can do instead: {found}"


def test_extension_points_are_discovered():
    """A new step, metric, runtime or report format is one module: importing the package finds it."""
    from benchmarks import reports
    from compressor import algorithms, metrics
    from targets.runtime import runtimes

    steps = {p.stem for p in (ROOT / "compressor/algorithms").glob("*.py")} - {"__init__", "step", "training"}
    assert len(algorithms.STEPS) >= len(steps)
    assert {"top1", "top5"} <= set(metrics.METRICS)
    modules = {p.stem for p in (ROOT / "targets/runtimes").iterdir() if not p.name.startswith("_")}
    assert modules == {r.load.__module__.split(".")[2] for r in runtimes().values()}
    assert set(reports.WRITERS) == {"json", "csv", "md", "html"}
