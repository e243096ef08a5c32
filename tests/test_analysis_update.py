"""Update analyses (issue 13 §1): ΔW = W_tuned - W_base over two checkpoints.

Every number is checked against an independent reference: a planted update
ΔW = U diag(s) Vᵀ of known rank and spectrum, NumPy's dense SVD of the float64 arrays, and
:mod:`lowrank.lora.similarity` called on the dense arrays.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from scipy.linalg import hadamard

from lowrank.analysis import (
    AnalysisOptions,
    MatrixResult,
    Report,
    UpdateResult,
    analyze_update,
    analyze_update_matrix,
    local_executor,
    start_update_analysis,
)
from lowrank.errors import InputError, MissingFileError, ShapeError
from lowrank.io import save_safetensors
from lowrank.lora import amplification_factor, subspace_similarity

RANKS = (1, 2, 3, 5, 100)  # 100 > min(shape): evaluated at min(shape)
ENERGIES = (0.5, 0.9, 0.99)

# The float64 reference and the analysis both work in float64 on the same stored values;
# their singular values go through different LAPACK calls (gesdd vs the analysis's SVD), so
# they agree to a few ulps of sigma_1 times the size: 1e-12 relative is ample.
RTOL = 1e-12


def _orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def _planted(rng: np.random.Generator, shape=(24, 16), s=(5.0, 2.0, 0.5)):
    """W (float64, generic) and ΔW = U diag(s) Vᵀ of rank len(s)."""
    W = rng.standard_normal(shape)
    U = _orthonormal(rng, shape[0], len(s))
    V = _orthonormal(rng, shape[1], len(s))
    return W, (U * np.asarray(s)) @ V.T


def _reference_errors(sv: np.ndarray, ranks) -> list[tuple[int, float]]:
    total = np.sqrt(np.sum(sv**2))
    return [(r, float(np.sqrt(np.sum(sv[min(r, sv.size) :] ** 2)) / total)) for r in ranks]


def _check_against_dense(res: UpdateResult, W_tuned: np.ndarray, W_base: np.ndarray) -> None:
    """Every field of ``res`` against a direct float64 computation on the stored values."""
    t = np.asarray(W_tuned, dtype=np.float64)
    b = np.asarray(W_base, dtype=np.float64)
    delta = t - b
    sv = np.linalg.svd(delta, compute_uv=False)
    fro = np.linalg.norm(delta)
    assert res.compute_dtype == "float64"
    np.testing.assert_allclose(res.singular_values, sv, rtol=0, atol=RTOL * sv[0])
    np.testing.assert_allclose(res.norm_fro, fro, rtol=RTOL)
    np.testing.assert_allclose(res.spectral_norm, sv[0], rtol=RTOL)
    np.testing.assert_allclose(res.stable_rank, fro**2 / sv[0] ** 2, rtol=RTOL)
    np.testing.assert_allclose(res.base_norm_fro, np.linalg.norm(b), rtol=RTOL)
    # W's spectrum against NumPy's float64 values-only SVD of the same float64 matrix: both
    # backward stable, so they agree to a small multiple of eps * sigma_1(W) (RTOL, above).
    sb_ref = np.linalg.svd(b, compute_uv=False)
    assert res.base_singular_values is not None
    assert res.base_singular_values.dtype == np.float64
    assert res.base_singular_values.shape == (min(b.shape),)
    assert (np.diff(res.base_singular_values) <= 0).all()  # descending
    np.testing.assert_allclose(res.base_singular_values, sb_ref, rtol=0, atol=RTOL * sb_ref[0])
    np.testing.assert_allclose(res.relative_size, fro / np.linalg.norm(b), rtol=RTOL)
    for (r, err), (r_ref, err_ref) in zip(
        res.rank_errors, _reference_errors(sv, [r for r, _ in res.rank_errors]), strict=True
    ):
        assert r == r_ref
        # An error is a tail of the spectrum: absolute tolerance relative to sigma_1/||ΔW||.
        assert abs(err - err_ref) <= 1e-10, (r, err, err_ref)
    cumulative = np.cumsum(sv**2) / fro**2
    for e, r in res.energy_ranks:
        assert r == int(np.searchsorted(cumulative, e * (1 - 1e-12)) + 1), (e, r)
    # The LoRA paper's quantities, from lowrank.lora.similarity on the dense arrays.
    k = min(delta.shape)
    Ud, _, Vhd = np.linalg.svd(delta)
    Ub, _, Vhb = np.linalg.svd(b)
    sb = np.linalg.svd(b, compute_uv=False)
    for (r, left), (_, right), (_, amp) in zip(
        res.overlap_left, res.overlap_right, res.amplification, strict=True
    ):
        rr = min(r, k)
        sd = np.linalg.svd(delta, compute_uv=False)
        if sd[rr - 1] <= 16 * np.finfo(np.float64).eps * np.sqrt(max(delta.shape)) * sd[0]:
            # ΔW has no top-r subspace (r past its rank): undefined, both views
            assert np.isnan(amp) and np.isnan(left) and np.isnan(right), (r, amp, left, right)
            continue
        ref_amp = amplification_factor(b, delta, rank=rr).factor
        np.testing.assert_allclose(amp, ref_amp, rtol=1e-9)
        # The top-r singular subspaces are unique only with a gap after sigma_r (of ΔW and
        # of W): elsewhere (e.g. r past the rank of a planted ΔW) any basis of the tie is
        # right, and the overlaps are not comparable between two SVD codes.
        if rr == k or not (
            sv[rr - 1] - sv[rr] > 1e-6 * sv[0] and sb[rr - 1] - sb[rr] > 1e-6 * sb[0]
        ):
            continue
        # phi from the grid of singular vectors of the dense matrices (the paper's eq. 4),
        # and by hand from NumPy's singular vectors.
        ref_left = subspace_similarity(delta.T, b.T, rr, rr, side="right")
        ref_right = subspace_similarity(delta, b, rr, rr, side="right")
        by_hand_left = np.linalg.norm(Ud[:, :rr].T @ Ub[:, :rr]) ** 2 / rr
        by_hand_right = np.linalg.norm(Vhd[:rr] @ Vhb[:rr].T) ** 2 / rr
        for got, ref, hand in ((left, ref_left, by_hand_left), (right, ref_right, by_hand_right)):
            assert abs(got - ref) <= 1e-9, (r, got, ref)
            assert abs(got - hand) <= 1e-9, (r, got, hand)


# --------------------------------------------------------------------------------------
# One pair of arrays
# --------------------------------------------------------------------------------------


class TestAnalyzeUpdateMatrix:
    def test_planted_update_float64(self):
        rng = np.random.default_rng(1)
        s = np.array([5.0, 2.0, 0.5])
        W, delta = _planted(rng, s=s)
        res = analyze_update_matrix(W + delta, W, options=AnalysisOptions(RANKS, ENERGIES))
        _check_against_dense(res, W + delta, W)
        # The planted spectrum: rank 3, and the error at r is the tail of s (what extract
        # reaches), up to the rounding of W + ΔW (a few ulps of |W|).
        np.testing.assert_allclose(res.singular_values[:3], s, rtol=1e-13)
        assert res.singular_values[3] <= 1e-13
        for r, err in res.rank_errors:
            tail = np.sqrt(np.sum(s[min(r, 3) :] ** 2)) / np.linalg.norm(s)
            assert abs(err - tail) <= 1e-13, (r, err, tail)

    def test_update_in_the_top_subspace_of_W(self):
        # ΔW inside W's top-2 singular subspaces: overlap 1 at r = 2; the amplification
        # factor is ||ΔW|| / ||diag(top-2 of W)|| computed by hand.
        W = np.diag([10.0, 6.0, 1.0, 0.5])
        delta = np.diag([0.3, 0.2, 0.0, 0.0])
        res = analyze_update_matrix(W + delta, W, options=AnalysisOptions(ranks=[2]))
        assert res.overlap_left == ((2, pytest.approx(1.0, abs=1e-12)),)
        assert res.overlap_right == ((2, pytest.approx(1.0, abs=1e-12)),)
        expected = np.hypot(0.3, 0.2) / np.hypot(10.0, 6.0)
        assert res.amplification[0][1] == pytest.approx(expected, rel=1e-12)

    def test_update_orthogonal_to_W(self):
        W = np.diag([10.0, 6.0, 0.0, 0.0])
        delta = np.diag([0.0, 0.0, 2.0, 1.0])
        res = analyze_update_matrix(W + delta, W, options=AnalysisOptions(ranks=[2]))
        assert res.overlap_left[0][1] == pytest.approx(0.0, abs=1e-12)
        assert res.amplification == ((2, float("inf")),)

    def test_rank_past_an_exactly_low_rank_update(self):
        # sigma_2 of ΔW is exactly 0: ΔW has no top-2 subspace (any basis of the null
        # direction would do), so the factor and the overlaps at r = 2 are undefined.
        W = np.diag([10.0, 6.0, 1.0, 0.5])
        delta = np.diag([0.0, 0.0, 2.0, 0.0])
        res = analyze_update_matrix(W + delta, W, options=AnalysisOptions(ranks=[1, 2]))
        assert res.singular_values[1] == 0.0
        assert res.amplification[0] == (1, pytest.approx(2.0 / 1.0, rel=1e-12))
        assert res.amplification[1][0] == 2 and np.isnan(res.amplification[1][1])
        assert np.isnan(res.overlap_left[1][1]) and np.isnan(res.overlap_right[1][1])

    def test_shape_mismatch_raises(self):
        with pytest.raises(ShapeError, match=r"tuned and base must have the same shape"):
            analyze_update_matrix(np.ones((3, 2)), np.ones((2, 3)))

    def test_result_is_a_matrix_result_of_delta(self):
        rng = np.random.default_rng(2)
        W, delta = _planted(rng)
        res = analyze_update_matrix(W + delta, W, name="x", file="t", base_file="b")
        assert isinstance(res, MatrixResult)
        assert (res.name, res.file, res.base_file, res.dtype, res.base_dtype) == (
            "x",
            "t",
            "b",
            "float64",
            "float64",
        )
        assert res == UpdateResult.from_dict(json.loads(json.dumps(res.to_dict())))
        # W's singular values are in the JSON and read back bit for bit.
        again = UpdateResult.from_dict(json.loads(json.dumps(res.to_dict())))
        assert again.base_singular_values is not None and res.base_singular_values is not None
        np.testing.assert_array_equal(again.base_singular_values, res.base_singular_values)
        # An update report written before the field existed still reads, with None; it is
        # then not equal to one that has the values.
        older = res.to_dict()
        del older["base_singular_values"]
        old = UpdateResult.from_dict(older)
        assert old.base_singular_values is None
        assert old != res and res != old
        # A plain MatrixResult with the same numbers is not equal to it.
        plain = MatrixResult.from_dict(res.to_dict())
        assert plain != res and res != plain


# --------------------------------------------------------------------------------------
# Two checkpoints
# --------------------------------------------------------------------------------------


def _hadamard_pair():
    """A bfloat16-exact pair: W with small integer entries and a planted ΔW = U diag(s) Vᵀ
    whose U, V are Hadamard columns / 4 and s powers of two, so every entry of W and of
    W + ΔW is a multiple of 1/8 below 8 in magnitude (at most 7 significant bits: exact in
    bfloat16's 8)."""
    rng = np.random.default_rng(3)
    H = hadamard(16) / 4.0
    s = np.array([8.0, 4.0, 2.0])
    U, V = H[:, [1, 2, 3]], H[:, [4, 5, 6]]
    delta = (U * s) @ V.T
    W = rng.integers(-4, 5, size=(16, 16)).astype(np.float64)
    assert np.all(np.abs(W + delta) < 8) and np.all((W + delta) * 8 == np.round((W + delta) * 8))
    return W, delta, s


@pytest.fixture
def checkpoints(tmp_path: Path):
    """base/tuned float32 safetensors with a planted update, an unchanged matrix, a name
    only in base, one only in tuned, a shape mismatch, and a bfloat16 pair."""
    rng = np.random.default_rng(4)
    W, delta = _planted(rng)
    Wh, delta_h, s_h = _hadamard_pair()
    bf16 = ml_dtypes.bfloat16
    base = {
        "layers.0.q.weight": W.astype(np.float32),
        "layers.0.k.weight": W.astype(np.float32),
        "layers.0.bf.weight": Wh.astype(bf16),
        "layers.0.base_only.weight": W.astype(np.float32),
        "layers.0.mismatch.weight": W.astype(np.float32),
        "layers.0.bias": np.zeros(4, np.float32),
    }
    tuned = {
        "layers.0.q.weight": (W + delta).astype(np.float32),
        "layers.0.k.weight": W.astype(np.float32),
        "layers.0.bf.weight": (Wh + delta_h).astype(bf16),
        "layers.0.tuned_only.weight": W.astype(np.float32),
        "layers.0.mismatch.weight": W[:, :8].astype(np.float32),
        "layers.0.bias": np.ones(4, np.float32),
    }
    save_safetensors(tmp_path / "base.safetensors", base)
    save_safetensors(tmp_path / "tuned.safetensors", tuned)
    return tmp_path, base, tuned, s_h


def _run(root: Path, **options):
    with ThreadPoolExecutor(2) as pool:
        return analyze_update(
            root / "tuned.safetensors",
            root / "base.safetensors",
            ranks=RANKS,
            energies=ENERGIES,
            executor=pool,
            **options,
        )


class TestAnalyzeUpdate:
    def test_numbers_equal_direct_float64(self, checkpoints):
        root, base, tuned, _ = checkpoints
        report = _run(root)
        assert report.run.base == str(root / "base.safetensors")
        assert sorted(m.name for m in report.matrices) == [
            "layers.0.bf.weight",
            "layers.0.q.weight",
        ]
        for m in report.matrices:
            assert isinstance(m, UpdateResult)
            _check_against_dense(m, tuned[m.name], base[m.name])

    def test_bfloat16_pair_recovers_the_planted_spectrum(self, checkpoints):
        root, _, _, s_h = checkpoints
        m = _run(root).result("layers.0.bf.weight")
        assert (m.dtype, m.base_dtype, m.compute_dtype) == ("bfloat16", "bfloat16", "float64")
        # The stored values hold ΔW exactly, so its spectrum is s to float64 rounding.
        np.testing.assert_allclose(m.singular_values[:3], s_h, rtol=1e-13)
        assert m.singular_values[3] <= 1e-13 * s_h[0]
        for r, err in m.rank_errors:
            tail = np.sqrt(np.sum(s_h[min(r, 3) :] ** 2)) / np.linalg.norm(s_h)
            assert abs(err - tail) <= 1e-13, (r, err, tail)
        assert m.rank_for_energy(0.5) == 1 and m.rank_for_energy(0.99) == 3

    def test_unpaired_and_mismatched_are_listed(self, checkpoints):
        root, *_ = checkpoints
        report = _run(root)
        codes = {s.name: (s.code, s.reason) for s in report.skipped}
        assert codes["layers.0.tuned_only.weight"] == (
            "unpaired",
            "no matrix of this name in the base checkpoint",
        )
        assert codes["layers.0.base_only.weight"][0] == "unpaired"
        assert "base only" in codes["layers.0.base_only.weight"][1]
        assert codes["layers.0.mismatch.weight"] == (
            "shape",
            "shape (24, 8) in tuned but (24, 16) in base",
        )
        assert codes["layers.0.k.weight"][0] == "unchanged"
        assert codes["layers.0.bias"][0] == "ndim"
        assert not report.partial

    def test_reports_round_trip_and_carry_the_new_columns(self, checkpoints, tmp_path):
        root, *_ = checkpoints
        report = _run(root)
        report.write_json(tmp_path / "r.json")
        again = Report.read_json(tmp_path / "r.json")
        assert again == report
        assert isinstance(again.matrices[0], UpdateResult)
        header, *rows = report.to_csv().splitlines()
        columns = header.split(",")
        for name in (
            "relative_size",
            "base_norm_fro",
            "overlap_left_rank_3",
            "overlap_right_rank_3",
            "amplification_rank_3",
            "rel_error_rank_3",
            "base_file",
        ):
            assert name in columns
        (row,) = (r for r in rows if r.startswith("layers.0.q.weight,"))
        q = dict(zip(columns, row.split(","), strict=True))
        m = report.result("layers.0.q.weight")
        assert float(q["relative_size"]) == m.relative_size
        assert float(q["amplification_rank_2"]) == m.amplification[1][1]
        md = report.to_markdown()
        assert "update ΔW" in md and "amp@3" in md and "layers.0.mismatch.weight" in md
        assert "ovlU@3" in report.to_text()

    def test_plain_report_json_has_no_base(self, checkpoints):
        from lowrank.analysis import analyze

        root, *_ = checkpoints
        report = analyze(root / "base.safetensors", ranks=[1])
        assert "base" not in report.to_dict()["run"]
        assert "relative_size" not in report.to_csv()

    def test_spectra_npz_holds_both_spectra(self, checkpoints, tmp_path):
        from dataclasses import replace

        root, *_ = checkpoints
        report = _run(root)
        report.write_spectra(tmp_path / "s.npz")
        with np.load(tmp_path / "s.npz") as archive:
            names = [m.name for m in report.matrices]
            assert sorted(archive.files) == sorted([*names, *(f"base:{n}" for n in names)])
            for m in report.matrices:
                np.testing.assert_array_equal(archive[m.name], m.singular_values)
                np.testing.assert_array_equal(archive[f"base:{m.name}"], m.base_singular_values)
        # An older report without the field writes the ΔW spectra only.
        older = replace(
            report, matrices=tuple(replace(m, base_singular_values=None) for m in report.matrices)
        )
        older.write_spectra(tmp_path / "old.npz")
        with np.load(tmp_path / "old.npz") as archive:
            assert sorted(archive.files) == sorted(m.name for m in report.matrices)
        # A tensor named like another's base key is refused before anything is written.
        first = report.matrices[0]
        clash = replace(report.matrices[1], name=f"base:{first.name}")
        bad = replace(report, matrices=(first, clash))
        with pytest.raises(InputError, match=r"the \.npz key 'base:layers.0.*' of the base spec"):
            bad.write_spectra(tmp_path / "bad.npz")
        assert not (tmp_path / "bad.npz").exists()

    def test_infinite_amplification_round_trips_through_json(self, tmp_path):
        W = np.diag([10.0, 6.0, 0.0, 0.0]).astype(np.float32)
        save_safetensors(tmp_path / "b.safetensors", {"w": W})
        save_safetensors(tmp_path / "t.safetensors", {"w": W + np.diag([0, 0, 2, 1])})
        report = analyze_update(tmp_path / "t.safetensors", tmp_path / "b.safetensors", ranks=[1])
        assert report.matrices[0].amplification == ((1, float("inf")),)
        assert Report.from_json(report.to_json()) == report

    def test_process_executor_gives_the_numbers_of_threads(self, checkpoints):
        root, *_ = checkpoints
        threads = _run(root)
        with local_executor(workers=2, threads_per_worker=1) as pool:
            processes = analyze_update(
                root / "tuned.safetensors",
                root / "base.safetensors",
                ranks=RANKS,
                energies=ENERGIES,
                executor=pool,
            )
        assert len(processes.matrices) == len(threads.matrices) == 2
        for a, b in zip(processes.matrices, threads.matrices, strict=True):
            # Same code, same BLAS thread count (1): the same numbers bit for bit; only
            # the timings differ.
            assert a == type(b)(**{**b.__dict__, "seconds": a.seconds})
        assert processes.skipped == threads.skipped

    def test_start_update_analysis_streams_one_task_per_pair(self, checkpoints):
        root, *_ = checkpoints
        with (
            ThreadPoolExecutor(1) as pool,
            start_update_analysis(
                root / "tuned.safetensors", root / "base.safetensors", ranks=[1], executor=pool
            ) as run,
        ):
            assert run.total == 3  # q, k (unchanged) and bf: the pairs with equal shapes
            outcomes = sorted(o.name for o in run)
        assert outcomes == ["layers.0.bf.weight", "layers.0.k.weight", "layers.0.q.weight"]

    def test_include_selects_in_both(self, checkpoints):
        root, *_ = checkpoints
        report = _run(root, include="*q.weight")
        assert [m.name for m in report.matrices] == ["layers.0.q.weight"]
        assert {s.code for s in report.skipped} == {"name"}

    @pytest.mark.parametrize("which", ["tuned", "base"])
    def test_missing_checkpoint(self, checkpoints, which):
        root, *_ = checkpoints
        paths = {"tuned": root / "tuned.safetensors", "base": root / "base.safetensors"}
        paths[which] = root / "nope.safetensors"
        with pytest.raises(MissingFileError, match=rf"^{which} must be an existing file"):
            analyze_update(paths["tuned"], paths["base"])

    def test_a_failing_pair_is_an_error_entry(self, tmp_path):
        W = np.eye(3, dtype=np.float32)
        save_safetensors(tmp_path / "b.safetensors", {"w": W, "v": W})
        save_safetensors(tmp_path / "t.safetensors", {"w": W * np.nan, "v": 2 * W})
        report = analyze_update(tmp_path / "t.safetensors", tmp_path / "b.safetensors", ranks=[1])
        assert [m.name for m in report.matrices] == ["v"]
        (failed,) = report.skipped
        assert (failed.name, failed.code) == ("w", "error")
        assert "NonFiniteError" in failed.reason


def test_dask_cluster_gives_the_numbers_of_threads(checkpoints):
    """One task per pair on a real dask.distributed LocalCluster (2 worker processes, one
    BLAS thread each): the same numbers as a thread pool on one BLAS thread."""
    from dataclasses import replace

    distributed = pytest.importorskip("distributed")
    from threadpoolctl import threadpool_limits

    from lowrank.analysis import dask_executor

    root, *_ = checkpoints
    with threadpool_limits(1):
        threads = _run(root)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        dask_executor(cluster.scheduler_address) as executor,
    ):
        dask = analyze_update(
            root / "tuned.safetensors",
            root / "base.safetensors",
            ranks=RANKS,
            energies=ENERGIES,
            executor=executor,
        )
    assert dask.run.executor == f"dask scheduler {cluster.scheduler_address}"
    assert [replace(m, seconds=0.0) for m in dask.matrices] == [
        replace(m, seconds=0.0) for m in threads.matrices
    ]
    assert dask.skipped == threads.skipped


