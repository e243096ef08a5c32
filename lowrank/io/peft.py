r"""PEFT LoRA adapter folders: ``adapter_config.json`` + ``adapter_model.safetensors``.

A folder written by ``peft.PeftModel.save_pretrained`` for a plain LoRA holds

* ``adapter_config.json``: ``json.dumps(asdict(config), indent=2, sort_keys=True)`` with at
  least ``peft_type = "LORA"``, ``r``, ``lora_alpha``, ``target_modules`` and the optional
  ``use_rslora``, ``rank_pattern``, ``alpha_pattern``, ``fan_in_fan_out``, ...;
* ``adapter_model.safetensors`` (metadata ``{"format": "pt"}``) with, for every adapted
  module ``<module>`` (its name inside the base model),
  ``base_model.model.<module>.lora_A.weight`` of shape ``(r, in)`` and
  ``base_model.model.<module>.lora_B.weight`` of shape ``(out, r)``.

A config that leaves out ``r`` or ``lora_alpha`` is read with PEFT's ``LoraConfig`` defaults,
8 and 8, as PEFT's loader (which requires only ``peft_type``) reads it; writing requires both.

Each module's rank and alpha come from ``rank_pattern``/``alpha_pattern`` by PEFT's rule
(``re.match(rf"(.*\.)?({key})$", module)``, first matching key wins, else ``r`` /
``lora_alpha``); its scaling is ``alpha / r`` or ``alpha / sqrt(r)`` with ``use_rslora``.
With ``fan_in_fan_out`` the factors keep their shapes and the update of the stored
``(in, out)`` weight is :math:`(sBA)^\top`.

Only plain LoRA is read: DoRA (``use_dora``, ``lora_magnitude_vector``), embedding LoRA
(``lora_embedding_A/B``), LoRA biases, full-rank ``modules_to_save``, other ``peft_type``
values, legacy pickled ``adapter_model.bin`` files and the other variants are refused with a
:class:`~lowrank.errors.FileFormatError` naming the file and the key. So are a factor without
its partner, ranks that disagree with the config and corrupt files, and factors of modules
PEFT would not adapt under the config's ``target_modules``, ``exclude_modules``,
``layers_to_transform``/``layers_pattern`` (``"all-linear"`` included), by PEFT's rules
(``lowrank.io._peft_targets``): PEFT silently skips those factors.

``save_peft_adapter`` writes the config as PEFT does (top-level keys sorted) except that the
keys inside ``rank_pattern`` and ``alpha_pattern`` keep their given order: PEFT tries them
in file order and the first match wins, so sorting them (as PEFT's own ``save_pretrained``
does) can change what they mean.

Writing goes through :func:`lowrank.io.atomic_path`: a new folder is assembled under a
temporary name next to it and renamed into place; in an existing folder both files are
written to temporary files first and renamed only once both are complete, the config last
(the old one removed first), so an interrupt between the renames leaves a folder without a
config, which loaders refuse, never a config beside another adapter's weights. A failure
leaves nothing half-written.

This module knows no linear algebra: it moves arrays and checks shapes. Use
:mod:`lowrank.lora` to make or convert factors and :mod:`lowrank.adapter` to run them.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import DTypeLike

from lowrank._dtypes import cast_finite
from lowrank._patterns import pattern_key
from lowrank._scaling import alpha_of, scaling_of
from lowrank._typing import Array
from lowrank._validation import check_bool, check_path, check_str
from lowrank.errors import (
    DTypeError,
    FileFormatError,
    InputError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
)
from lowrank.io._atomic import atomic_path
from lowrank.io._info import TensorInfo
from lowrank.io._peft_targets import check_target_fields, init_refusal, target_refusal
from lowrank.io._safetensors import read_safetensors_metadata, save_safetensors
from lowrank.io._sources import list_tensors, load_tensor

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "PeftAdapter",
    "PeftModule",
    "SupportsPeftDict",
    "load_peft_adapter",
    "read_peft_config",
    "save_peft_adapter",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
_LEGACY_WEIGHTS_NAME = "adapter_model.bin"
_PREFIX = "base_model.model."
_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.(?P<factor>lora_A|lora_B)\.weight")
_MODULE = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_FACTOR_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Keys that make an adapter something other than plain LoRA when set (truthy).
_VARIANTS = (
    "use_dora",
    "lora_bias",
    "layer_replication",
    "target_parameters",
    "alora_invocation_tokens",
    "use_qalora",
    "trainable_token_indices",
    "modules_to_save",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
    "monteclora_config",
    "velora_config",
)
# init_lora_weights values whose adapters were trained from a modified base. "milora" is
# not a PEFT value (and cannot be written, see lowrank.io._peft_targets.init_refusal), but a
# folder saved with LoRAInit.init as its value says it, and applies to a residual base.
_RESIDUAL_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga", "milora")
# PEFT's LoraConfig defaults for the keys lowrank needs, used when a file leaves them out
# (PEFT's loader requires only peft_type): r=8, lora_alpha=8 (peft/tuners/lora/config.py).
_PEFT_DEFAULTS: dict[str, Any] = {"r": 8, "lora_alpha": 8}


@runtime_checkable
class SupportsPeftDict(Protocol):
    """Anything with ``to_peft_dict()`` returning ``adapter_config.json`` keys, such as
    :class:`lowrank.lora.LoRAConfig`.

    Parameters
    ----------
    *args, **kwargs
        Whatever the implementing class takes (a protocol is not instantiated itself).
    """

    def to_peft_dict(self) -> dict[str, Any]:
        """The ``adapter_config.json`` keys.

        Returns
        -------
        dict of str to Any
            At least ``r`` and ``lora_alpha``.
        """
        ...


@dataclass(frozen=True, eq=False)
class PeftModule:
    """The LoRA factors of one adapted module and their resolved hyper-parameters.

    Attributes
    ----------
    name : str
        The module's name in the base model (the key without ``base_model.model.`` and
        ``.lora_A.weight``).
    lora_A : ndarray, shape (r, in)
    lora_B : ndarray, shape (out, r)
        In the stored dtype (bfloat16 as an ``ml_dtypes`` array) unless ``dtype`` was given.
    rank : int
    alpha : float
        From ``alpha_pattern`` or ``lora_alpha``.
    scaling : float
        ``alpha / rank`` (``alpha / sqrt(rank)`` with rsLoRA).
    """

    name: str
    lora_A: Array
    lora_B: Array
    rank: int
    alpha: float
    scaling: float


@dataclass(frozen=True, eq=False)
class PeftAdapter:
    """A PEFT LoRA adapter folder, read and checked.

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    config : dict
        The whole ``adapter_config.json`` as read (unknown keys kept).
    modules : dict of str to PeftModule
        By module name, sorted.
    metadata : dict of str to str
        The safetensors header metadata (PEFT writes ``{"format": "pt"}``).
    """

    path: Path
    config: Mapping[str, Any]
    modules: Mapping[str, PeftModule]
    metadata: Mapping[str, str]

    @property
    def r(self) -> int:
        """The default rank ``r``."""
        return int(self.config["r"])

    @property
    def lora_alpha(self) -> float:
        """The default ``lora_alpha``."""
        return float(self.config["lora_alpha"])

    @property
    def use_rslora(self) -> bool:
        """Whether the scaling is ``lora_alpha / sqrt(r)`` (rsLoRA), not ``lora_alpha / r``."""
        return bool(self.config.get("use_rslora", False))

    @property
    def fan_in_fan_out(self) -> bool:
        """Whether the adapted weights are stored ``(in, out)``: then the update of the stored
        weight is ``(scaling * lora_B @ lora_A).T``."""
        return bool(self.config.get("fan_in_fan_out", False))

    @property
    def init_lora_weights(self) -> bool | str:
        """How PEFT initialised the factors: ``True`` (LoRA's default), ``False``, or a name
        such as ``"gaussian"`` or ``"pissa"`` (see :attr:`needs_residual_base`)."""
        value: bool | str = self.config.get("init_lora_weights", True)  # checked on reading
        return value

    @property
    def needs_residual_base(self) -> bool:
        """True for an adapter saved with ``init_lora_weights`` ``"pissa"``, ``"olora"``,
        ``"corda"``, ``"loftq"``... and not converted: it applies to the base *minus* its
        initial adapter, which PEFT recomputes when loading. Rebuild that base with
        :mod:`lowrank.lora` (e.g. ``pissa_init(W, r).residual``), or convert the adapter to
        plain LoRA (``lowrank.lora.pissa_to_lora``). Also True for ``"milora"``, which older
        lowrank versions wrote (PEFT cannot load such a folder itself)."""
        init = self.init_lora_weights
        # PEFT compares "olora" case-insensitively and "pissa..." / "corda..." by prefix.
        return isinstance(init, str) and init.lower().split("_niter_")[0] in _RESIDUAL_INITS


# -- config -------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_positive_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value)) and float(value) > 0


def _check_pattern(config: Mapping[str, Any], key: str, source: str, rank: bool) -> None:
    pattern = config.get(key)
    if pattern is None:
        return
    if not isinstance(pattern, Mapping):
        raise FileFormatError(f"{source}: {key!r} must be an object mapping patterns to values")
    for k, v in pattern.items():
        ok = _is_int(v) and int(v) >= 1 if rank else _is_positive_number(v)
        if not isinstance(k, str) or not k or not ok:
            rule = "an integer >= 1" if rank else "a positive number"
            raise FileFormatError(f"{source}: {key}[{k!r}] must be {rule}; got {v!r}")
        try:
            re.compile(k)
        except re.error as exc:
            raise FileFormatError(
                f"{source}: {key} key {k!r} is not a valid regular expression: {exc}"
            ) from None


def _check_config(
    config: object, source: str, error: type[Exception] = FileFormatError
) -> dict[str, Any]:
    """Validate a parsed ``adapter_config.json``; ``source`` names it in messages.

    Raises ``error`` (FileFormatError for a file, InputError for a config being written)."""
    try:
        return _check_config_body(config, source)
    except FileFormatError as exc:
        if error is FileFormatError:
            raise
        raise error(str(exc)) from None


def _check_config_body(config: object, source: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise FileFormatError(f"{source} must hold a JSON object; got {type(config).__name__}")
    if "peft_type" not in config:
        raise FileFormatError(f"{source} has no 'peft_type'; it is not a PEFT adapter config")
    if config["peft_type"] != "LORA":
        raise FileFormatError(
            f"{source}: peft_type is {config['peft_type']!r}; only plain LoRA ('LORA') is supported"
        )
    for key in ("r", "lora_alpha"):
        if key not in config:
            raise FileFormatError(f"{source} has no {key!r}")
    if not (_is_int(config["r"]) and int(config["r"]) >= 1):
        raise FileFormatError(f"{source}: 'r' must be an integer >= 1; got {config['r']!r}")
    if not _is_positive_number(config["lora_alpha"]):
        raise FileFormatError(
            f"{source}: 'lora_alpha' must be a positive number; got {config['lora_alpha']!r}"
        )
    for key in ("use_rslora", "fan_in_fan_out", "inference_mode"):
        if key in config and not isinstance(config[key], bool):
            raise FileFormatError(f"{source}: {key!r} must be true or false; got {config[key]!r}")
    init = config.get("init_lora_weights", True)
    if not isinstance(init, (bool, str)):
        raise FileFormatError(
            f"{source}: 'init_lora_weights' must be true, false or a name such as 'pissa'; "
            f"got {init!r}"
        )
    _check_pattern(config, "rank_pattern", source, rank=True)
    _check_pattern(config, "alpha_pattern", source, rank=False)
    for key in _VARIANTS:
        if config.get(key):
            raise FileFormatError(
                f"{source}: {key} = {config[key]!r} is not plain LoRA, which is all that is "
                "supported"
            )
    if config.get("bias", "none") != "none":
        raise FileFormatError(
            f"{source}: bias = {config['bias']!r} saves trained base-layer biases; only "
            "bias = 'none' (plain LoRA) is supported"
        )
    check_target_fields(config, source)
    return config


def _resolve(config: Mapping[str, Any], name: str) -> tuple[int, float, float]:
    ranks = config.get("rank_pattern") or {}
    alphas = config.get("alpha_pattern") or {}
    rk = pattern_key(ranks, name)
    ak = pattern_key(alphas, name)
    rank = int(config["r"] if rk is None else ranks[rk])
    alpha = float(config["lora_alpha"] if ak is None else alphas[ak])
    return rank, alpha, scaling_of(alpha, rank, bool(config.get("use_rslora", False)))


def read_peft_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the ``adapter_config.json`` of a PEFT adapter folder.

    Parameters
    ----------
    directory : str or os.PathLike
        The adapter folder (or the ``adapter_config.json`` file itself).

    Returns
    -------
    dict
        The parsed JSON object, all keys kept. ``r`` and ``lora_alpha`` take PEFT's
        ``LoraConfig`` defaults, 8 and 8, when the file leaves them out (PEFT's loader
        requires only ``peft_type``, and gives them these values).

    Raises
    ------
    InputError
        ``directory`` is not a non-empty ``str`` or ``os.PathLike``.
    MissingFileError
        No such folder or no ``adapter_config.json`` in it.
    FileFormatError
        Not JSON (or nested too deeply to parse), not an object, or not a plain-LoRA
        config (see the module docstring); an ``init_lora_weights`` that is neither a bool
        nor a string.
    OSError
        The file cannot be read (permissions, I/O error).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q"]}
    ...     _ = (Path(d) / "adapter_config.json").write_text(json.dumps(config))
    ...     read_peft_config(d)["lora_alpha"]
    16
    """
    return _read_config(Path(os.path.abspath(check_path(directory, name="directory"))))


def _read_config(path: Path) -> dict[str, Any]:
    """The body of :func:`read_peft_config` for an absolute ``path``."""
    file = path if path.is_file() else path / ADAPTER_CONFIG_NAME
    if not path.exists():
        raise MissingFileError(
            f"directory must name an adapter folder that exists; got '{path}', which does not exist"
        )
    if not file.is_file():
        raise MissingFileError(f"adapter folder '{path}' has no {ADAPTER_CONFIG_NAME}")
    try:
        parsed = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        # json's decoder recurses once per nested array or object.
        raise FileFormatError(
            f"'{file}' nests JSON arrays or objects too deeply to be read; it is not an "
            "adapter config"
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise FileFormatError(f"'{file}' is not valid JSON: {exc}") from None
    if isinstance(parsed, dict) and parsed.get("peft_type") == "LORA":
        # PEFT's loader requires only peft_type and gives the other keys their defaults.
        for key, default in _PEFT_DEFAULTS.items():
            parsed.setdefault(key, default)
    return _check_config(parsed, f"'{file}'")


# -- reading ------------------------------------------------------------------------------


def _refusal(key: str, file: Path) -> FileFormatError:
    if "lora_embedding_" in key:
        what = "an embedding LoRA factor (lora_embedding_A/B)"
    elif "lora_magnitude_vector" in key:
        what = "a DoRA magnitude vector"
    elif key.endswith("lora_B.bias"):
        what = "a LoRA bias (lora_bias=True)"
    elif re.search(r"\.lora_[AB]\.[^.]+\.weight$", key):
        what = "a factor with an adapter name in its key (PEFT strips it when saving)"
    elif not key.startswith(_PREFIX):
        what = f"not under the '{_PREFIX}' prefix"
    else:
        what = "not a LoRA factor (a full-rank module saved with modules_to_save?)"
    return FileFormatError(
        f"'{file}' holds tensor '{key}': {what}; only plain LoRA "
        "(base_model.model.<module>.lora_A.weight / .lora_B.weight) is supported"
    )


def _plan(
    infos: tuple[TensorInfo, ...], config: Mapping[str, Any], file: Path, config_file: Path
) -> dict[str, tuple[TensorInfo, TensorInfo, int, float, float]]:
    """Check every key, pair, dtype, shape and rank from the header alone."""
    found: dict[str, dict[str, TensorInfo]] = {}
    for info in infos:
        matched = _KEY.fullmatch(info.name)
        if matched is None or not _MODULE.fullmatch(matched.group("module")):
            raise _refusal(info.name, file)
        found.setdefault(matched.group("module"), {})[matched.group("factor")] = info
    if not found:
        raise FileFormatError(f"'{file}' holds no LoRA factors")
    plan: dict[str, tuple[TensorInfo, TensorInfo, int, float, float]] = {}
    for module in sorted(found):
        pair = found[module]
        for have, lack in (("lora_A", "lora_B"), ("lora_B", "lora_A")):
            if have in pair and lack not in pair:
                raise FileFormatError(
                    f"'{file}' holds '{pair[have].name}' but not "
                    f"'{_PREFIX}{module}.{lack}.weight': module {module!r} has {have} "
                    f"without {lack}"
                )
        A, B = pair["lora_A"], pair["lora_B"]
        for info in (A, B):
            if info.dtype not in _FACTOR_DTYPES:
                raise FileFormatError(
                    f"'{file}': tensor '{info.name}' has dtype {info.dtype}; LoRA factors must "
                    f"be {', '.join(_FACTOR_DTYPES)}"
                )
            if info.ndim != 2:
                raise FileFormatError(
                    f"'{file}': tensor '{info.name}' must be 2-D; got shape {info.shape}"
                )
        if A.shape[0] != B.shape[1]:
            raise FileFormatError(
                f"'{file}': module {module!r} has lora_A of shape {A.shape} (r, in) and "
                f"lora_B of shape {B.shape} (out, r), whose ranks differ "
                f"('{A.name}', '{B.name}')"
            )
        rank, alpha, scaling = _resolve(config, module)
        if A.shape[0] != rank:
            raise FileFormatError(
                f"rank mismatch: '{config_file}' gives module {module!r} rank {rank} (r or "
                f"rank_pattern), but '{file}' holds '{A.name}' with {A.shape[0]} rows"
            )
        refusal = target_refusal(config, module)
        if refusal is not None:
            raise FileFormatError(
                f"'{file}' holds factors for module {module!r}, which '{config_file}' does not "
                f"target, so PEFT would ignore them: {refusal}"
            )
        plan[module] = (A, B, rank, alpha, scaling)
    return plan


def _target_dtype(dtype: DTypeLike | None) -> np.dtype[Any] | None:
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"dtype must be a NumPy dtype; got {dtype!r} ({exc})") from None
    if dt.name not in _FACTOR_DTYPES:
        raise DTypeError(f"dtype must be one of {', '.join(_FACTOR_DTYPES)}; got {dt.name}")
    return dt


def _non_finite(x: Array) -> int:
    """How many entries of ``x`` are NaN or infinite (bfloat16 included, through ml_dtypes'
    ufuncs: its dtype kind is 'V', so ``kind`` cannot tell floats apart here)."""
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def load_peft_adapter(
    directory: str | os.PathLike[str], *, dtype: DTypeLike | None = None
) -> PeftAdapter:
    """Read a PEFT LoRA adapter folder and check it against its config.

    Parameters
    ----------
    directory : str or os.PathLike
        A folder with ``adapter_config.json`` and ``adapter_model.safetensors``.
    dtype : dtype, optional
        Convert the factors to this dtype (float16, bfloat16, float32 or float64); default:
        as stored.

    Returns
    -------
    PeftAdapter

    Raises
    ------
    MissingFileError
        The folder or one of its two files does not exist.
    InputError
        ``directory`` is not a non-empty ``str`` or ``os.PathLike`` or is a file, or
        ``dtype`` is not a dtype.
    DTypeError
        ``dtype`` is not a floating dtype LoRA factors can have.
    NonFiniteError
        A factor holds NaN or infinite entries, or exceeds the range of ``dtype`` (the
        message names the file and the tensor).
    FileFormatError
        A corrupt or non-LoRA config or weights file; a legacy ``adapter_model.bin``
        without a safetensors file; a tensor that is not a plain LoRA factor; ``lora_A``
        without ``lora_B`` (or the reverse); factors that are not 2-D floats or whose ranks
        disagree with each other or with the config; factors for a module the config does
        not target by PEFT's rules (``target_modules``, ``exclude_modules``,
        ``layers_to_transform``/``layers_pattern``, ``"all-linear"`` without the output
        layer). Messages name the file, the key and the rule.
    OSError
        A file cannot be read (permissions, I/O error).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> A, B = np.ones((2, 3), np.float32), np.zeros((4, 2), np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = save_peft_adapter(Path(d) / "ad", {"model.fc": (A, B)}, {"r": 2, "lora_alpha": 4})
    ...     adapter = load_peft_adapter(Path(d) / "ad")
    >>> module = adapter.modules["model.fc"]
    >>> module.lora_A.shape, module.lora_B.shape, module.scaling
    ((2, 3), (4, 2), 2.0)
    """
    path = Path(os.path.abspath(check_path(directory, name="directory")))
    target = _target_dtype(dtype)
    if path.exists() and not path.is_dir():
        raise InputError(f"directory must be an adapter folder, not a file; got '{path}'")
    config = _read_config(path)
    config_file = path / ADAPTER_CONFIG_NAME
    weights = path / ADAPTER_WEIGHTS_NAME
    if not weights.is_file():
        if (path / _LEGACY_WEIGHTS_NAME).is_file():
            raise FileFormatError(
                f"adapter folder '{path}' holds only the legacy pickled {_LEGACY_WEIGHTS_NAME}, "
                "which is not read (unpickling can run code); save it again with PEFT's "
                "safe_serialization=True"
            )
        raise MissingFileError(f"adapter folder '{path}' has no {ADAPTER_WEIGHTS_NAME}")
    plan = _plan(list_tensors(weights), config, weights, config_file)
    modules: dict[str, PeftModule] = {}
    for module, (A_info, B_info, rank, alpha, scaling) in plan.items():
        A, B = load_tensor(A_info), load_tensor(B_info)
        for info, x in ((A_info, A), (B_info, B)):
            bad = _non_finite(x)
            if bad:
                raise NonFiniteError(
                    f"'{weights}': tensor '{info.name}' holds {bad} NaN or infinite "
                    f"entr{'y' if bad == 1 else 'ies'} out of {x.size}; LoRA factors must be "
                    "finite"
                )
        if target is not None:
            A = cast_finite(A, target, what=f"'{weights}': tensor '{A_info.name}'")
            B = cast_finite(B, target, what=f"'{weights}': tensor '{B_info.name}'")
        modules[module] = PeftModule(module, A, B, rank, alpha, scaling)
    return PeftAdapter(
        path=path,
        config=config,
        modules=modules,
        metadata=read_safetensors_metadata(weights),
    )


# -- writing ------------------------------------------------------------------------------


def _factors_of(name: str, value: object) -> tuple[Array, Array]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        A, B = value
    elif hasattr(value, "lora_A") and hasattr(value, "lora_B"):
        A, B = value.lora_A, value.lora_B
    else:
        raise InputError(
            f"modules[{name!r}] must be a pair (lora_A, lora_B) or have lora_A and lora_B "
            f"attributes; got {type(value).__name__}"
        )
    arrays = []
    for label, x in (("lora_A", A), ("lora_B", B)):
        if not isinstance(x, np.ndarray):
            raise InputError(
                f"modules[{name!r}] {label} must be a numpy.ndarray; got {type(x).__name__}"
            )
        if x.dtype.name not in _FACTOR_DTYPES:
            raise DTypeError(
                f"modules[{name!r}] {label} has dtype {x.dtype.name}; LoRA factors must be "
                f"{', '.join(_FACTOR_DTYPES)}"
            )
        if x.ndim != 2 or x.size == 0:
            raise ShapeError(
                f"modules[{name!r}] {label} must be a non-empty 2-D array; got shape {x.shape}"
            )
        bad = _non_finite(x)
        if bad:
            raise NonFiniteError(
                f"modules[{name!r}] {label} must contain only finite values; got {bad} NaN or "
                f"infinite entr{'y' if bad == 1 else 'ies'} out of {x.size}"
            )
        arrays.append(x)
    A, B = arrays
    if A.shape[0] != B.shape[1]:
        raise ShapeError(
            f"modules[{name!r}]: lora_A (r, in) and lora_B (out, r) must share r; got "
            f"{A.shape} and {B.shape}"
        )
    return A, B


def _carried(value: object) -> tuple[float | None, bool | None]:
    """The scaling and ``use_rslora`` a factor object carries (``LoRAInit``, ``Extraction``,
    ``LoRAConversion``, :class:`PeftModule`), None where it carries none (plain pairs)."""
    if isinstance(value, (tuple, list)):
        return None, None
    scaling: object = getattr(value, "scaling", None)
    rslora: object = getattr(value, "use_rslora", None)
    carried = None
    if isinstance(scaling, (int, float, np.integer, np.floating)) and not isinstance(scaling, bool):
        carried = float(scaling)
    return carried, (rslora if isinstance(rslora, bool) else None)


def _scaling_refusal(name: str, value: object, full: Mapping[str, Any]) -> str | None:
    """Why the config would give module ``name`` another scaling (or rsLoRA setting) than
    the factor object ``value`` was made with, or None: the factors of PiSSA, OLoRA and
    extraction are only right at their own scaling (PiSSA divides them by it)."""
    scaling, rslora = _carried(value)
    config_rslora = bool(full.get("use_rslora", False))
    if rslora is not None and rslora != config_rslora:
        return (
            f"module {name!r} was made with use_rslora={rslora} but the config has "
            f"use_rslora={config_rslora}; set use_rslora={rslora} in the config"
        )
    if scaling is None:
        return None
    rank, alpha, expected = _resolve(full, name)
    # Both scalings are alpha over r (or sqrt r) in float64; 1e-9 allows for alpha having
    # been rounded through a float (alpha = s*sqrt(r) under rsLoRA) and nothing more.
    if math.isclose(scaling, expected, rel_tol=1e-9):
        return None
    want = alpha_of(scaling, rank, config_rslora)
    rule = "alpha / sqrt(r)" if config_rslora else "alpha / r"
    return (
        f"module {name!r} carries scaling {scaling:.6g}, but the config gives it scaling "
        f"{expected:.6g} (alpha {alpha:.6g}, rank {rank}, {rule}), so PEFT would apply its "
        f"factors at the wrong scale; give it alpha {want!r} (lora_alpha, or an "
        "alpha_pattern entry for this module)"
    )


def _check_json(value: object, where: str, stack: tuple[int, ...] = ()) -> None:
    """Refuse what ``json.dumps`` would write wrongly: keys that are not strings (it turns
    them into strings) and NaN or infinite floats (it writes bare ``NaN``, which is not
    JSON); ``where`` names the place in messages."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        raise InputError(f"config{where} is {float(value)}; JSON has no NaN or infinity")
    if not isinstance(value, (Mapping, list, tuple)):
        return
    if id(value) in stack:
        raise InputError(f"config{where} contains itself; it cannot be written as JSON")
    stack = (*stack, id(value))
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(
                    f"config{where} has the key {k!r} ({type(k).__name__}); JSON keys are "
                    "strings and PEFT would read it as a string, so give it as one"
                )
            _check_json(v, f"{where}[{k!r}]", stack)
    else:
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", stack)


def _full_config(
    config: Mapping[str, Any] | SupportsPeftDict, names: list[str], extra: Mapping[str, Any]
) -> dict[str, Any]:
    if isinstance(config, SupportsPeftDict):
        given = config.to_peft_dict()
    elif isinstance(config, Mapping):
        given = dict(config)
    else:
        raise InputError(
            f"config must be a mapping of adapter_config.json keys or have to_peft_dict(); "
            f"got {type(config).__name__}"
        )
    full: dict[str, Any] = {
        "alpha_pattern": {},
        "base_model_name_or_path": None,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "rank_pattern": {},
        "revision": None,
        "target_modules": sorted(names),
        "task_type": None,
        "use_dora": False,
        "use_rslora": False,
    }
    # None keeps the default (e.g. target_modules=None means "the modules written").
    full.update({k: v for k, v in given.items() if v is not None or k not in full})
    full.update(extra)
    for key in ("target_modules", "exclude_modules"):
        if isinstance(full.get(key), (tuple, set, frozenset)):
            full[key] = sorted(full[key])
    return full


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise InputError(f"config values must be JSON-serialisable; got {value!r}")


def _as_json(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON, key order kept."""
    try:
        _check_json(config, "")
    except RecursionError:
        raise InputError("config nests lists or mappings too deeply to be written") from None
    try:
        text = json.dumps(config, default=_json_default, allow_nan=False)
    except InputError:  # from _json_default, already clear (lowrank's errors are ValueErrors)
        raise
    except ValueError as exc:  # a NaN inside a value only _json_default converts
        raise InputError(f"config values must be finite JSON values: {exc}") from None
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _write_pair(directory: Path, tensors: dict[str, Array], config_text: str) -> None:
    # Two renames cannot be one atomic step, so the config is the commit marker: PEFT and
    # load_peft_adapter find an adapter only through it. Both files are written to
    # temporary names first (a failure there leaves the folder as it was); then the old
    # config is removed, the weights are renamed and the new config is renamed last. An
    # interruption in between leaves a folder without a config, which loaders refuse,
    # never a config beside weights of another adapter.
    config_file = directory / ADAPTER_CONFIG_NAME
    with (
        atomic_path(config_file) as config_tmp,
        atomic_path(directory / ADAPTER_WEIGHTS_NAME) as weights_tmp,
    ):
        save_safetensors(weights_tmp, tensors, metadata={"format": "pt"})
        config_tmp.write_bytes(config_text.encode("utf-8"))
        config_file.unlink(missing_ok=True)


def save_peft_adapter(
    directory: str | os.PathLike[str],
    modules: Mapping[str, Any],
    config: Mapping[str, Any] | SupportsPeftDict,
    *,
    base_model_name_or_path: str | None = None,
    task_type: str | None = None,
    dtype: DTypeLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PEFT LoRA adapter folder that ``PeftModel.from_pretrained`` loads.

    Parameters
    ----------
    directory : str or os.PathLike
        The folder to create (parents are created) or, with ``overwrite``, to update.
    modules : mapping of str to ``(lora_A, lora_B)``
        Module names in the base model (e.g. ``"model.layers.0.self_attn.q_proj"``, or
        ``"0"`` for the first layer of an ``nn.Sequential``) to NumPy factors of shapes
        ``(r, in)`` and ``(out, r)``; values may also be objects with ``lora_A`` and
        ``lora_B`` attributes (:class:`lowrank.lora.LoRAInit`, ``Extraction``,
        ``LoRAConversion``, :class:`PeftModule`). Such an object's ``scaling`` (and
        ``use_rslora``) must be the one the config gives its module: its factors are only
        right at that scaling (PiSSA's are divided by it), so a mismatch is refused.
    config : mapping or object with ``to_peft_dict()``
        ``adapter_config.json`` keys; ``r`` and ``lora_alpha`` are required, e.g.
        :class:`lowrank.lora.LoRAConfig` or ``{"r": 8, "lora_alpha": 16}``. Missing keys get
        PEFT's defaults (``peft_type="LORA"``, ``bias="none"``, ``inference_mode=true``,
        ...); ``target_modules`` defaults to the sorted module names. ``init_lora_weights``
        must be a value ``PeftModel.from_pretrained`` loads: ``True``, ``False``,
        ``"gaussian"``, ``"eva"``, ``"olora"``, ``"pissa"``, ``"pissa_niter_K"``,
        ``"orthogonal"``, ``"mica"`` or ``"lora_ga"``. PEFT has no ``"milora"``: save a
        MiLoRA adapter with ``True`` beside its residual base. ``"corda"`` and ``"loftq"``
        are refused too, as PEFT cannot rerun those inits from the folder alone.
    base_model_name_or_path, task_type : str, optional
        Written to the config when given.
    dtype : dtype, optional
        Convert the factors (float16, bfloat16, float32 or float64); default as given.
    overwrite : bool, default False
        Replace the adapter files of an existing folder (other files in it are kept). Both
        files are written under temporary names first; then the old config is removed, the
        weights renamed, and the new config renamed last, so an overwrite interrupted
        between the renames leaves a folder without ``adapter_config.json``, which loaders
        refuse, never a config beside the weights of another adapter.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    InputError
        ``directory`` not a non-empty ``str`` or ``os.PathLike``, ``modules`` empty or
        malformed, a bad module name, ``config`` of the wrong type,
        ``base_model_name_or_path`` or ``task_type`` not a non-empty string, ``overwrite``
        not a bool, ``directory`` an existing file or a symbolic link to nothing, or an
        existing adapter without ``overwrite`` (checked after the arguments).
    ShapeError
        Factors that are not 2-D or do not pair up, or a rank that disagrees with the
        config's ``r``/``rank_pattern`` for that module.
    DTypeError
        Factors or ``dtype`` not float16, bfloat16, float32 or float64.
    NonFiniteError
        A factor holds NaN or infinite entries, or exceeds the range of ``dtype`` (float16
        ends at 65504). Nothing is written.
    InputError
        Also: the completed config is not a plain-LoRA config (e.g. ``use_dora``), holds
        values JSON cannot store (NaN, infinity, keys that are not strings), has an
        ``init_lora_weights`` PEFT cannot load, combines fields PEFT refuses
        (``layers_to_transform`` with a string ``target_modules``), does not target a
        module by PEFT's rules (the message names the module and the rule; see the module
        docstring), or gives a module another scaling or ``use_rslora`` than the factor
        object passed for it carries (the message names both scalings and the alpha to
        set).
    OSError
        The folder or its files cannot be created or written (permissions, disk full, a
        parent that is a file); nothing half-written is left.

    Notes
    -----
    The JSON is written as PEFT writes it, ``indent=2`` with the top-level keys sorted, but
    the keys of ``rank_pattern`` and ``alpha_pattern`` are kept in the given order: PEFT
    resolves a module to the first key that matches it in file order, and that is the order
    the ranks were checked in here (``{"q_proj": 8, "layers.1.q_proj": 2}`` gives every
    ``q_proj`` alpha 8; sorted, ``layers.1.q_proj`` would get 2). Tensor keys are
    ``base_model.model.<module>.lora_A.weight`` and ``.lora_B.weight``, with metadata
    ``{"format": "pt"}``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> A, B = np.ones((2, 3), np.float32), np.zeros((4, 2), np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     config = {"r": 2, "lora_alpha": 4}
    ...     folder = save_peft_adapter(Path(d) / "adapter", {"fc": (A, B)}, config)
    ...     sorted(p.name for p in folder.iterdir())
    ['adapter_config.json', 'adapter_model.safetensors']
    """
    path = Path(os.path.abspath(check_path(directory, name="directory")))
    if not isinstance(modules, Mapping) or not modules:
        got = "an empty mapping" if isinstance(modules, Mapping) else type(modules).__name__
        raise InputError(
            f"modules must be a non-empty mapping of module names to factor pairs; got {got}"
        )
    for key, value in (
        ("base_model_name_or_path", base_model_name_or_path),
        ("task_type", task_type),
    ):
        if value is not None:
            check_str(value, name=key, allow_empty=False)
    overwrite = check_bool(overwrite, name="overwrite")
    target_dtype = _target_dtype(dtype)
    names: list[str] = []
    factors: dict[str, tuple[Array, Array]] = {}
    for name, value in modules.items():
        if not isinstance(name, str) or not _MODULE.fullmatch(name):
            raise InputError(
                "module names must be dot-separated names without spaces or empty parts, "
                f"like 'model.layers.0.q_proj'; got {name!r}"
            )
        A, B = _factors_of(name, value)
        if target_dtype is not None:
            A = cast_finite(A, target_dtype, what=f"modules[{name!r}] lora_A")
            B = cast_finite(B, target_dtype, what=f"modules[{name!r}] lora_B")
        names.append(name)
        factors[name] = (A, B)
    extra = {
        k: v
        for k, v in (("base_model_name_or_path", base_model_name_or_path), ("task_type", task_type))
        if v is not None
    }
    # Checked as PEFT will read it: JSON values (tuples as lists, NumPy scalars as numbers).
    full = _check_config(_as_json(_full_config(config, names, extra)), "config", InputError)
    refused = init_refusal(full["init_lora_weights"])
    if refused is not None:
        raise InputError(f"config init_lora_weights={full['init_lora_weights']!r} {refused}")
    for name, (A, _B) in factors.items():
        rank, _, _ = _resolve(full, name)
        if A.shape[0] != rank:
            raise ShapeError(
                f"module {name!r} has rank {A.shape[0]} but the config gives it rank {rank} "
                f"(r={full['r']}, rank_pattern={full.get('rank_pattern')}); add a rank_pattern "
                "entry or change r"
            )
        scaling_refusal = _scaling_refusal(name, modules[name], full)
        if scaling_refusal is not None:
            raise InputError(scaling_refusal)
        refusal = target_refusal(full, name)
        if refusal is not None:
            raise InputError(
                f"config does not target module {name!r}, so PEFT would ignore its factors: "
                f"{refusal}"
            )
    tensors: dict[str, Array] = {}
    for name, (A, B) in factors.items():
        tensors[f"{_PREFIX}{name}.lora_A.weight"] = A
        tensors[f"{_PREFIX}{name}.lora_B.weight"] = B
    # Top-level keys sorted as PEFT writes them, but not the keys inside rank_pattern and
    # alpha_pattern: PEFT tries those in file order (first match wins), so sorting them
    # could change which key a module resolves to. They keep the order checked above.
    ordered = {key: full[key] for key in sorted(full)}
    config_text = json.dumps(ordered, indent=2, default=_json_default, allow_nan=False) + "\n"
    return _write_folder(path, tensors, config_text, overwrite)


def _write_folder(path: Path, tensors: dict[str, Array], config_text: str, overwrite: bool) -> Path:
    if path.is_symlink() and not path.exists():
        # The folder is built under a hidden name and renamed onto ``path``, which a rename
        # cannot do onto a symbolic link; where the adapter should go is unclear anyway.
        raise InputError(
            f"directory '{path}' is a symbolic link to '{os.readlink(path)}', which does not "
            "exist; create the folder it points to, or remove the link"
        )
    if path.exists():
        if not path.is_dir():
            raise InputError(f"directory must be a folder; '{path}' is an existing file")
        existing = [n for n in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME) if (path / n).exists()]
        if existing and not overwrite:
            raise InputError(
                f"adapter folder '{path}' already holds {', '.join(existing)}; pass "
                "overwrite=True to replace them"
            )
        _write_pair(path, tensors, config_text)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.mkdir(staging)  # mode 0o777 minus the umask, like a plain mkdir
    try:
        _write_pair(staging, tensors, config_text)
        os.rename(staging, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        # A write error (a full disk) names the file in the hidden staging folder, which
        # is gone now; the caller asked for the file in ``path``.
        filename = None if exc.filename is None else os.fspath(exc.filename)
        if exc.errno is None or filename is None or Path(filename).parent != staging:
            raise
        raise OSError(exc.errno, exc.strerror, os.fspath(path / Path(filename).name)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return path
