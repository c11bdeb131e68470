"""Hardware targets: profiles, exporters and runners per runtime.

Example:
    >>> from targets import export, open_artifact
    >>> result = export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    >>> open_artifact(result.folder).runner().run(x)
"""

from targets.artifact import Artifact, find_artifacts, open_artifact
from targets.export import ExportResult, export
from targets.profiles import PROFILES, TargetProfile, compatibility, get_profile

__all__ = ["PROFILES", "Artifact", "ExportResult", "TargetProfile", "compatibility", "export", "find_artifacts",
           "get_profile", "open_artifact"]
