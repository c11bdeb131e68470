"""The speed suite's arithmetic: the ratios SPEED.md states, from one configuration's results."""

import pytest

from tests.helpers.results import results_doc


def _record():
    doc = results_doc(latencies=(13.2, 7.2, 3.4))  # TF/Keras, tflite-fp32, tflite-int8 (MobileNetV2-like)
    rows = doc["results"]
    rows[1]["device_class"] = rows[2]["device_class"] = "CPU"
    rows[2]["speedup_vs_runtime_fp32"] = 7.2 / 3.4
    onnx_fp32 = {**rows[1], "name": "onnx-fp32", "runtime": "onnxruntime",
                 "latency": {**rows[1]["latency"], "p50_ms": 7.0}}
    doc["results"].append(onnx_fp32)
    return {"model": "m", "skipped": {}, "seconds": 60.0, "docs": {"1t-b1": doc}}


def test_headline_ratios_come_from_one_configuration():
    from tools import speed

    h = speed.headline(_record(), "1t-b1")
    assert h["best"] == "tflite-int8" and h["fastest_fp32"] == "onnx-fp32"
    assert h["best_vs_fastest_fp32"] == pytest.approx(7.0 / 3.4)  # against the fastest fp32 of any runtime
    assert h["best_vs_keras"] == pytest.approx(13.2 / 3.4)
    assert h["int8_vs_own_fp32"] == {"litert": pytest.approx(7.2 / 3.4)}
    assert h["int8_size_ratio"] == {"tflite-int8": pytest.approx(16000 / 4000)}


def test_a_run_on_another_class_is_a_section_with_each_fraction_of_its_own_ceiling():
    """``--section``: the tables one level down under the run's heading, below the page; a
    roofline fraction names the ceiling it is of (the AMX tiles' for OpenVINO's int8 there)."""
    from tools import speed

    record = _record()
    best = record["docs"]["1t-b1"]["results"][2]
    best["roofline"] = {"gops": 310.0, "fraction": 0.072, "ceiling": "int8 (AMX)"}
    record["docs"]["1t-b1"]["machine"]["cpu_class"] = "x86-amx"
    for row in record["docs"]["1t-b1"]["results"]:
        row["latency"] = {**row["latency"], "p50_spread_ms": [row["latency"]["p50_ms"]] * 2}
    text = speed.render([record], heading="On an Intel Xeon with AMX (x86-amx)", command="python -m tools.speed ...")
    lines = text.splitlines()
    assert lines[0] == "## On an Intel Xeon with AMX (x86-amx)" and "# Speed per CPU class" not in lines
    assert "### Headline (1 thread, batch 1)" in lines and "### m" in lines
    assert "| 7 % of int8 (AMX) |" in text and "| 310.0 | 7 % of int8 (AMX) |" in text
    assert speed.render([record]).startswith("# Speed per CPU class")


def _pruned_record():
    record = _record()
    rows = record["docs"]["1t-b1"]["results"]
    base = rows[2]
    for fraction, p50 in (("structured25", 2.0), ("structured50", 1.2)):
        rows.append({**base, "name": f"tflite-int8 [{fraction}]", "path": f"out/m/{fraction}/tflite-int8",
                     "latency": {**base["latency"], "p50_ms": p50}, "speedup_vs_runtime_fp32": 7.2 / p50,
                     "size": {"bytes": 1000, "gzip_bytes": 900}})
    record["pruning"] = {"structured25": {"macs_before": 300e6, "macs_after": 175e6},
                         "structured50": {"macs_before": 300e6, "macs_after": 83e6}}
    return record


def test_pruned_variants_stay_out_of_the_int8_headline():
    from tools import speed

    h = speed.headline(_pruned_record(), "1t-b1")
    assert h["best"] == "tflite-int8" and h["best_p50_ms"] == 3.4  # int8 alone, as before pruning
    assert h["int8_vs_own_fp32"] == {"litert": pytest.approx(7.2 / 3.4)}
    assert set(h["int8_size_ratio"]) == {"tflite-int8"}


