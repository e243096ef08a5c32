"""Audit 5 of lowrank.lora and lowrank.io.peft: the defects found against the real PEFT 0.21.2.

1. ``save_peft_adapter`` checked the rank of a factor object (``LoRAInit``, ``Extraction``,
   ``LoRAConversion``, ``PeftModule``) against the config but not the scaling or rsLoRA it
   carries, so a PiSSA init or an rsLoRA extraction could be written at the wrong scale.
2. ``init_lora_weights`` values PEFT cannot load (``"milora"``, ``"bogus"``, ``"PiSSA"``) were
   written; a non-bool, non-string value was read as True.
3. Float16 inits returned ``inf`` factors and a NaN residual with only NumPy's warning.
4. A deeply nested config raised a raw RecursionError; NaN values and non-string keys were
   written into ``adapter_config.json`` (bare ``NaN``, keys turned into strings).
5. A config without ``r``/``lora_alpha`` was refused although PEFT loads it with its
   defaults (r=8, lora_alpha=8: peft/tuners/lora/config.py ``LoraConfig``).

References are closed forms: scaling ``alpha/r`` (``alpha/sqrt(r)`` under rsLoRA), the
exactness ``W_res + s B A = W`` of the SVD/QR inits, and float16's largest finite value
65504. The interop tests of the same defects (PEFT loading what is written here) are in
tests/test_interop_peft.py.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowrank.errors import FileFormatError, InputError, NonFiniteError
from lowrank.io.peft import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    load_peft_adapter,
    read_peft_config,
    save_peft_adapter,
)
from lowrank.lora import (
    LoRAConfig,
    convert_pissa_adapter,
    extract,
    init_factors,
    milora_init,
    olora_init,
    pissa_init,
)

# float64 rounding of alpha/r and of W_res + s B A on the small matrices below.
TIGHT = 1e-12


def write_raw(folder: Path, config: object, tensors: dict[str, np.ndarray]) -> Path:
    """A folder written by hand (bypassing save_peft_adapter's checks)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / ADAPTER_CONFIG_NAME).write_text(text)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


def pair_tensors(rng: np.random.Generator, r: int, name: str = "fc") -> dict[str, np.ndarray]:
    return {
        f"base_model.model.{name}.lora_A.weight": rng.standard_normal((r, 6)).astype(np.float32),
        f"base_model.model.{name}.lora_B.weight": rng.standard_normal((5, r)).astype(np.float32),
    }


@pytest.fixture
def W(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((6, 8))


# -- 1. the scaling carried by factor objects ------------------------------------------------


def test_pissa_init_saved_under_another_alpha_is_refused(tmp_path, W):
    init = pissa_init(W, 4, alpha=16.0)  # s = 4, factors divided by 4
    with pytest.raises(InputError) as info:
        save_peft_adapter(tmp_path / "ad", {"fc": init}, {"r": 4, "lora_alpha": 8})
    message = str(info.value)
    assert "'fc'" in message and "scaling 4" in message and "scaling 2" in message
    assert "alpha 16" in message  # how to fix the config
    assert not (tmp_path / "ad").exists()  # nothing written


def test_pissa_init_saved_under_its_alpha_keeps_w_exact(tmp_path, W):
    init = pissa_init(W, 4, alpha=16.0)
    save_peft_adapter(tmp_path / "ad", {"fc": init}, {"r": 4, "lora_alpha": 16})
    module = load_peft_adapter(tmp_path / "ad").modules["fc"]
    assert module.scaling == pytest.approx(init.scaling, rel=TIGHT)
    rebuilt = init.residual + module.scaling * module.lora_B @ module.lora_A
    assert np.linalg.norm(rebuilt - W) <= TIGHT * np.linalg.norm(W)


def test_rslora_extraction_needs_rslora_in_the_config(tmp_path, rng, W):
    W1 = W + 0.1 * rng.standard_normal((6, 4)) @ rng.standard_normal((4, 8))
    ex = extract(W, W1, rank=4, use_rslora=True)  # alpha sqrt(4) = 2, s = 1
    with pytest.raises(InputError, match=r"use_rslora=True.*'fc'|'fc'.*use_rslora=True"):
        save_peft_adapter(tmp_path / "bad", {"fc": ex}, {"r": 4, "lora_alpha": ex.alpha})
    save_peft_adapter(
        tmp_path / "ok", {"fc": ex}, {"r": 4, "lora_alpha": ex.alpha, "use_rslora": True}
    )
    module = load_peft_adapter(tmp_path / "ok").modules["fc"]
    assert module.scaling == pytest.approx(ex.scaling, rel=TIGHT)
    delta = module.scaling * module.lora_B @ module.lora_A
    # rank 4 holds the whole rank-4 update, so the extraction is exact to rounding.
    assert np.linalg.norm(delta - (W1 - W)) <= 1e-10 * np.linalg.norm(W1 - W)


def test_alpha_pattern_is_what_the_carried_scaling_is_checked_against(tmp_path, rng):
    q, v = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
    modules = {"layers.0.q": pissa_init(q, 2, alpha=8.0), "layers.0.v": pissa_init(v, 2)}
    ok = {"r": 2, "lora_alpha": 2, "alpha_pattern": {"q": 8}}
    save_peft_adapter(tmp_path / "ok", modules, ok)
    adapter = load_peft_adapter(tmp_path / "ok")
    assert adapter.modules["layers.0.q"].scaling == 4.0
    assert adapter.modules["layers.0.v"].scaling == 1.0
    bad = {"r": 2, "lora_alpha": 2, "alpha_pattern": {"v": 8}}  # the pattern on the wrong one
    with pytest.raises(InputError, match=r"'layers\.0\.q' carries scaling 4"):
        save_peft_adapter(tmp_path / "bad", modules, bad)


def test_lora_config_object_is_checked_too(tmp_path, W):
    init = olora_init(W, 2, alpha=6.0)  # s = 3
    with pytest.raises(InputError, match="scaling 3"):
        save_peft_adapter(tmp_path / "a", {"fc": init}, LoRAConfig(r=2, lora_alpha=2))
    save_peft_adapter(tmp_path / "b", {"fc": init}, LoRAConfig(r=2, lora_alpha=6))


def test_peft_module_resaved_keeps_its_scaling(tmp_path, rng):
    write_raw(
        tmp_path / "src",
        {"peft_type": "LORA", "r": 2, "lora_alpha": 6, "target_modules": ["fc"]},
        pair_tensors(rng, 2),
    )
    module = load_peft_adapter(tmp_path / "src").modules["fc"]
    with pytest.raises(InputError, match="carries scaling 3"):
        save_peft_adapter(tmp_path / "a", {"fc": module}, {"r": 2, "lora_alpha": 2})
    save_peft_adapter(tmp_path / "b", {"fc": module}, {"r": 2, "lora_alpha": 6})


def test_converted_adapter_saves_with_its_doubled_config(tmp_path, rng, W):
    init = pissa_init(W, 2, alpha=4.0)
    trained = (init.lora_A + 0.01 * rng.standard_normal(init.lora_A.shape), init.lora_B)
    cfg = LoRAConfig(r=2, lora_alpha=4, init_lora_weights="pissa")
    out = convert_pissa_adapter({"fc": trained}, {"fc": (init.lora_A, init.lora_B)}, cfg)
    save_peft_adapter(tmp_path / "ad", out.modules, out.config)
    assert load_peft_adapter(tmp_path / "ad").modules["fc"].scaling == init.scaling


def test_plain_pairs_carry_no_scaling_and_are_unchanged(tmp_path, W):
    init = pissa_init(W, 2, alpha=16.0)
    # A bare pair is the caller's responsibility, as before: written under any alpha.
    save_peft_adapter(
        tmp_path / "ad", {"fc": (init.lora_A, init.lora_B)}, {"r": 2, "lora_alpha": 1}
    )
    assert load_peft_adapter(tmp_path / "ad").modules["fc"].scaling == 0.5


# -- 2. init_lora_weights values PEFT loads ----------------------------------------------------

PEFT_LOADS = [
    True,
    False,
    "gaussian",
    "eva",
    "olora",
    "pissa",
    "pissa_niter_4",
    "pissa_niter_0",
    "orthogonal",
    "mica",
    "lora_ga",
]
PEFT_REFUSES = ["milora", "bogus", "PiSSA", "corda", "loftq", "pissa_niter_", "pissa_niter_-1", ""]


@pytest.mark.parametrize("value", PEFT_LOADS, ids=str)
def test_values_peft_loads_are_accepted(tmp_path, rng, value):
    cfg = LoRAConfig(r=2, lora_alpha=2, init_lora_weights=value)
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, cfg)
    assert read_peft_config(tmp_path / "ad")["init_lora_weights"] == value


@pytest.mark.parametrize("value", PEFT_REFUSES)
def test_values_peft_refuses_are_refused_on_write(tmp_path, rng, value):
    # A LoRAConfig holds any string (a config PEFT wrote reads back as it is); writing a
    # folder is where a value from_pretrained cannot load is refused, as a dict or a config.
    cfg = LoRAConfig(r=2, lora_alpha=2, init_lora_weights=value)
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    for config in (cfg, {"r": 2, "lora_alpha": 2, "init_lora_weights": value}):
        with pytest.raises(InputError, match="init_lora_weights"):
            save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, config)
        assert not (tmp_path / "ad").exists()


