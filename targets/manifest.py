"""The manifest beside every artifact: what it is, where it came from, how well it matched.

Manifests carry no timestamps, so the same inputs give byte-identical manifests.
"""

from __future__ import annotations

import json
from pathlib import Path

from compressor import atomic
from compressor.digests import sha256
from compressor.errors import BadInputError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


def write(folder: Path, manifest: dict) -> Path:
    text = json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, indent=2, sort_keys=True, default=_jsonable)
    return atomic.write_text(folder / MANIFEST_NAME, text + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read(folder_or_file: str | Path) -> tuple[Path, dict]:
    """Return ``(folder, manifest)`` for an artifact folder, its manifest, or its artifact file."""
    path = Path(folder_or_file)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BadInputError(f"{folder}: no {MANIFEST_NAME} (not an artifact folder written by compressor)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise BadInputError(f"{manifest_path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise BadInputError(f"{manifest_path}: unsupported manifest schema (expected version {SCHEMA_VERSION})")
    _check_fields(manifest, manifest_path)
    return folder, manifest


def _is_file_record(record) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("file"), str) and isinstance(record.get("sha256"), str)
            and Path(record["file"]).name == record["file"] and record["file"] not in ("", ".", ".."))


def _check_fields(manifest: dict, path: Path) -> None:
    """A manifest names files only inside its own folder, with their digests, and a known runtime."""
    from targets.runtime import runtimes

    for key in ("target", "runtime", "precision"):
        if not isinstance(manifest.get(key), str):
            raise BadInputError(f"{path}: manifest field '{key}' is missing or not text")
    if manifest["runtime"] not in runtimes():
        raise BadInputError(f"{path}: unknown runtime '{manifest['runtime']}' (valid: {', '.join(runtimes())})")
    extra = manifest.get("extra_files", [])
    if not _is_file_record(manifest.get("artifact")) or not isinstance(extra, list) or \
            not all(_is_file_record(r) for r in extra):
        raise BadInputError(f"{path}: manifest file records must name a file in the artifact's folder and its sha256")


def verify_artifact(folder: Path, manifest: dict) -> Path:
    """The artifact's path, after checking its and its companions' sha256 against the manifest."""
    for record in [manifest["artifact"], *manifest.get("extra_files", [])]:
        path = folder / record["file"]
        if not path.is_file():
            raise BadInputError(f"{path}: file named by the manifest is missing")
        actual = sha256(path)
        if actual != record["sha256"]:
            raise BadInputError(
                f"{path}: sha256 {actual[:12]}… does not match the manifest ({record['sha256'][:12]}…); "
                "the file was changed or damaged after export"
            )
    return folder / manifest["artifact"]["file"]
