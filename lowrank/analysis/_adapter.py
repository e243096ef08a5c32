r"""The analysis of a PEFT LoRA adapter folder: the update :math:`\Delta W = s\,BA` per module.

:func:`analyze_adapter` reads the folder with :func:`lowrank.io.peft.load_peft_adapter`
(``rank_pattern``/``alpha_pattern``, rsLoRA and ``fan_in_fan_out`` resolved there) and takes
the spectrum of each update from its thin factors with :func:`lowrank.lora.factored_svd`
(QRs of both factors and the SVD of the small :math:`r\times r` core, never the dense
``out × in`` product); the spectrum is complete, so every :class:`MatrixResult` field is
filled from it.

With a base checkpoint the update is paired with the base weight (see
:func:`base_weight_name` for the naming rule) and gets the numbers of
:func:`analyze_update` (relative size, subspace overlaps, amplification factor); with
``merged=True`` the merged matrices :math:`W + \Delta W` get those of :func:`analyze_matrix`
instead (one result type per report). These need the base matrix itself, so they work on
dense matrices of the checkpoint's own size.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowrank._numerics import frobenius_norm
from lowrank._operator import dense_input
from lowrank._typing import Array
from lowrank._validation import as_matrix, as_storage_dtype, check_bool, check_path, check_str
from lowrank._version import __version__
from lowrank.analysis._compute import _analyze, _random_matrix_view
from lowrank.analysis._report import Report, RunInfo
from lowrank.analysis._results import (
    DEFAULT_ENERGIES,
    DEFAULT_RANKS,
    AnalysisOptions,
    MatrixResult,
    SkippedTensor,
    UpdateResult,
)
from lowrank.analysis._update import _float64, _subspace_view
from lowrank.curves import rank_error_curve, select_rank
from lowrank.errors import InputError, LowRankError, MissingFileError
from lowrank.io import TensorInfo, list_tensors, load_matrix
from lowrank.io.peft import PeftAdapter, PeftModule, load_peft_adapter
from lowrank.lora import factored_svd
from lowrank.metrics import (
    entropy_effective_rank,
    numerical_rank,
    spectral_norm,
    stable_rank,
)
from lowrank.svd import TruncatedSVDResult, svd_of

__all__ = ["analyze_adapter", "base_weight_name"]


def base_weight_name(module: str, base_names: Sequence[str]) -> str | None:
    """The base checkpoint's weight name for a PEFT module name, or ``None``.

    Parameters
    ----------
    module : str
        The module's name as :class:`lowrank.io.peft.PeftModule` gives it: PEFT's key
        ``base_model.model.<module>.lora_A.weight`` without its prefix and suffix.
    base_names : sequence of str
        The tensor names of the base checkpoint.

    Returns
    -------
    str or None
        ``<module>.weight`` when the base holds it; otherwise the one base name that ends
        with ``.<module>.weight`` (the base saved inside a wrapper) or with which
        ``<module>.weight`` ends after a dot (the base saved without the wrapper PEFT saw,
        e.g. ``transformer.h.0.attn.c_attn`` against a bare ``h.0.attn.c_attn.weight``);
        ``None`` when there is no such name or more than one.

    Raises
    ------
    InputError
        ``module`` is not a string or ``base_names`` not a sequence of strings.

    Examples
    --------
    >>> base_weight_name("model.layers.0.q_proj", ["model.layers.0.q_proj.weight"])
    'model.layers.0.q_proj.weight'
    >>> base_weight_name("transformer.h.0.attn.c_attn", ["h.0.attn.c_attn.weight"])
    'h.0.attn.c_attn.weight'
    >>> base_weight_name("fc", ["a.fc.weight", "b.fc.weight"]) is None    # ambiguous
    True
    """
    check_str(module, name="module")
    if isinstance(base_names, str) or not isinstance(base_names, Sequence):
        raise InputError(f"base_names must be a sequence of str; got {type(base_names).__name__}")
    names = list(base_names)
    for n in names:
        if not isinstance(n, str):
            raise InputError(f"base_names must hold only str; got {n!r}")
    weight = f"{module}.weight"
    if weight in names:
        return weight
    found = [n for n in names if n.endswith("." + weight) or weight.endswith("." + n)]
    return found[0] if len(found) == 1 else None


def _spectrum_result(
    svd: TruncatedSVDResult,
    *,
    shape: tuple[int, int],
    name: str,
    file: str,
    options: AnalysisOptions,
    stored: np.dtype[Any],
    start: float,
) -> MatrixResult:
    """The :class:`MatrixResult` of a matrix of ``shape`` from its complete spectrum."""
    # factored_svd's spectrum is always complete (zeros beyond the factors' rank).
    s = np.asarray(svd.S if svd.spectrum is None else svd.spectrum, dtype=np.float64)
    curve = rank_error_curve(s)
    full = s.size
    f64 = np.dtype(np.float64)
    return MatrixResult(
        name=name,
        file=file,
        shape=shape,
        dtype=stored.name,
        compute_dtype=f64.name,
        norm_fro=frobenius_norm(s),
        spectral_norm=spectral_norm(s),
        stable_rank=stable_rank(s),
        entropy_effective_rank=entropy_effective_rank(s),
        numerical_rank=numerical_rank(s, shape=shape, dtype=f64),
        numerical_rank_storage=numerical_rank(s, shape=shape, dtype=f64, storage_dtype=stored),
        energy_ranks=tuple((e, select_rank(s, energy=e)) for e in options.energies),
        rank_errors=tuple((r, float(curve.relative[min(r, full)])) for r in options.ranks),
        random_matrix=_random_matrix_view(s, shape),
        singular_values=s,
        seconds=time.perf_counter() - start,
    )


def _skip(
    name: str, file: str, shape: tuple[int, ...], dtype: str, code: str, why: str
) -> SkippedTensor:
    return SkippedTensor(name=name, file=file, shape=shape, dtype=dtype, code=code, reason=why)


def _base_matrix(base_info: TensorInfo) -> tuple[Array, np.dtype[Any]]:
    """The base matrix in float64 and its stored dtype."""
    stored_base = load_matrix(base_info)
    base_dtype = as_storage_dtype(stored_base.dtype)
    return _float64(as_matrix(stored_base, name="base")), base_dtype


def _dense_update(module: PeftModule, *, fan_in_fan_out: bool) -> Array:
    r"""The dense float64 update :math:`s\,BA` in the stored layout (only where a dense
    matrix is needed: the merged matrix)."""
    A = np.asarray(module.lora_A, dtype=np.float64)
    B = np.asarray(module.lora_B, dtype=np.float64)
    delta = module.scaling * (B @ A)
    return delta.T if fan_in_fan_out else delta


def _dense_pair(
    module: PeftModule, base_info: TensorInfo, *, fan_in_fan_out: bool
) -> tuple[Array, np.dtype[Any], Array]:
    """The base matrix in float64, its stored dtype, and the dense float64 update."""
    base, base_dtype = _base_matrix(base_info)
    return base, base_dtype, _dense_update(module, fan_in_fan_out=fan_in_fan_out)


def _merged(
    module: PeftModule,
    base_info: TensorInfo,
    *,
    name: str,
    fan_in_fan_out: bool,
    options: AnalysisOptions,
    start: float,
) -> MatrixResult:
    """The metrics of the merged matrix ``W + s B A`` (dense, float64)."""
    base, base_dtype, delta = _dense_pair(module, base_info, fan_in_fan_out=fan_in_fan_out)
    merged = base + delta
    del delta, base
    return _analyze(
        merged, name=name, file=str(base_info.file), options=options, stored=base_dtype, start=start
    )


def _with_base(
    metrics: MatrixResult,
    svd: TruncatedSVDResult,
    module: PeftModule,
    base_info: TensorInfo,
    *,
    fan_in_fan_out: bool,
    options: AnalysisOptions,
    start: float,
) -> UpdateResult:
    """The update numbers of :func:`analyze_update_matrix` and the merged matrix's metrics."""
    base, base_dtype = _base_matrix(base_info)
    base_fro = frobenius_norm(base)
    if metrics.norm_fro == 0.0:
        relative = 0.0
    elif base_fro == 0.0:
        relative = float("inf")
    else:
        relative = metrics.norm_fro / base_fro
    full = min(base.shape)
    ranks = sorted({min(r, full) for r in options.ranks})
    top = max(ranks, default=1)  # no ranks: the spectra only, as analyze_update_matrix
    # The factored SVD's triplets, of the stored orientation: at most the adapter's rank
    # of them, beyond which the update has no top-r subspace (nan, _subspace_view).
    U, S, Vh = (svd.Vh.T, svd.S, svd.U.T) if fan_in_fan_out else (svd.U, svd.S, svd.Vh)
    sd = dataclasses.replace(
        svd,
        U=np.ascontiguousarray(U[:, :top]),
        S=np.asarray(S[:top], dtype=np.float64),
        Vh=np.ascontiguousarray(Vh[:top]),
        shape=base.shape,
    )
    sb = svd_of(dense_input(base), top, method="exact")
    left, right, amp = _subspace_view(base, sd, sb, ranks, delta_fro=metrics.norm_fro)
    values = {f: getattr(metrics, f) for f in MatrixResult.__dataclass_fields__}
    values["seconds"] = time.perf_counter() - start
    return UpdateResult(
        **values,
        base_file=str(base_info.file),
        base_dtype=base_dtype.name,
        base_norm_fro=base_fro,
        relative_size=relative,
        overlap_left=tuple((r, left[min(r, full)]) for r in options.ranks),
        overlap_right=tuple((r, right[min(r, full)]) for r in options.ranks),
        amplification=tuple((r, amp[min(r, full)]) for r in options.ranks),
        # The exact SVD of W above computed every singular value: W's spectrum, free.
        base_singular_values=np.asarray(sb.spectrum, dtype=np.float64),
    )


