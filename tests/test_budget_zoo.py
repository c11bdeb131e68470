"""The zoo budget study's summary: the share of cells within budget and where mixed precision answered."""


def test_budget_study_counts_cells_the_runtime_can_take_and_mixed_answers_per_target():
    from tools import budget_zoo

    records = [
        {"model": "vit", "max_drop_pp": 1.0, "peak_rss_mb": 900.0, "targets": {
            "onnx-int8": {"status": "met", "float_nodes": ["a", "b"], "plain_top1_drop_pp": 3.0,
                          "budget_top1_drop_pp": 0.5, "search_seconds": 40.0},
            "tflite-int8": {"status": "refused", "reason": "AccuracyBudgetError: closest 2 layers"},
            "openvino-int8": {"status": "met", "float_nodes": [], "budget_top1_drop_pp": 0.0,
                              "alternative": {"preset": "mixed"}}}},
        {"model": "unet", "max_drop_pp": 1.0, "peak_rss_mb": 800.0, "float_top1": None, "targets": {
            "onnx-int8": {"status": "met", "float_nodes": ["c"], "snr_db": 33.2},
            "tflite-int8": {"plain_error": "UnsupportedModelError: no int8 kernel"}}},
    ]
    records.append({"model": "xception", "max_drop_pp": 1.0, "peak_rss_mb": 3900.0, "float_top1": 0.185,
                    "targets": {"onnx-int8": {"status": "met", "float_nodes": [], "budget_top1_drop_pp": 0.0}}})
    text = budget_zoo.render(records)
    assert "| xception (float 18.5%, near chance) | onnx-int8 |" in text
    assert "Met the budget: 4 of the 5 cells the runtime can take (80 %)" in text  # the cannot-take cell left out
    assert "mixed precision the answer in 2;" in text
    assert "per target: onnx-int8 2 (unet, vit)." in text
    assert "| unet | onnx-int8 | - | - | yes | 1 | 33.2 dB |" in text  # no class scores: the SNR it kept
    assert "| unet | tflite-int8 | cannot take |" in text and "- unet tflite-int8: UnsupportedModelError" in text
    assert "| vit | tflite-int8 | - | - | refused |" in text
    assert "| vit | openvino-int8 | - | - | yes | 0 (preset=mixed) | +0.00 |" in text  # another calibration met it
    assert "- vit tflite-int8 (refused): AccuracyBudgetError: closest 2 layers" in text


def test_a_later_run_is_added_below_the_page_with_its_own_counts(tmp_path):
    """Models run later (``--section``) get their own table below the existing page; the page's
    own table and counts are kept as they were."""
    import json

    from tools import budget_zoo

    out = tmp_path / "budget-out"
    (out / "densenet121").mkdir(parents=True)
    record = {"model": "densenet121", "max_drop_pp": 1.0, "peak_rss_mb": 2500.0, "targets": {
        "onnx-int8": {"status": "met", "float_nodes": ["x"], "candidates": 9, "plain_top1_drop_pp": 2.0,
                      "budget_top1_drop_pp": 0.5, "drop_pp": 0.5, "plain_p50_ms": 2.0, "budget_p50_ms": 2.2}}}
    (out / "densenet121" / budget_zoo.RESULT).write_text(json.dumps(record))
    page = tmp_path / "BUDGET.md"
    page.write_text("# The accuracy budget on the zoo\n\nMet the budget: 52 of the 53 cells\n")
    assert budget_zoo.main(["--models", "densenet121", "--out", str(out), "--section", "Later run",
                            "--write", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# The accuracy budget on the zoo\n\nMet the budget: 52 of the 53 cells\n\n## Later run\n")
    assert "`python -m tools.budget_zoo --models densenet121 --section" in text
    assert "| densenet121 | onnx-int8 | +2.00 | 2.000 | yes | 1 of 9 | +0.50 | 2.200 | 1.10x |" in text
    assert "Met the budget: 1 of the 1 cells the runtime can take (100 %)" in text


def test_a_rerun_is_compared_with_the_pages_first_run(tmp_path):
    """``--compare``: the cells searched again beside the page's first table (search time, layers
    in float, drop, verdict) and the whole budgeted export against one full int8 export."""
    import json

    from tools import budget_zoo

    out = tmp_path / "budget-out"
    (out / "effnet").mkdir(parents=True)
    record = {"model": "effnet", "max_drop_pp": 1.0, "peak_rss_mb": 2000.0, "targets": {
        "openvino-int8": {"status": "met", "float_nodes": ["a", "b"], "candidates": 124, "drop_pp": 0.5,
                          "search_seconds": 52.0, "plain_seconds": 25.0, "budget_seconds": 70.0},
        "onnx-int8": {"status": "met", "float_nodes": [], "drop_pp": 0.0, "plain_seconds": 20.0,
                      "budget_seconds": 21.0},
        "tflite-int8": {"plain_error": "UnsupportedModelError: no int8 kernel"}}}
    (out / "effnet" / budget_zoo.RESULT).write_text(json.dumps(record))
    page = tmp_path / "BUDGET.md"
    page.write_text("# The accuracy budget\n\nText.\n\n" + "\n".join(budget_zoo.HEADER) + "\n"
                    "| effnet (float 9.0%, near chance) | openvino-int8 | +5.00 | 0.58 | yes | 24 of 124 | +0.50 | 0.66 "
                    "| 1.15x | 713 | 2573 |\n\nMet the budget: 1 of 1\n\n| other | table |\n|---|---|\n| x | y |\n")
    assert budget_zoo.first_table(page).keys() == {("effnet", "openvino-int8")}
    assert budget_zoo.main(["--models", "effnet", "--out", str(out), "--compare", "--section", "Again",
                            "--write", str(page)]) == 0
    text = page.read_text()
    assert "| effnet | openvino-int8 | 124 | 25.0 | 713 | 52 | 70.0 (2.8×) | 24 of 124 → 2 of 124 | +0.50 → +0.50 " \
           "| yes → yes |" in text
    assert "| effnet | onnx-int8 | - | 20.0 | - | - | 21.0 (1.1×) | - → 0 | - → +0.00 | - → yes |" in text
    assert "tflite-int8" not in text.split("## Again")[1]  # the runtime cannot take it: nothing searched
    assert "the budgeted export took 2.8–2.8× one full int8 export (median 2.8×)" in text