def _save_error(tmp_path, rng, value, alpha=2.0):
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    cfg = LoRAConfig(r=2, lora_alpha=alpha, init_lora_weights=value)
    with pytest.raises(InputError) as info:
        save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, cfg)
    return str(info.value)


def test_milora_refusal_says_how_to_save_it(tmp_path, rng):
    message = _save_error(tmp_path, rng, "milora")
    assert "residual" in message and "init_lora_weights=True" in message
    assert "PiSSA" not in message


def test_case_variant_gets_a_hint(tmp_path, rng):
    assert "did you mean 'pissa'" in _save_error(tmp_path, rng, "PiSSA")


def test_milora_folders_still_read_as_residual_adapters(tmp_path, rng):
    config = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 2,
        "target_modules": ["fc"],
        "init_lora_weights": "milora",
    }
    adapter = load_peft_adapter(write_raw(tmp_path / "ad", config, pair_tensors(rng, 2)))
    assert adapter.init_lora_weights == "milora" and adapter.needs_residual_base
    # Read into a LoRAConfig as it is (as are PEFT's own "corda" and "loftq" folders) ...
    cfg = LoRAConfig.from_peft_dict(adapter.config)
    assert cfg.init_lora_weights == "milora"
    # ... and refused only when written again.
    with pytest.raises(InputError, match="'milora' is not a PEFT value"):
        save_peft_adapter(tmp_path / "again", {"fc": (np.ones((2, 6)), np.ones((5, 2)))}, cfg)


