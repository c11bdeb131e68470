"""What machine a benchmark ran on: numbers mean little without it."""

from __future__ import annotations

import os
import platform

from compressor.cpu import DOT_PRODUCT_FLAGS, host  # noqa: F401  (host: re-exported for callers)


def capture() -> dict:
    """CPU model, SIMD flags that matter for int8 speed, cores, OS, Python, library versions."""
    from compressor.version import library_versions
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
