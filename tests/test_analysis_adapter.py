"""``analyze_adapter`` and ``lowrank analyze ADAPTER_DIR [--base BASE]`` (issue 13 §2).

Adapters are written in the real PEFT format by :func:`lowrank.io.peft.save_peft_adapter`
(rank/alpha patterns, rsLoRA, ``fan_in_fan_out``) and every number is checked against the
dense float64 computation: the SVD of :math:`s\\,BA` formed explicitly, ``analyze_matrix`` on
it, ``analyze_update_matrix`` on ``(base, base + s B A)`` and (``merged=True``)
``analyze_matrix`` on the merged matrix. The interop test with the real PEFT is at the end
(marked ``interop``).

Tolerances: the factored SVD works in float64 on float64 copies of the factors, so its
singular values agree with the dense SVD's to float64 rounding of the product, about
``eps64 * max(m, n, r) * s * |B|_F * |A|_F`` (the dense SVD's own backward error is of that
size); we allow 64 times that. Derived floats (norms, effective ranks, relative errors) are
compared with ``rtol=1e-9``, far above that rounding and far below any modelling error.
"""

from __future__ import annotations

import json
import math

import ml_dtypes
import numpy as np
import pytest

from lowrank.analysis import (
    AnalysisOptions,
    MatrixResult,
    Report,
    UpdateResult,
    analyze_adapter,
    analyze_matrix,
    analyze_update_matrix,
    base_weight_name,
)
from lowrank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from lowrank.errors import FileFormatError, InputError, MissingFileError
from lowrank.io import save_safetensors
from lowrank.io.peft import save_peft_adapter

RANKS = (1, 2, 3)
ENERGIES = (0.5, 0.9)
EPS = np.finfo(np.float64).eps

# module name -> (out, in) of the nn.Linear weight
MODULES = {
    "model.layers.0.self_attn.q_proj": (12, 10),
    "model.layers.0.self_attn.v_proj": (12, 10),
    "model.layers.1.mlp.up_proj": (16, 10),
}
CONFIGS = {
    "patterns": {
        "r": 3,
        "lora_alpha": 6,
        "rank_pattern": {"v_proj": 2},
        "alpha_pattern": {"up_proj": 12},
    },
    "rslora": {"r": 3, "lora_alpha": 4, "use_rslora": True, "rank_pattern": {"up_proj": 4}},
    "fan_in_fan_out": {"r": 3, "lora_alpha": 3, "fan_in_fan_out": True},
}


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread (2 cores shared with other tests)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _rank_alpha(config, module):
    rank = config["r"]
    alpha = config["lora_alpha"]
    for key, value in (config.get("rank_pattern") or {}).items():
        if module.endswith(key):
            rank = value
    for key, value in (config.get("alpha_pattern") or {}).items():
        if module.endswith(key):
            alpha = value
    return rank, alpha


def _scaling(config, rank, alpha):
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _write(tmp_path, kind, rng):
    """An adapter of ``kind`` (float32 factors) and the dense float64 updates, stored shape."""
    config = CONFIGS[kind]
    fif = bool(config.get("fan_in_fan_out"))
    factors, dense = {}, {}
    for module, (out, n_in) in MODULES.items():
        rank, alpha = _rank_alpha(config, module)
        A = rng.standard_normal((rank, n_in)).astype(np.float32)
        B = rng.standard_normal((out, rank)).astype(np.float32)
        factors[module] = (A, B)
        s = _scaling(config, rank, alpha)
        delta = s * (B.astype(np.float64) @ A.astype(np.float64))
        dense[module] = (delta.T if fif else delta, s, B, A)
    folder = save_peft_adapter(tmp_path / f"adapter-{kind}", factors, config)
    return folder, dense


def _base(tmp_path, dense, rng):
    """A float32 base checkpoint with one weight per module (stored orientation)."""
    weights = {
        f"{module}.weight": rng.standard_normal(delta.shape).astype(np.float32)
        for module, (delta, *_) in dense.items()
    }
    path = tmp_path / "base.safetensors"
    save_safetensors(path, weights)
    return path, weights