def test_memory_follows_the_largest_pair_not_the_checkpoint(tmp_path):
    """Peak traced memory (NumPy reports its buffers to tracemalloc) of a run over 16 pairs
    is that of a run over 4: each task holds one pair, the caller none. Measured: about 9
    float64 copies of one matrix either way, against 32 for the checkpoint's pairs."""
    import tracemalloc

    rng = np.random.default_rng(5)
    shape = (300, 200)
    unit = shape[0] * shape[1] * 8  # one matrix in float64
    base = {f"l{i}.weight": rng.standard_normal(shape).astype(np.float32) for i in range(16)}
    tuned = {k: v + np.float32(0.01) * v[::-1] for k, v in base.items()}
    save_safetensors(tmp_path / "b.safetensors", base)
    save_safetensors(tmp_path / "t.safetensors", tuned)
    del base, tuned

    def peak(count: int) -> float:
        with ThreadPoolExecutor(1) as pool:
            tracemalloc.start()
            try:
                report = analyze_update(
                    tmp_path / "t.safetensors",
                    tmp_path / "b.safetensors",
                    include=[f"l{i}.weight" for i in range(count)],
                    executor=pool,
                )
                _, top = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert len(report.matrices) == count
        return top / unit

    peak(1)  # warm-up: first-call caches are not per pair
    few, many = peak(4), peak(16)
    assert many < 1.5 * few, (few, many)
    assert many < 16, many  # well below the 32 float64 matrices of the 16 pairs


