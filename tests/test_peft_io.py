"""PEFT adapter folders: round trips, the file format as PEFT writes it, the pattern rule,
atomic writes, and a refusal test for every kind of non-plain-LoRA or broken folder."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

import lowrank.io.peft as peft_io
from lowrank.errors import (
    DTypeError,
    FileFormatError,
    InputError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
)
from lowrank.io import read_safetensors_metadata
from lowrank.io.peft import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    load_peft_adapter,
    read_peft_config,
    save_peft_adapter,
)
from lowrank.lora import LoRAConfig, extract_many, pissa_init


def factors(rng, r, n_in=6, out=5, dtype=np.float32):
    return (
        rng.standard_normal((r, n_in)).astype(dtype),
        rng.standard_normal((out, r)).astype(dtype),
    )


def write_raw(folder: Path, config: object, tensors: dict | None) -> Path:
    """A folder written by hand (bypassing save_peft_adapter's checks)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / ADAPTER_CONFIG_NAME).write_text(text)
    if tensors is not None:
        save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


BASE = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["fc"]}


def plain_tensors(rng, name="fc", r=2):
    A, B = factors(rng, r)
    return {
        f"base_model.model.{name}.lora_A.weight": A,
        f"base_model.model.{name}.lora_B.weight": B,
    }


# -- round trips -------------------------------------------------------------------------


def test_round_trip_with_patterns_and_the_file_format(tmp_path, rng):
    cfg = LoRAConfig(r=4, lora_alpha=8, rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 6})
    modules = {
        "model.layers.0.self_attn.q_proj": factors(rng, 4),
        "model.layers.0.self_attn.v_proj": factors(rng, 2),
    }
    out = save_peft_adapter(tmp_path / "ad", modules, cfg, base_model_name_or_path="tiny")
    assert out == tmp_path / "ad"
    text = (out / ADAPTER_CONFIG_NAME).read_text()
    written = json.loads(text)
    assert text == json.dumps(written, indent=2, sort_keys=True) + "\n"  # PEFT's layout
    assert written["peft_type"] == "LORA" and written["bias"] == "none"
    assert written["inference_mode"] is True and written["init_lora_weights"] is True
    assert written["base_model_name_or_path"] == "tiny" and written["task_type"] is None
    assert written["target_modules"] == sorted(modules)
    assert written["rank_pattern"] == {"v_proj": 2} and written["alpha_pattern"] == {"v_proj": 6}
    assert read_safetensors_metadata(out / ADAPTER_WEIGHTS_NAME) == {"format": "pt"}
    adapter = load_peft_adapter(out)
    assert list(adapter.modules) == sorted(modules)
    for name, (A, B) in modules.items():
        m = adapter.modules[name]
        assert np.array_equal(m.lora_A, A) and np.array_equal(m.lora_B, B)
    v = adapter.modules["model.layers.0.self_attn.v_proj"]
    q = adapter.modules["model.layers.0.self_attn.q_proj"]
    assert (v.rank, v.alpha, v.scaling) == (2, 6.0, 3.0)
    assert (q.rank, q.alpha, q.scaling) == (4, 8.0, 2.0)
    assert adapter.r == 4 and adapter.lora_alpha == 8.0 and not adapter.use_rslora
    assert adapter.metadata == {"format": "pt"} and not adapter.needs_residual_base
    assert read_peft_config(out) == written == dict(adapter.config)
    assert read_peft_config(out / ADAPTER_CONFIG_NAME) == written


