"""``lowrank extract`` and lowrank.analysis.extract_checkpoint: a PEFT adapter of the
difference of two checkpoints, checked by reading it back and rebuilding the update."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from lowrank.analysis import extract_checkpoint
from lowrank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from lowrank.errors import InputError
from lowrank.io import save_safetensors
from lowrank.io.peft import load_peft_adapter


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


MODULES = ["model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A base and a tuned checkpoint: q_proj of layer 0 changes by a rank-2 update, v_proj
    by a full-rank one, layer 1 is unchanged; embeddings change too."""
    rng = np.random.default_rng(8)
    folder = tmp_path_factory.mktemp("pair")
    base = {f"{m}.weight": rng.standard_normal((12, 10)).astype(np.float32) for m in MODULES}
    base["model.embed_tokens.weight"] = rng.standard_normal((50, 10)).astype(np.float32)
    base["model.norm.weight"] = np.ones(10, np.float32)
    tuned = dict(base)
    low = (rng.standard_normal((12, 2)) @ rng.standard_normal((2, 10))).astype(np.float32)
    tuned["model.layers.0.q_proj.weight"] = base["model.layers.0.q_proj.weight"] + low
    tuned["model.layers.0.v_proj.weight"] = base["model.layers.0.v_proj.weight"] + 0.1 * (
        rng.standard_normal((12, 10)).astype(np.float32)
    )
    tuned["model.embed_tokens.weight"] = base["model.embed_tokens.weight"] + 1.0
    tuned["extra.weight"] = np.eye(3, dtype=np.float32)
    save_safetensors(folder / "base.safetensors", base)
    save_safetensors(folder / "tuned.safetensors", tuned)
    return folder / "base.safetensors", folder / "tuned.safetensors", base, tuned


def delta(base, tuned, module):
    name = f"{module}.weight"
    return tuned[name].astype(np.float64) - base[name].astype(np.float64)


