"""CPU classes: the host's class read from its flags, int8 settings chosen per class, and
reports that say which class was measured, how close to its peak, and why int8 is slow."""

import numpy as np
import pytest

from benchmarks import reports, roofline
from compressor.errors import UsageError
from compressor import cpu
from targets import PROFILES, export
from tests.helpers.results import results_doc


@pytest.mark.parametrize("architecture, flags, expected", [
    ("x86_64", {"avx2", "fma"}, "x86-avx2"),
    ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "x86-vnni"),  # AMD Zen 4, Intel Cascade Lake
    ("x86_64", {"avx2", "avx_vnni"}, "x86-vnni"),  # Alder Lake and later: VNNI without AVX-512
    ("x86_64", {"avx2", "avx512_vnni", "amx_int8"}, "x86-amx"),
    ("x86_64", {"sse4_2"}, "x86-avx2"),  # no dot product either: int16 sums, the same settings
    ("aarch64", {"asimd", "asimddp"}, "arm64-dotprod"),  # Cortex-A76 and later (Raspberry Pi 5)
    ("aarch64", {"asimd"}, "arm64"),  # Cortex-A72 (Raspberry Pi 4)
    ("riscv64", set(), "generic"),
])
def test_the_class_follows_the_int8_dot_product_instructions(architecture, flags, expected):
    assert cpu.classify(architecture, flags) == expected


def test_host_alias_and_unknown_class():
    facts = cpu.host()
    assert cpu.get_class("host").name == facts["cpu_class"] in cpu.CLASSES
    with pytest.raises(UsageError, match="unknown CPU class 'x86-avx9'.*x86-avx2"):
        cpu.get_class("x86-avx9")


def test_peak_is_computed_from_the_facts_with_its_formula():
    zen4 = {"cpu_class": "x86-vnni", "clock_mhz": 2600.0,
            "vector_bits": cpu.vector_bits({"avx2", "avx512f"}, "AuthenticAMD", "25")}
    assert zen4["vector_bits"] == 256  # Zen 4 runs AVX-512 on 256-bit units
    ceiling = cpu.peak(zen4, cores=1)
    assert ceiling["fp32_gflops"] == pytest.approx(2 * 8 * 2 * 2.6)  # FMA x lanes x units x GHz = 83.2
    assert ceiling["int8_gops"] == pytest.approx(4 * 83.2)  # four int8 products per 32-bit lane (VNNI)
    assert "83.2 GFLOP/s" in ceiling["formula"] and "x 4 (dot product)" in ceiling["formula"]
    avx2 = cpu.peak({"cpu_class": "x86-avx2", "clock_mhz": 3000.0, "vector_bits": 256}, cores=2)
    assert avx2["int8_gops"] == pytest.approx(2 * avx2["fp32_gflops"]) == pytest.approx(384.0)
    assert cpu.peak({"cpu_class": "arm64", "clock_mhz": None, "vector_bits": 128})["fp32_gflops"] is None
    point = roofline.point(300_000_000, "int8", 3.0, 1, ceiling)  # MobileNetV2 at 3 ms
    assert point["gops"] == pytest.approx(200.0) and point["fraction"] == pytest.approx(200 / 332.8, abs=1e-4)
    assert roofline.point(None, "fp32", 3.0, 1, ceiling) is None


def test_int8_settings_follow_the_class():
    onnx, ov = PROFILES["onnx-int8"], PROFILES["openvino-int8"]
    assert dict(onnx.for_cpu("x86-avx2").options) == {"activations": "int8", "reduce_range": True}
    assert dict(onnx.for_cpu("x86-vnni").options) == {"activations": "uint8", "reduce_range": False}
    assert dict(onnx.for_cpu("arm64-dotprod").options) == {"activations": "int8", "reduce_range": False}
    assert dict(onnx.for_cpu("generic").options) == dict(onnx.for_cpu("x86-avx2").options)  # safe everywhere
    assert ov.for_cpu("x86-avx2").options["overflow_fix"] == "enable"
    assert ov.for_cpu("x86-amx").options["overflow_fix"] == "disable"
    assert onnx.for_cpu("x86-vnni").cpu_class == "x86-vnni"
    assert PROFILES["mcu"].for_cpu("x86-vnni").cpu_class is None  # not a CPU target: unchanged


@pytest.mark.parametrize("cpu_class, activation, reduce_range", [("x86-vnni", np.uint8, False),
                                                                 ("x86-avx2", np.int8, True)])
