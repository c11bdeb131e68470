"""The results document: one JSON file, versioned, the source of every report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, TypeVar

from compressor import atomic
from compressor.errors import BadInputError

SCHEMA = "compressor.benchmark-results"
SCHEMA_VERSION = 1
ROW_KEYS = {"name": str, "kind": str, "runtime": str, "precision": str, "size": dict, "latency": dict,
            "memory": dict, "accuracy": dict, "accuracy_drop_pp": dict, "fidelity": dict}
LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput_per_s",
                "first_inference_ms", "runs", "batch")


def document(*, rows: list[dict], machine: dict, config: dict, dataset: dict, reference: str | None,
             harness_overhead_ns: float) -> dict:
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "machine": machine, "config": config,
           "dataset": dataset, "reference": reference, "harness_overhead_ns": harness_overhead_ns, "results": rows}
    validate(doc)
    return doc


def validate(doc: dict, *, source: str = "results") -> dict:
    """Raise BadInputError naming the first problem; return ``doc``."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BadInputError(f"{source}: not a benchmark results document (schema '{SCHEMA}')")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise BadInputError(f"{source}: schema version {doc.get('schema_version')} is not {SCHEMA_VERSION}")
    for key in ("machine", "config", "dataset", "results"):
        if key not in doc:
            raise BadInputError(f"{source}: missing '{key}'")
    if not isinstance(doc["results"], list) or not doc["results"]:
        raise BadInputError(f"{source}: 'results' must be a non-empty list")
    for index, row in enumerate(doc["results"]):
        for key, kind in ROW_KEYS.items():
            if not isinstance(row.get(key), kind):
                raise BadInputError(f"{source}: results[{index}].{key} must be a {kind.__name__}")
        for key in LATENCY_KEYS:
            if not isinstance(row["latency"].get(key), (int, float)):
                raise BadInputError(f"{source}: results[{index}].latency.{key} must be a number")
    return doc


def save(doc: dict, path: str | Path) -> Path:
    validate(doc)
    return atomic.write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from None
    return validate(doc, source=str(path))


T = TypeVar("T")


def pareto_front(items: list[T], cost: Callable[[T], float], loss: Callable[[T], float]) -> list[T]:
    """The items no other beats on both ``cost`` and ``loss`` (both lower is better), by cost."""
    front, best = [], float("inf")
    for item in sorted(items, key=lambda i: (cost(i), loss(i))):
        if loss(item) < best:
            front.append(item)
            best = loss(item)
    return front