def test_rank_adapter_reproduces_the_low_rank_update(pair, tmp_path, capsys):
    base_path, tuned_path, base, tuned = pair
    out = tmp_path / "adapter"
    argv = ["extract", "--base", str(base_path), "--tuned", str(tuned_path), "--rank", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    # The tuned-only tensor is named in one line (not in the adapter).
    left_out, wrote, note = stderr.splitlines()
    assert left_out == (
        "lowrank: note: not compared: 1 unpaired: extra.weight (not in the adapter)"
    )
    assert wrote == f"wrote {out}"
    # Without --base-model the config's base_model_name_or_path is null, and it says so.
    assert note.startswith(
        "note: adapter_config.json has base_model_name_or_path null (no --base-model)"
    )
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert "model.layers.0.q_proj" in stdout and "2 modules" in stdout
    adapter = load_peft_adapter(out)
    assert sorted(adapter.modules) == ["model.layers.0.q_proj", "model.layers.0.v_proj"]
    q = adapter.modules["model.layers.0.q_proj"]
    assert q.rank == 2
    rebuilt = q.scaling * q.lora_B.astype(np.float64) @ q.lora_A.astype(np.float64)
    dW = delta(base, tuned, "model.layers.0.q_proj")
    # A rank-2 difference in float32: rank 2 recovers it up to float32 rounding.
    np.testing.assert_allclose(rebuilt, dW, atol=1e-5 * np.abs(dW).max())
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2


def test_energy_and_skips(pair):
    base_path, tuned_path, *_ = pair
    result = extract_checkpoint(base_path, tuned_path, energy=0.999, exclude="*embed*")
    ranks = result.adapter.ranks
    assert ranks["model.layers.0.q_proj"] == 2
    assert ranks["model.layers.0.v_proj"] > 2
    v = result.adapter.modules["model.layers.0.v_proj"]
    assert v.energy >= 0.999
    reasons = {s.name: (s.code, s.reason) for s in result.skipped}
    assert reasons["model.layers.1.q_proj.weight"][0] == "unchanged"
    assert reasons["extra.weight"] == ("unpaired", "no matrix of this name in the base checkpoint")
    assert reasons["model.embed_tokens.weight"][0] == "name"
    assert reasons["model.norm.weight"][0] == "ndim"
    assert result.shapes == {"model.layers.0.q_proj": (12, 10), "model.layers.0.v_proj": (12, 10)}


def test_rank_is_capped_per_module_and_dtype_applies(pair, tmp_path, capsys):
    base_path, tuned_path, *_ = pair
    out = tmp_path / "a"
    argv = [
        "extract",
        "--base",
        str(base_path),
        "--tuned",
        str(tuned_path),
        "--rank",
        "64",
        "-o",
        str(out),
        "--exclude",
        "",
        "--dtype",
        "bfloat16",
        "--rslora",
        "--base-model",
        "tiny/base",
    ]
    assert main(argv) == EXIT_OK
    adapter = load_peft_adapter(out)
    assert adapter.modules["model.embed_tokens"].rank == 10  # min(50, 10)
    assert adapter.modules["model.layers.0.q_proj"].lora_A.dtype == ml_dtypes.bfloat16
    assert adapter.use_rslora and adapter.config["base_model_name_or_path"] == "tiny/base"
    # no base-model note: --base-model was given; the tuned-only tensor is named
    assert capsys.readouterr().err == (
        f"lowrank: note: not compared: 1 unpaired: extra.weight (not in the adapter)\nwrote {out}\n"
    )
    # Writing again needs --overwrite, and the message names the flag, not the library's
    # overwrite=True; the check comes before the extraction.
    assert main(argv) == EXIT_USAGE
    assert capsys.readouterr().err == (
        f"lowrank: error: adapter folder '{out}' already holds adapter_config.json, "
        "adapter_model.safetensors; pass --overwrite to replace them\n"
    )
    assert main([*argv, "--overwrite"]) == EXIT_OK


def test_float64_factors_of_float32_weights_are_float64_accurate(pair, tmp_path):
    """--dtype float64 computes in float64: the factors match the float64 LAPACK truncated
    SVD of the (exact) float64 difference to float64's rounding level, not float32's."""
    base_path, tuned_path, base, tuned = pair
    out = tmp_path / "a"
    argv = ["extract", "--base", str(base_path), "--tuned", str(tuned_path)]
    assert main([*argv, "--rank", "3", "-o", str(out), "--dtype", "float64"]) == EXIT_OK
    module = load_peft_adapter(out).modules["model.layers.0.v_proj"]
    assert module.lora_A.dtype == np.float64
    d = delta(base, tuned, "model.layers.0.v_proj")
    U, S, Vh = np.linalg.svd(d)
    best = (U[:, :3] * S[:3]) @ Vh[:3]
    # float64 rounding of a 12x10 SVD relative to sigma_1 is ~1e-15; float32 factors are
    # ~1e-7 off; 1e-11 separates the two with margin for the gap sigma_3 - sigma_4.
    gap = (S[2] - S[3]) / S[0]
    err = np.abs(module.scaling * module.lora_B @ module.lora_A - best).max() / S[0]
    assert err < 1e-13 / gap


def test_shape_mismatch_is_skipped(tmp_path):
    save_safetensors(tmp_path / "b.safetensors", {"a.weight": np.eye(3), "b.weight": np.eye(3)})
    save_safetensors(tmp_path / "t.safetensors", {"a.weight": np.eye(4), "b.weight": 2 * np.eye(3)})
    result = extract_checkpoint(tmp_path / "b.safetensors", tmp_path / "t.safetensors", rank=1)
    assert list(result.adapter.modules) == ["b"]
    (skip,) = result.skipped
    assert skip.reason == "shape (3, 3) in base but (4, 4) in tuned"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of rank and energy; got rank=None, energy=None"),
        ({"rank": 2, "energy": 0.9}, "give exactly one of rank and energy"),
        ({"rank": 0}, "rank must be >= 1; got 0"),
        (
            {"rank": 2, "include": "*q_prj*"},
            r"include pattern '\*q_prj\*' matches none of the 5 tensors in '.*base\.safetensors' "
            r"\(4 of them matrices\); the closest names: 'model\.layers\.0\.q_proj\.weight'",
        ),
        ({"rank": 2, "include": "extra.weight"}, r"matches none of the 5 tensors in '.*base"),
        (
            {"rank": 2, "include": "*norm*", "exclude": "", "regex": False},
            r"no matrix of the 5 tensors .* is left by include pattern '\*norm\*'",
        ),
    ],
)
def test_extract_checkpoint_rejects(pair, kwargs, message):
    base_path, tuned_path, *_ = pair
    with pytest.raises(InputError, match=message):
        extract_checkpoint(base_path, tuned_path, **kwargs)


def test_non_weight_tensors_are_not_modules(tmp_path):
    save_safetensors(tmp_path / "b.safetensors", {"proj": np.eye(3)})
    save_safetensors(tmp_path / "t.safetensors", {"proj": 2 * np.eye(3)})
    with pytest.raises(InputError, match=r"no '\*\.weight' matrix of the same name and shape"):
        extract_checkpoint(tmp_path / "b.safetensors", tmp_path / "t.safetensors", rank=1)