# --------------------------------------------------------------------------------------
# Overlaps with a base that has no top-r singular subspace
# --------------------------------------------------------------------------------------


class TestUndefinedOverlaps:
    """An all-zero W (or W at a rank above its own) has no top-r singular subspace: the
    overlaps there are undefined (NaN, JSON null, empty CSV cell, "–" in the tables), not
    numbers from LAPACK's arbitrary basis. The amplification stays defined."""

    @pytest.fixture
    def zero_base(self, tmp_path):
        rng = np.random.default_rng(0)
        tuned = (rng.standard_normal((16, 2)) @ rng.standard_normal((2, 12))).astype(np.float32)
        save_safetensors(tmp_path / "b.safetensors", {"layers.0.q.weight": np.zeros((16, 12))})
        save_safetensors(tmp_path / "t.safetensors", {"layers.0.q.weight": tuned})
        return tmp_path / "t.safetensors", tmp_path / "b.safetensors"

    def test_zero_base_gives_nan_overlaps(self):
        rng = np.random.default_rng(0)
        delta = rng.standard_normal((16, 2)) @ rng.standard_normal((2, 12))
        res = analyze_update_matrix(
            delta, np.zeros((16, 12)), options=AnalysisOptions(ranks=[1, 2])
        )
        assert [r for r, _ in res.overlap_left] == [1, 2]
        assert all(np.isnan(v) for _, v in res.overlap_left + res.overlap_right)
        assert res.amplification == ((1, float("inf")), (2, float("inf")))

    def test_ranks_above_the_rank_of_the_base(self):
        # W of rank 2 (exactly, in float64 its sigma_3.. are rounding noise ~1e-16 sigma_1):
        # rank 1 and 2 overlaps are numbers, rank 3 is undefined.
        rng = np.random.default_rng(1)
        W = _orthonormal(rng, 16, 2) @ np.diag([3.0, 1.0]) @ _orthonormal(rng, 12, 2).T
        delta = rng.standard_normal((16, 12))
        res = analyze_update_matrix(W + delta, W, options=AnalysisOptions(ranks=[1, 2, 3]))
        sb = res.base_singular_values
        assert sb is not None and 0 < sb[2] <= 16 * np.finfo(float).eps * np.sqrt(16) * sb[0]
        left = dict(res.overlap_left)
        right = dict(res.overlap_right)
        assert 0 <= left[1] <= 1 and 0 <= right[2] <= 1
        assert np.isnan(left[3]) and np.isnan(right[3])

    def test_reports_write_undefined(self, zero_base, tmp_path):
        tuned, base = zero_base
        report = analyze_update(tuned, base, ranks=[1, 2])
        (m,) = report.matrices
        assert all(np.isnan(v) for _, v in m.overlap_left + m.overlap_right)
        # JSON: null, and it reads back equal.
        report.write_json(tmp_path / "r.json")
        data = json.loads((tmp_path / "r.json").read_text())["matrices"][0]
        assert data["overlap_left"] == [[1, None], [2, None]]
        assert data["overlap_right"] == [[1, None], [2, None]]
        assert data["amplification"] == [[1, "inf"], [2, "inf"]]
        again = Report.read_json(tmp_path / "r.json")
        assert again == report
        assert np.isnan(again.matrices[0].overlap_left[0][1])
        # CSV: empty cells.
        header, row = report.to_csv().splitlines()
        cells = dict(zip(header.split(","), row.split(","), strict=True))
        for side in ("left", "right"):
            for r in (1, 2):
                assert cells[f"overlap_{side}_rank_{r}"] == ""
        assert cells["amplification_rank_1"] == "inf"
        # Markdown and the printed table: "–", as for a missing alpha.
        md_row = next(x for x in report.to_markdown().splitlines() if "layers.0.q.weight" in x)
        cols = [c.strip() for c in md_row.strip("|").split("|")]
        md_header = next(x for x in report.to_markdown().splitlines() if "ovlU@1" in x)
        names = [c.strip() for c in md_header.strip("|").split("|")]
        shown = dict(zip(names, cols, strict=True))
        assert [shown[k] for k in ("ovlU@1", "ovlU@2", "ovlV@1", "ovlV@2")] == ["–"] * 4
        assert shown["amp@1"] == "inf"
        text = report.to_text()
        line = next(x for x in text.splitlines() if x.startswith("layers.0.q.weight"))
        assert line.split().count("–") >= 4
        assert "undefined" in text and "undefined" in report.to_markdown()

    def test_command(self, zero_base, tmp_path, capsys):
        from lowrank.cli import main

        tuned, base = zero_base
        out = tmp_path / "u.json"
        args = ["analyze", str(tuned), "--base", str(base), "--ranks", "1,2"]
        assert main([*args, "--json", str(out), "--no-progress"]) == 0
        m = json.loads(out.read_text())["matrices"][0]
        assert m["overlap_left"] == [[1, None], [2, None]]
        capsys.readouterr()
        # The overlap figure of that report has nothing defined to draw: one line, exit 2.
        pytest.importorskip("matplotlib")
        target = tmp_path / "o.png"
        assert main(["plot", str(out), "--kind", "overlap", "-o", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "none of the 1 updates has a defined left overlap" in err
