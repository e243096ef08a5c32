"""lowrank.analysis: per-matrix numbers against NumPy, dtypes, sharding, failures, streaming.

Reports (file formats, partial runs) are in test_analysis_report.py, executors in
test_analysis_run.py and test_distributed.py.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest

from lowrank._numerics import tolerance
from lowrank.analysis import (
    AnalysisOptions,
    MatrixResult,
    SkippedTensor,
    analyze,
    analyze_matrix,
    analyze_tensor,
    layer_grid,
    parse_layer_name,
)
from lowrank.errors import InputError
from lowrank.io import TensorInfo, list_tensors, save_safetensors


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def with_spectrum(rng: np.random.Generator, m: int, n: int, s: np.ndarray) -> np.ndarray:
    """An m x n float64 matrix whose singular values are ``s`` (padded with zeros)."""
    k = min(m, n)
    full = np.zeros(k)
    full[: len(s)] = s
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    return (U * full) @ V.T


def reference(A: np.ndarray, ranks: tuple[int, ...], energies: tuple[float, ...]) -> dict:
    """The numbers of the analysis computed independently with np.linalg.svd in float64."""
    a = np.asarray(A, dtype=np.float64)
    U, s, Vh = np.linalg.svd(a, full_matrices=False)
    fro = np.linalg.norm(a)
    errors = []
    for r in ranks:
        approx = (U[:, :r] * s[:r]) @ Vh[:r]
        errors.append(np.linalg.norm(a - approx) / fro)
    energy = np.cumsum(s**2) / np.sum(s**2)
    energy_ranks = [int(np.argmax(energy >= e - 1e-12)) + 1 for e in energies]
    p = s[s > 0] / s.sum()
    return {
        "s": s,
        "fro": fro,
        "stable": fro**2 / s[0] ** 2,
        "erank": math.exp(-np.sum(p * np.log(p))),
        "numpy_rank": int(np.linalg.matrix_rank(a)),
        "errors": errors,
        "energy_ranks": energy_ranks,
    }


class TestAnalyzeMatrix:
    def test_float64_matches_numpy_svd(self, rng):
        s = np.geomspace(10.0, 1e-3, 30)
        A = with_spectrum(rng, 50, 40, s)
        ranks, energies = (1, 5, 17, 40, 99), (0.5, 0.9, 0.999)
        res = analyze_matrix(A, name="W", options=AnalysisOptions(ranks=ranks, energies=energies))
        ref = reference(A, ranks, energies)
        # LAPACK (float64) singular values are backward stable: off by c*eps*sqrt(n)*s1.
        tol = tolerance(np.float64, size=50, scale=s[0])
        np.testing.assert_allclose(res.singular_values, ref["s"], rtol=0, atol=tol)
        assert res.name == "W" and res.shape == (50, 40)
        assert res.dtype == res.compute_dtype == "float64"
        assert res.norm_fro == pytest.approx(ref["fro"], rel=1e-13)
        assert res.spectral_norm == pytest.approx(s[0], rel=1e-13)
        assert res.stable_rank == pytest.approx(ref["stable"], rel=1e-12)
        assert res.entropy_effective_rank == pytest.approx(ref["erank"], rel=1e-10)
        assert res.numerical_rank == ref["numpy_rank"] == 30
        assert res.energy_ranks == tuple(zip(energies, ref["energy_ranks"], strict=True))
        # Errors from the tail of the spectrum equal the directly computed residuals;
        # ranks past min(m, n) = 40 have no error.
        got = [err for _, err in res.rank_errors]
        np.testing.assert_allclose(got[:3], ref["errors"][:3], rtol=1e-9, atol=1e-13)
        assert got[3:] == [0.0, 0.0]
        assert res.error_at_rank(5) == got[1]
        assert res.rank_for_energy(0.9) == ref["energy_ranks"][1]

    def test_float32_is_computed_from_the_gram_matrix_in_float64(self, rng):
        A = with_spectrum(rng, 300, 120, np.linspace(5.0, 0.5, 120)).astype(np.float32)
        res = analyze_matrix(A)
        ref = reference(A, (8,), (0.9,))
        # Gram eigenvalues in float64: sigma_i is off by about eps64*sqrt(n)*s1^2/sigma_i.
        tol = tolerance(np.float64, size=300, scale=5.0**2 / 0.5)
        np.testing.assert_allclose(res.singular_values, ref["s"], rtol=0, atol=tol)
        assert res.dtype == res.compute_dtype == "float32"
        assert res.error_at_rank(8) == pytest.approx(ref["errors"][0], rel=1e-10)

    def test_zero_matrix(self):
        res = analyze_matrix(np.zeros((3, 4)))
        assert res.stable_rank == res.entropy_effective_rank == 0.0
        assert res.numerical_rank == res.numerical_rank_storage == 0
        assert res.energy_ranks == ((0.9, 0), (0.99, 0))

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ("8,16", "options must be an AnalysisOptions; got str"),
            ({"ranks": [8]}, "options must be an AnalysisOptions; got dict"),
        ],
    )
    def test_bad_options(self, options, message):
        with pytest.raises(InputError, match=message):
            analyze_matrix(np.eye(3), options=options)


class TestOptions:
    def test_sorted_and_deduplicated(self):
        opts = AnalysisOptions(ranks=[64, 8, 8, np.int64(16)], energies=[0.99, 0.9, 0.9])
        assert opts.ranks == (8, 16, 64) and opts.energies == (0.9, 0.99)
        assert AnalysisOptions(ranks=[], energies=[]).ranks == ()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"ranks": 8}, r"ranks must be a sequence of positive integers; got 8"),
            ({"ranks": "8"}, r"ranks must be a sequence of positive integers; got '8'"),
            ({"ranks": [8, 0]}, r"ranks must be positive integers; got 0 in \[8, 0\]"),
            ({"ranks": [2.5]}, r"ranks must be positive integers; got 2.5"),
            ({"ranks": [True]}, r"ranks must be positive integers; got True"),
            ({"energies": 0.9}, r"energies must be a sequence of numbers in \(0, 1\]; got 0.9"),
            ({"energies": [0.0]}, r"energies must lie in \(0, 1\]; got 0.0"),
            ({"energies": [1.5]}, r"energies must lie in \(0, 1\]; got 1.5"),
            ({"energies": [float("nan")]}, r"energies must lie in \(0, 1\]; got nan"),
            ({"energies": ["x"]}, r"energies must lie in \(0, 1\]; got 'x'"),
        ],
    )
    def test_rejects(self, kwargs, message):
        with pytest.raises(InputError, match=message):
            AnalysisOptions(**kwargs)

    def test_lookup_of_a_value_that_was_not_analysed(self):
        res = analyze_matrix(np.eye(3), options=AnalysisOptions(ranks=[1], energies=[0.5]))
        with pytest.raises(
            InputError, match=r"energy must be one of the analysed energies \(0.5\); got 0.9"
        ):
            res.rank_for_energy(0.9)
        with pytest.raises(
            InputError, match=r"rank must be one of the analysed ranks \(1\); got 2"
        ):
            res.error_at_rank(2)
        empty = analyze_matrix(np.eye(3), options=AnalysisOptions(ranks=[], energies=[]))
        with pytest.raises(InputError, match=r"analysed ranks \(none\)"):
            empty.error_at_rank(1)


class TestStoredDtypes:
    @pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
    def test_half_precision_checkpoint(self, tmp_path, rng, dtype):
        # A rank-4 matrix: stored in 16 bits, rounding makes it numerically full rank by
        # NumPy's rule; the storage-aware rank sees through the rounding noise.
        low = rng.standard_normal((96, 4)) @ rng.standard_normal((4, 64))
        stored = low.astype(dtype)
        path = tmp_path / "half.safetensors"
        save_safetensors(path, {"layer.0.w.weight": stored})
        report = analyze(path, executor=ThreadPoolExecutor(1))
        (res,) = report.matrices
        assert res.dtype == np.dtype(dtype).name
        assert res.compute_dtype == "float32"
        # The stored values are exact in float32 and float64: compare with float64 LAPACK.
        ref = reference(stored.astype(np.float64), (8,), (0.9,))
        tol = tolerance(np.float64, size=96, scale=ref["s"][0] ** 2 / ref["s"][-1])
        np.testing.assert_allclose(res.singular_values, ref["s"], rtol=0, atol=tol)
        # NumPy's threshold (s1 * 96 * eps32) is below the rounding noise (about
        # s1 * 2**-8 for bfloat16, 2**-11 for float16): most noise directions count.
        assert res.numerical_rank > 40
        assert res.numerical_rank_storage == 4

    def test_sharded_bfloat16_checkpoint_equals_single_file(self, tmp_path, rng):
        tensors = {
            f"model.layers.{i}.mlp.{name}.weight": rng.standard_normal((40, 24)).astype(
                ml_dtypes.bfloat16
            )
            for i in range(2)
            for name in ("up_proj", "down_proj")
        }
        tensors["model.norm.weight"] = np.ones(24, dtype=ml_dtypes.bfloat16)
        names = list(tensors)
        shards = {"a.safetensors": names[:2], "b.safetensors": names[2:]}
        weight_map = {}
        for shard, keys in shards.items():
            save_safetensors(tmp_path / shard, {k: tensors[k] for k in keys})
            weight_map.update(dict.fromkeys(keys, shard))
        import json

        index = tmp_path / "model.safetensors.index.json"
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        single = tmp_path / "single"
        single.mkdir()
        save_safetensors(single / "all.safetensors", tensors)

        with ThreadPoolExecutor(2) as pool:
            sharded = analyze(tmp_path, executor=pool)
            whole = analyze(single / "all.safetensors", executor=pool)
        assert [m.name for m in sharded.matrices] == names[:4]
        assert {m.file.rsplit("/", 1)[-1] for m in sharded.matrices} == set(shards)
        assert [(s.name, s.code) for s in sharded.skipped] == [("model.norm.weight", "ndim")]
        by_name = {m.name: m for m in whole.matrices}
        for a in sharded.matrices:
            b = by_name[a.name]
            assert a.dtype == "bfloat16"
            np.testing.assert_array_equal(a.singular_values, b.singular_values)
            assert a.rank_errors == b.rank_errors and a.energy_ranks == b.energy_ranks

    def test_flatten_policy_reads_a_conv_kernel_as_a_matrix(self, tmp_path, rng):
        kernel = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
        save_safetensors(tmp_path / "conv.safetensors", {"conv.weight": kernel})
        with ThreadPoolExecutor(1) as pool:
            skipped = analyze(tmp_path / "conv.safetensors", executor=pool)
            flat = analyze(tmp_path / "conv.safetensors", executor=pool, nd_policy="flatten")
        assert skipped.matrices == () and skipped.skipped[0].code == "ndim"
        assert flat.matrices[0].shape == (8, 27)
        assert flat.run.nd_policy == "flatten"


class TestAnalyzeTensor:
    def test_bad_data_becomes_a_skip_with_its_reason(self, tmp_path):
        bad = np.ones((4, 4), np.float32)
        bad[1, 2] = np.nan
        save_safetensors(tmp_path / "m.safetensors", {"a.weight": bad, "b.weight": np.eye(4)})
        report = analyze(tmp_path / "m.safetensors", executor=ThreadPoolExecutor(1))
        assert [m.name for m in report.matrices] == ["b.weight"]
        (failed,) = report.skipped
        assert failed.code == "error" and failed.name == "a.weight"
        assert failed.reason.startswith("NonFiniteError: ")
        assert not report.partial

    def test_returns_a_skip_when_the_file_is_gone(self, tmp_path):
        save_safetensors(tmp_path / "m.safetensors", {"w": np.eye(3)})
        (info,) = list_tensors(tmp_path / "m.safetensors")
        (tmp_path / "m.safetensors").unlink()
        outcome = analyze_tensor(info)
        assert isinstance(outcome, SkippedTensor)
        assert outcome.reason.startswith("MissingFileError")

    def test_result_in_a_fresh_call(self, tmp_path):
        save_safetensors(tmp_path / "m.safetensors", {"w": np.diag([3.0, 4.0])})
        (info,) = list_tensors(tmp_path / "m.safetensors")
        outcome = analyze_tensor(info, options=AnalysisOptions(ranks=[1], energies=[0.5]))
        assert isinstance(outcome, MatrixResult)
        assert outcome.rank_errors == ((1, 0.6),) and outcome.energy_ranks == ((0.5, 1),)
        assert outcome.seconds > 0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"info": "w"}, "info must be a TensorInfo; got str"),
            ({"nd_policy": "crop"}, "nd_policy must be one of 'skip', 'flatten'; got 'crop'"),
            ({"options": (8,)}, "options must be an AnalysisOptions; got tuple"),
        ],
    )
    def test_rejects(self, kwargs, message):
        info = TensorInfo("w", (2, 2), "float32", "/nowhere.safetensors", 16, "safetensors")
        args = {"info": info, **kwargs}
        with pytest.raises(InputError, match=message):
            analyze_tensor(args.pop("info"), **args)


class TestLayerNames:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            (
                "encoder.layer.3.attention.self.query.weight",
                ("encoder.layer", 3, "attention.self.query"),
            ),
            ("model.layers.0.self_attn.q_proj.weight", ("model.layers", 0, "self_attn.q_proj")),
            ("transformer.h.11.mlp.c_fc.weight", ("transformer.h", 11, "mlp.c_fc")),
            ("blocks.2.attn", ("blocks", 2, "attn")),
            (
                "encoder.block.0.layer.1.DenseReluDense.wi.weight",
                ("encoder.block", 0, "layer.1.DenseReluDense.wi"),
            ),
        ],
    )
    def test_parse(self, name, expected):
        parsed = parse_layer_name(name)
        assert parsed is not None
        assert (parsed.stack, parsed.layer, parsed.module) == expected

    @pytest.mark.parametrize(
        "name", ["embeddings.word_embeddings.weight", "3.weight", "lm_head.weight", "a.3"]
    )
    def test_no_layer(self, name):
        assert parse_layer_name(name) is None

    def test_parse_rejects_non_strings(self):
        with pytest.raises(InputError, match="name must be a str; got int"):
            parse_layer_name(3)  # type: ignore[arg-type]

    def test_grid(self):
        opts = AnalysisOptions(ranks=[], energies=[0.5])
        results = [
            analyze_matrix(np.diag(np.ones(k)), name=name, options=opts)
            for k, name in [
                (2, "enc.layer.0.q.weight"),
                (3, "enc.layer.0.k.weight"),
                (4, "enc.layer.1.q.weight"),
                (5, "dec.layer.0.q.weight"),
                (6, "embed.weight"),
            ]
        ]
        grid = layer_grid(results, energy=0.5)
        assert grid.rows == ("enc.layer.0", "enc.layer.1", "dec.layer.0")
        assert grid.modules == ("q", "k")
        np.testing.assert_array_equal(grid.ranks, [[1, 2], [2, np.nan], [3, np.nan]])
        np.testing.assert_array_equal(grid.full_ranks, [[2, 3], [4, np.nan], [5, np.nan]])
        assert grid.left_out == ("embed.weight",)
        one_stack = layer_grid(results[:3], energy=0.5)
        assert one_stack.rows == ("0", "1")

    def test_grid_needs_layered_names(self):
        res = analyze_matrix(np.eye(2), name="embed.weight")
        with pytest.raises(InputError, match="none of the 1 names has one"):
            layer_grid([res], energy=0.9)
