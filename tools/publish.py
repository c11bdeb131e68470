"""How the development scripts hand over a Markdown page: written atomically when asked, printed always."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, write: Path | None) -> int:
    """Write ``text`` to ``write`` (if given) and print it; the scripts' exit code."""
    from compressor import atomic

    if write:
        atomic.write_text(write, text)
    print(text)
    return 0