def _assert_same_metrics(got: MatrixResult, want: MatrixResult, *, storage: bool = True):
    assert got.shape == want.shape
    for field in ("norm_fro", "spectral_norm", "stable_rank", "entropy_effective_rank"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-9)
    assert got.numerical_rank == want.numerical_rank
    if storage:
        assert got.numerical_rank_storage == want.numerical_rank_storage
    assert got.energy_ranks == want.energy_ranks
    assert [r for r, _ in got.rank_errors] == [r for r, _ in want.rank_errors]
    np.testing.assert_allclose(
        [e for _, e in got.rank_errors], [e for _, e in want.rank_errors], rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_spectra_and_metrics_equal_the_dense_update(tmp_path, kind):
    rng = np.random.default_rng(13)
    folder, dense = _write(tmp_path, kind, rng)
    report = analyze_adapter(folder, ranks=RANKS, energies=ENERGIES)
    assert report.run.source == str(folder) and report.run.base is None
    assert [m.name for m in report.matrices] == [f"{m}.weight" for m in sorted(MODULES)]
    assert report.skipped == ()
    for m in report.matrices:
        delta, s, B, A = dense[m.name.removesuffix(".weight")]
        assert type(m) is MatrixResult
        assert m.shape == delta.shape and m.dtype == "float32" and m.compute_dtype == "float64"
        want = np.linalg.svd(delta, compute_uv=False)
        bound = 64 * EPS * max(*delta.shape, A.shape[0]) * s * np.linalg.norm(B) * np.linalg.norm(A)
        np.testing.assert_allclose(m.singular_values, want, rtol=0, atol=bound)
        rank = A.shape[0]
        assert np.all(m.singular_values[rank:] == 0.0)  # exact zeros, not rounding noise
        assert m.numerical_rank == rank
        # dense float64 reference; its storage noise level is float64's, ours float32's
        _assert_same_metrics(m, analyze_matrix(delta, options=AnalysisOptions(RANKS, ENERGIES)))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_with_a_base_equals_the_dense_update_analysis(tmp_path, kind):
    rng = np.random.default_rng(14)
    folder, dense = _write(tmp_path, kind, rng)
    base_path, weights = _base(tmp_path, dense, rng)
    ranks = (1, 2, 8)  # 8 > every adapter rank: the dense fallback for overlaps
    options = AnalysisOptions(ranks, ENERGIES)
    report = analyze_adapter(folder, base=base_path, ranks=ranks, energies=ENERGIES)
    merged_report = analyze_adapter(
        folder, base=base_path, merged=True, ranks=ranks, energies=ENERGIES
    )
    assert report.run.base == str(base_path) and merged_report.run.base is None
    names = [f"{module}.weight" for module in sorted(MODULES)]
    assert [m.name for m in report.matrices] == names
    assert [m.name for m in merged_report.matrices] == names
    by_name = {m.name: m for m in report.matrices}
    merged_by_name = {m.name: m for m in merged_report.matrices}
    for module, (delta, *_) in dense.items():
        W = weights[f"{module}.weight"].astype(np.float64)
        update = by_name[f"{module}.weight"]
        assert isinstance(update, UpdateResult)
        want = analyze_update_matrix(W + delta, W, options=options)
        _assert_same_metrics(update, want, storage=False)
        np.testing.assert_allclose(update.relative_size, want.relative_size, rtol=1e-9)
        np.testing.assert_allclose(update.base_norm_fro, want.base_norm_fro, rtol=1e-12)
        assert update.base_dtype == "float32"
        for field in ("overlap_left", "overlap_right", "amplification"):
            got, ref = getattr(update, field), getattr(want, field)
            assert [r for r, _ in got] == list(ranks)
            # up to the adapter's rank the vectors are defined: same numbers; beyond it both
            # use the dense SVD of the same (float64) ΔW up to rounding of the product
            rank = int(np.count_nonzero(update.singular_values))
            np.testing.assert_allclose(
                [v for r, v in got if r <= rank], [v for r, v in ref if r <= rank], rtol=1e-7
            )
        merged = merged_by_name[f"{module}.weight"]
        assert type(merged) is MatrixResult and merged.file == str(base_path)
        assert merged.dtype == "float32"
        ref_merged = analyze_matrix(W + delta, options=options)
        _assert_same_metrics(merged, ref_merged, storage=False)
        np.testing.assert_allclose(merged.singular_values, ref_merged.singular_values, rtol=1e-12)
    # the reports round-trip through JSON and render
    for r in (report, merged_report):
        again = Report.from_json(r.to_json())
        assert [type(m) for m in again.matrices] == [type(m) for m in r.matrices]
        assert names[0] in r.to_text() and names[0] in r.to_csv()


@pytest.mark.parametrize(
    "ranks", [(1, 2), (1, 8), ()], ids=["factored", "dense-fallback", "no-ranks"]
)
def test_base_singular_values_are_the_base_spectrum(tmp_path, ranks):
    """With a base, each update carries all singular values of its base weight W (from the
    exact SVD of W that the overlaps use), whether the update's singular vectors come from
    the factors (ranks <= the adapter's) or from the dense fallback (rank 8)."""
    rng = np.random.default_rng(15)
    folder, dense = _write(tmp_path, "patterns", rng)
    base_path, weights = _base(tmp_path, dense, rng)
    report = analyze_adapter(folder, base=base_path, ranks=ranks, energies=ENERGIES)
    assert len(report.matrices) == len(MODULES)
    for update in report.matrices:
        assert isinstance(update, UpdateResult)
        W = weights[update.name].astype(np.float64)
        want = np.linalg.svd(W, compute_uv=False)  # independent float64 reference
        got = update.base_singular_values
        assert got is not None and got.dtype == np.float64 and got.shape == (min(W.shape),)
        # both are backward-stable float64 SVDs of the same matrix: a few eps * sigma_1 apart
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * want[0])
        assert np.all(np.diff(got) <= 0)
    again = Report.from_json(report.to_json())
    for before, after in zip(report.matrices, again.matrices, strict=True):
        assert isinstance(after, UpdateResult)
        np.testing.assert_array_equal(after.base_singular_values, before.base_singular_values)
    # without a base (and for merged matrices) there is no update, hence no base spectrum
    alone = analyze_adapter(folder, ranks=ranks, energies=ENERGIES)
    assert all(not isinstance(m, UpdateResult) for m in alone.matrices)


