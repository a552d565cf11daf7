"""The installed version of harmonix (its own module, so that nothing imports the package)."""

from importlib import metadata

try:
    __version__ = metadata.version("harmonix")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
