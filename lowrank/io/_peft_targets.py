r"""Which modules a PEFT LoRA config adapts, by PEFT's rules, from module names alone.

PEFT (``peft.tuners.tuners_utils.check_target_module_exists``, 0.21) decides for each module
``name`` of the base model, in this order:

1. ``exclude_modules``: a string is a regular expression that must match the whole name
   (:func:`re.fullmatch`); a list excludes the names it holds and the names ending in
   ``"." + item``. Excluded modules are never adapted.
2. ``target_modules`` a string: ``"all-linear"`` (any case) means every ``nn.Linear`` and
   ``Conv1D`` except the output layer of a ``transformers`` model
   (``get_output_embeddings()``, e.g. ``lm_head``) and, for ``task_type="SEQ_CLS"`` models
   without one, the top-level ``score`` or ``classifier`` head; any other string is a regular
   expression matched against the whole name (:func:`re.fullmatch`).
   ``layers_to_transform``/``layers_pattern`` cannot be combined with a string.
3. ``target_modules`` a list: a name the list holds is adapted whatever the layer options
   say; otherwise the name must end in ``"." + item`` for an item, and then, if
   ``layers_to_transform`` is set (an int or a non-empty list), its layer index must be
   that int or in that list. The index is the first number that follows a
   ``layers_pattern`` component (``re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name)``
   for each pattern ``p``, first hit) or, without ``layers_pattern``, the first number
   preceded by at least two components (``re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)``);
   a name without one is not adapted.

PEFT silently skips a saved factor whose module it does not adapt, so lowrank refuses such
factors (:func:`target_refusal` says why). lowrank sees names, not the model: for
``"all-linear"`` it cannot know which module is the output layer, so it refuses the names
``transformers`` gives output layers (:data:`OUTPUT_LAYER_NAMES`, and any name ending in
``.lm_head``); list the modules in ``target_modules`` to adapt one of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lowrank.errors import FileFormatError

__all__ = [
    "ALL_LINEAR",
    "OUTPUT_LAYER_NAMES",
    "check_target_fields",
    "init_refusal",
    "target_refusal",
]

ALL_LINEAR = "all-linear"
# Full names transformers' get_output_embeddings() has for common architectures (Llama,
# GPT-2, T5, Qwen...: lm_head; GPT-NeoX: embed_out; Whisper: proj_out; BERT/RoBERTa MLM:
# cls.predictions.decoder / lm_head.decoder; ELECTRA: generator_lm_head; XLNet: lm_loss).
OUTPUT_LAYER_NAMES = (
    "lm_head",
    "lm_head.decoder",
    "embed_out",
    "proj_out",
    "cls.predictions.decoder",
    "generator_lm_head",
    "lm_loss",
)
# PEFT's SEQ_CLS_HEAD_NAMES: top-level classifier heads "all-linear" leaves out.
_SEQ_CLS_HEADS = ("score", "classifier")


def _check_regex(value: str, source: str, key: str) -> None:
    """Refuse a config string that PEFT would compile as a regular expression and cannot."""
    try:
        re.compile(value)
    except re.error as exc:
        raise FileFormatError(
            f"{source}: {key} {value!r} is not a valid regular expression: {exc}"
        ) from None


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_target_fields(config: Mapping[str, Any], source: str) -> None:
    """Check ``target_modules``, ``exclude_modules``, ``layers_to_transform`` and
    ``layers_pattern`` as PEFT's ``LoraConfig`` does; ``source`` names the config.

    Raises
    ------
    FileFormatError
        A field of the wrong type, a regular expression that does not compile, or a
        combination PEFT refuses (layer options with a string ``target_modules``,
        ``layers_pattern`` without ``layers_to_transform``).
    """
    for key in ("target_modules", "exclude_modules"):
        value = config.get(key)
        ok = (
            value is None
            or isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        )
        if not ok:
            raise FileFormatError(
                f"{source}: {key!r} must be null, a string or a list of strings; got {value!r}"
            )
        if isinstance(value, str) and value.lower() != ALL_LINEAR:
            _check_regex(value, source, key)
    layers = config.get("layers_to_transform")
    if not (
        layers is None
        or _is_index(layers)
        or (isinstance(layers, list) and all(_is_index(v) for v in layers))
    ):
        raise FileFormatError(
            f"{source}: 'layers_to_transform' must be null, an integer or a list of integers; "
            f"got {layers!r}"
        )
    pattern = config.get("layers_pattern")
    if not (
        pattern is None
        or isinstance(pattern, str)
        or (isinstance(pattern, list) and all(isinstance(v, str) for v in pattern))
    ):
        raise FileFormatError(
            f"{source}: 'layers_pattern' must be null, a string or a list of strings; "
            f"got {pattern!r}"
        )
    for p in [pattern] if isinstance(pattern, str) else pattern or []:
        _check_regex(p, source, "layers_pattern")
    target = config.get("target_modules")
    for key, value in (("layers_to_transform", layers), ("layers_pattern", pattern)):
        if isinstance(target, str) and value is not None:
            raise FileFormatError(
                f"{source}: {key} = {value!r} cannot be used with target_modules = "
                f"{target!r}, a string (PEFT refuses this combination); list the module "
                "names instead"
            )
    if pattern and layers is None:
        raise FileFormatError(
            f"{source}: layers_pattern = {pattern!r} needs layers_to_transform (PEFT refuses "
            "layers_pattern alone)"
        )


def _layer_index(name: str, pattern: str | list[str] | None) -> int | None:
    """The layer index PEFT reads from ``name`` (see the module docstring), or None."""
    if not pattern:
        found = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
    else:
        found = None
        for p in [pattern] if isinstance(pattern, str) else pattern:
            found = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name)
            if found is not None:
                break
    return None if found is None else int(found.group("idx"))


def target_refusal(config: Mapping[str, Any], name: str) -> str | None:
    """Why PEFT would not adapt module ``name`` under ``config``, or None if it would.

    ``config`` must have passed :func:`check_target_fields`. The reason names the field and
    its rule, for messages such as "PEFT would ignore the factors of module X: <reason>".
    """
    exclude = config.get("exclude_modules")
    if isinstance(exclude, str) and exclude and re.fullmatch(exclude, name):
        return f"exclude_modules {exclude!r} matches the whole name (re.fullmatch)"
    if isinstance(exclude, list) and (
        name in exclude or any(name.endswith("." + e) for e in exclude)
    ):
        return f"exclude_modules {exclude!r} holds the name or a dot-separated suffix of it"
    target = config.get("target_modules")
    if target is None:
        return (
            "target_modules is null (PEFT would choose the targets from the model type); "
            "list the modules"
        )
    if isinstance(target, str):
        if target.lower() == ALL_LINEAR:
            output = name in OUTPUT_LAYER_NAMES or name.endswith(".lm_head")
            if output:
                return (
                    f"target_modules {target!r} leaves out the model's output layer, and "
                    f"{name!r} is named as one (lowrank cannot see the model; list the "
                    "modules in target_modules to adapt it)"
                )
            if config.get("task_type") == "SEQ_CLS" and name in _SEQ_CLS_HEADS:
                return (
                    f"target_modules {target!r} with task_type 'SEQ_CLS' leaves out the "
                    f"classifier head {name!r}"
                )
            return None
        if re.fullmatch(target, name) is None:
            return f"target_modules {target!r} does not match the whole name (re.fullmatch)"
        return None
    if name in target:
        return None  # PEFT adapts a listed full name whatever layers_to_transform says
    if not any(name.endswith("." + t) for t in target):
        return f"target_modules {target!r} holds neither the name nor a dot-separated suffix of it"
    layers = config.get("layers_to_transform")
    if layers is None or (isinstance(layers, list) and not layers):
        return None
    pattern = config.get("layers_pattern")
    index = _layer_index(name, pattern)
    rule = f"layers_to_transform = {layers!r}" + (
        f" with layers_pattern = {pattern!r}" if pattern else ""
    )
    if index is None:
        return f"{rule} applies, and the name has no layer index PEFT can read"
    if index != layers if _is_index(layers) else index not in layers:
        return f"{rule} does not include its layer index {index}"
    return None


# The string values of init_lora_weights that PEFT (0.21) runs when PeftModel.from_pretrained
# rebuilds the layers (LoraLayer.update_layer), spelled as PEFT documents them; "pissa_niter_K"
# is matched separately. "corda" and "loftq" are left out: update_layer needs CorDA's
# preprocessing of the model or a loftq_config for them, so from_pretrained fails on a
# folder that says either without them (see init_refusal).
_PEFT_INITS = ("gaussian", "eva", "olora", "pissa", "orthogonal", "mica", "lora_ga")
_PISSA_NITER = re.compile(r"pissa_niter_\d+")


def init_refusal(value: object) -> str | None:
    """Why PEFT's ``PeftModel.from_pretrained`` would fail on ``init_lora_weights=value``
    (a sentence to follow "init_lora_weights=<value> ..."), or None if it loads it.

    Only PEFT's own spellings pass, a subset of what PEFT runs: it also takes e.g.
    ``"OLoRA"`` (it lower-cases some names), which lowrank's readers would not recognise.
    """
    if isinstance(value, bool):
        return None
    if not isinstance(value, str):
        return f"is not a bool or a string ({type(value).__name__})"
    if value in _PEFT_INITS or _PISSA_NITER.fullmatch(value):
        return None
    if value == "milora":
        return (
            "is not a PEFT value: PEFT has no MiLoRA init and PeftModel.from_pretrained "
            "refuses the folder. Save the MiLoRA residual base (LoRAInit.residual) as the base "
            "model and the factors with init_lora_weights=True, or convert the trained "
            "adapter to plain LoRA on the original base (lowrank.lora.pissa_to_lora)"
        )
    if value in ("corda", "loftq"):
        needs = "CorDA's preprocessing" if value == "corda" else "a loftq_config"
        return (
            f"makes PeftModel.from_pretrained rerun the {value} init, which needs {needs} and "
            "fails without it. Save the residual base as the base model and the factors with "
            "init_lora_weights=True"
        )
    lower = value.lower()
    if lower in _PEFT_INITS or _PISSA_NITER.fullmatch(lower):
        # PEFT may still run it (it lower-cases some names), but its docs, its
        # save_pretrained and lowrank's readers use the lower-case spelling.
        return f"is not PEFT's spelling of it (did you mean {lower!r}?)"
    known = ", ".join(repr(v) for v in (True, False, *_PEFT_INITS, "pissa_niter_<K>"))
    return f"is not a value PEFT accepts; use one of {known}"
