"""The exception hierarchy of :mod:`lowrank`.

Every error the library raises on purpose derives from :class:`LowRankError`, and also from
the built-in exception a caller would naturally catch (``ValueError`` for bad values,
``TypeError`` for bad types, ``FileNotFoundError`` for missing files), so that
``except ValueError`` keeps working for code that knows nothing about ``lowrank``.

Messages name the parameter, state the rule and echo the value, for example
``rank must satisfy 0 <= rank <= min(A.shape) = 7; got 9``.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceError",
    "DTypeError",
    "FileFormatError",
    "InputError",
    "LowRankError",
    "MissingFileError",
    "NonFiniteError",
    "RankError",
    "ShapeError",
    "StateError",
]


class LowRankError(Exception):
    """Base class of every error raised on purpose by :mod:`lowrank`."""


class InputError(LowRankError, ValueError):
    """An argument has an invalid value."""


class ShapeError(InputError):
    """An array has the wrong number of dimensions, is empty, or shapes do not match."""


class NonFiniteError(InputError):
    """An array holds NaN or infinite entries."""


class RankError(InputError):
    """A rank is negative, not an integer, or larger than the matrix allows."""


class DTypeError(LowRankError, TypeError):
    """An array's dtype is not numeric, or not supported by the computation."""


class StateError(LowRankError, RuntimeError):
    """An operation is not allowed in the object's current state (e.g. merging twice)."""


class ConvergenceError(LowRankError, RuntimeError):
    """An iterative or LAPACK routine failed to converge."""


class FileFormatError(LowRankError, ValueError):
    """A file is truncated, corrupt, or not in the format it claims to be."""


class MissingFileError(LowRankError, FileNotFoundError):
    """A file or directory that was asked for does not exist."""