def test_every_module_unchanged(tmp_path):
    save_safetensors(tmp_path / "b.safetensors", {"p.weight": np.eye(3)})
    with pytest.raises(InputError, match="every layer is unchanged"):
        extract_checkpoint(tmp_path / "b.safetensors", tmp_path / "b.safetensors", rank=1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["extract", "--base", "{b}", "--tuned", "{t}", "-o", "{tmp}/a"],
            "lowrank extract: error: one of the arguments --rank --energy is required",
        ),
        (
            [
                "extract",
                "--base",
                "{b}",
                "--tuned",
                "{t}",
                "--rank",
                "2",
                "--energy",
                "0.9",
                "-o",
                "{tmp}/a",
            ],
            "lowrank extract: error: argument --energy: not allowed with argument --rank",
        ),
        (
            ["extract", "--base", "{b}", "--tuned", "{t}", "--rank", "2"],
            "lowrank extract: error: the following arguments are required: -o/--output",
        ),
        (
            ["extract", "--base", "{b}", "--tuned", "{t}", "--rank", "x", "-o", "{tmp}/a"],
            "lowrank extract: error: argument --rank: must be a positive integer; got 'x'",
        ),
        (
            [
                "extract",
                "--base",
                "{tmp}/missing.safetensors",
                "--tuned",
                "{t}",
                "--rank",
                "2",
                "-o",
                "{tmp}/a",
            ],
            "lowrank: error: --base must be an existing file or directory",
        ),
        (
            ["extract", "--base", "{b}", "--tuned", "{t}", "--rank", "2", "-o", "{b}"],
            "lowrank: error: -o must name a folder; '.*base.safetensors' is a file",
        ),
        # The checkpoints are named options only: the old positional form, where swapping
        # the two silently negated the update, is refused.
        (
            ["extract", "{b}", "{t}", "--rank", "2", "-o", "{tmp}/a"],
            "lowrank extract: error: the following arguments are required: --base, --tuned",
        ),
        (
            ["extract", "--base", "{b}", "--rank", "2", "-o", "{tmp}/a"],
            "lowrank extract: error: the following arguments are required: --tuned",
        ),
        (
            ["extract", "--base", "{b}", "--tuned", "{t}", "{t}", "--rank", "2", "-o", "{tmp}/a"],
            "lowrank: error: unrecognized arguments: .*tuned.safetensors",
        ),
        (
            [
                "extract",
                "--base",
                "{b}",
                "--tuned",
                "{t}",
                "--rank",
                "2",
                "-o",
                "{tmp}/a",
                "--include",
                "*self_attn.q_proj.weight",
            ],
            "lowrank: error: include pattern '\\*self_attn\\.q_proj\\.weight' matches none of "
            "the 5 tensors in '.*base.safetensors' \\(4 of them matrices\\); the closest names: "
            "'model.layers.0.q_proj.weight', ",
        ),
    ],
)
def test_cli_errors(pair, tmp_path, capsys, argv, message):
    import re

    base_path, tuned_path, *_ = pair
    args = [a.format(b=base_path, t=tuned_path, tmp=tmp_path) for a in argv]
    assert main(args) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.match(message, err), err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name", ["base", "tuned"])
def test_extract_checkpoint_checks_its_paths(pair, tmp_path, name):
    from lowrank.errors import MissingFileError

    base_path, tuned_path, *_ = pair
    paths = {"base": base_path, "tuned": tuned_path}
    for bad in (3, None, ""):
        with pytest.raises(
            InputError, match=rf"{name} must be a non-empty path \(str or os\.PathLike\); got"
        ):
            extract_checkpoint(**{**paths, name: bad}, rank=1)
    with pytest.raises(
        MissingFileError,
        match=rf"^{name} must be an existing file or directory; got '.*nope\.safetensors'$",
    ):
        extract_checkpoint(**{**paths, name: tmp_path / "nope.safetensors"}, rank=1)


def test_factors_beyond_float16_write_nothing(tmp_path, capsys):
    # The audit's reproducer: ΔW = 1e10 gives factors of about 1e5, beyond float16's 65504.
    # It used to exit 0 with an adapter of inf factors and only NumPy's RuntimeWarning.
    from safetensors.numpy import save_file

    zero = np.zeros((8, 6), np.float32)
    save_file({"l.weight": zero}, str(tmp_path / "base.safetensors"))
    save_file({"l.weight": zero + np.float32(1e10)}, str(tmp_path / "tuned.safetensors"))
    argv = [
        "extract",
        "--base",
        str(tmp_path / "base.safetensors"),
        "--tuned",
        str(tmp_path / "tuned.safetensors"),
        "--rank",
        "1",
        "-o",
        str(tmp_path / "ad"),
    ]
    assert main([*argv, "--dtype", "float16"]) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "lowrank: error: no adapter written: layer 'l': lora_A does not fit in float16: its "
        "largest magnitude 1.075e+05 exceeds float16's largest finite value 6.55e+04; use "
        "dtype float32 or bfloat16\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.safetensors", "tuned.safetensors"]
    assert main([*argv, "--dtype", "bfloat16"]) == EXIT_OK
    A = load_peft_adapter(tmp_path / "ad").modules["l"].lora_A
    assert A.dtype == ml_dtypes.bfloat16 and np.isfinite(A.astype(np.float32)).all()