def test_tensor_keys_are_peft_keys(tmp_path, rng):
    from lowrank.io import list_tensors

    save_peft_adapter(tmp_path / "ad", {"0": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    names = sorted(info.name for info in list_tensors(tmp_path / "ad" / ADAPTER_WEIGHTS_NAME))
    assert names == ["base_model.model.0.lora_A.weight", "base_model.model.0.lora_B.weight"]


def test_rslora_fan_in_fan_out_and_init_flags(tmp_path, rng):
    cfg = LoRAConfig(
        r=4, lora_alpha=4, use_rslora=True, fan_in_fan_out=True, init_lora_weights="pissa_niter_4"
    )
    save_peft_adapter(
        tmp_path / "ad", {"h.0.attn.c_attn": factors(rng, 4)}, cfg, task_type="CAUSAL_LM"
    )
    adapter = load_peft_adapter(tmp_path / "ad")
    assert adapter.use_rslora and adapter.fan_in_fan_out and adapter.needs_residual_base
    assert adapter.init_lora_weights == "pissa_niter_4"
    assert adapter.modules["h.0.attn.c_attn"].scaling == 2.0  # 4 / sqrt(4)
    assert adapter.config["task_type"] == "CAUSAL_LM"


def test_dtypes_kept_and_converted(tmp_path, rng):
    A, B = factors(rng, 2, dtype=ml_dtypes.bfloat16)
    save_peft_adapter(tmp_path / "bf", {"fc": (A, B)}, {"r": 2, "lora_alpha": 2})
    loaded = load_peft_adapter(tmp_path / "bf").modules["fc"]
    assert loaded.lora_A.dtype == np.dtype(ml_dtypes.bfloat16)
    assert np.array_equal(loaded.lora_A.astype(np.float32), A.astype(np.float32))
    wide = load_peft_adapter(tmp_path / "bf", dtype=np.float32).modules["fc"]
    assert wide.lora_B.dtype == np.float32
    save_peft_adapter(
        tmp_path / "f16",
        {"fc": factors(rng, 2, dtype=np.float64)},
        {"r": 2, "lora_alpha": 2},
        dtype=np.float16,
    )
    assert load_peft_adapter(tmp_path / "f16").modules["fc"].lora_A.dtype == np.float16


def test_lowrank_results_are_saved_directly(tmp_path, rng):
    W = rng.standard_normal((7, 5)).astype(np.float32)
    layers = {
        "enc.q": (W, W + np.outer(rng.standard_normal(7), rng.standard_normal(5))),
        "enc.k": (W, W + rng.standard_normal((7, 5)).astype(np.float32)),
    }
    ex = extract_many(layers, rel_tol=1e-5)
    save_peft_adapter(tmp_path / "ex", ex.modules, ex.config)
    adapter = load_peft_adapter(tmp_path / "ex")
    for name, e in ex.modules.items():
        m = adapter.modules[name]
        assert m.rank == e.rank and m.scaling == 1.0
        assert np.array_equal(m.lora_A, e.lora_A)
    init = pissa_init(W, 2, alpha=4.0)
    save_peft_adapter(
        tmp_path / "pi", {"fc": init}, LoRAConfig(r=2, lora_alpha=4, init_lora_weights="pissa")
    )
    again = load_peft_adapter(tmp_path / "pi")
    save_peft_adapter(tmp_path / "copy", again.modules, again.config)  # PeftModule values
    assert np.array_equal(load_peft_adapter(tmp_path / "copy").modules["fc"].lora_B, init.lora_B)


def test_regex_target_modules_and_exclude(tmp_path, rng):
    cfg = {"r": 2, "lora_alpha": 2, "target_modules": r".*\.(q|v)", "exclude_modules": ["skip.q"]}
    save_peft_adapter(tmp_path / "ad", {"a.q": factors(rng, 2), "a.v": factors(rng, 2)}, cfg)
    assert set(load_peft_adapter(tmp_path / "ad").modules) == {"a.q", "a.v"}
    with pytest.raises(InputError, match=r"does not target module 'skip.q'.*exclude_modules"):
        save_peft_adapter(tmp_path / "bad", {"skip.q": factors(rng, 2)}, cfg)


# -- writing is atomic -----------------------------------------------------------------------


def test_existing_folder_needs_overwrite_and_keeps_other_files(tmp_path, rng):
    folder = tmp_path / "ad"
    save_peft_adapter(folder, {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    (folder / "README.md").write_text("card")
    with pytest.raises(InputError, match=r"already holds adapter_config.json, adapter_model"):
        save_peft_adapter(folder, {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    # The old config is removed before the new one is renamed in; its permission bits
    # carry over all the same.
    (folder / ADAPTER_CONFIG_NAME).chmod(0o640)
    new = factors(rng, 3)
    save_peft_adapter(folder, {"fc": new}, {"r": 3, "lora_alpha": 3}, overwrite=True)
    assert np.array_equal(load_peft_adapter(folder).modules["fc"].lora_A, new[0])
    assert (folder / ADAPTER_CONFIG_NAME).stat().st_mode & 0o777 == 0o640
    assert (folder / "README.md").read_text() == "card"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        ADAPTER_CONFIG_NAME,
        ADAPTER_WEIGHTS_NAME,
    ]
    # An empty existing folder is simply filled.
    (tmp_path / "empty").mkdir()
    save_peft_adapter(tmp_path / "empty", {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    assert load_peft_adapter(tmp_path / "empty").r == 2


def test_failed_write_leaves_nothing_behind(tmp_path, rng, monkeypatch):
    def broken(path, tensors, *, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(peft_io, "save_safetensors", broken)
    with pytest.raises(OSError, match="disk full"):
        save_peft_adapter(
            tmp_path / "new" / "ad", {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2}
        )
    assert list((tmp_path / "new").iterdir()) == []  # no folder, no staging directory


def test_failed_overwrite_leaves_the_old_adapter(tmp_path, rng, monkeypatch):
    folder = tmp_path / "ad"
    old = factors(rng, 2)
    save_peft_adapter(folder, {"fc": old}, {"r": 2, "lora_alpha": 2})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(path, tensors, *, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr(peft_io, "save_safetensors", broken)
    with pytest.raises(OSError, match="disk full"):
        save_peft_adapter(
            folder, {"fc": factors(rng, 3)}, {"r": 3, "lora_alpha": 3}, overwrite=True
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("interrupted", [1, 2])
def test_interrupted_overwrite_never_pairs_files_of_two_adapters(
    tmp_path, rng, monkeypatch, interrupted
):
    """An interrupt (as from Ctrl-C) at the first or the second rename of an overwrite: the
    folder then has no config, so it is refused, and never a config of one adapter beside
    the weights of another. The temporary files are gone."""
    folder = tmp_path / "ad"
    save_peft_adapter(folder, {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    (folder / "README.md").write_text("card")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        # Only the renames onto the adapter's two names count (the safetensors writer renames
        # its own temporary file first).
        if Path(dst).name in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME):
            calls.append(Path(dst).name)
            if len(calls) == interrupted:
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save_peft_adapter(
            folder, {"fc": factors(rng, 3)}, {"r": 3, "lora_alpha": 3}, overwrite=True
        )
    monkeypatch.undo()
    assert calls == [ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME][:interrupted]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", ADAPTER_WEIGHTS_NAME]
    with pytest.raises(MissingFileError, match=r"has no adapter_config\.json"):
        load_peft_adapter(folder)
    # Written again, the folder is a whole adapter.
    new = factors(rng, 3)
    save_peft_adapter(folder, {"fc": new}, {"r": 3, "lora_alpha": 3}, overwrite=True)
    assert np.array_equal(load_peft_adapter(folder).modules["fc"].lora_A, new[0])


def test_new_folder_has_ordinary_permissions(tmp_path, rng):
    save_peft_adapter(tmp_path / "ad", {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "ad").stat().st_mode & 0o777 == 0o777 & ~mask


# -- save errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modules", "config", "kwargs", "error", "match"),
    [
        ({}, {"r": 2, "lora_alpha": 2}, {}, InputError, "modules must be a non-empty mapping"),
        ({"a..b": None}, {"r": 2, "lora_alpha": 2}, {}, InputError, "module names must be"),
        ({"a b": None}, {"r": 2, "lora_alpha": 2}, {}, InputError, "module names must be"),
        (
            {"fc": "AB"},
            {"r": 2, "lora_alpha": 2},
            {},
            InputError,
            r"modules\['fc'\] must be a pair",
        ),
        (
            {"fc": ([[1.0]], np.ones((1, 1)))},
            {"r": 1, "lora_alpha": 1},
            {},
            InputError,
            "lora_A must be a numpy.ndarray",
        ),
        (
            {"fc": (np.ones((1, 2), int), np.ones((2, 1)))},
            {"r": 1, "lora_alpha": 1},
            {},
            DTypeError,
            "lora_A has dtype int64",
        ),
        (
            {"fc": (np.ones(2), np.ones((2, 1)))},
            {"r": 1, "lora_alpha": 1},
            {},
            ShapeError,
            "lora_A must be a non-empty 2-D array",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 1)))},
            {"r": 2, "lora_alpha": 1},
            {},
            ShapeError,
            "must share r",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 4, "lora_alpha": 1},
            {},
            ShapeError,
            "module 'fc' has rank 2 but the config gives it rank 4",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            [("r", 2)],
            {},
            InputError,
            "config must be a mapping of adapter_config.json keys",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"lora_alpha": 1},
            {},
            InputError,
            "config has no 'r'",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1, "use_dora": True},
            {},
            InputError,
            "use_dora = True is not plain LoRA",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1, "target_modules": ["q"]},
            {},
            InputError,
            "does not target module 'fc'.*target_modules",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1, "x": object()},
            {},
            InputError,
            "config values must be JSON-serialisable",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1},
            {"overwrite": "yes"},
            InputError,
            "overwrite must be True or False",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1},
            {"dtype": np.int32},
            DTypeError,
            "dtype must be one of float16",
        ),
        (
            {"fc": (np.ones((2, 3)), np.ones((4, 2)))},
            {"r": 2, "lora_alpha": 1},
            {"dtype": "nonsense"},
            InputError,
            "dtype must be a NumPy dtype",
        ),
    ],
)
def test_save_errors(tmp_path, modules, config, kwargs, error, match):
    with pytest.raises(error, match=match):
        save_peft_adapter(tmp_path / "ad", modules, config, **kwargs)
    assert not (tmp_path / "ad").exists()