def test_peft_case_insensitive_olora_is_a_residual_adapter(tmp_path, rng):
    config = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 2,
        "target_modules": ["fc"],
        "init_lora_weights": "OLoRA",
    }  # PEFT lower-cases it and runs OLoRA
    assert load_peft_adapter(
        write_raw(tmp_path / "ad", config, pair_tensors(rng, 2))
    ).needs_residual_base


@pytest.mark.parametrize("value", [[1], 1, 0, 1.5, {"a": 1}, None])
def test_non_bool_non_string_init_is_a_format_error_on_read(tmp_path, rng, value):
    config = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 2,
        "target_modules": ["fc"],
        "init_lora_weights": value,
    }
    folder = write_raw(tmp_path / "ad", config, pair_tensors(rng, 2))
    with pytest.raises(FileFormatError, match="'init_lora_weights' must be true, false"):
        load_peft_adapter(folder)


# -- 3. float16 inits that overflow ------------------------------------------------------------


def big_column_f16(rng: np.random.Generator) -> np.ndarray:
    """Finite float16 (max |W| < 1.5e4) whose first column has norm about 1e5 > 65504."""
    W = rng.uniform(-1.0, 1.0, (256, 16))
    W[:, 0] = 1.4e4 * np.sign(rng.standard_normal(256))
    return W.astype(np.float16)


