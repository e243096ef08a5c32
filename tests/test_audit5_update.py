"""Audit 5 of the update view and the LoRA paper's §7 measures, one class per defect.

References are independent of the code under test: float64 ``numpy.linalg.svd``,
``scipy.linalg.subspace_angles``, orthogonal transforms from ``scipy.stats.ortho_group``
(a quantity of the matrices themselves must not change under them) and closed forms.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.stats import ortho_group

import lowrank.analysis._update as update_module
from lowrank.analysis import AnalysisOptions, Report, analyze_update, analyze_update_matrix
from lowrank.errors import DTypeError, NonFiniteError, RankError
from lowrank.io import save_safetensors
from lowrank.lora import (
    amplification_factor,
    factored_svd,
    pissa_to_lora,
    subspace_similarity,
    subspace_similarity_grid,
)

EPS = np.finfo(np.float64).eps

# Two float64 computations of the same well-separated singular subspaces (different LAPACK
# drivers, or the same vectors through a QR) agree to a few ulps times the condition of the
# quantity; with the gaps of >= 0.5 sigma_1 used below 1e-10 relative is ample.
RTOL = 1e-10


def _orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((n, k)))[0]


def _reference_amplification(W: np.ndarray, D: np.ndarray, r: int) -> float:
    """||D||_F / ||U_r^T W V_r||_F from NumPy's float64 SVD of D."""
    U, _, Vh = np.linalg.svd(D)
    return float(np.linalg.norm(D) / np.linalg.norm(U[:, :r].T @ W @ Vh[:r].T))


def _reference_overlap(X: np.ndarray, Y: np.ndarray, r: int, side: str) -> float:
    """||U_r(X)^T U_r(Y)||_F^2 / r: mean cos^2 of the principal angles (SciPy)."""
    if side == "left":
        a, b = np.linalg.svd(X)[0][:, :r], np.linalg.svd(Y)[0][:, :r]
    else:
        a, b = np.linalg.svd(X)[2][:r].T, np.linalg.svd(Y)[2][:r].T
    return float(np.mean(np.cos(subspace_angles(a, b)) ** 2))


# -- 1. amplification_factor above the numerical rank of ΔW ------------------------------


class TestAmplificationAboveRank:
    def setup_method(self):
        rng = np.random.default_rng(5)
        self.W = rng.standard_normal((8, 6))
        self.u, self.v = rng.standard_normal(8), rng.standard_normal(6)
        self.D1 = np.outer(self.u, self.v)  # rank 1
        self.rng = rng

    def test_dense_rank_above_rank_of_update_is_refused(self):
        with pytest.raises(RankError, match=r"delta_W has numerical rank 1 < rank = 2"):
            amplification_factor(self.W, self.D1, rank=2)

    def test_dense_float32_uses_float32_rounding_level(self):
        # A float32 SVD leaves sigma_2 ~ eps32 sigma_1 of a rank-1 matrix, far above the
        # float64 level: the level is that of the dtype the SVD ran in.
        D = self.D1.astype(np.float32)
        with pytest.raises(RankError, match="numerical rank 1 < rank = 2"):
            amplification_factor(self.W.astype(np.float32), D, rank=2)

    def test_factored_with_zero_columns_is_refused(self):
        B = np.c_[self.u, np.zeros(8)]
        A = np.r_[self.v[None], self.rng.standard_normal((1, 6))]
        with pytest.raises(RankError, match="numerical rank 1 < rank = 2"):
            amplification_factor(self.W, (A, B), rank=2)
        B3 = np.c_[self.u, np.zeros((8, 2))]
        A3 = np.r_[self.v[None], self.rng.standard_normal((2, 6))]
        with pytest.raises(RankError, match="numerical rank 1 < rank = 3"):
            amplification_factor(self.W, (A3, B3))  # default rank: the inner dimension 3

    def test_defined_rank_is_invariant_and_matches_reference(self):
        """Regression guard (passes on HEAD): at rank <= rank(ΔW) the factor is a number,
        the same for (Q1 W Q2, Q1 ΔW Q2) and for the dense and factored forms."""
        ref = _reference_amplification(self.W, self.D1, 1)
        for seed in range(3):
            Q1 = ortho_group.rvs(8, random_state=10 + seed)
            Q2 = ortho_group.rvs(6, random_state=20 + seed)
            got = amplification_factor(Q1 @ self.W @ Q2, Q1 @ self.D1 @ Q2, rank=1).factor
            assert got == pytest.approx(ref, rel=RTOL)
        B = np.c_[self.u, np.zeros(8)]
        A = np.r_[self.v[None], self.rng.standard_normal((1, 6))]
        assert amplification_factor(self.W, (A, B), rank=1).factor == pytest.approx(ref, rel=RTOL)


