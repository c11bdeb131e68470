"""The zoo budget study's summary: the share of cells within budget and where mixed precision answered."""


def test_budget_study_counts_cells_the_runtime_can_take_and_mixed_answers_per_target():
    from tools import budget_zoo

    records = [
        {"model": "vit", "max_drop_pp": 1.0, "peak_rss_mb": 900.0, "targets": {
            "onnx-int8": {"status": "met", "float_nodes": ["a", "b"], "plain_top1_drop_pp": 3.0,
                          "budget_top1_drop_pp": 0.5, "search_seconds": 40.0},
            "tflite-int8": {"status": "refused", "reason": "AccuracyBudgetError: closest 2 layers"},
            "openvino-int8": {"status": "met", "float_nodes": [], "budget_top1_drop_pp": 0.0}}},
        {"model": "unet", "max_drop_pp": 1.0, "peak_rss_mb": 800.0, "targets": {
            "onnx-int8": {"status": "met", "float_nodes": ["c"], "snr_db": 33.2},
            "tflite-int8": {"plain_error": "UnsupportedModelError: no int8 kernel"}}},
    ]
    text = budget_zoo.render(records)
    assert "Met the budget: 3 of the 4 cells the runtime can take (75 %)" in text  # the cannot-take cell left out
    assert "mixed precision the answer in 2" in text
    assert "per target: onnx-int8 2 (unet, vit)." in text
    assert "| unet | onnx-int8 | - | - | yes | 1 | 33.2 dB |" in text  # no class scores: the SNR it kept
    assert "| unet | tflite-int8 | cannot take |" in text and "- unet tflite-int8: UnsupportedModelError" in text
    assert "| vit | tflite-int8 | - | - | refused |" in text
    assert "- vit tflite-int8 (refused): AccuracyBudgetError: closest 2 layers" in text