def test_olora_f16_overflow_raises_naming_lora_a(rng):
    W = big_column_f16(rng)
    assert np.isfinite(W).all() and np.linalg.norm(W[:, 0].astype(np.float64)) > 65504
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        with pytest.raises(NonFiniteError, match=r"lora_A does not fit in float16.*float32"):
            olora_init(W, 4)
        with pytest.raises(NonFiniteError, match="lora_A"):
            init_factors(W, 4, init="olora")


def test_olora_f16_large_scaling_raises_naming_residual(rng):
    # Factors fit (B = Q has norm-1 columns, |R| <~ 1.3e3), but with s = 100 the residual
    # W - s B A holds about -99 * the principal part of W: about 1e5 > 65504.
    W = (1000.0 * rng.uniform(0.5, 1.0, (64, 16))).astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteError, match=r"residual does not fit in float16"):
            olora_init(W, 2, alpha=200.0)


def test_pissa_f16_tiny_alpha_raises_like_extraction(rng):
    W = rng.standard_normal((32, 16)).astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NonFiniteError, match="lora_A does not fit in float16"):
            pissa_init(W, 4, alpha=1e-9)
        with pytest.raises(NonFiniteError, match="lora_A does not fit in float16"):
            extract(np.zeros_like(W), W, rank=4, alpha=1e-9)


def test_f16_inits_that_fit_are_unchanged(rng):
    W = rng.standard_normal((32, 16)).astype(np.float16)
    for init in (pissa_init(W, 4), olora_init(W, 4), milora_init(W, 4)):
        assert init.lora_A.dtype == init.residual.dtype == np.float16
        rebuilt = init.residual.astype(np.float64) + init.scaling * (
            init.lora_B.astype(np.float64) @ init.lora_A.astype(np.float64)
        )
        # float16 rounding of W_res alone: u = 2**-11 per entry, times a margin of 4.
        W64 = W.astype(np.float64)
        assert np.max(np.abs(rebuilt - W64)) <= 4 * 2.0**-11 * np.max(np.abs(W64))


# -- 4. raw tracebacks and silently wrong JSON -------------------------------------------------


def test_deeply_nested_config_is_a_format_error(tmp_path, rng):
    folder = write_raw(tmp_path / "ad", "[" * 100_000, pair_tensors(rng, 2))
    with pytest.raises(FileFormatError, match="too deeply"):
        read_peft_config(folder)
    with pytest.raises(FileFormatError, match="too deeply"):
        load_peft_adapter(folder)


def test_integer_beyond_the_digit_limit_is_a_format_error(tmp_path, rng):
    text = '{"peft_type": "LORA", "r": ' + "1" * 5000 + ', "lora_alpha": 2}'
    folder = write_raw(tmp_path / "ad", text, pair_tensors(rng, 2))
    with pytest.raises(FileFormatError, match="is not valid JSON"):
        read_peft_config(folder)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"note": float("nan")}, r"config\['note'\] is nan"),
        ({"note": np.float32("inf")}, r"config\['note'\] is inf"),
        ({"note": [1.0, float("-inf")]}, r"config\['note'\]\[1\] is -inf"),
        ({"note": (float("nan"),)}, r"config\['note'\]\[0\] is nan"),
        ({5: "x"}, "config has the key 5 \\(int\\)"),
        ({"rank_pattern": {5: 2}}, r"config\['rank_pattern'\] has the key 5"),
        ({"note": {True: 1}}, r"config\['note'\] has the key True"),
    ],
)
def test_config_values_json_cannot_hold_are_refused(tmp_path, rng, extra, match):
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    with pytest.raises(InputError, match=match):
        save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"r": 2, "lora_alpha": 2, **extra})
    assert not (tmp_path / "ad").exists()


