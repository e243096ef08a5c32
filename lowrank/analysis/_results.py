"""The frozen result types of an analysis: options, one matrix, one skipped tensor."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_mapping
from lowrank.errors import InputError
from lowrank.rmt import MarchenkoPasturEdge, PowerLawFit

__all__ = [
    "DEFAULT_ENERGIES",
    "DEFAULT_RANKS",
    "AnalysisOptions",
    "MatrixResult",
    "RandomMatrixView",
    "SkippedTensor",
    "UpdateResult",
]

DEFAULT_RANKS: tuple[int, ...] = (8, 16, 64)
"""Ranks at which the relative Frobenius error is reported by default."""

DEFAULT_ENERGIES: tuple[float, ...] = (0.9, 0.99)
"""Energy fractions whose rank is reported by default."""


def _check_ranks(ranks: object) -> tuple[int, ...]:
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Iterable):
        raise InputError(f"ranks must be a sequence of positive integers; got {ranks!r}")
    values = list(ranks)
    for r in values:
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or int(r) < 1:
            raise InputError(f"ranks must be positive integers; got {r!r} in {values!r}")
    return tuple(sorted({int(r) for r in values}))


def _check_energies(energies: object) -> tuple[float, ...]:
    if isinstance(energies, (str, bytes)) or not isinstance(energies, Iterable):
        raise InputError(f"energies must be a sequence of numbers in (0, 1]; got {energies!r}")
    values = list(energies)
    for e in values:
        ok = isinstance(e, numbers.Real) and not isinstance(e, bool)
        if not (ok and math.isfinite(float(e)) and 0.0 < float(e) <= 1.0):
            raise InputError(f"energies must lie in (0, 1]; got {e!r} in {values!r}")
    return tuple(sorted({float(e) for e in values}))


# -- reading and writing JSON fields --------------------------------------------------------
#
# The report's convention: a float that JSON cannot hold is written as the string "inf",
# "-inf" or "nan" (_json_float), and only in the fields whose documentation allows it
# (relative_size, base_norm_fro, amplification, the random-matrix fits); an undefined overlap
# or amplification is null. Elsewhere (singular values, norms, errors...) a report holds
# finite numbers: writing anything else raises InputError naming the matrix and field, and
# reading it raises TypeError/ValueError, which Report.from_dict turns into FileFormatError.

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _read_float(value: object, field: str, *, finite: bool = True) -> float:
    """A float field of a report: a JSON number (not a bool), or, where ``finite`` is
    False, also one of the strings :func:`_json_float` writes."""
    if not finite and isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number; got {value!r:.60}")
    number = float(value)
    if finite and not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number; got {value!r}")
    return number


def _read_int(value: object, field: str) -> int:
    # bool is an int subclass, and int(8.7) would silently truncate: both refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an integer; got {value!r:.60}")
    return value


def _read_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string; got {value!r:.60}")
    return value


def _read_bool(value: object, field: str) -> bool:
    # bool("false") is True: only JSON true/false are accepted.
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be true or false; got {value!r:.60}")
    return value


def _read_list(value: object, field: str) -> list[Any]:
    # tuple("abc") would be ('a', 'b', 'c'): a JSON array is required.
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{field} must be a list; got {value!r:.60}")
    return list(value)


def _read_pairs(value: object, field: str) -> list[tuple[Any, Any]]:
    pairs = []
    for item in _read_list(value, field):
        entry = _read_list(item, field)
        if len(entry) != 2:
            raise ValueError(f"{field} must hold pairs; got {item!r:.60}")
        pairs.append((entry[0], entry[1]))
    return pairs


def _read_spectrum(value: object, field: str) -> Array:
    """Singular values: finite, non-negative and descending, as every analysis writes them
    (a NaN would be drawn as a zero and a reversed spectrum normalised by its smallest)."""
    values = _read_list(value, field)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise TypeError(f"{field} must be a list of numbers")
    s = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{field} must be finite; got {s[~np.isfinite(s)][0]!r}")
    if np.any(s < 0):
        raise ValueError(f"{field} must be non-negative; got {s[s < 0][0]!r}")
    if np.any(np.diff(s) > 0):
        raise ValueError(f"{field} must be in descending order")
    return s


def _check_finite_fields(result: MatrixResult, names: Iterable[str]) -> None:
    """Refuse to write a non-finite value where a report holds finite numbers only."""
    for field in names:
        value = getattr(result, field)
        if isinstance(value, np.ndarray):
            bad = not bool(np.all(np.isfinite(value)))
        elif isinstance(value, tuple):
            bad = any(isinstance(x, float) and not math.isfinite(x) for v in value for x in v)
        else:
            bad = isinstance(value, float) and not math.isfinite(value)
        if bad:
            raise InputError(
                f"matrix {result.name!r} cannot be written to a report: its {field} is not "
                "finite (a report holds finite numbers there)"
            )


@dataclass(frozen=True)
class AnalysisOptions:
    r"""What is computed for each matrix besides the fixed metrics.

    Parameters
    ----------
    ranks : sequence of int, default (8, 16, 64)
        Ranks ``r >= 1`` at which the relative Frobenius error of the best rank-r
        approximation is reported. Stored sorted and without duplicates.
    energies : sequence of float, default (0.9, 0.99)
        Energy fractions ``0 < e <= 1`` for which the smallest rank capturing that share of
        :math:`\|A\|_F^2` is reported. Stored sorted and without duplicates.

    Raises
    ------
    InputError
        A rank is not a positive integer, or an energy is outside (0, 1].

    Examples
    --------
    >>> AnalysisOptions(ranks=[64, 8, 8], energies=[0.99, 0.9])
    AnalysisOptions(ranks=(8, 64), energies=(0.9, 0.99))
    """

    ranks: tuple[int, ...] = DEFAULT_RANKS
    energies: tuple[float, ...] = DEFAULT_ENERGIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", _check_ranks(self.ranks))
        object.__setattr__(self, "energies", _check_energies(self.energies))


@dataclass(frozen=True)
class RandomMatrixView:
    r"""The random-matrix view of one matrix, from the singular values of its analysis.

    The three records are exactly what :mod:`lowrank.rmt` returns for the matrix's
    singular values (:attr:`MatrixResult.singular_values`) and shape: no second SVD.

    Attributes
    ----------
    marchenko_pastur : MarchenkoPasturEdge
        :func:`lowrank.rmt.marchenko_pastur_edge` with ``method="closed_form"``: the
        bulk edge :math:`\hat\sigma(\sqrt N + \sqrt M)` with the entry scale
        :math:`\hat\sigma^2 = \|W\|_F^2/(mn)` of the matrix itself, the number of
        singular values above it (``num_spikes``, the *spikes* of the reports' tables),
        their share of :math:`\|W\|_F^2` and the MP soft rank.
    marchenko_pastur_fit : MarchenkoPasturEdge
        The same with ``method="fit"``: the entry scale from the median eigenvalue (the
        bulk), which the spikes hardly move; it counts more spikes than the closed form
        when the spikes carry much of the energy.
    power_law : PowerLawFit or None
        :func:`lowrank.rmt.power_law_fit` of the eigenvalues :math:`\sigma_i^2` (default
        options: ``xmin`` chosen by the KS distance, ``ks="clauset"``): ``alpha``, ``xmin``,
        ``ks_distance`` (D), ``n_tail``, ``alpha_weighted`` and the ``under_trained``
        (:math:`\alpha > 6`) and ``over_trained`` (:math:`\alpha < 2`) flags. ``None`` for
        a spectrum with fewer than two distinct positive values (no tail to fit).
    """

    marchenko_pastur: MarchenkoPasturEdge
    marchenko_pastur_fit: MarchenkoPasturEdge
    power_law: PowerLawFit | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (infinities as ``"inf"``); :meth:`from_dict` inverts it exactly.

        Returns
        -------
        dict of str to Any
            ``marchenko_pastur``, ``marchenko_pastur_fit`` and ``power_law`` (``None`` or a
            dict), each record's fields by name.
        """

        def record(value: Any) -> dict[str, Any]:
            return {
                f.name: _json_float(v) if isinstance(v, float) else v
                for f in fields(value)
                for v in (getattr(value, f.name),)
            }

        return {
            "marchenko_pastur": record(self.marchenko_pastur),
            "marchenko_pastur_fit": record(self.marchenko_pastur_fit),
            "power_law": None if self.power_law is None else record(self.power_law),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RandomMatrixView:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` if malformed).

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (or its JSON, parsed).

        Returns
        -------
        RandomMatrixView
            Equal to the one that wrote ``data``.
        """
        check_mapping(data, name="data")

        def number(d: dict[str, Any], key: str, where: str) -> float:
            return _read_float(d[key], f"{where}.{key}", finite=False)

        def edge(d: dict[str, Any], where: str) -> MarchenkoPasturEdge:
            check_mapping(d, name=where)
            return MarchenkoPasturEdge(
                edge=number(d, "edge", where),
                bulk_min=number(d, "bulk_min", where),
                sigma=number(d, "sigma", where),
                method=_read_str(d["method"], f"{where}.method"),
                num_spikes=_read_int(d["num_spikes"], f"{where}.num_spikes"),
                spike_share=number(d, "spike_share", where),
                mp_softrank=number(d, "mp_softrank", where),
            )

        fit = data["power_law"]
        if fit is not None:
            check_mapping(fit, name="power_law")
            # A NaN alpha has no place on any axis (the fit returns a number or no fit).
            if math.isnan(number(fit, "alpha", "power_law")):
                raise ValueError("power_law.alpha must be a number; got 'nan'")
        return cls(
            marchenko_pastur=edge(data["marchenko_pastur"], "marchenko_pastur"),
            marchenko_pastur_fit=edge(data["marchenko_pastur_fit"], "marchenko_pastur_fit"),
            power_law=None
            if fit is None
            else PowerLawFit(
                alpha=number(fit, "alpha", "power_law"),
                alpha_stderr=number(fit, "alpha_stderr", "power_law"),
                xmin=number(fit, "xmin", "power_law"),
                xmax=number(fit, "xmax", "power_law"),
                ks_distance=number(fit, "ks_distance", "power_law"),
                n_tail=_read_int(fit["n_tail"], "power_law.n_tail"),
                alpha_weighted=number(fit, "alpha_weighted", "power_law"),
                under_trained=_read_bool(fit["under_trained"], "power_law.under_trained"),
                over_trained=_read_bool(fit["over_trained"], "power_law.over_trained"),
                ks=_read_str(fit["ks"], "power_law.ks"),
            ),
        )


# The fields of a MatrixResult that a report holds as finite numbers only.
_FINITE_FIELDS = (
    "norm_fro",
    "spectral_norm",
    "stable_rank",
    "entropy_effective_rank",
    "energy_ranks",
    "rank_errors",
    "singular_values",
    "seconds",
)


@dataclass(frozen=True, eq=False)
class MatrixResult:
    r"""Everything computed for one weight matrix.

    Attributes
    ----------
    name : str
        Tensor name in the checkpoint.
    file : str
        The file that holds it (a shard, for sharded checkpoints).
    shape : tuple of int
        ``(m, n)`` as analysed (after ``nd_policy="flatten"``, if used).
    dtype : str
        The stored dtype, e.g. ``"bfloat16"``.
    compute_dtype : str
        The dtype the singular values were computed from: ``"float32"`` for float16,
        bfloat16 and float32 storage, ``"float64"`` for float64.
    norm_fro, spectral_norm : float
        :math:`\|A\|_F` (summed from the entries in float64) and :math:`\|A\|_2 = \sigma_1`.
    stable_rank : float
        :math:`\|A\|_F^2/\|A\|_2^2`.
    entropy_effective_rank : float
        Roy and Vetterli's :math:`\exp(-\sum_k p_k\ln p_k)`, :math:`p_k=\sigma_k/\sum\sigma`.
    numerical_rank : int
        :math:`\#\{\sigma_i > \sigma_1\max(m,n)\,\varepsilon\}`, NumPy's rule with the epsilon
        of ``compute_dtype``.
    numerical_rank_storage : int
        The same count with the threshold raised to the rounding noise of ``dtype``
        (:func:`lowrank.metrics.storage_noise_level`).
    energy_ranks : tuple of (float, int)
        ``(e, r)``: the smallest ``r`` with :math:`\sum_{i\le r}\sigma_i^2 \ge e\|A\|_F^2`.
    rank_errors : tuple of (int, float)
        ``(r, err)``: the relative Frobenius error :math:`(\sum_{i>r}\sigma_i^2)^{1/2}/\|A\|_F`
        of the best rank-r approximation (0 for ``r >= min(m, n)``).
    random_matrix : RandomMatrixView or None
        The Marchenko–Pastur edges, spikes and power-law fit of the spectrum
        (:mod:`lowrank.rmt`); ``None`` only in reports written before it was computed.
    singular_values : ndarray, shape (min(m, n),)
        All singular values, float64, descending.
    seconds : float
        Wall time spent on this matrix (loading included).
    """

    name: str
    file: str
    shape: tuple[int, int]
    dtype: str
    compute_dtype: str
    norm_fro: float
    spectral_norm: float
    stable_rank: float
    entropy_effective_rank: float
    numerical_rank: int
    numerical_rank_storage: int
    energy_ranks: tuple[tuple[float, int], ...]
    rank_errors: tuple[tuple[int, float], ...]
    random_matrix: RandomMatrixView | None
    singular_values: Array
    seconds: float

    def __eq__(self, other: object) -> bool:
        """Exact equality of every field (arrays compared element by element)."""
        if not isinstance(other, MatrixResult):
            return NotImplemented
        if type(other) is not type(self):
            return False
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (
                    isinstance(a, np.ndarray)
                    and isinstance(b, np.ndarray)
                    and a.dtype == b.dtype
                    and np.array_equal(a, b)
                ):
                    return False
            elif a != b and not _same_floats(a, b):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def rank_for_energy(self, energy: float) -> int:
        """The rank reported for ``energy`` (one of the energies the analysis was run with).

        Parameters
        ----------
        energy : float
            One of :attr:`AnalysisOptions.energies`, e.g. 0.9.

        Returns
        -------
        int
            The smallest rank keeping that fraction of :math:`\\|A\\|_F^2`.

        Raises
        ------
        InputError
            ``energy`` was not one of the analysed energies.
        """
        for e, r in self.energy_ranks:
            if e == energy:
                return r
        known = ", ".join(f"{e:g}" for e, _ in self.energy_ranks) or "none"
        raise InputError(f"energy must be one of the analysed energies ({known}); got {energy!r}")

    def error_at_rank(self, rank: int) -> float:
        """The relative Frobenius error reported for ``rank`` (one of the analysed ranks).

        Parameters
        ----------
        rank : int
            One of :attr:`AnalysisOptions.ranks`.

        Returns
        -------
        float
            :math:`\\|A - A_r\\|_F / \\|A\\|_F`.

        Raises
        ------
        InputError
            ``rank`` was not one of the analysed ranks.
        """
        for r, err in self.rank_errors:
            if r == rank:
                return err
        known = ", ".join(str(r) for r, _ in self.rank_errors) or "none"
        raise InputError(f"rank must be one of the analysed ranks ({known}); got {rank!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly.

        Returns
        -------
        dict of str to Any
            The fields, arrays and tuples as lists; a float that JSON cannot hold as the
            string ``"inf"``, ``"-inf"`` or ``"nan"``.

        Raises
        ------
        InputError
            A field that a report holds as finite numbers (the norms, ranks' errors and
            energies, singular values, seconds) is not finite.
        """
        _check_finite_fields(self, _FINITE_FIELDS)
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, RandomMatrixView):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            elif isinstance(value, float):
                # Every float through the one encoding ("inf"/"nan" strings), so that no
                # field can make json.dumps(allow_nan=False) fail half-way through a report.
                value = _json_float(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatrixResult:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` if malformed).

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (or its JSON, parsed).

        Returns
        -------
        MatrixResult
            Equal to the one that wrote ``data``.

        Raises
        ------
        KeyError, TypeError, ValueError
            A field is missing, of the wrong type (a string for a number, a float or a
            bool for a count...), or not finite where a report holds finite numbers (see
            :meth:`to_dict`); singular values must also be non-negative and descending.
        """
        check_mapping(data, name="data")
        name = _read_str(data["name"], "name")
        file = _read_str(data["file"], "file")
        shape = _read_list(data["shape"], "shape")
        if len(shape) != 2:
            raise ValueError(f"shape must have 2 sides; got {shape!r:.60}")
        return cls(
            name=name,
            file=file,
            shape=(_read_int(shape[0], "shape"), _read_int(shape[1], "shape")),
            dtype=_read_str(data["dtype"], "dtype"),
            compute_dtype=_read_str(data["compute_dtype"], "compute_dtype"),
            norm_fro=_read_float(data["norm_fro"], "norm_fro"),
            spectral_norm=_read_float(data["spectral_norm"], "spectral_norm"),
            stable_rank=_read_float(data["stable_rank"], "stable_rank"),
            entropy_effective_rank=_read_float(
                data["entropy_effective_rank"], "entropy_effective_rank"
            ),
            numerical_rank=_read_int(data["numerical_rank"], "numerical_rank"),
            numerical_rank_storage=_read_int(
                data["numerical_rank_storage"], "numerical_rank_storage"
            ),
            energy_ranks=tuple(
                (_read_float(e, "energy_ranks"), _read_int(r, "energy_ranks"))
                for e, r in _read_pairs(data["energy_ranks"], "energy_ranks")
            ),
            rank_errors=tuple(
                (_read_int(r, "rank_errors"), _read_float(err, "rank_errors"))
                for r, err in _read_pairs(data["rank_errors"], "rank_errors")
            ),
            # Absent from reports written before the random-matrix view existed.
            random_matrix=None
            if data.get("random_matrix") is None
            else RandomMatrixView.from_dict(data["random_matrix"]),
            singular_values=_read_spectrum(data["singular_values"], "singular_values"),
            seconds=_read_float(data["seconds"], "seconds"),
        )


def _same_floats(a: object, b: object) -> bool:
    """Whether two ``(int, float)`` tuples are equal with ``nan == nan`` (undefined
    overlaps round-trip through JSON as ``null``)."""
    if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple) and isinstance(y, tuple):
            if x != y and not _same_floats(x, y):
                return False
        elif x != y and not (
            isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        ):
            return False
    return True


def _json_overlap(value: float) -> float | None:
    """An overlap for JSON: ``None`` (``null``) where it is undefined (``nan``)."""
    return None if math.isnan(value) else value


def _json_float(value: float) -> float | str:
    """``value``, or ``"inf"``/``"nan"`` for what JSON cannot hold (``float()`` reads both)."""
    return value if math.isfinite(value) else repr(value)


@dataclass(frozen=True, eq=False)
class UpdateResult(MatrixResult):
    r"""Everything computed for one update :math:`\Delta W = W_\text{tuned} - W_\text{base}`.

    The fields of :class:`MatrixResult` describe :math:`\Delta W` (formed in float64 from the
    stored values, so ``compute_dtype`` is ``"float64"``; ``dtype`` and ``file`` are those of
    the tuned checkpoint); ``rank_errors`` are exactly the relative errors that
    :func:`lowrank.lora.extract` reaches at each rank (the tail of :math:`\Delta W`'s
    spectrum). The fields from ``base_file`` on compare :math:`\Delta W` with
    :math:`W = W_\text{base}` (Hu et al. 2021, §7.3).

    Attributes
    ----------
    name, file, shape, dtype, compute_dtype : str or tuple of int
        As in :class:`MatrixResult`: the tensor name, the tuned checkpoint's file, the
        shape, the tuned matrix's stored dtype, and ``"float64"``.
    norm_fro, spectral_norm, stable_rank, entropy_effective_rank : float
        Those of :math:`\Delta W` (see :class:`MatrixResult`).
    numerical_rank, numerical_rank_storage : int
        Those of :math:`\Delta W`; the storage threshold is relative to
        :math:`\sigma_1(\Delta W)`, so it does not account for the rounding of the
        stored :math:`W` themselves.
    energy_ranks, rank_errors : tuple
        Those of :math:`\Delta W`: ``rank_errors`` are what :func:`lowrank.lora.extract`
        reaches at each rank.
    random_matrix : RandomMatrixView or None
        The Marchenko–Pastur edges, spikes and power-law fit of :math:`\Delta W`'s
        spectrum (see :class:`MatrixResult`).
    singular_values : ndarray, shape (min(m, n),)
        All singular values of :math:`\Delta W`, float64, descending.
    seconds : float
        Wall time spent on this pair (loading both matrices included).
    base_file : str
        The file of the base checkpoint that holds :math:`W`.
    base_dtype : str
        The stored dtype of :math:`W`.
    base_norm_fro : float
        :math:`\|W\|_F`.
    relative_size : float
        :math:`\|\Delta W\|_F / \|W\|_F` (``inf`` when :math:`W = 0`).
    overlap_left, overlap_right : tuple of (int, float)
        ``(r, phi)``: the LoRA paper's normalised subspace similarity
        :math:`\|U_r(\Delta W)^\top U_r(W)\|_F^2 / r` of the top-r left singular vectors
        (``overlap_left``) or right singular vectors (``overlap_right``) of :math:`\Delta W`
        and :math:`W`: the share of :math:`\Delta W`'s top-r subspace lying in :math:`W`'s,
        in [0, 1] (:func:`lowrank.lora.subspace_similarity`). ``r`` above
        ``min(m, n)`` is computed at ``min(m, n)``. Without a gap after the r-th singular
        value the top-r subspace is not unique, nor is the overlap: ``nan`` (``null`` in
        JSON) where :math:`W` or :math:`\Delta W` has no unique top-r subspace, where
        :math:`\sigma_r - \sigma_{r+1} \le 16\,\varepsilon_{64}\sqrt{\max(m, n)}\,
        \sigma_1` of that matrix (:math:`\sigma_{r+1} = 0` past its end: an all-zero
        matrix, r above its rank, r inside a tie of its singular values; the
        singular vectors there are LAPACK's choice, not the matrix's).
    amplification : tuple of (int, float)
        ``(r, factor)``: :math:`\|\Delta W\|_F / \|U_r^\top W V_r\|_F` with
        :math:`U_r, V_r` the top-r singular vectors of :math:`\Delta W`
        (:func:`lowrank.lora.amplification_factor`; ``inf`` when the projection is 0).
        ``nan`` (``null`` in JSON) where :math:`\Delta W` has no top-r subspace, by the
        rule of the overlaps.
    base_singular_values : ndarray, shape (min(m, n),), or None
        All singular values of :math:`W`, float64, descending: the spectrum of the exact
        SVD whose top singular vectors give the overlaps (no extra SVD). ``None`` in
        reports written before the field existed, and where :math:`W`'s spectrum was not
        computed.
    """

    base_file: str
    base_dtype: str
    base_norm_fro: float
    relative_size: float
    overlap_left: tuple[tuple[int, float], ...]
    overlap_right: tuple[tuple[int, float], ...]
    amplification: tuple[tuple[int, float], ...]
    base_singular_values: Array | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (infinities as ``"inf"``); :meth:`from_dict` inverts it exactly.

        Returns
        -------
        dict of str to Any
            The fields, arrays and tuples as lists.
        """
        if self.base_singular_values is not None:
            _check_finite_fields(self, ("base_singular_values",))
        out = super().to_dict()  # base_norm_fro and relative_size: "inf" where infinite
        out["amplification"] = [
            [r, None if math.isnan(a) else _json_float(a)] for r, a in self.amplification
        ]
        out["overlap_left"] = [[r, _json_overlap(v)] for r, v in self.overlap_left]
        out["overlap_right"] = [[r, _json_overlap(v)] for r, v in self.overlap_right]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpdateResult:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` if malformed).

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (or its JSON, parsed).

        Returns
        -------
        UpdateResult
            Equal to the one that wrote ``data``.
        """
        delta = MatrixResult.from_dict(data)
        values = {f.name: getattr(delta, f.name) for f in fields(MatrixResult)}

        def undefined_or(field: str, *, finite: bool) -> tuple[tuple[int, float], ...]:
            # null: undefined (nan); else a number, "inf" where the field allows it.
            return tuple(
                (
                    _read_int(r, field),
                    math.nan if v is None else _read_float(v, field, finite=finite),
                )
                for r, v in _read_pairs(data[field], field)
            )

        return cls(
            **values,
            base_file=_read_str(data["base_file"], "base_file"),
            base_dtype=_read_str(data["base_dtype"], "base_dtype"),
            base_norm_fro=_read_float(data["base_norm_fro"], "base_norm_fro", finite=False),
            relative_size=_read_float(data["relative_size"], "relative_size", finite=False),
            overlap_left=undefined_or("overlap_left", finite=True),
            overlap_right=undefined_or("overlap_right", finite=True),
            amplification=undefined_or("amplification", finite=False),
            base_singular_values=None
            if data.get("base_singular_values") is None
            else _read_spectrum(data["base_singular_values"], "base_singular_values"),
        )


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor of the checkpoint that has no result, and why.

    Attributes
    ----------
    name : str
        Tensor name.
    file : str
        The file that holds it.
    shape : tuple of int
        Shape as stored.
    dtype : str
        Stored dtype.
    code : str
        ``"name"``, ``"ndim"``, ``"dtype"`` or ``"empty"`` for tensors the selection passed
        over (see :func:`lowrank.io.select`); ``"error"`` for a matrix whose analysis
        failed (unreadable data, NaN or infinite entries...). In an update analysis
        (:func:`lowrank.analysis.analyze_update`) also ``"unpaired"`` (no matrix of that name
        in the other checkpoint), ``"shape"`` (shapes differ) and ``"unchanged"`` (the
        update is exactly zero).
    reason : str
        A sentence for people.
    """

    name: str
    file: str
    shape: tuple[int, ...]
    dtype: str
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly.

        Returns
        -------
        dict of str to Any
            The fields, arrays and tuples as lists.
        """
        return {
            "name": self.name,
            "file": self.file,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "code": self.code,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkippedTensor:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` if malformed).

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (or its JSON, parsed).

        Returns
        -------
        SkippedTensor
            Equal to the one that wrote ``data``.
        """
        check_mapping(data, name="data")
        return cls(
            name=_read_str(data["name"], "name"),
            file=_read_str(data["file"], "file"),
            shape=tuple(_read_int(d, "shape") for d in _read_list(data["shape"], "shape")),
            dtype=_read_str(data["dtype"], "dtype"),
            code=_read_str(data["code"], "code"),
            reason=_read_str(data["reason"], "reason"),
        )


def skipped_tensor(info: Any, code: str, reason: str) -> SkippedTensor:
    """The :class:`SkippedTensor` of a tensor described by ``info`` (a ``TensorInfo``)."""
    return SkippedTensor(
        name=info.name,
        file=str(info.file),
        shape=info.shape,
        dtype=info.dtype,
        code=code,
        reason=reason,
    )