def test_onnx_int8_is_written_for_the_class_asked(tiny_cnn, digits8, tmp_path, cpu_class, activation, reduce_range):
    import onnx
    from onnx import numpy_helper

    train, test = digits8
    result = export(tiny_cnn, "onnx-int8", out_dir=tmp_path, calibration=train, validation=test, cpu_class=cpu_class)
    manifest = result.manifest
    assert manifest["cpu_class"] == cpu_class and manifest["parity"]["passed"]
    assert manifest["details"]["quantization"]["reduce_range"] is reduce_range
    graph = onnx.load(str(result.artifact)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # the zero points of the activations' QuantizeLinear nodes carry the activation type
    zero_points = {initializers[n.input[2]].dtype for n in graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in initializers}
    assert zero_points == {np.dtype(activation)}
    if reduce_range:  # 7-bit weights: every int8 weight within [-64, 63]
        weights = [a for a in initializers.values() if a.dtype == np.int8 and a.size > 16]
        assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


def test_openvino_int8_is_written_for_the_class_asked(tiny_cnn, digits8, tmp_path):
    train, test = digits8
    for cpu_class, fix in (("x86-vnni", "disable"), ("x86-avx2", "enable")):
        result = export(tiny_cnn, "openvino-int8", out_dir=tmp_path / cpu_class, calibration=train, validation=test,
                        cpu_class=cpu_class)
        assert result.manifest["cpu_class"] == cpu_class and result.manifest["parity"]["passed"]
        assert result.manifest["details"]["overflow_fix"] == fix


def _doc():
    doc = results_doc(latencies=(2.0, 1.0, 1.25))
    doc["machine"].update({"cpu_class": "x86-avx2", "clock_mhz": 3000.0, "vector_bits": 256})
    doc["machine"]["peak"] = roofline.ceiling(doc["machine"], threads=1)
    fp32, int8 = doc["results"][1], doc["results"][2]
    for row in (fp32, int8):
        row["cpu_class"] = "x86-avx2"
        row["roofline"] = roofline.point(10_000_000, row["precision"], row["latency"]["p50_ms"], 1,
                                         doc["machine"]["peak"])
    int8["speedup_vs_runtime_fp32"] = 1.0 / 1.25
    built_elsewhere = {**int8, "name": "onnx-int8", "runtime": "onnxruntime", "cpu_class": "x86-vnni",
                       "speedup_vs_runtime_fp32": None}
    doc["results"].append(built_elsewhere)
    return doc


def test_reports_show_the_roofline_the_class_measured_and_why_int8_is_slower():
    doc = _doc()
    text = reports.render(doc, "md")
    assert "| GOP/s | % peak |" in text
    # 2 x 10 M MACs / 1.25 ms = 16 GOP/s against 2 x 8 x 2 x 3.0 GHz x 2 (int8, no dot product) = 192 GOP/s
    assert "| 16.0 | 8 % |" in text
    assert "fp32 = 2 (FMA) x 8 lanes (256-bit) x 2 FMA units (assumed) x 3.00 GHz x 1 core(s)" in text
    assert "| onnx-int8 ‡ |" in text and "built for CPU class x86-vnni but measured on this host's class x86-avx2" \
        in text
    assert ("tflite-int8 is slower than its runtime's fp32 here (0.80×): this host's CPU class (x86-avx2) has no "
            "int8 dot product") in text
    doc["results"][2]["speed_caveat"] = "LiteRT runs dynamic-range layers with its built-in hybrid kernels"
    assert "(0.80×): LiteRT runs dynamic-range layers" in reports.render(doc, "html")


def test_the_amx_class_has_the_tiles_peak_for_the_runtimes_that_use_them():
    sapphire = {"cpu_class": "x86-amx", "clock_mhz": 2000.0, "vector_bits": 512,
                "flags": ["avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]}
    ceiling = cpu.peak(sapphire, cores=2)
    assert ceiling["fp32_gflops"] == pytest.approx(2 * 16 * 2 * 2.0 * 2)  # 256 GFLOP/s
    assert ceiling["amx_int8_gops"] == pytest.approx(2048 * 2.0 * 2)  # 32x fp32
    assert ceiling["amx_bf16_gflops"] == pytest.approx(1024 * 2.0 * 2) and ceiling["bf16_gflops"] == 512.0
    assert "AMX tiles: int8 2048 and bf16 1024 operations per cycle per core" in ceiling["formula"]
    on_tiles = roofline.point(4_000_000_000, "int8", 10.0, 1, ceiling, amx=("int8", "bf16"))  # 800 GOP/s
    on_vectors = roofline.point(4_000_000_000, "int8", 10.0, 1, ceiling, amx=())
    assert on_tiles["ceiling"] == "int8 (AMX)" and on_tiles["fraction"] == pytest.approx(800 / 8192, abs=1e-4)
    assert on_vectors["ceiling"] == "int8" and on_vectors["fraction"] == pytest.approx(800 / 1024, abs=1e-4)
    assert roofline.point(4_000_000_000, "bf16", 10.0, 1, ceiling, amx=("int8",))["ceiling"] == "bf16"
    assert "amx_int8_gops" not in cpu.peak({**sapphire, "cpu_class": "x86-vnni"})