# -- 2. subspace similarity above the numerical rank of a factor --------------------------


class TestSimilarityAboveRank:
    def setup_method(self):
        rng = np.random.default_rng(7)
        self.A1 = np.r_[rng.standard_normal((1, 10)), np.zeros((3, 10))]  # rank 1
        self.A2 = rng.standard_normal((4, 10))

    def test_grid_is_nan_beyond_the_numerical_rank(self):
        grid = subspace_similarity_grid(self.A1, self.A2)
        assert grid.shape == (4, 4)
        assert np.isnan(grid[1:]).all() and np.isfinite(grid[0]).all()
        # Row 1 against the definition: ||v1^T V2_j||^2 / 1 with NumPy's SVD.
        v1 = self.A1[0] / np.linalg.norm(self.A1[0])
        V2 = np.linalg.svd(self.A2)[2]
        ref = np.cumsum((V2[:4] @ v1) ** 2)
        np.testing.assert_allclose(grid[0], ref, rtol=0, atol=1e-12)
        # Transposed roles: the columns beyond X2's rank.
        assert np.isnan(subspace_similarity_grid(self.A2, self.A1)[:, 1:]).all()

    def test_zero_factors_have_an_all_nan_grid(self):
        Z = np.zeros((4, 10))
        assert np.isnan(subspace_similarity_grid(Z, self.A2)).all()
        assert np.isnan(subspace_similarity_grid(Z.T, Z.T, side="left")).all()

    def test_similarity_refuses_i_or_j_above_the_numerical_rank(self):
        with pytest.raises(RankError, match=r"X1 has numerical rank 1 < i = 4.*use i <= 1"):
            subspace_similarity(self.A1, self.A2, 4, 4)
        with pytest.raises(RankError, match=r"X2 has numerical rank 1 < j = 2"):
            subspace_similarity(self.A2, self.A1, 1, 2)
        Z = np.zeros((4, 10))
        with pytest.raises(RankError, match="X1 is zero"):
            subspace_similarity(Z, Z, 1, 1)
        # LoRA's initial lora_B = 0, left singular vectors.
        with pytest.raises(RankError, match="X1 is zero"):
            subspace_similarity(Z.T, Z.T, 1, 1, side="left")

    def test_defined_entries_are_rotation_invariant(self):
        """Regression guard (passes on HEAD): phi(1, j) is a property of the spans."""
        v1 = self.A1[0] / np.linalg.norm(self.A1[0])
        V2 = np.linalg.svd(self.A2)[2][:4].T
        ref = float(np.linalg.norm(v1 @ V2) ** 2)  # 0.4373169862 (the audit's value)
        for seed in range(3):
            Q = ortho_group.rvs(10, random_state=seed)
            got = subspace_similarity(self.A1 @ Q, self.A2 @ Q, 1, 4)
            assert got == pytest.approx(ref, abs=1e-12)


# -- 3. empty ranks -------------------------------------------------------------------------


class TestEmptyRanks:
    def setup_method(self):
        rng = np.random.default_rng(3)
        self.W = rng.standard_normal((7, 5))
        self.T = self.W + rng.standard_normal((7, 5))

    def test_matrix_gives_empty_tuples_and_the_spectra(self):
        res = analyze_update_matrix(self.T, self.W, options=AnalysisOptions(ranks=[]))
        assert res.overlap_left == res.overlap_right == res.amplification == ()
        assert res.rank_errors == ()
        assert res.base_singular_values is not None
        np.testing.assert_allclose(
            res.base_singular_values, np.linalg.svd(self.W, compute_uv=False), rtol=1e-12
        )
        np.testing.assert_allclose(
            res.singular_values, np.linalg.svd(self.T - self.W, compute_uv=False), rtol=1e-12
        )

    def test_files_give_a_result_not_an_aborted_run(self, tmp_path):
        save_safetensors(tmp_path / "b.safetensors", {"fc.weight": self.W})
        save_safetensors(tmp_path / "t.safetensors", {"fc.weight": self.T})
        report = analyze_update(tmp_path / "t.safetensors", tmp_path / "b.safetensors", ranks=[])
        (m,) = report.matrices
        assert report.skipped == ()
        assert m.overlap_left == m.overlap_right == m.amplification == ()
        assert m.norm_fro == pytest.approx(np.linalg.norm(self.T - self.W), rel=1e-12)


# -- 4. ties in sigma(W) and sigma(ΔW) --------------------------------------------------------