def test_save_into_a_file_path(tmp_path, rng):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is an existing file"):
        save_peft_adapter(tmp_path / "file", {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})


def test_numpy_scalars_in_the_config_are_written_as_json_numbers(tmp_path, rng):
    cfg = {
        "r": np.int64(2),
        "lora_alpha": np.float32(3.0),
        "target_modules": ["fc"],
        "layers_to_transform": (np.int64(0), 1),
    }
    # A module with a layer index: PEFT adapts "fc" alone under no layers_to_transform.
    save_peft_adapter(tmp_path / "ad", {"model.layers.1.fc": factors(rng, 2)}, cfg)
    written = read_peft_config(tmp_path / "ad")
    assert written["r"] == 2 and written["lora_alpha"] == 3.0
    assert written["layers_to_transform"] == [0, 1]


# -- load refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object; got list"),
        ({"r": 2, "lora_alpha": 4}, "has no 'peft_type'; it is not a PEFT adapter config"),
        ({**BASE, "peft_type": "ADALORA"}, "peft_type is 'ADALORA'; only plain LoRA"),
        ({**BASE, "peft_type": "LORA", "r": None}, "'r' must be an integer >= 1; got None"),
        # PEFT's default r=8 applies (tests/test_audit5_lora.py), which rank-2 factors refute.
        (
            {"peft_type": "LORA", "lora_alpha": 4, "target_modules": ["fc"]},
            "gives module 'fc' rank 8",
        ),
        ({**BASE, "r": True}, "'r' must be an integer >= 1; got True"),
        ({**BASE, "lora_alpha": 0}, "'lora_alpha' must be a positive number; got 0"),
        ({**BASE, "lora_alpha": "8"}, "'lora_alpha' must be a positive number"),
        ({**BASE, "use_rslora": "true"}, "'use_rslora' must be true or false"),
        ({**BASE, "rank_pattern": [1]}, "'rank_pattern' must be an object"),
        ({**BASE, "rank_pattern": {"fc": 0}}, r"rank_pattern\['fc'\] must be an integer >= 1"),
        ({**BASE, "alpha_pattern": {"fc": -2}}, r"alpha_pattern\['fc'\] must be a positive number"),
        ({**BASE, "rank_pattern": {"(": 2}}, "rank_pattern key '\\(' is not a valid regular"),
        ({**BASE, "use_dora": True}, "use_dora = True is not plain LoRA"),
        ({**BASE, "lora_bias": True}, "lora_bias = True is not plain LoRA"),
        ({**BASE, "modules_to_save": ["classifier"]}, "modules_to_save = \\['classifier'\\]"),
        ({**BASE, "layer_replication": [[0, 1]]}, "layer_replication"),
        ({**BASE, "target_parameters": ["experts.w"]}, "target_parameters"),
        ({**BASE, "alora_invocation_tokens": [1, 2]}, "alora_invocation_tokens"),
        ({**BASE, "bias": "all"}, "bias = 'all' saves trained base-layer biases"),
        ({**BASE, "target_modules": 3}, "'target_modules' must be null, a string or a list"),
    ],
)
def test_config_refusals(tmp_path, rng, config, match):
    folder = write_raw(tmp_path / "ad", config, plain_tensors(rng))
    with pytest.raises(FileFormatError, match=match) as info:
        load_peft_adapter(folder)
    assert ADAPTER_CONFIG_NAME in str(info.value)  # the message names the file


