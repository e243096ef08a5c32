"""The dtypes of weight files: safetensors codes, NumPy names, and which ones are matrices.

Dtypes are named by their NumPy (or ``ml_dtypes``) name, e.g. ``"bfloat16"``, so that the
names match :data:`lowrank._numerics.STORAGE_EPS` and the core never imports ``ml_dtypes``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "MATRIX_DTYPES",
    "SAFETENSORS_CODES",
    "SAFETENSORS_SAVABLE",
    "SafetensorsDType",
    "dtype_skip_reason",
]


class SafetensorsDType(NamedTuple):
    """One dtype code of the safetensors header."""

    name: str
    """NumPy / ``ml_dtypes`` name of the element type."""
    bits: int
    """Bits per element (4 and 6 for the packed sub-byte floats)."""


# The codes accepted by safetensors 0.8 (the format's documented list). F4 and F6 are packed
# sub-byte floats; their NumPy names are those of the unpacked ml_dtypes types.
SAFETENSORS_CODES: dict[str, SafetensorsDType] = {
    "BOOL": SafetensorsDType("bool", 8),
    "U8": SafetensorsDType("uint8", 8),
    "I8": SafetensorsDType("int8", 8),
    "U16": SafetensorsDType("uint16", 16),
    "I16": SafetensorsDType("int16", 16),
    "U32": SafetensorsDType("uint32", 32),
    "I32": SafetensorsDType("int32", 32),
    "U64": SafetensorsDType("uint64", 64),
    "I64": SafetensorsDType("int64", 64),
    "F16": SafetensorsDType("float16", 16),
    "BF16": SafetensorsDType("bfloat16", 16),
    "F32": SafetensorsDType("float32", 32),
    "F64": SafetensorsDType("float64", 64),
    "C64": SafetensorsDType("complex64", 64),
    "F8_E4M3": SafetensorsDType("float8_e4m3fn", 8),
    "F8_E5M2": SafetensorsDType("float8_e5m2", 8),
    "F8_E4M3FNUZ": SafetensorsDType("float8_e4m3fnuz", 8),
    "F8_E5M2FNUZ": SafetensorsDType("float8_e5m2fnuz", 8),
    "F8_E8M0": SafetensorsDType("float8_e8m0fnu", 8),
    "F6_E2M3": SafetensorsDType("float6_e2m3fn", 6),
    "F6_E3M2": SafetensorsDType("float6_e3m2fn", 6),
    "F4": SafetensorsDType("float4_e2m1fn", 4),
}

# NumPy names that safetensors.numpy.save_file can write. The packed sub-byte floats are
# left out: an unpacked ml_dtypes float4 array is one byte per element, not the format's
# two-per-byte layout.
SAFETENSORS_SAVABLE: frozenset[str] = frozenset(
    d.name for d in SAFETENSORS_CODES.values() if d.bits >= 8
)

MATRIX_DTYPES: frozenset[str] = frozenset({"float16", "bfloat16", "float32", "float64"})
"""Dtypes whose 2-D tensors are selected as matrices: real floating types of 16 bits or more."""


def dtype_skip_reason(name: str) -> str | None:
    """Why a tensor of dtype ``name`` is not a matrix, or ``None`` if it can be one."""
    if name in MATRIX_DTYPES:
        return None
    if name == "bool":
        return "dtype bool is not floating"
    if name in ("int8", "uint8"):
        return f"dtype {name} holds integers or quantised/packed weights, not floating values"
    if name.startswith(("int", "uint")):
        return f"dtype {name} is an integer type, not floating"
    if name.startswith(("float8", "float6", "float4")):
        return f"dtype {name} is a quantised low-bit float; dequantise it first"
    if name.startswith("complex"):
        return f"dtype {name} is complex, not real floating"
    return f"dtype {name} is not one of the matrix dtypes {', '.join(sorted(MATRIX_DTYPES))}"
