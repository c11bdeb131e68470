"""The cost page's table per model size: the growth it states is the least-squares power of the
measured points, and an export over the bound is named."""

from __future__ import annotations

import pytest

from tools import cost_table


def _record(model, params, layers, seconds, peak):
    return {"model": model, "params": params, "layers": layers, "macs": 0,
            "targets": {"onnx-int8": {"seconds": seconds, "peak_rss_mb": peak, "status": "ok"}}}


def test_growth_is_the_power_of_the_measured_points():
    assert cost_table._slope([(1e5, 2.0), (1e6, 20.0), (1e7, 200.0)]) == pytest.approx(1.0)
    assert cost_table._slope([(1e5, 2.0), (1e6, 2.0), (1e7, 2.0)]) == pytest.approx(0.0)
    assert cost_table._slope([(1e5, 2.0), (1e6, 20.0)]) is None  # two points say nothing of a trend


def test_the_table_names_what_passes_the_bound():
    records = [_record("small", 100_000, 3, 1.0, 900), _record("mid", 1_000_000, 30, 10.0, 1200),
               _record("large", 25_000_000, 100, 100.0, 1800)]
    text = cost_table.render(records, "a test machine")
    assert "| onnx-int8 | 1.0 s, 900 MB | 10 s, 1,200 MB | 100 s, 1,800 MB |" in text
    assert "Within the bound: every export." in text
    assert "onnx-int8 time ∝ params^0.83 (layers^1.27)" in text  # 1 -> 100 s over 0.1 -> 25 M parameters
    records[0]["targets"]["onnx-int8"]["peak_rss_mb"] = 5000  # over 4 x 0.4 MB + 1,536 MB (large: 1,800 within 4 x 95 MB + 1,536)
    assert "Over the bound: 1 of 3 exports, on small" in cost_table.render(records, "a test machine")


def test_the_fresh_process_table_names_each_export_over_the_bound_with_its_peak():
    records = [_record("small", 100_000, 3, 1.0, 1600), _record("large", 25_000_000, 100, 100.0, 1800)]
    text = cost_table.render(records, "a test machine", fresh=True)
    assert "each export by `compressor export` in a fresh process" in text
    assert "`python -m tools.cost_table --fresh --write COST.md --append`" in text
    # small: 1,600 MB over 4 x 0.4 MB + 1,536 MB; large: 1,800 MB within 4 x 95 MB + 1,536 MB
    assert "Over the bound: 1 of 2 exports: small onnx-int8 1,600 MB (bound 1,538)." in text
