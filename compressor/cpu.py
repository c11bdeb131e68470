"""CPU classes: what int8 speed and int8 correctness depend on, as declarative records.

The machine that builds an artifact is not the one it ships to. Whether int8 pays, and
which quantization settings are safe, depend on one fact about the device's CPU: its int8
dot-product instructions. Without them (x86 before VNNI) int8 pairs are summed in int16
(``vpmaddubsw``) and may saturate, which 7-bit weights avoid at some accuracy cost; with
them (x86 VNNI/AMX, Arm's dot-product extension) products are summed in int32 and 8-bit
weights are safe. Target profiles choose their settings per class
(:attr:`targets.profiles.TargetProfile.cpu_options`); the class defaults to this host's.

Peak throughput for the roofline is computed, not measured, from the facts read here:
vector datapath width, FMA units (assumed 2 per core, as on current x86 server cores and
Arm Neoverse), clock, and the int8 multiplier of the class. Every figure carries its formula.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from compressor.errors import UsageError

INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                     "amx_bf16", "neon", "asimd", "asimddp")
DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # a CPU that computes in bfloat16 (OpenVINO's bf16 inference precision)
HOST = "host"  # the alias for this machine's class


@dataclass(frozen=True)
class CpuClass:
    name: str
    description: str
    architecture: str  # x86_64 | arm64 | any
    int8_dot_product: bool  # int8 products summed in int32 by one instruction
    int8_saturates: bool  # int8 pairs summed in int16 first: 8-bit weights with 8-bit inputs can overflow
    int8_per_fp32: int  # int8 MACs per fp32 FMA on the same vector width (the roofline's int8 peak)
    examples: str

    def to_dict(self) -> dict:
        return dict(vars(self))


CLASSES: dict[str, CpuClass] = {c.name: c for c in (
    CpuClass("x86-avx2", "x86-64 with AVX2, no int8 dot product (int8 pairs summed in int16)", "x86_64",
             int8_dot_product=False, int8_saturates=True, int8_per_fp32=2,
             examples="Intel Skylake to Coffee Lake desktops, AMD Zen 1-3"),
    CpuClass("x86-vnni", "x86-64 with AVX-512 VNNI or AVX-VNNI (int8 dot product into int32)", "x86_64",
             int8_dot_product=True, int8_saturates=False, int8_per_fp32=4,
             examples="Intel Cascade Lake and later Xeons, Alder Lake and later, AMD Zen 4/5"),
    CpuClass("x86-amx", "x86-64 with AMX int8 tiles (and VNNI)", "x86_64", int8_dot_product=True,
             int8_saturates=False, int8_per_fp32=4, examples="Intel Sapphire Rapids and later Xeons"),
    CpuClass("arm64-dotprod", "64-bit Arm with the dot-product extension (SDOT/UDOT)", "arm64",
             int8_dot_product=True, int8_saturates=False, int8_per_fp32=4,
             examples="Cortex-A76 and later (Raspberry Pi 5), Apple M, Graviton 2+"),
    CpuClass("arm64", "64-bit Arm without dot product", "arm64", int8_dot_product=False, int8_saturates=False,
             int8_per_fp32=2, examples="Cortex-A53/A72 (Raspberry Pi 3/4)"),
    CpuClass("generic", "any other CPU: the settings that are safe everywhere", "any", int8_dot_product=False,
             int8_saturates=True, int8_per_fp32=2, examples="unknown architectures"),
)}


def classify(architecture: str, flags) -> str:
    """The class of a CPU from its architecture (``platform.machine()``) and feature flags."""
    flags = set(flags)
    arch = architecture.lower()
    if arch in ("x86_64", "amd64", "i686", "x86"):
        if "amx_int8" in flags:
            return "x86-amx"
        if flags & {"avx512_vnni", "avx_vnni"}:
            return "x86-vnni"
        return "x86-avx2"  # SSE-only CPUs sum int8 in int16 too: the same settings are right for them
    if arch in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64"
    return "generic"


def get_class(name: str) -> CpuClass:
    """The class registered as ``name`` (``host``: this machine's); UsageError names the valid ones."""
    if name == HOST:
        return CLASSES[host()["cpu_class"]]
    if name not in CLASSES:
        raise UsageError(f"unknown CPU class '{name}' (valid: {', '.join(CLASSES)}, {HOST})")
    return CLASSES[name]


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return info
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in info:
            info[key] = value.strip()
    return info


def _clock_mhz(info: dict[str, str]) -> float | None:
    """The highest clock the system states: cpufreq's maximum where present, else /proc/cpuinfo's."""
    ceiling = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(ceiling.read_text().strip()) / 1000
    except (OSError, ValueError):
        pass
    try:
        return float(info.get("cpu MHz", ""))
    except ValueError:
        return None


def vector_bits(flags, vendor: str = "", family: str = "") -> int:
    """Width of one FMA unit's datapath. AMD Zen 4 (family 25) runs AVX-512 on 256-bit units."""
    flags = set(flags)
    if "avx512f" in flags:
        return 256 if vendor == "AuthenticAMD" and family == "25" else 512
    if flags & {"avx2", "fma"}:
        return 256
    return 128  # SSE, Neon


FMA_UNITS = 2  # assumed: current x86 server cores and Arm Neoverse/Cortex-A7x issue two vector FMAs per cycle
# AMX tile multiply (TMUL) throughput per core and cycle, Intel's figures: 1,024 int8 MACs (2,048
# operations) and 512 bf16 MACs (1,024 operations), against 64 fp32 operations for AVX-512 with two
# FMA units. Only kernels written for the tiles reach it (oneDNN's, in OpenVINO; MLAS's int8 GEMM).
AMX_INT8_OPS_PER_CYCLE = 2048
AMX_BF16_OPS_PER_CYCLE = 1024


def peak(facts: dict, cores: int = 1) -> dict:
    """The roofline's ceilings for ``cores`` cores, with the formula: fp32 GFLOP/s, int8 GOP/s on
    the vector units, bf16 GFLOP/s where the CPU has AVX-512 BF16, and the AMX tiles' int8 and
    bf16 peaks on the AMX class (for the runtimes whose kernels use the tiles).

    fp32: 2 (FMA) x fp32 lanes (datapath bits / 32) x FMA units x clock. int8: that x the
    class's int8 MACs per fp32 FMA (4 with a dot product: four int8 products per 32-bit lane;
    2 without: ``vpmaddubsw`` pairs). bf16 (AVX-512 BF16): fp32 x 2 (pairs per lane). AMX:
    operations per cycle per core x clock. None when the clock is unknown.
    """
    clock = facts.get("clock_mhz")
    lanes = facts["vector_bits"] // 32
    cls = CLASSES[facts["cpu_class"]]
    if not clock:
        return {"fp32_gflops": None, "int8_gops": None, "formula": "clock unknown: no peak"}
    fp32 = 2 * lanes * FMA_UNITS * clock / 1000 * cores
    ceilings = {"fp32_gflops": round(fp32, 1), "int8_gops": round(fp32 * cls.int8_per_fp32, 1),
                "bf16_gflops": round(fp32 * 2, 1) if "avx512_bf16" in facts.get("flags", ()) else None}
    formula = (f"fp32 = 2 (FMA) x {lanes} lanes ({facts['vector_bits']}-bit) x {FMA_UNITS} FMA units (assumed) "
               f"x {clock / 1000:.2f} GHz x {cores} core(s) = {fp32:.1f} GFLOP/s; int8 = fp32 x "
               f"{cls.int8_per_fp32} ({'dot product' if cls.int8_dot_product else 'no dot product'}) "
               f"= {fp32 * cls.int8_per_fp32:.1f} GOP/s")
    if cls.name == "x86-amx":
        amx_int8, amx_bf16 = (ops * clock / 1000 * cores for ops in (AMX_INT8_OPS_PER_CYCLE, AMX_BF16_OPS_PER_CYCLE))
        ceilings.update(amx_int8_gops=round(amx_int8, 1), amx_bf16_gflops=round(amx_bf16, 1))
        formula += (f"; AMX tiles: int8 {AMX_INT8_OPS_PER_CYCLE} and bf16 {AMX_BF16_OPS_PER_CYCLE} operations per "
                    f"cycle per core = {amx_int8:.0f} GOP/s and {amx_bf16:.0f} GFLOP/s")
    return {**ceilings, "formula": formula}


def host() -> dict:
    """This machine's CPU, its class, and the facts the class was read from (flags, clock)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "architecture": platform.machine(), "cpu_class": classify(platform.machine(), flags),
            "flags": [f for f in INTERESTING_FLAGS if f in flags], "vendor": vendor, "family": family,
            "clock_mhz": _clock_mhz(info), "vector_bits": vector_bits(flags, vendor, family)}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