class TestTies:
    def test_orthogonal_base_masks_overlaps_not_amplification(self):
        # All sigma(W) = 1: every top-r subspace with r < n is any r-dimensional one.
        rng = np.random.default_rng(11)
        n = 8
        W = ortho_group.rvs(n, random_state=1)
        D = 0.1 * rng.standard_normal((n, 3)) @ rng.standard_normal((3, n))
        res = analyze_update_matrix(W + D, W, options=AnalysisOptions(ranks=[1, 2, 3]))
        assert all(np.isnan(v) for _, v in res.overlap_left + res.overlap_right)
        # ΔW's own subspaces are unique: the factor is defined (against NumPy's SVD of the
        # same float64 ΔW).
        delta = (W + D) - W
        for r, amp in res.amplification:
            assert amp == pytest.approx(_reference_amplification(W, delta, r), rel=RTOL)

    def test_partial_tie_in_base_masks_only_that_rank(self):
        rng = np.random.default_rng(12)
        m, n = 12, 9
        s = np.array([3.0, 2.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1])  # sigma_2 = sigma_3
        W = (_orthonormal(rng, m, n) * s) @ _orthonormal(rng, n, n).T
        D = rng.standard_normal((m, n))
        res = analyze_update_matrix(W + D, W, options=AnalysisOptions(ranks=[1, 2, 3]))
        left, right = dict(res.overlap_left), dict(res.overlap_right)
        assert np.isnan(left[2]) and np.isnan(right[2])
        delta = (W + D) - W
        for r in (1, 3):  # gaps 1.0 after sigma_1 and sigma_3: unique subspaces
            assert left[r] == pytest.approx(_reference_overlap(delta, W, r, "left"), rel=RTOL)
            assert right[r] == pytest.approx(_reference_overlap(delta, W, r, "right"), rel=RTOL)
        assert math.isfinite(dict(res.amplification)[2])  # ΔW generic: no tie there

    def test_tie_in_update_masks_overlaps_and_amplification(self):
        rng = np.random.default_rng(11)
        n = 8
        u, v = _orthonormal(rng, n, 2), _orthonormal(rng, n, 2)
        W = rng.standard_normal((n, n)) @ np.diag(np.linspace(3, 0.5, n))
        D = u @ v.T  # sigma_1 = sigma_2 = 1
        res = analyze_update_matrix(W + D, W, options=AnalysisOptions(ranks=[1, 2]))
        for field in ("overlap_left", "overlap_right", "amplification"):
            values = dict(getattr(res, field))
            assert np.isnan(values[1]), field
            assert math.isfinite(values[2]), field
        delta = (W + D) - W
        assert dict(res.amplification)[2] == pytest.approx(
            _reference_amplification(W, delta, 2), rel=RTOL
        )
        assert dict(res.overlap_left)[2] == pytest.approx(
            _reference_overlap(delta, W, 2, "left"), rel=RTOL
        )

    def test_reports_and_plot_handle_tie_masks(self, tmp_path):
        rng = np.random.default_rng(12)
        s = np.array([3.0, 2.0, 2.0, 1.0, 0.5, 0.4])
        W = (_orthonormal(rng, 8, 6) * s) @ _orthonormal(rng, 6, 6).T
        T = W + rng.standard_normal((8, 6))
        save_safetensors(tmp_path / "b.safetensors", {"layers.0.q.weight": W})
        save_safetensors(tmp_path / "t.safetensors", {"layers.0.q.weight": T})
        report = analyze_update(
            tmp_path / "t.safetensors", tmp_path / "b.safetensors", ranks=[1, 2]
        )
        (m,) = report.matrices
        assert np.isnan(dict(m.overlap_left)[2]) and math.isfinite(dict(m.overlap_left)[1])
        report.write_json(tmp_path / "r.json")
        data = json.loads((tmp_path / "r.json").read_text())["matrices"][0]
        assert data["overlap_left"][1] == [2, None]
        assert Report.read_json(tmp_path / "r.json") == report
        header, row = report.to_csv().splitlines()
        cells = dict(zip(header.split(","), row.split(","), strict=True))
        assert cells["overlap_left_rank_2"] == "" and cells["overlap_left_rank_1"] != ""
        assert "–" in report.to_markdown() and "–" in report.to_text()
        pytest.importorskip("matplotlib")
        from lowrank.plot import plot_overlap

        plot_overlap(report, rank=1)


# -- 5. complex input -----------------------------------------------------------------------


class TestComplexRefused:
    def test_refused_up_front_naming_the_argument(self, monkeypatch):
        rng = np.random.default_rng(4)
        W = rng.standard_normal((6, 5))
        T = W + 0.1 * rng.standard_normal((6, 5))

        def no_work(*args, **kwargs):
            raise AssertionError("the spectrum of ΔW was computed before the dtype check")

        monkeypatch.setattr(update_module, "_analyze", no_work)
        with pytest.raises(DTypeError, match="tuned must be real"):
            analyze_update_matrix(T + 1j * W, W.astype(complex))
        with pytest.raises(DTypeError, match="base must be real"):
            analyze_update_matrix(T, W + 0j)


