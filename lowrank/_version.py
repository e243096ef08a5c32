"""The package version (layer 0, so any module can record it)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
