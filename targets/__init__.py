"""Hardware targets: profiles, exporters and runners per runtime."""

from targets.profiles import PROFILES, TargetProfile, compatibility, get_profile

__all__ = ["PROFILES", "TargetProfile", "compatibility", "get_profile"]
