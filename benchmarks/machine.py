"""What machine a benchmark ran on: numbers mean little without it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd",
                     "asimddp")


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


DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_class(architecture: str, flags) -> str:
    """The class of CPU int8 speed depends on: which int8 dot-product instructions it has.

    Without them (x86 AVX2), int8 products are summed in int16 and may saturate, and int8
    is often no faster than fp32; with VNNI/AMX (x86) or the dot-product extension (arm64)
    int8 runs at several times fp32.
    """
    flags = set(flags)
    if architecture.lower() in ("x86_64", "amd64", "i686", "x86"):
        if "amx_int8" in flags:
            return "x86-64 AMX"
        if flags & {"avx512_vnni", "avx_vnni"}:
            return "x86-64 VNNI"
        return "x86-64 AVX2" if "avx2" in flags else "x86-64"
    if architecture.lower() in ("aarch64", "arm64"):
        return "arm64 dot product" if "asimddp" in flags else "arm64"
    return architecture or "unknown"


def host() -> dict:
    """This machine's CPU, its class and the flags the class was read from."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "architecture": platform.machine(), "cpu_class": cpu_class(platform.machine(), flags),
            "flags": [f for f in INTERESTING_FLAGS if f in flags]}


def capture() -> dict:
    """CPU model, SIMD flags that matter for int8 speed, cores, OS, Python, library versions."""
    from targets.manifest import library_versions
    from targets.runtime import runtimes

    facts = host()
    return {
        **facts,
        "cores": os.cpu_count(),
        "int8_dot_product": any(f in facts["flags"] for f in DOT_PRODUCT_FLAGS),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions({lib for runtime in runtimes().values() for lib in runtime.libraries}),
    }
