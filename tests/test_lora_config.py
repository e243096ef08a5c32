"""LoRAConfig and PEFT's rank_pattern / alpha_pattern matching rule."""

from __future__ import annotations

import math
import re

import pytest

from lowrank.errors import InputError, RankError
from lowrank.lora import LoRAConfig, anchored_patterns, pattern_key


def peft_rule(keys, name):
    """PEFT's get_pattern_key, verbatim in behaviour (peft.utils.other), for comparison."""
    for key in keys:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return None


NAMES = [
    "q",
    "block.q",
    "model.layers.0.self_attn.q_proj",
    "model.layers.10.self_attn.q_proj",
    "model.layers.1.mlp.down_proj",
    "encoder.layers.1.q_proj",
]
KEYS = ["q_proj", "layers.1.*", r"^q", "q", r"model\.layers\.0\..*", "down_proj", "proj"]


@pytest.mark.parametrize("name", NAMES)
def test_pattern_key_is_peft_rule_first_match_wins(name):
    for start in range(len(KEYS)):
        keys = KEYS[start:] + KEYS[:start]
        assert pattern_key(keys, name) == peft_rule(keys, name)


def test_pattern_key_semantics():
    assert pattern_key(["q_proj"], "model.layers.0.self_attn.q_proj") == "q_proj"
    assert pattern_key(["proj"], "model.q_proj") is None  # only dot-separated suffixes
    assert pattern_key(["^q"], "block.q") is None and pattern_key(["^q"], "q") == "^q"
    assert pattern_key(["layers.1.q"], "model.layers.11.q") is None
    assert pattern_key(["v", "q"], "a.q") == "q"


def test_pattern_key_invalid_regex():
    with pytest.raises(InputError, match=r"pattern key '\(' is not a valid regular expression"):
        pattern_key(["("], "x")


def test_anchored_patterns():
    assert anchored_patterns({"layers.1.q": 2}, ["layers.1.q", "layers.1.k"]) == {"layers.1.q": 2}
    # "q" would also give "block.q" rank 2, and "a.b" would match "aXb": anchor and escape.
    out = anchored_patterns({"q": 2, "a.b": 3}, ["q", "block.q", "a.b", "aXb"])
    assert out == {"^q": 2, r"^a\.b": 3}
    for name, expected in (("q", "^q"), ("block.q", None), ("a.b", r"^a\.b"), ("aXb", None)):
        assert pattern_key(out, name) == expected


def test_config_resolution_and_scaling():
    cfg = LoRAConfig(
        r=8,
        lora_alpha=16,
        rank_pattern={"v_proj": 4, "layers.0.q_proj": 2},
        alpha_pattern={"v_proj": 2},
        target_modules=["v_proj", "q_proj"],
    )
    assert cfg.target_modules == ("q_proj", "v_proj")
    assert (
        cfg.rank_for("model.layers.0.q_proj") == 2 and cfg.alpha_for("model.layers.0.q_proj") == 16
    )
    assert cfg.scaling_for("model.layers.0.q_proj") == 8.0
    assert cfg.scaling_for("model.layers.3.v_proj") == 0.5
    assert cfg.scaling_for("model.layers.3.q_proj") == 2.0
    rs = LoRAConfig(r=4, lora_alpha=4, use_rslora=True)
    assert rs.scaling_for("anything") == 2.0


def test_config_round_trip_through_peft_dict():
    cfg = LoRAConfig(
        r=4,
        lora_alpha=6.5,
        use_rslora=True,
        rank_pattern={"a": 2},
        alpha_pattern={"a": 3.0},
        target_modules="(a|b)",
        fan_in_fan_out=True,
        init_lora_weights="pissa",
    )
    d = cfg.to_peft_dict()
    assert d["alpha_pattern"] == {"a": 3} and isinstance(d["alpha_pattern"]["a"], int)
    assert d["lora_alpha"] == 6.5 and d["target_modules"] == "(a|b)"
    assert LoRAConfig.from_peft_dict({**d, "peft_type": "LORA", "other": 1}) == cfg
    assert LoRAConfig(r=1, lora_alpha=1, target_modules=["b", "a"]).to_peft_dict()[
        "target_modules"
    ] == ["a", "b"]
    assert (
        LoRAConfig.from_peft_dict({"r": 2, "lora_alpha": 2, "rank_pattern": None}).rank_pattern
        == {}
    )


def test_patterns_are_copied():
    pattern = {"a": 2}
    cfg = LoRAConfig(r=4, lora_alpha=4, rank_pattern=pattern)
    pattern["a"] = 3
    assert cfg.rank_for("a") == 2


@pytest.mark.parametrize("rslora", [False, True])
def test_doubled_keeps_every_scaling_even_with_rslora_patterns(rslora):
    cfg = LoRAConfig(
        r=4,
        lora_alpha=8,
        use_rslora=rslora,
        rank_pattern={"v": 2, "k": 8},
        alpha_pattern={"v": 3, "o": 5},
        init_lora_weights="olora",
    )
    new = cfg.doubled()
    assert new.init_lora_weights is True and new.r == 8
    assert dict(new.rank_pattern) == {"v": 4, "k": 16}
    factor = math.sqrt(2) if rslora else 2
    assert new.lora_alpha == pytest.approx(8 * factor)
    for name in ("v", "k", "o", "q"):
        assert new.rank_for(name) == 2 * cfg.rank_for(name)
        assert new.scaling_for(name) == pytest.approx(cfg.scaling_for(name))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"r": 0}, RankError, "r must be an integer >= 1; got 0"),
        ({"r": 2.0}, RankError, "r must be an integer >= 1"),
        ({"lora_alpha": 0}, InputError, "lora_alpha must be finite and > 0"),
        ({"use_rslora": "no"}, InputError, "use_rslora must be True or False"),
        ({"fan_in_fan_out": 1}, InputError, "fan_in_fan_out must be True or False"),
        ({"rank_pattern": [("a", 1)]}, InputError, "rank_pattern must map module patterns"),
        ({"rank_pattern": {"": 1}}, InputError, "rank_pattern keys must be non-empty strings"),
        ({"rank_pattern": {"a": 0}}, RankError, r"rank_pattern\['a'\] must be an integer >= 1"),
        ({"rank_pattern": {"(": 1}}, InputError, "not a valid regular expression"),
        ({"alpha_pattern": 3}, InputError, "alpha_pattern must map module patterns"),
        ({"alpha_pattern": {1: 2.0}}, InputError, "alpha_pattern keys must be non-empty"),
        ({"alpha_pattern": {"a": -1}}, InputError, r"alpha_pattern\['a'\] must be finite"),
        ({"alpha_pattern": {"[": 1}}, InputError, "not a valid regular expression"),
        ({"target_modules": 3}, InputError, "target_modules must be None"),
        ({"target_modules": ["a", ""]}, InputError, "target_modules must be None"),
        ({"init_lora_weights": 1.5}, InputError, "init_lora_weights must be a bool or a string"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        LoRAConfig(**{"r": 4, "lora_alpha": 4, **kwargs})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([("r", 1)], "config must be a mapping"),
        ({"r": 4}, "config must give lora_alpha"),
        ({}, "config must give r and lora_alpha"),
    ],
)
def test_from_peft_dict_errors(value, match):
    with pytest.raises(InputError, match=match):
        LoRAConfig.from_peft_dict(value)
