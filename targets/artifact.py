"""Open an exported artifact from its folder: manifest read, integrity checked, runner ready."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from targets import manifest as manifests
from targets.runtime import Runner, get_runtime


@dataclass(frozen=True)
class Artifact:
    folder: Path
    path: Path
    manifest: dict

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def runtime(self) -> str:
        return self.manifest["runtime"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def runner(self, *, threads: int = 1) -> Runner:
        """A runner for this artifact (see :class:`targets.runtime.Runner`)."""
        return get_runtime(self.runtime).load(self.path, threads=threads, details=self.manifest.get("details"))


def open_artifact(path: str | Path) -> Artifact:
    """Open the artifact in ``path`` (its folder, manifest or file), refusing a sha256 mismatch.

    Example:
        >>> artifact = open_artifact("out/tflite-int8")
        >>> outputs = artifact.runner(threads=1).run(x)
    """
    folder, manifest = manifests.read(path)
    return Artifact(folder, manifests.verify_artifact(folder, manifest), manifest)


def find_artifacts(root: str | Path) -> list[Path]:
    """Every artifact folder (one holding a manifest): ``root`` itself, or those directly under it."""
    from compressor.errors import BadInputError

    root = Path(root)
    if not root.exists():
        raise BadInputError(f"{root}: no such file or directory")
    folder = root if root.is_dir() else root.parent
    if (folder / manifests.MANIFEST_NAME).is_file():
        return [folder]
    found = sorted(p.parent for p in root.glob(f"*/{manifests.MANIFEST_NAME}")) if root.is_dir() else []
    if not found:
        raise BadInputError(f"{root}: not an artifact or output folder (no {manifests.MANIFEST_NAME} in or under it)")
    return found