def test_fastest_pruned_variant_counts_only_within_the_samples_budget():
    from tools import speed

    search = {"candidates": [
        {"recipe": "int8", "target": "tflite-int8", "drop_pp": 0.22, "within_budget": True},
        {"recipe": "structured25", "target": "tflite-int8", "drop_pp": 0.89, "within_budget": True},
        {"recipe": "structured50", "target": "tflite-int8", "drop_pp": 2.67, "within_budget": False}]}
    table = speed.pruning_table(_pruned_record(), "1t-b1", search)
    by_variant = {e["variant"]: e for e in table["rows"]}
    assert list(by_variant) == ["int8", "structured25", "structured50"]
    assert by_variant["structured25"]["macs"] == (300e6, 175e6)
    assert by_variant["structured50"]["vs_fastest_fp32"] == pytest.approx(7.0 / 1.2)
    # structured50 is faster but costs 2.67 pt on the trained sample: the answer is structured25
    assert table["best"]["variant"] == "structured25"
    assert table["best"]["vs_keras"] == pytest.approx(13.2 / 2.0)
    assert speed.pruning_table(_pruned_record(), "1t-b1", None)["best"] is None  # no accuracy, no claim
    text = "\n".join(speed._render_pruning(_pruned_record(), "1t-b1", "sample", search))
    assert "| structured50 | 83 M (3.61× fewer) | tflite-int8 | 1.200 |" in text and "+2.67 ✗" in text
    assert "**structured25 tflite-int8**" in text


def test_ort_settings_are_compared_with_the_toolkits_own_per_thread_count():
    from tools import ort_settings

    assert ort_settings.settings(1) == [(level, 1, True) for level in ort_settings.LEVELS]
    assert ("ORT_ENABLE_ALL", 2, False) in ort_settings.settings(2)
    entries = [{"artifact": "onnx-int8", "level": level, "threads": threads, "spinning": spin, "p50_ms": p50}
               for level, threads, spin, p50 in (("ORT_ENABLE_ALL", 1, True, 3.0), ("ORT_ENABLE_BASIC", 1, True, 18.0),
                                                 ("ORT_ENABLE_ALL", 2, True, 2.0), ("ORT_ENABLE_ALL", 2, False, 2.5))]
    text = ort_settings.render(entries, ort_settings.Path("speed-out/m"))
    assert "| onnx-int8 | ORT_ENABLE_BASIC | 1 | on | 18.000 | 0.17× |" in text
    assert "| onnx-int8 | ORT_ENABLE_ALL | 2 | off | 2.500 | 0.80× |" in text


def test_cached_records_are_held_to_the_ceilings_the_runtimes_declare_now():
    """``--cached``: a LiteRT int8 row measured while LiteRT was held to the vector units' int8
    peak is held to the AMX tiles' (XNNPACK's AMX kernels) on an AMX host; its latency stays."""
    from compressor import cpu
    from tools import speed

    record = _record()
    doc = record["docs"]["1t-b1"]
    doc["config"] = {**doc.get("config", {}), "batch": 1}
    doc["machine"]["peak"] = cpu.peak({"cpu_class": "x86-amx", "clock_mhz": 2000.0, "vector_bits": 512,
                                       "flags": ["avx512f", "avx512_vnni", "amx_int8", "amx_bf16"]})
    row = doc["results"][2]  # tflite-int8, 3.4 ms
    row["roofline"] = {"macs": 300_000_000, "gops": 176.47, "peak_gops": 256.0, "ceiling": "int8", "fraction": 0.69}
    again = speed.reroofed(record)["docs"]["1t-b1"]["results"][2]
    assert again["roofline"]["ceiling"] == "int8 (AMX)" and again["latency"]["p50_ms"] == 3.4
    assert again["roofline"]["fraction"] == pytest.approx(2 * 300e6 / 3.4e-3 / 1e9 / (2048 * 2.0), abs=1e-4)
