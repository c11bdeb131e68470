"""Hardware targets: profiles, exporters and runners per runtime.

Example:
    >>> from targets import export, open_artifact
    >>> result = export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    >>> open_artifact(result.folder).runner().run(x)
"""

from targets.artifact import Artifact, find_artifacts, open_artifact
from targets.export import ExportResult, export, profiles_for
from targets.profiles import PROFILES, Parity, TargetProfile, compatibility, get_profile


def load_onnx(path):
    """Load an ONNX model safely, as a source for the ONNX Runtime and OpenVINO targets."""
    from targets.onnx_runtime import load_onnx as _load

    return _load(path)

__all__ = ["PROFILES", "Artifact", "ExportResult", "Parity", "TargetProfile", "compatibility", "export", "find_artifacts",
           "get_profile", "load_onnx", "open_artifact", "profiles_for"]
