r"""PEFT's rule for matching per-module ``rank_pattern``/``alpha_pattern`` keys (layer 0, so
that both the LoRA layer and the PEFT file reader use the one rule).

Rule (``peft.utils.other.get_pattern_key``): the keys are regular expressions tried **in
insertion order**; key ``k`` matches module name ``n`` when ``re.match(rf"(.*\.)?({k})$", n)``
succeeds, i.e. ``k`` matches a dot-separated suffix of ``n`` to its end; the first matching
key wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lowrank._validation import check_str, check_str_sequence
from lowrank.errors import InputError

__all__ = ["pattern_key"]


def pattern_key(patterns: Iterable[str], name: str) -> str | None:
    r"""The first key of ``patterns`` that matches module ``name`` by PEFT's rule, or None.

    Parameters
    ----------
    patterns : iterable of str
        Regular expressions, tried in order (the keys of ``rank_pattern``/``alpha_pattern``).
    name : str
        A module's full name, e.g. ``"model.layers.0.self_attn.q_proj"``.

    Returns
    -------
    str or None

    Raises
    ------
    InputError
        A key is not a valid regular expression.

    Examples
    --------
    >>> pattern_key(["v_proj", "q_proj"], "model.layers.0.self_attn.q_proj")
    'q_proj'
    >>> pattern_key(["proj"], "model.q_proj") is None   # not a dot-separated suffix
    True
    >>> pattern_key([r"^layers\.0\.q"], "model.layers.0.q") is None   # "^" anchors at the start
    True
    """
    keys = check_str_sequence(patterns, name="patterns")
    check_str(name, name="name")
    for key in keys:
        try:
            matched = re.match(rf"(.*\.)?({key})$", name)
        except re.error as exc:
            raise InputError(
                f"pattern key {key!r} is not a valid regular expression: {exc}"
            ) from None
        if matched:
            return key
    return None