# -- 6. extreme scales ---------------------------------------------------------------------


class TestOverflow:
    def setup_method(self):
        rng = np.random.default_rng(5)
        self.W = rng.standard_normal((8, 6))
        self.B = rng.standard_normal((8, 2))
        self.A = rng.standard_normal((2, 6))

    @pytest.mark.parametrize(("factor", "scaling"), [(1.0, 1e308), (1e155, 1.0), (1e160, 1.0)])
    def test_amplification_pair_product_overflow(self, factor, scaling):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(NonFiniteError, match=r"scaling \* lora_B @ lora_A overflows"):
                amplification_factor(self.W, (self.A * factor, self.B * factor), scaling=scaling)

    def test_factored_svd_product_overflow(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(NonFiniteError, match="overflows float64"):
                factored_svd(self.A * 1e160, self.B * 1e160)

    def test_pissa_conversion_overflow(self):
        with pytest.raises(NonFiniteError, match=r"initial_B @ initial_A\) overflows"):
            pissa_to_lora(self.A * 1e160, self.B * 1e160, self.A, 2 * self.B, alpha=2.0)

    def test_large_finite_product_still_computed(self):
        """Regression guard (passes on HEAD): 1e150 factors, product 1e300, is fine;
        the factor scales with ΔW (closed form: 1e300 times that of the unscaled pair)."""
        got = amplification_factor(self.W, (self.A * 1e150, self.B * 1e150)).factor
        ref = _reference_amplification(self.W, self.B @ self.A, 2) * 1e300
        assert got == pytest.approx(ref, rel=RTOL)

    def test_update_difference_overflow(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(
                NonFiniteError, match=r"q_proj.weight: tuned - base overflows float64"
            ):
                analyze_update_matrix(
                    np.full((3, 3), 1e308), np.full((3, 3), -1e308), name="q_proj.weight"
                )

    def test_update_difference_overflow_in_files_skips_the_pair(self, tmp_path: Path):
        save_safetensors(tmp_path / "b.safetensors", {"w": np.full((3, 3), -1e308)})
        save_safetensors(tmp_path / "t.safetensors", {"w": np.full((3, 3), 1e308)})
        report = analyze_update(tmp_path / "t.safetensors", tmp_path / "b.safetensors")
        (skip,) = report.skipped
        assert skip.code == "error" and "tuned - base overflows float64" in skip.reason


# -- 7. zero update -------------------------------------------------------------------------


class TestZeroUpdate:
    def test_public_function_refuses_like_the_analysis_masks(self):
        rng = np.random.default_rng(5)
        W = rng.standard_normal((8, 6))
        with pytest.raises(RankError, match="delta_W is zero"):
            amplification_factor(W, np.zeros((8, 6)), rank=1)
        # LoRA's initialisation: lora_B = 0.
        with pytest.raises(RankError, match="delta_W is zero"):
            amplification_factor(W, (rng.standard_normal((3, 6)), np.zeros((8, 3))))
        # The analysis reports the same situation as undefined (regression guard).
        res = analyze_update_matrix(W, W, options=AnalysisOptions(ranks=[1]))
        assert np.isnan(res.amplification[0][1])


# -- the analysis's own amplification, near its mask level ---------------------------------


def test_analysis_amplification_just_above_the_level():
    """Regression guard (passes on HEAD) for handing the public function orthonormal
    factors: sigma_2(ΔW) = 2.2e-14 sigma_1 is above the analysis's level
    16 eps sqrt(24) sigma_1 = 1.7e-14 but below the factored SVD's noise threshold for
    (U_2 Sigma_2, V_2^T), 16 eps sqrt(24) sqrt(2) sigma_1 = 2.5e-14. The analysis must still
    report the factor, equal to the dense public call on the same float64 ΔW (same SVD
    driver; the projections differ by rounding only)."""
    rng = np.random.default_rng(9)
    W = rng.standard_normal((24, 16))
    U, V = _orthonormal(rng, 24, 2), _orthonormal(rng, 16, 2)
    D = (U * np.array([1.0, 2.2e-14])) @ V.T
    T = W + D
    res = analyze_update_matrix(T, W, options=AnalysisOptions(ranks=[2]))
    ref = amplification_factor(W, T - W, rank=2).factor
    assert res.amplification[0][1] == pytest.approx(ref, rel=1e-8)
