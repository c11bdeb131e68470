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


def capture() -> dict:
    """CPU model, SIMD flags that matter for int8 speed, cores, OS, Python, library versions."""
    from targets.manifest import library_versions
    from targets.runtime import runtimes

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "int8_dot_product": any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions({lib for runtime in runtimes().values() for lib in runtime.libraries}),
    }
