"""PEFT's target rules in save_peft_adapter / load_peft_adapter: ``layers_to_transform``,
``layers_pattern``, ``exclude_modules`` and ``"all-linear"`` (see lowrank.io._peft_targets).

A factor PEFT would not adapt is silently dropped by PEFT, so lowrank refuses it, naming the
module and the rule. tests/test_interop_peft.py checks the same rules against the real PEFT.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowrank.errors import FileFormatError, InputError
from lowrank.io._peft_targets import check_target_fields, target_refusal
from lowrank.io.peft import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    load_peft_adapter,
    save_peft_adapter,
)


def pair(rng, r=2):
    return rng.standard_normal((r, 4)).astype(np.float32), rng.standard_normal((3, r)).astype(
        np.float32
    )


def write_raw(folder, config, names, rng):
    """A folder written by hand, bypassing save_peft_adapter's checks."""
    folder.mkdir(parents=True)
    (folder / ADAPTER_CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA", **config}))
    tensors = {}
    for name in names:
        A, B = pair(rng)
        tensors[f"base_model.model.{name}.lora_A.weight"] = A
        tensors[f"base_model.model.{name}.lora_B.weight"] = B
    save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


LAYERS = {"r": 2, "lora_alpha": 2, "target_modules": ["fc"], "layers_to_transform": [0]}


def test_layers_to_transform_refuses_other_layers_on_save_and_load(tmp_path, rng):
    ok = {"model.layers.0.fc": pair(rng)}
    save_peft_adapter(tmp_path / "ok", ok, LAYERS)
    assert list(load_peft_adapter(tmp_path / "ok").modules) == ["model.layers.0.fc"]
    bad = {**ok, "model.layers.1.fc": pair(rng)}
    with pytest.raises(
        InputError,
        match=r"does not target module 'model\.layers\.1\.fc'.*"
        r"layers_to_transform = \[0\] does not include its layer index 1",
    ):
        save_peft_adapter(tmp_path / "bad", bad, LAYERS)
    assert not (tmp_path / "bad").exists()
    folder = write_raw(tmp_path / "raw", LAYERS, bad, rng)
    with pytest.raises(
        FileFormatError,
        match=r"module 'model\.layers\.1\.fc', which .* does not target, so PEFT would ignore "
        r"them: layers_to_transform = \[0\] does not include its layer index 1",
    ):
        load_peft_adapter(folder)


@pytest.mark.parametrize(
    ("config", "name", "reason"),
    [
        # an int, and a list
        ({"layers_to_transform": 1}, "model.layers.1.fc", None),
        ({"layers_to_transform": 1}, "model.layers.0.fc", "does not include its layer index 0"),
        ({"layers_to_transform": [0, 2]}, "model.layers.2.fc", None),
        ({"layers_to_transform": []}, "model.layers.5.fc", None),  # empty: not used
        # the first index after two components, as PEFT reads it (not an expert's index)
        ({"layers_to_transform": [1]}, "model.layers.1.experts.0.fc", None),
        ({"layers_to_transform": [0]}, "layers.0.fc", "has no layer index PEFT can read"),
        ({"layers_to_transform": [0]}, "model.fc", "has no layer index PEFT can read"),
        # layers_pattern: the index after that component
        ({"layers_to_transform": [3], "layers_pattern": "h"}, "transformer.h.3.fc", None),
        ({"layers_to_transform": [3], "layers_pattern": ["blocks", "h"]}, "x.h.3.fc", None),
        (
            {"layers_to_transform": [3], "layers_pattern": "blocks"},
            "transformer.h.3.fc",
            "with layers_pattern = 'blocks' applies, and the name has no layer index",
        ),
        # a full name in target_modules is adapted whatever layers_to_transform says
        (
            {"target_modules": ["model.layers.1.fc"], "layers_to_transform": [0]},
            "model.layers.1.fc",
            None,
        ),
        # exclusion comes first
        ({"exclude_modules": ["layers.0.fc"]}, "model.layers.0.fc", "exclude_modules"),
        ({"exclude_modules": r".*\.0\.fc"}, "model.layers.0.fc", "exclude_modules"),
        ({"exclude_modules": r"0\.fc"}, "model.layers.0.fc", None),  # fullmatch
        # regular expressions match the whole name
        ({"target_modules": r".*\.fc"}, "model.layers.0.fc", None),
        ({"target_modules": r"fc"}, "model.layers.0.fc", "does not match the whole name"),
        ({"target_modules": None}, "model.layers.0.fc", "target_modules is null"),
        ({"target_modules": ["c"]}, "model.layers.0.fc", "neither the name nor a dot-separated"),
        # "all-linear" (any case) leaves out output layers by their transformers names
        ({"target_modules": "all-linear"}, "model.layers.0.fc", None),
        ({"target_modules": "ALL-LINEAR"}, "model.layers.0.fc", None),
        ({"target_modules": "all-linear"}, "lm_head", "leaves out the model's output layer"),
        ({"target_modules": "all-linear"}, "language_model.lm_head", "output layer"),
        ({"target_modules": "all-linear"}, "embed_out", "output layer"),
        ({"target_modules": "all-linear"}, "cls.predictions.decoder", "output layer"),
        ({"target_modules": "all-linear"}, "classifier", None),
        (
            {"target_modules": "all-linear", "task_type": "SEQ_CLS"},
            "score",
            "with task_type 'SEQ_CLS' leaves out the classifier head 'score'",
        ),
        ({"target_modules": "all-linear", "task_type": "SEQ_CLS"}, "classifier.dense", None),
    ],
)
def test_target_refusal_follows_peft(config, name, reason):
    full = {"target_modules": ["fc"], **config}
    check_target_fields(full, "config")
    got = target_refusal(full, name)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_all_linear_refuses_the_output_layer_on_save_and_load(tmp_path, rng):
    config = {"r": 2, "lora_alpha": 2, "target_modules": "all-linear"}
    save_peft_adapter(tmp_path / "ok", {"model.layers.0.q_proj": pair(rng)}, config)
    with pytest.raises(InputError, match=r"module 'lm_head'.*'all-linear' leaves out the model"):
        save_peft_adapter(tmp_path / "bad", {"lm_head": pair(rng)}, config)
    folder = write_raw(tmp_path / "raw", config, ["lm_head"], rng)
    with pytest.raises(FileFormatError, match=r"module 'lm_head'.*output layer"):
        load_peft_adapter(folder)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"target_modules": ".*fc", "layers_to_transform": [0]},
            "layers_to_transform = \\[0\\] cannot be used with target_modules = '.\\*fc'",
        ),
        (
            {"target_modules": "all-linear", "layers_pattern": "h", "layers_to_transform": 0},
            "cannot be used with target_modules = 'all-linear', a string",
        ),
        ({"layers_pattern": "h"}, "layers_pattern = 'h' needs layers_to_transform"),
        ({"layers_to_transform": "0"}, "'layers_to_transform' must be null, an integer or a list"),
        ({"layers_to_transform": [True]}, "'layers_to_transform' must be null, an integer"),
        ({"layers_to_transform": [0], "layers_pattern": 3}, "'layers_pattern' must be null"),
        ({"layers_to_transform": [0], "layers_pattern": "("}, "layers_pattern '\\(' is not a"),
        ({"target_modules": "("}, "target_modules '\\(' is not a valid regular expression"),
        ({"exclude_modules": "["}, "exclude_modules '\\[' is not a valid regular expression"),
    ],
)
def test_config_fields_peft_refuses(tmp_path, rng, config, match):
    full = {"r": 2, "lora_alpha": 2, "target_modules": ["fc"], **config}
    with pytest.raises(InputError, match=match):
        save_peft_adapter(tmp_path / "ad", {"model.layers.0.fc": pair(rng)}, full)
    folder = write_raw(tmp_path / "raw", full, ["model.layers.0.fc"], rng)
    with pytest.raises(FileFormatError, match=match):
        load_peft_adapter(folder)
