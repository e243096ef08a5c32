"""The one dtype-policy table (lowrank._dtypes): compute, LoRA and layer dtypes, row by row."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from lowrank._dtypes import POLICY, compute_dtype, layer_dtype, lora_storage_dtype, row_of
from lowrank.errors import DTypeError

# (input dtype, compute, LoRA returned in or None, layer or None): the docstring's table.
TABLE = [
    (np.float32, np.float32, np.float32, np.float32),
    (np.float64, np.float64, np.float64, np.float64),
    (np.float16, np.float32, np.float16, np.float32),
    (ml_dtypes.bfloat16, np.float32, ml_dtypes.bfloat16, np.float32),
    (ml_dtypes.float8_e4m3fn, np.float32, None, np.float32),
    (np.int8, np.float64, np.float64, np.float64),
    (np.uint32, np.float64, np.float64, np.float64),
    (np.complex64, np.complex64, None, None),
    (np.complex128, np.complex128, None, None),
]


@pytest.mark.parametrize(("dtype", "compute", "lora", "layer"), TABLE)
def test_table(dtype, compute, lora, layer):
    assert compute_dtype(dtype) == compute
    if lora is None:
        with pytest.raises(DTypeError, match=r"W (must be real|has the quantised dtype)"):
            lora_storage_dtype(dtype, name="W")
    else:
        assert lora_storage_dtype(dtype, name="W") == np.dtype(lora)
    if layer is None:
        with pytest.raises(DTypeError, match=r"weight must have a real dtype"):
            layer_dtype(dtype, name="weight")
    else:
        assert layer_dtype(dtype, name="weight") == layer


def test_every_row_is_reached():
    reached = {row_of(np.dtype(d)) for d, *_ in TABLE} | {row_of(np.bool_)}
    assert reached == set(POLICY)


@pytest.mark.parametrize(
    ("dtype", "func", "match"),
    [
        (
            np.bool_,
            compute_dtype,
            r"A must have a numeric dtype \(float, complex or integer\); got bool",
        ),
        (
            np.longdouble,
            compute_dtype,
            r"A has dtype float(128|96|64), which LAPACK does not support",
        ),
        (
            np.bool_,
            lambda d: lora_storage_dtype(d, name="W"),
            r"W must have dtype float16, bfloat16, float32, float64 or an integer type; got bool",
        ),
        (
            ml_dtypes.float8_e5m2,
            lambda d: lora_storage_dtype(d, name="W"),
            r"W has the quantised dtype float8_e5m2; dequantise it",
        ),
        (
            np.complex64,
            lambda d: lora_storage_dtype(d, name="W"),
            r"W must be real; LoRA has no complex factors; got dtype complex64",
        ),
        (
            np.complex128,
            lambda d: layer_dtype(d, name="bias"),
            r"bias must have a real dtype \(float32, float64, float16 or an integer type\); "
            r"got complex128",
        ),
    ],
)
def test_refusals(dtype, func, match):
    if np.dtype(dtype) == np.float64:  # longdouble is float64 on some platforms
        pytest.skip("longdouble is float64 here")
    with pytest.raises(DTypeError, match=match):
        func(dtype)


@pytest.mark.parametrize("code", ["f4", "f8", "c8", "c16", "i4", "f2"])
def test_big_endian_data_is_the_same_numbers(code):
    """A big-endian array (from a ``.npy`` written on another machine) is classified and
    computed like its native twin; before, ``>f8`` compared unequal to float64 and was
    refused as "float64, which LAPACK does not support". Reference: the native array's
    results, bit for bit (the conversion to native order is exact)."""
    import lowrank

    rng = np.random.default_rng(5)
    native = (rng.standard_normal((9, 6)) * 4).astype("=" + code)
    swapped = native.astype(">" + code)
    assert compute_dtype(swapped.dtype) == compute_dtype(native.dtype)
    assert compute_dtype(swapped.dtype).isnative
    np.testing.assert_array_equal(lowrank.singular_values(swapped), lowrank.singular_values(native))
    a, b = lowrank.truncated_svd(swapped, 2), lowrank.truncated_svd(native, 2)
    np.testing.assert_array_equal(a.S, b.S)
    assert a.S.dtype == b.S.dtype
