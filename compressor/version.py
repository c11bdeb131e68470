"""The toolkit's version, and the installed versions of the libraries it runs with."""

from importlib import metadata

__version__ = "0.1.0"


def library_versions(libraries) -> dict[str, str]:
    """Installed versions of ``libraries`` (a runtime's) and of numpy."""
    versions = {}
    for name in sorted({*libraries, "numpy"}):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