def key(factor, name="fc"):
    return f"base_model.model.{name}.{factor}"


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({key("lora_embedding_A"): np.ones((2, 6), np.float32)}, "embedding LoRA factor"),
        ({key("lora_magnitude_vector"): np.ones(5, np.float32)}, "DoRA magnitude vector"),
        ({key("lora_B.bias"): np.ones(5, np.float32)}, "a LoRA bias"),
        ({key("lora_A.default.weight"): np.ones((2, 6), np.float32)}, "adapter name in its key"),
        ({"model.fc.lora_A.weight": np.ones((2, 6), np.float32)}, "not under the 'base_model"),
        ({key("weight", "classifier"): np.ones((2, 6), np.float32)}, "modules_to_save"),
        ({key("lora_A.weight", "a..b"): np.ones((2, 6), np.float32)}, "not a LoRA factor"),
        ({}, "holds no LoRA factors"),
        (
            {key("lora_A.weight"): np.ones((2, 6), np.float32)},
            "holds 'base_model.model.fc.lora_A.weight' but not 'base_model.model.fc.lora_B.weight'",
        ),
        ({key("lora_B.weight"): np.ones((5, 2), np.float32)}, "has lora_B without lora_A"),
        (
            {
                key("lora_A.weight"): np.ones((2, 6), np.int32),
                key("lora_B.weight"): np.ones((5, 2), np.float32),
            },
            "has dtype int32; LoRA factors must be",
        ),
        (
            {
                key("lora_A.weight"): np.ones(6, np.float32),
                key("lora_B.weight"): np.ones((5, 2), np.float32),
            },
            "must be 2-D; got shape \\(6,\\)",
        ),
        (
            {
                key("lora_A.weight"): np.ones((2, 6), np.float32),
                key("lora_B.weight"): np.ones((5, 3), np.float32),
            },
            "whose ranks differ",
        ),
        (
            {
                key("lora_A.weight"): np.ones((3, 6), np.float32),
                key("lora_B.weight"): np.ones((5, 3), np.float32),
            },
            "rank mismatch: .* gives module 'fc' rank 2 .* with 3 rows",
        ),
        (
            {
                key("lora_A.weight", "other"): np.ones((2, 6), np.float32),
                key("lora_B.weight", "other"): np.ones((5, 2), np.float32),
            },
            "module 'other', which .* does not target.*target_modules",
        ),
    ],
)
def test_tensor_refusals(tmp_path, tensors, match):
    folder = write_raw(tmp_path / "ad", BASE, tensors)
    with pytest.raises(FileFormatError, match=match) as info:
        load_peft_adapter(folder)
    assert ADAPTER_WEIGHTS_NAME in str(info.value)  # the message names the file


