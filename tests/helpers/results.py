"""A small benchmark results document, built through the real schema, for report tests."""

from __future__ import annotations

from benchmarks import results
from benchmarks.latency import LatencyConfig


def results_doc(latencies=(2.0, 1.0, 0.5)):
    rows = []
    for name, p50, top1 in zip(("float (TensorFlow)", "tflite-fp32", "tflite-int8"), latencies, (0.9, 0.9, 0.88)):
        rows.append({
            "name": name, "kind": "source" if name.startswith("float") else "artifact",
            "runtime": "tensorflow" if name.startswith("float") else "litert",
            "precision": "int8" if "int8" in name else "fp32", "path": name,
            "size": {"bytes": 4000 if "int8" in name else 16000, "gzip_bytes": 3000},
            "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.3, "mean_ms": p50, "std_ms": 0.1,
                        "min_ms": p50 * 0.9, "max_ms": p50 * 2, "throughput_per_s": 1000 / p50,
                        "first_inference_ms": 3.0, "runs": 50, "batch": 1},
            "memory": {"peak_above_baseline_mb": 1.5}, "accuracy": {"top1": top1},
            "accuracy_drop_pp": {"top1": (0.9 - top1) * 100}, "fidelity": {"agreement": 0.97},
            "speedup_vs_reference": latencies[0] / p50, "speedup_vs_runtime_fp32": None,
        })
    machine = {"cpu": "test cpu", "cores": 2, "flags": ["avx2"], "int8_dot_product": False}
    config = {**LatencyConfig().to_dict(), "rounds": 3}
    return results.document(rows=rows, machine=machine, config=config, dataset={"name": "d", "samples": 10},
                            reference="float (TensorFlow)", harness_overhead_ns=80.0)