def _check_pairs(
    adapter: PeftAdapter, base_infos: dict[str, TensorInfo], *, path: Path, base_path: Path
) -> None:
    """Refuse, from the headers, a base in which no module finds its weight (of the same
    shape): an empty report would pass for a complete one."""
    for module in adapter.modules.values():
        name = base_weight_name(module.name, list(base_infos))
        out, n_in = module.lora_B.shape[0], module.lora_A.shape[1]
        shape = (n_in, out) if adapter.fan_in_fan_out else (out, n_in)
        if name is not None and base_infos[name].shape == shape:
            return
    raise InputError(
        f"nothing to compare: no module of the adapter '{path}' has a base weight of the "
        f"same name and shape in the base '{base_path}' ({len(adapter.modules)} modules, "
        f"{len(base_infos)} base tensors)"
    )


def analyze_adapter(
    adapter_dir: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    merged: bool = False,
    ranks: Sequence[int] = DEFAULT_RANKS,
    energies: Sequence[float] = DEFAULT_ENERGIES,
) -> Report:
    r"""Analyse the update :math:`\Delta W = s\,BA` of every module of a PEFT LoRA adapter.

    Parameters
    ----------
    adapter_dir : str or os.PathLike
        A PEFT adapter folder (``adapter_config.json`` and ``adapter_model.safetensors``),
        read by :func:`lowrank.io.peft.load_peft_adapter`: per module the rank and alpha
        of ``rank_pattern``/``alpha_pattern``, the scaling :math:`\alpha/r` (rsLoRA
        :math:`\alpha/\sqrt r`), and with ``fan_in_fan_out`` the stored update
        :math:`(s\,BA)^\top`.
    base : str or os.PathLike, optional
        The base checkpoint (a weight file, a sharded checkpoint's index or a directory).
        Then each update is paired with its base weight (see Notes) and gets the numbers
        of :func:`analyze_update`.
    merged : bool, default False
        Analyse the merged matrices :math:`W + \Delta W` instead of the updates (needs
        ``base``): what :func:`analyze` reports for the merged checkpoint.
    ranks : sequence of int, default (8, 16, 64)
        Ranks whose relative error (and with ``base`` overlaps and amplification) is
        reported.
    energies : sequence of float, default (0.9, 0.99)
        Energy fractions whose rank is reported.

    Returns
    -------
    Report
        One result per module, in the adapter's (sorted) module order, named after the
        base weight (``<module>.weight`` without ``base``): the update's
        :class:`MatrixResult` without ``base``, its :class:`UpdateResult` with it, or with
        ``merged`` the merged matrix's :class:`MatrixResult` (``file`` and ``dtype`` those
        of the base weight). For updates ``file`` is the adapter's weights file, ``dtype``
        the factors' stored dtype and ``compute_dtype`` float64. Modules without a
        base weight are in ``skipped`` with code ``"unpaired"``, shape mismatches with
        ``"shape"``, failures with ``"error"``. ``run.source`` is the adapter folder and
        ``run.base`` the base checkpoint, except with ``merged`` (a report of plain
        matrices, as of the merged checkpoint: ``run.base`` is None and each result's
        ``file`` names the base).

    Raises
    ------
    InputError
        ``adapter_dir`` or ``base`` is not a path, ``merged`` not a bool or given without
        ``base``, or bad ``ranks``/``energies``; a ``base`` in which no module finds a
        weight of its name and shape (nothing to compare, found from the headers).
    MissingFileError
        ``adapter_dir`` is not an existing folder, one of its files or ``base`` does not
        exist.
    FileFormatError
        Not a plain-LoRA PEFT adapter (:func:`lowrank.io.peft.load_peft_adapter`), or an
        unreadable base checkpoint.

    Notes
    -----
    PEFT's key ``base_model.model.<module>.lora_A.weight`` names module ``<module>``; its
    base weight is ``<module>.weight``, or failing that the one base name that ends with
    ``.<module>.weight`` or with which ``<module>.weight`` ends after a dot
    (:func:`base_weight_name`). The spectrum comes from
    :func:`lowrank.lora.factored_svd` on the factors in float64: two QRs of thin
    matrices and the SVD of an :math:`r\times r` core, :math:`O((m+n)r^2)` instead of
    :math:`O(mn\min(m,n))`; values below its rounding threshold
    :math:`16\varepsilon\sqrt{\max(m,n,r)}\,s\|B\|_F\|A\|_F` are exactly 0 (where a dense
    SVD returns noise of that size). With ``base``, the overlaps and amplification factor
    reuse these singular vectors. At a requested rank r above the update's rank or inside
    a tie of its singular values (where :math:`\sigma_r(\Delta W) - \sigma_{r+1}(\Delta W)`
    is at or below the rounding level
    :math:`16\varepsilon_{64}\sqrt{\max(m,n)}\,\sigma_1(\Delta W)`, or the adapter has
    fewer than r directions) the top-r subspace of :math:`\Delta W` is not unique: the
    overlaps and the amplification factor are ``nan`` there (``null`` in JSON, an empty
    CSV cell, "–" in the tables), as in :func:`analyze_update_matrix`; so are the
    overlaps where :math:`W` has no unique top-r subspace. The merged matrix is formed densely
    in float64.
    Modules run one after another in this process; a module costs little without ``base``.

    References
    ----------
    .. [1] E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
       arXiv:2106.09685.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> from lowrank.io.peft import save_peft_adapter
    >>> A = np.array([[1.0, 0.0, 0.0]], np.float32); B = np.array([[3.0], [0.0]], np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = save_peft_adapter(Path(d) / "ad", {"fc": (A, B)}, {"r": 1, "lora_alpha": 2})
    ...     report = analyze_adapter(Path(d) / "ad", ranks=[1])
    ...     save_safetensors(Path(d) / "base.safetensors", {"fc.weight": np.eye(2, 3)})
    ...     base = Path(d) / "base.safetensors"
    ...     with_base = analyze_adapter(Path(d) / "ad", base=base, ranks=[1])
    ...     merged = analyze_adapter(Path(d) / "ad", base=base, merged=True, ranks=[1])
    >>> m = report.matrices[0]                       # s = 2 / 1, s B A = 6 e1 e1^T
    >>> m.name, m.shape, m.norm_fro, m.rank_errors
    ('fc.weight', (2, 3), 6.0, ((1, 0.0),))
    >>> round(with_base.matrices[0].relative_size, 6)       # 6 / sqrt(2)
    4.242641
    >>> merged.matrices[0].singular_values                   # diag(7, 1)
    array([7., 1.])
    """
    start_all = time.perf_counter()
    options = AnalysisOptions(ranks=ranks, energies=energies)  # type: ignore[arg-type]
    check_bool(merged, name="merged")
    if merged and base is None:
        raise InputError("merged=True needs base: the merged matrices are W + s B A")
    path = Path(os.path.abspath(check_path(adapter_dir, name="adapter_dir")))
    base_path: Path | None = None
    if base is not None:
        base_path = Path(os.path.abspath(check_path(base, name="base")))
        if not base_path.exists():
            raise MissingFileError(f"base must be an existing file or directory; got '{base_path}'")
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise MissingFileError(
            f"adapter_dir must be an existing adapter folder; got '{path}', which {what}"
        )
    adapter = load_peft_adapter(path)
    weights_file = str(path / "adapter_model.safetensors")
    base_infos: dict[str, TensorInfo] = {}
    if base_path is not None:
        base_infos = {info.name: info for info in list_tensors(base_path)}
        _check_pairs(adapter, base_infos, path=path, base_path=base_path)
    results: list[MatrixResult] = []
    skipped: list[SkippedTensor] = []
    for module in adapter.modules.values():
        start = time.perf_counter()
        weight = f"{module.name}.weight"
        out, n_in = module.lora_B.shape[0], module.lora_A.shape[1]
        shape = (n_in, out) if adapter.fan_in_fan_out else (out, n_in)
        stored = as_storage_dtype(np.result_type(module.lora_A.dtype, module.lora_B.dtype))
        try:
            svd = factored_svd(
                np.asarray(module.lora_A, dtype=np.float64),
                np.asarray(module.lora_B, dtype=np.float64),
                scaling=module.scaling,
            )
        except LowRankError as exc:
            skipped.append(
                _skip(
                    weight,
                    weights_file,
                    shape,
                    stored.name,
                    "error",
                    f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        base_name = None
        if base_path is not None:
            base_name = base_weight_name(module.name, list(base_infos))
            if base_name is None:
                skipped.append(
                    _skip(
                        weight,
                        weights_file,
                        shape,
                        stored.name,
                        "unpaired",
                        f"no single base weight named {weight!r} (or ending with it) in the "
                        "base checkpoint",
                    )
                )
                continue
            weight = base_name
        metrics = _spectrum_result(
            svd,
            shape=shape,
            name=weight,
            file=weights_file,
            options=options,
            stored=stored,
            start=start,
        )
        if base_name is None:
            results.append(metrics)
            continue
        info = base_infos[base_name]
        if info.shape != shape:
            skipped.append(
                _skip(
                    weight,
                    weights_file,
                    shape,
                    stored.name,
                    "shape",
                    f"the update has shape {shape} (fan_in_fan_out={adapter.fan_in_fan_out}) "
                    f"but the base weight {info.shape}",
                )
            )
            continue
        try:
            if merged:
                result: MatrixResult = _merged(
                    module,
                    info,
                    name=weight,
                    fan_in_fan_out=adapter.fan_in_fan_out,
                    options=options,
                    start=start,
                )
            else:
                result = _with_base(
                    metrics,
                    svd,
                    module,
                    info,
                    fan_in_fan_out=adapter.fan_in_fan_out,
                    options=options,
                    start=start,
                )
        except (LowRankError, MemoryError) as exc:
            skipped.append(
                _skip(
                    weight,
                    weights_file,
                    shape,
                    stored.name,
                    "error",
                    f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        results.append(result)
    run = RunInfo(
        source=str(path),
        include=(),
        exclude=(),
        regex=False,
        nd_policy="skip",
        ranks=options.ranks,
        energies=options.energies,
        executor="none (in process)",
        lowrank_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        elapsed_seconds=time.perf_counter() - start_all,
        # A merged report is one of plain matrices (renderers read run.base as "update").
        base=None if base_path is None or merged else str(base_path),
    )
    return Report(run=run, matrices=tuple(results), skipped=tuple(skipped))
