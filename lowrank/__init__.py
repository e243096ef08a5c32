"""lowrank: numerical low-rank approximation on NumPy and SciPy."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