def test_self_containing_config_is_refused(tmp_path, rng):
    loop: list[object] = []
    loop.append(loop)
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    with pytest.raises(InputError, match="contains itself"):
        save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"r": 2, "lora_alpha": 2, "x": loop})


def test_written_config_is_strict_json(tmp_path, rng):
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((5, 2))
    save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"r": 2, "lora_alpha": 0.5, "x": [1.5]})

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    text = (tmp_path / "ad" / ADAPTER_CONFIG_NAME).read_text()
    assert json.loads(text, parse_constant=refuse)["x"] == [1.5]


# -- 5. PEFT's defaults for r and lora_alpha ----------------------------------------------------


def test_missing_r_and_alpha_take_peft_defaults(tmp_path, rng):
    config = {"peft_type": "LORA", "target_modules": ["fc"]}
    folder = write_raw(tmp_path / "ad", config, pair_tensors(rng, 8))
    assert read_peft_config(folder)["r"] == 8 and read_peft_config(folder)["lora_alpha"] == 8
    adapter = load_peft_adapter(folder)
    module = adapter.modules["fc"]
    assert (adapter.r, adapter.lora_alpha, module.rank, module.scaling) == (8, 8.0, 8, 1.0)
    # The file is reported as written: no keys added to it.
    assert "r" not in json.loads((folder / ADAPTER_CONFIG_NAME).read_text())


def test_default_r_is_checked_against_the_factors(tmp_path, rng):
    config = {"peft_type": "LORA", "lora_alpha": 4, "target_modules": ["fc"]}
    folder = write_raw(tmp_path / "ad", config, pair_tensors(rng, 2))
    with pytest.raises(FileFormatError, match="gives module 'fc' rank 8"):
        load_peft_adapter(folder)


def test_given_values_win_over_the_defaults(tmp_path, rng):
    config = {"peft_type": "LORA", "r": 2, "target_modules": ["fc"]}
    adapter = load_peft_adapter(write_raw(tmp_path / "ad", config, pair_tensors(rng, 2)))
    assert adapter.modules["fc"].scaling == pytest.approx(8 / 2, rel=0) and math.isfinite(
        adapter.lora_alpha
    )


def test_save_still_requires_r_and_alpha(tmp_path, rng):
    A, B = rng.standard_normal((8, 6)), rng.standard_normal((5, 8))
    with pytest.raises(InputError, match="has no 'r'"):
        save_peft_adapter(tmp_path / "ad", {"fc": (A, B)}, {"lora_alpha": 8})


def test_suggested_alpha_is_exact_enough_to_be_copied(tmp_path, rng, W):
    # Under rsLoRA the alpha giving scaling 3 at rank 3 is 3*sqrt(3), irrational: the message
    # must give it to full precision, or the suggested config is refused again.
    init = pissa_init(W, 3, alpha=3 * math.sqrt(3), use_rslora=True)
    cfg = {"r": 3, "lora_alpha": 5, "use_rslora": True}
    with pytest.raises(InputError, match=r"give it alpha (\S+) ") as info:
        save_peft_adapter(tmp_path / "a", {"fc": init}, cfg)
    alpha = float(re.search(r"give it alpha (\S+) ", str(info.value)).group(1))
    save_peft_adapter(tmp_path / "b", {"fc": init}, {**cfg, "lora_alpha": alpha})
    assert load_peft_adapter(tmp_path / "b").modules["fc"].scaling == pytest.approx(3.0, rel=TIGHT)
