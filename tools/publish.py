"""How the development scripts hand over a Markdown page: written atomically when asked, printed always."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, write: Path | None, *, append: bool = False) -> int:
    """Write ``text`` to ``write`` (if given) and print it; the scripts' exit code. With
    ``append``, ``text`` is a section added below the page ``write`` already holds."""
    from compressor import atomic

    if append and write and write.is_file():
        text = f"{write.read_text().rstrip()}\n\n{text}"
    if write:
        atomic.write_text(write, text)
    print(text)
    return 0
