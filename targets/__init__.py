"""Hardware targets: profiles, exporters and runners per runtime.

Example:
    >>> from targets import export, open_artifact
    >>> result = export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    >>> open_artifact(result.folder).runner().run(x)
"""

from targets.artifact import Artifact, find_artifacts, open_artifact
from targets.export import ExportFailure, ExportResult, compatibility, export, export_many, profiles_for
from targets.profiles import PROFILES, Parity, ParityBounds, TargetProfile, get_profile, validate_targets

__all__ = ["PROFILES", "Artifact", "ExportFailure", "ExportResult", "Parity", "ParityBounds", "TargetProfile",
           "compatibility", "export", "export_many", "find_artifacts", "get_profile", "open_artifact", "profiles_for",
           "validate_targets"]