def test_rank_pattern_mismatch_names_the_config(tmp_path, rng):
    folder = write_raw(tmp_path / "ad", {**BASE, "rank_pattern": {"fc": 3}}, plain_tensors(rng))
    with pytest.raises(FileFormatError, match=r"adapter_config.json' gives module 'fc' rank 3"):
        load_peft_adapter(folder)


def test_corrupt_weights_file(tmp_path):
    folder = write_raw(tmp_path / "ad", BASE, None)
    (folder / ADAPTER_WEIGHTS_NAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(FileFormatError, match=ADAPTER_WEIGHTS_NAME):
        load_peft_adapter(folder)


def test_truncated_weights_file(tmp_path, rng):
    folder = write_raw(tmp_path / "ad", BASE, plain_tensors(rng))
    data = (folder / ADAPTER_WEIGHTS_NAME).read_bytes()
    (folder / ADAPTER_WEIGHTS_NAME).write_bytes(data[:-8])
    with pytest.raises(FileFormatError, match=ADAPTER_WEIGHTS_NAME):
        load_peft_adapter(folder)


def test_missing_files(tmp_path, rng):
    with pytest.raises(MissingFileError, match=r"adapter folder .* does not exist"):
        load_peft_adapter(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match=r"has no adapter_config.json"):
        load_peft_adapter(tmp_path / "empty")
    folder = write_raw(tmp_path / "ad", BASE, None)
    with pytest.raises(MissingFileError, match=r"has no adapter_model.safetensors"):
        load_peft_adapter(folder)
    (folder / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileFormatError, match=r"only the legacy pickled adapter_model.bin"):
        load_peft_adapter(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="must be an adapter folder, not a file"):
        load_peft_adapter(tmp_path / "file")


@pytest.mark.parametrize(
    ("dtype", "error", "match"),
    [(np.int8, DTypeError, "dtype must be one of"), ("bogus", InputError, "must be a NumPy dtype")],
)
def test_load_dtype_errors(tmp_path, rng, dtype, error, match):
    folder = write_raw(tmp_path / "ad", BASE, plain_tensors(rng))
    with pytest.raises(error, match=match):
        load_peft_adapter(folder, dtype=dtype)


def test_all_linear_target_is_accepted(tmp_path, rng):
    folder = write_raw(
        tmp_path / "ad", {**BASE, "target_modules": "all-linear"}, plain_tensors(rng)
    )
    assert math.isclose(load_peft_adapter(folder).modules["fc"].scaling, 2.0)


# -- non-finite factors and float16 overflow ------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_save_refuses_non_finite_factors_and_writes_nothing(tmp_path, bad):
    A = np.ones((2, 4))
    A[1, 2] = bad
    with pytest.raises(
        NonFiniteError,
        match=r"^modules\['a'\] lora_A must contain only finite values; got 1 NaN or infinite "
        r"entry out of 8$",
    ):
        save_peft_adapter(tmp_path / "ad", {"a": (A, np.ones((6, 2)))}, {"r": 2, "lora_alpha": 4})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", ["float16", np.float16])
def test_save_refuses_factors_beyond_float16_and_writes_nothing(tmp_path, dtype):
    # 1e6 is finite in float64 but beyond float16's 65504: NumPy's cast gives inf with a
    # RuntimeWarning only (pytest's filterwarnings makes such a warning an error here).
    A = np.full((2, 4), 1e6)
    with pytest.raises(
        NonFiniteError,
        match=r"^modules\['a'\] lora_A does not fit in float16: its largest magnitude 1e\+06 "
        r"exceeds float16's largest finite value 6\.55e\+04; use dtype float32 or bfloat16$",
    ):
        save_peft_adapter(
            tmp_path / "ad", {"a": (A, np.ones((6, 2)))}, {"r": 2, "lora_alpha": 4}, dtype=dtype
        )
    assert list(tmp_path.iterdir()) == []
    # The same factors fit in bfloat16 (float32's range), as the message suggests.
    save_peft_adapter(
        tmp_path / "ad", {"a": (A, np.ones((6, 2)))}, {"r": 2, "lora_alpha": 4}, dtype="bfloat16"
    )
    assert np.isfinite(load_peft_adapter(tmp_path / "ad").modules["a"].lora_A).all()


def test_save_refuses_factors_beyond_float32(tmp_path):
    B = np.full((6, 2), 1e300)
    with pytest.raises(
        NonFiniteError, match=r"modules\['a'\] lora_B does not fit in float32: .*use dtype float64$"
    ):
        save_peft_adapter(
            tmp_path / "ad", {"a": (np.ones((2, 4)), B)}, {"r": 2, "lora_alpha": 4}, dtype="float32"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_load_refuses_a_file_holding_non_finite_factors(tmp_path, dtype):
    # A real PEFT folder whose weights file was then rewritten (by the safetensors package)
    # with a NaN in lora_B: PEFT would load it and every forward pass would give NaN.
    rng = np.random.default_rng(0)
    folder = save_peft_adapter(tmp_path / "ad", {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 4})
    A, B = (x.astype(dtype) for x in factors(rng, 2))
    B[0, 0] = np.nan
    save_file(
        {"base_model.model.fc.lora_A.weight": A, "base_model.model.fc.lora_B.weight": B},
        str(folder / ADAPTER_WEIGHTS_NAME),
    )
    with pytest.raises(
        NonFiniteError,
        match=r"^'.*adapter_model\.safetensors': tensor 'base_model\.model\.fc\.lora_B\.weight' "
        r"holds 1 NaN or infinite entry out of 10; LoRA factors must be finite$",
    ):
        load_peft_adapter(folder)


def test_load_refuses_a_conversion_beyond_float16(tmp_path):
    A = np.full((2, 6), 1e5, np.float32)
    folder = save_peft_adapter(
        tmp_path / "ad", {"fc": (A, np.ones((5, 2), np.float32))}, {"r": 2, "lora_alpha": 4}
    )
    with pytest.raises(
        NonFiniteError,
        match=r"^'.*adapter_model\.safetensors': tensor 'base_model\.model\.fc\.lora_A\.weight' "
        r"does not fit in float16: its largest magnitude 1e\+05",
    ):
        load_peft_adapter(folder, dtype="float16")
    assert load_peft_adapter(folder, dtype="float32").modules["fc"].lora_A.max() == 1e5


# -- audit io3: pattern order, dangling links -------------------------------------------------


def test_pattern_maps_keep_their_order_so_they_keep_their_meaning(tmp_path, rng):
    # PEFT tries pattern keys in file order, first match wins: {"q_proj": 8, ...} gives every
    # q_proj alpha 8. Written with sort_keys=True, "layers.1.q_proj" came first and gave that
    # module alpha 2 after reloading; the rank variant could not be loaded at all.
    names = ["model.layers.0.q_proj", "model.layers.1.q_proj"]
    config = {"r": 2, "lora_alpha": 2, "alpha_pattern": {"q_proj": 8, "layers.1.q_proj": 2}}
    save_peft_adapter(tmp_path / "alpha", {n: factors(rng, 2) for n in names}, config)
    text = (tmp_path / "alpha" / ADAPTER_CONFIG_NAME).read_text()
    assert list(json.loads(text)["alpha_pattern"]) == ["q_proj", "layers.1.q_proj"]
    top = json.loads(text)
    assert list(top) == sorted(top)  # PEFT's top-level layout otherwise
    adapter = load_peft_adapter(tmp_path / "alpha")
    assert [(m.alpha, m.scaling) for m in adapter.modules.values()] == [(8.0, 4.0)] * 2

    ranks = {"r": 2, "lora_alpha": 2, "rank_pattern": {"q_proj": 3, "layers.1.q_proj": 5}}
    save_peft_adapter(tmp_path / "rank", {n: factors(rng, 3) for n in names}, ranks)
    adapter = load_peft_adapter(tmp_path / "rank")
    assert [m.rank for m in adapter.modules.values()] == [3, 3]
    cfg = LoRAConfig(r=2, lora_alpha=2, rank_pattern=ranks["rank_pattern"])
    save_peft_adapter(tmp_path / "cfg", {n: factors(rng, 3) for n in names}, cfg)
    assert [m.rank for m in load_peft_adapter(tmp_path / "cfg").modules.values()] == [3, 3]


def test_save_onto_a_dangling_symlink_names_the_given_path(tmp_path, rng):
    link = tmp_path / "adapter"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(
        InputError, match=r"directory '.*adapter' is a symbolic link to '.*nowhere', which does"
    ):
        save_peft_adapter(link, {"fc": factors(rng, 2)}, {"r": 2, "lora_alpha": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