def test_bfloat16_factors(tmp_path):
    """bfloat16 factors (as many adapters are saved): computed on their exact float64 values."""
    rng = np.random.default_rng(16)
    A, B = rng.standard_normal((2, 7)), rng.standard_normal((9, 2))
    folder = save_peft_adapter(
        tmp_path / "bf16", {"fc": (A, B)}, {"r": 2, "lora_alpha": 4}, dtype="bfloat16"
    )
    (m,) = analyze_adapter(folder, ranks=[1]).matrices
    assert m.dtype == "bfloat16" and m.compute_dtype == "float64"
    A16, B16 = (np.asarray(x, dtype=ml_dtypes.bfloat16).astype(np.float64) for x in (A, B))
    want = np.linalg.svd(2.0 * B16 @ A16, compute_uv=False)
    np.testing.assert_allclose(m.singular_values, want, rtol=0, atol=1e-12 * want[0])


def test_unpaired_and_shape_mismatch_are_skipped(tmp_path):
    rng = np.random.default_rng(15)
    folder, _ = _write(tmp_path, "patterns", rng)
    q, v, up = sorted(MODULES)
    base = tmp_path / "partial.safetensors"
    save_safetensors(
        base,
        {
            f"{q}.weight": rng.standard_normal(MODULES[q]).astype(np.float32),
            f"{up}.weight": np.ones((3, 3), np.float32),
        },
    )
    report = analyze_adapter(folder, base=base, ranks=[1])
    assert [m.name for m in report.matrices] == [f"{q}.weight"]
    codes = {s.name: s.code for s in report.skipped}
    assert codes == {f"{up}.weight": "shape", f"{v}.weight": "unpaired"}


