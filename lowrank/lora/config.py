r"""The LoRA hyper-parameters of a whole model, with PEFT's per-module pattern rule.

A :class:`LoRAConfig` holds what PEFT's ``LoraConfig`` needs to rebuild the scaling of every
adapted module: the default rank ``r`` and ``lora_alpha``, the per-module overrides
``rank_pattern`` and ``alpha_pattern``, ``use_rslora`` and ``fan_in_fan_out``. It is plain
data (no files: :mod:`lowrank.io.peft` reads and writes ``adapter_config.json``).

Pattern rule (``peft.utils.other.get_pattern_key``): the keys of a pattern are regular
expressions tried **in insertion order**; key ``k`` matches module name ``n`` when
``re.match(rf"(.*\.)?({k})$", n)`` succeeds, i.e. ``k`` matches a dot-separated suffix of
``n`` to its end; the first matching key wins, otherwise the default applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lowrank._patterns import pattern_key
from lowrank._validation import (
    check_bool,
    check_mapping,
    check_positive_float,
    check_str_sequence,
)
from lowrank.errors import InputError
from lowrank.lora.conventions import _check_positive_rank, lora_scaling

__all__ = ["LoRAConfig", "anchored_patterns", "pattern_key"]


def anchored_patterns(values: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    r"""Pattern keys for full module names that resolve to exactly their own module.

    ``values`` maps full module names to per-module values. Plain names are used as keys when
    PEFT's rule then resolves every name in ``names`` (the modules the adapter targets) to
    its own value (or, for names not in ``values``, to no key); otherwise every key becomes
    ``"^" + re.escape(name)``, which matches that one name only. (A plain name such as
    ``"q"`` also matches ``"encoder.q"``, and its dots match any character.)

    Parameters
    ----------
    values : mapping of str to object
        Per-module values (ranks or alphas) by full module name, in the order the keys
        should be tried.
    names : iterable of str
        Full names of every module the adapter targets, those in ``values`` and the others.

    Returns
    -------
    dict of str to object
        ``values`` with its keys kept when they are already unambiguous, else with every
        key anchored; insertion order and values unchanged. Usable as a
        :class:`LoRAConfig` ``rank_pattern`` or ``alpha_pattern``.

    Raises
    ------
    InputError
        ``values`` is not a mapping with string keys, ``names`` is not a sequence of
        strings (a bare string is refused), or a plain key is not a valid regular
        expression (``re.escape`` it first).

    Examples
    --------
    >>> anchored_patterns({"layers.1.q": 2}, ["layers.1.q", "layers.1.k"])
    {'layers.1.q': 2}
    >>> anchored_patterns({"q": 2}, ["q", "block.q"])
    {'^q': 2}
    >>> anchored_patterns({"layers.1.q": 2}, ["layers.1.q", "layers.11q"])  # "." matches "1"
    {'^layers\\.1\\.q': 2}
    """
    plain = dict(check_mapping(values, name="values"))
    check_str_sequence(tuple(plain), name="values' keys")
    targets = list(check_str_sequence(names, name="names"))
    for n in targets:
        key = pattern_key(plain, n)
        if key != (n if n in plain else None):
            return {"^" + re.escape(k): v for k, v in plain.items()}
    return plain


def _rank_pattern(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise InputError(f"rank_pattern must map module patterns to ranks; got {value!r}")
    out: dict[str, int] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise InputError(f"rank_pattern keys must be non-empty strings; got {k!r}")
        out[k] = _check_positive_rank(v, name=f"rank_pattern[{k!r}]")
        pattern_key([k], "")  # validates the regular expression
    return out


def _alpha_pattern(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InputError(f"alpha_pattern must map module patterns to alphas; got {value!r}")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise InputError(f"alpha_pattern keys must be non-empty strings; got {k!r}")
        out[k] = check_positive_float(v, name=f"alpha_pattern[{k!r}]")
        pattern_key([k], "")
    return out


def _target_modules(value: object) -> tuple[str, ...] | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = tuple(value)
        if all(isinstance(v, str) and v for v in items):
            return tuple(sorted(items))
    raise InputError(
        f"target_modules must be None, a regular expression or a list of module names; "
        f"got {value!r}"
    )


def _number(value: float) -> int | float:
    """``value`` as an int when integral, so that JSON shows ``16`` rather than ``16.0``."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class LoRAConfig:
    r"""Ranks and scalings of the LoRA modules of one model, as PEFT's ``LoraConfig``.

    Parameters
    ----------
    r : int
        Default rank, ``>= 1``.
    lora_alpha : float
        Default ``alpha``, finite and > 0.
    use_rslora : bool, default False
        :math:`s = \alpha/\sqrt r` instead of :math:`\alpha/r`.
    rank_pattern, alpha_pattern : mapping of str to number, optional
        Per-module overrides (see the module docstring for the matching rule). Copied.
    target_modules : list of str, str or None, optional
        PEFT's ``target_modules``: names (exact, or a dot-separated suffix) or one regular
        expression. Lists are stored sorted, as a tuple.
    fan_in_fan_out : bool, default False
        The targeted weights are stored ``(in, out)`` (GPT-2's ``Conv1D``).
    init_lora_weights : bool or str, default True
        How the adapters were initialised (PEFT's value: ``True``, ``"gaussian"``,
        ``"pissa"``, ``"olora"``, ``"corda"``, ...; any string is kept, so a config PEFT
        wrote reads back as it is). An adapter saved with ``"pissa"`` or ``"olora"``
        applies to the *residual* base; see :func:`lowrank.lora.pissa_to_lora`. Writing
        a folder (``lowrank.io.save_peft_adapter``) accepts only the values
        ``PeftModel.from_pretrained`` loads from the folder alone: ``True``, ``False``,
        ``"gaussian"``, ``"eva"``, ``"olora"``, ``"pissa"``, ``"pissa_niter_K"``,
        ``"orthogonal"``, ``"mica"`` or ``"lora_ga"`` (not ``"corda"``/``"loftq"``, which
        PEFT reruns at load time, nor ``"milora"``, which PEFT does not know: describe a
        MiLoRA adapter with ``True`` and save its residual base as the base model).

    Raises
    ------
    InputError, RankError
        Any field of the wrong type or out of range, or a pattern key that is not a
        regular expression.

    Examples
    --------
    >>> cfg = LoRAConfig(r=8, lora_alpha=16, rank_pattern={"v_proj": 4})
    >>> cfg.rank_for("model.layers.0.self_attn.v_proj"), cfg.scaling_for("model.layers.0.q_proj")
    (4, 2.0)
    >>> cfg.scaling_for("model.layers.0.self_attn.v_proj")   # alpha 16 over rank 4
    4.0
    """

    r: int
    lora_alpha: float
    use_rslora: bool = False
    rank_pattern: Mapping[str, int] = field(default_factory=dict)
    alpha_pattern: Mapping[str, float] = field(default_factory=dict)
    target_modules: tuple[str, ...] | str | None = None
    fan_in_fan_out: bool = False
    init_lora_weights: bool | str = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", _check_positive_rank(self.r, name="r"))
        object.__setattr__(
            self, "lora_alpha", check_positive_float(self.lora_alpha, name="lora_alpha")
        )
        check_bool(self.use_rslora, name="use_rslora")
        check_bool(self.fan_in_fan_out, name="fan_in_fan_out")
        object.__setattr__(self, "use_rslora", bool(self.use_rslora))
        object.__setattr__(self, "fan_in_fan_out", bool(self.fan_in_fan_out))
        object.__setattr__(self, "rank_pattern", _rank_pattern(self.rank_pattern))
        object.__setattr__(self, "alpha_pattern", _alpha_pattern(self.alpha_pattern))
        object.__setattr__(self, "target_modules", _target_modules(self.target_modules))
        if not isinstance(self.init_lora_weights, (bool, str)):
            raise InputError(
                f"init_lora_weights must be a bool or a string; got {self.init_lora_weights!r}"
            )

    def rank_for(self, name: str) -> int:
        """The rank of module ``name`` (``rank_pattern``'s first match, else ``r``).

        Parameters
        ----------
        name : str
            A module's full name, e.g. ``"model.layers.0.self_attn.v_proj"``.

        Returns
        -------
        int
            The rank ``r`` of that module's adapter, ``>= 1``.

        Raises
        ------
        InputError
            ``name`` is not a string.

        Examples
        --------
        >>> cfg = LoRAConfig(r=8, lora_alpha=16, rank_pattern={"v_proj": 4})
        >>> cfg.rank_for("model.layers.0.self_attn.v_proj"), cfg.rank_for("model.layers.0.q_proj")
        (4, 8)
        """
        key = pattern_key(self.rank_pattern, name)
        return self.r if key is None else self.rank_pattern[key]

    def alpha_for(self, name: str) -> float:
        """The alpha of module ``name`` (``alpha_pattern``'s first match, else ``lora_alpha``).

        Parameters
        ----------
        name : str
            A module's full name, e.g. ``"model.layers.0.self_attn.q_proj"``.

        Returns
        -------
        float
            That module's ``lora_alpha``, finite and > 0.

        Raises
        ------
        InputError
            ``name`` is not a string.

        Examples
        --------
        >>> cfg = LoRAConfig(r=8, lora_alpha=16, alpha_pattern={"q_proj": 32})
        >>> cfg.alpha_for("layers.0.q_proj"), cfg.alpha_for("layers.0.k_proj")
        (32.0, 16.0)
        """
        key = pattern_key(self.alpha_pattern, name)
        return self.lora_alpha if key is None else self.alpha_pattern[key]

    def scaling_for(self, name: str) -> float:
        r"""The scaling of module ``name``: ``alpha / r`` or ``alpha / sqrt(r)``.

        Parameters
        ----------
        name : str
            A module's full name.

        Returns
        -------
        float
            :math:`s = \alpha/r`, or :math:`\alpha/\sqrt r` with ``use_rslora``, from the
            module's :meth:`alpha_for` and :meth:`rank_for`.

        Raises
        ------
        InputError
            ``name`` is not a string.

        Examples
        --------
        >>> LoRAConfig(r=4, lora_alpha=8).scaling_for("q_proj")
        2.0
        >>> LoRAConfig(r=4, lora_alpha=8, use_rslora=True).scaling_for("q_proj")
        4.0
        """
        return lora_scaling(self.alpha_for(name), self.rank_for(name), use_rslora=self.use_rslora)

    def to_peft_dict(self) -> dict[str, Any]:
        """The LoRA keys of PEFT's ``adapter_config.json`` (lists for tuples, ints for
        integral alphas). :mod:`lowrank.io.peft` adds the other keys when it writes.

        Returns
        -------
        dict of str to object
            The keys ``r``, ``lora_alpha``, ``use_rslora``, ``rank_pattern``,
            ``alpha_pattern``, ``target_modules``, ``fan_in_fan_out`` and
            ``init_lora_weights``, JSON-serialisable; :meth:`from_peft_dict` reads it back
            to an equal config.

        Examples
        --------
        >>> LoRAConfig(r=4, lora_alpha=8).to_peft_dict()["lora_alpha"]
        8
        """
        return {
            "r": self.r,
            "lora_alpha": _number(self.lora_alpha),
            "use_rslora": self.use_rslora,
            "rank_pattern": dict(self.rank_pattern),
            "alpha_pattern": {k: _number(v) for k, v in self.alpha_pattern.items()},
            "target_modules": (
                list(self.target_modules)
                if isinstance(self.target_modules, tuple)
                else self.target_modules
            ),
            "fan_in_fan_out": self.fan_in_fan_out,
            "init_lora_weights": self.init_lora_weights,
        }

    @classmethod
    def from_peft_dict(cls, config: Mapping[str, Any]) -> LoRAConfig:
        """A config from the keys of an ``adapter_config.json`` (other keys are ignored).

        Parameters
        ----------
        config : mapping of str to object
            The parsed JSON: ``r`` and ``lora_alpha`` are required; ``use_rslora``,
            ``rank_pattern``, ``alpha_pattern``, ``target_modules``, ``fan_in_fan_out`` and
            ``init_lora_weights`` take PEFT's defaults when missing (null patterns are
            empty).

        Returns
        -------
        LoRAConfig

        Raises
        ------
        InputError
            ``config`` is not a mapping, ``r`` or ``lora_alpha`` is missing, or a value is
            of the wrong type.
        RankError
            ``r`` or a ``rank_pattern`` value is not an integer >= 1.

        Examples
        --------
        >>> LoRAConfig.from_peft_dict({"r": 8, "lora_alpha": 16, "peft_type": "LORA"}).r
        8
        """
        if not isinstance(config, Mapping):
            raise InputError(f"config must be a mapping; got {type(config).__name__}")
        missing = [k for k in ("r", "lora_alpha") if k not in config]
        if missing:
            raise InputError(f"config must give {' and '.join(missing)}; got keys {sorted(config)}")
        return cls(
            r=config["r"],
            lora_alpha=config["lora_alpha"],
            use_rslora=config.get("use_rslora", False),
            rank_pattern=config.get("rank_pattern") or {},
            alpha_pattern=config.get("alpha_pattern") or {},
            target_modules=config.get("target_modules"),
            fan_in_fan_out=config.get("fan_in_fan_out", False),
            init_lora_weights=config.get("init_lora_weights", True),
        )

    def doubled(self) -> LoRAConfig:
        r"""The config of the rank-:math:`2r` plain LoRA that :func:`~lowrank.lora.pissa_to_lora`
        makes: every rank doubled and every alpha multiplied by 2 (by :math:`\sqrt2` under
        rsLoRA), so every module keeps its scaling; ``init_lora_weights`` becomes True.

        PEFT refuses rsLoRA together with ``rank_pattern``/``alpha_pattern`` because it doubles
        ``alpha_pattern`` in both cases; multiplying by :math:`\sqrt2` is the right update, so
        that combination is converted here.

        Returns
        -------
        LoRAConfig
            A new config; ``target_modules``, ``use_rslora`` and ``fan_in_fan_out`` are kept.

        Examples
        --------
        >>> c = LoRAConfig(r=4, lora_alpha=8, rank_pattern={"v": 2}, init_lora_weights="pissa")
        >>> d = c.doubled()
        >>> d.r, d.lora_alpha, dict(d.rank_pattern), d.init_lora_weights
        (8, 16.0, {'v': 4}, True)
        >>> d.scaling_for("v") == c.scaling_for("v")
        True
        """
        factor = math.sqrt(2.0) if self.use_rslora else 2.0
        return LoRAConfig(
            r=2 * self.r,
            lora_alpha=factor * self.lora_alpha,
            use_rslora=self.use_rslora,
            rank_pattern={k: 2 * v for k, v in self.rank_pattern.items()},
            alpha_pattern={k: factor * v for k, v in self.alpha_pattern.items()},
            target_modules=self.target_modules,
            fan_in_fan_out=self.fan_in_fan_out,
            init_lora_weights=True,
        )