def test_base_weight_name_rule():
    assert base_weight_name("a.fc", ["a.fc.weight", "x.a.fc.weight"]) == "a.fc.weight"
    assert base_weight_name("a.fc", ["wrapper.a.fc.weight"]) == "wrapper.a.fc.weight"
    assert base_weight_name("transformer.h.0.c_attn", ["h.0.c_attn.weight"]) == "h.0.c_attn.weight"
    assert base_weight_name("fc", ["a.fc.weight", "b.fc.weight"]) is None
    assert base_weight_name("fc", ["fc.bias"]) is None
    with pytest.raises(InputError, match="module must be"):
        base_weight_name(3, [])
    with pytest.raises(InputError, match="base_names must be a sequence of str; got str"):
        base_weight_name("fc", "fc.weight")
    with pytest.raises(InputError, match="base_names must hold only str; got 3"):
        base_weight_name("fc", [3])


def test_input_errors(tmp_path):
    with pytest.raises(MissingFileError, match="adapter_dir must be an existing adapter folder"):
        analyze_adapter(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(MissingFileError, match="which is a file"):
        analyze_adapter(tmp_path / "f.txt")
    folder, _ = _write(tmp_path, "patterns", np.random.default_rng(0))
    with pytest.raises(MissingFileError, match="base must be an existing file or directory"):
        analyze_adapter(folder, base=tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="merged=True needs base"):
        analyze_adapter(folder, merged=True)
    (folder / "adapter_config.json").write_text("{")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        analyze_adapter(folder)


class TestCLI:
    def test_adapter_alone(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "rslora", np.random.default_rng(1))
        out = tmp_path / "r.json"
        assert main(["analyze", str(folder), "--ranks", "1,2", "--json", str(out)]) == EXIT_OK
        captured = capsys.readouterr()
        assert f"# {folder} (adapter)" in captured.out
        assert "model.layers.1.mlp.up_proj.weight" in captured.out
        report = Report.read_json(out)
        assert len(report.matrices) == 3 and report.run.source == str(folder)

    def test_adapter_with_base(self, tmp_path, capsys):
        rng = np.random.default_rng(2)
        folder, dense = _write(tmp_path, "fan_in_fan_out", rng)
        base, _ = _base(tmp_path, dense, rng)
        out = tmp_path / "r.json"
        argv = ["analyze", str(folder), "--base", str(base), "--ranks", "1", "--json", str(out)]
        assert main(argv) == EXIT_OK
        captured = capsys.readouterr()
        assert f"(adapter, update of {base})" in captured.out
        report = Report.read_json(out)
        assert [type(m) for m in report.matrices] == [UpdateResult] * 3
        argv += ["--merged"]
        assert main(argv) == EXIT_OK
        assert f"(adapter, merged with {base})" in capsys.readouterr().out
        report = Report.read_json(out)
        assert [type(m) for m in report.matrices] == [MatrixResult] * 3

    def test_merged_needs_an_adapter_and_a_base(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "patterns", np.random.default_rng(7))
        assert main(["analyze", str(folder), "--merged"]) == EXIT_USAGE
        assert "--merged needs --base" in capsys.readouterr().err
        weights = tmp_path / "w.safetensors"
        save_safetensors(weights, {"w": np.ones((2, 2), np.float32)})
        assert main(["analyze", str(weights), "--merged"]) == EXIT_USAGE
        assert "--merged applies to an adapter folder" in capsys.readouterr().err

    def test_unpaired_note(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "patterns", np.random.default_rng(3))
        base = tmp_path / "other.safetensors"
        save_safetensors(base, {"unrelated.weight": np.ones((2, 2), np.float32)})
        # Nothing paired: nothing to compare, a usage error naming both inputs.
        assert main(["analyze", str(folder), "--base", str(base), "--ranks", "1"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("lowrank: error: nothing to compare") and str(base) in err

    def test_patterns_do_not_apply(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "patterns", np.random.default_rng(4))
        assert main(["analyze", str(folder), "--include", "*q_proj*"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "--include (every adapted module is analysed)" in err

    def test_missing_base_and_bad_adapter_are_usage_errors(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "patterns", np.random.default_rng(5))
        assert main(["analyze", str(folder), "--base", str(tmp_path / "no")]) == EXIT_USAGE
        assert "base must be an existing file or directory" in capsys.readouterr().err
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
        assert main(["analyze", str(folder)]) == EXIT_USAGE
        assert capsys.readouterr().err.count("\n") == 1

    def test_a_failing_module_exits_1(self, tmp_path, capsys):
        folder, _ = _write(tmp_path, "patterns", np.random.default_rng(6))
        q = sorted(MODULES)[0]
        base = tmp_path / "nan.safetensors"
        save_safetensors(base, {f"{q}.weight": np.full(MODULES[q], np.nan, np.float32)})
        assert main(["analyze", str(folder), "--base", str(base), "--ranks", "1"]) == EXIT_FAILURE
        assert "could not be analysed" in capsys.readouterr().err


# -- the real PEFT (CI's interop step) ---------------------------------------------------


@pytest.mark.interop
def test_interop_adapter_saved_by_peft(tmp_path):
    """PEFT's get_peft_model + save_pretrained, then analyze_adapter: the spectra equal the
    dense SVD of PEFT's own ``get_delta_weight`` and the merged metrics those of
    ``merge_and_unload``'s weight (float32 on PEFT's side: float32 tolerances)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from torch import nn

    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(10, 12, bias=False)
            self.v_proj = nn.Linear(10, 12, bias=False)
            self.up_proj = nn.Linear(10, 16, bias=False)

    model = Tiny()
    base_weights = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}
    base_path = tmp_path / "base.safetensors"
    save_safetensors(base_path, base_weights)
    config = LoraConfig(
        r=3,
        lora_alpha=5,
        target_modules=["q_proj", "v_proj", "up_proj"],
        rank_pattern={"v_proj": 2},
        alpha_pattern={"up_proj": 7},
        use_rslora=True,
        init_lora_weights="gaussian",
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # give lora_B non-zero values (PEFT initialises it to 0)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    deltas = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "get_delta_weight") and name.endswith("_proj"):
            deltas[name.split(".")[-1]] = module.get_delta_weight("default").detach().numpy()
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = {n: p.detach().numpy() for n, p in peft_model.merge_and_unload().state_dict().items()}
    report = analyze_adapter(tmp_path / "adapter", base=base_path, ranks=(1, 2))
    by_name = {m.name: m for m in report.matrices}
    merged_report = analyze_adapter(tmp_path / "adapter", base=base_path, merged=True)
    merged_by_name = {m.name: m for m in merged_report.matrices}
    eps32 = np.finfo(np.float32).eps
    for short, delta in deltas.items():
        update = by_name[f"{short}.weight"]
        want = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
        np.testing.assert_allclose(
            update.singular_values, want, rtol=0, atol=64 * eps32 * 16 * want[0]
        )
        m = merged_by_name[update.name]
        ref = analyze_matrix(merged[update.name].astype(np.float64))
        # PEFT merges in float32: errors of float32 rounding of the largest entries
        np.testing.assert_allclose(
            m.singular_values,
            ref.singular_values,
            rtol=0,
            atol=64 * eps32 * 16 * ref.singular_values[0],
        )
