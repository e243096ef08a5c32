"""The toolkit's own real fine-tune on scikit-learn's digits (lowrank.examples_digits).

The update analysis of the full fine-tune and of the LoRA adapter is checked against a
direct float64 ``np.linalg.svd`` of ``tuned - base`` and of the dense ``s * B @ A``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lowrank._numerics import tolerance
from lowrank.analysis import analyze_adapter, analyze_update
from lowrank.errors import InputError
from lowrank.examples_digits import make_digits_finetune
from lowrank.io import load_tensors
from lowrank.io.peft import load_peft_adapter

pytest.importorskip("sklearn")

NAMES = ["0.weight", "2.weight", "4.weight"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    # About a second on one core (speed is for benchmarks: no wall-clock assertion here).
    return make_digits_finetune(tmp_path_factory.mktemp("digits"))


def test_writes_the_files_and_learns(made):
    assert made.base.name == "base.safetensors" and made.base.is_file()
    assert made.tuned_full.name == "tuned_full.safetensors" and made.tuned_full.is_file()
    assert sorted(p.name for p in made.adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    # Real learning on real data: the pre-trained net knows 0-4, both tunes learn 5-9.
    assert made.accuracy["base"] >= 0.95
    assert made.accuracy["full"] >= 0.9
    assert made.accuracy["lora"] >= 0.85
    assert made.rank == 4


def test_deterministic(made, tmp_path):
    again = make_digits_finetune(tmp_path)
    assert again.accuracy == made.accuracy
    for a, b in [
        (made.base, again.base),
        (made.tuned_full, again.tuned_full),
        (made.adapter / "adapter_model.safetensors", again.adapter / "adapter_model.safetensors"),
    ]:
        assert a.read_bytes() == b.read_bytes(), a.name


def test_another_seed_gives_another_finetune(made, tmp_path):
    other = make_digits_finetune(tmp_path, rng=1, rank=2)
    assert other.base.read_bytes() != made.base.read_bytes()
    assert load_peft_adapter(other.adapter).config["r"] == 2


def _check_update(result, delta, W):
    """``result`` (an UpdateResult) against a float64 SVD of ``delta``."""
    s = np.linalg.svd(delta, compute_uv=False)
    n = max(delta.shape)
    # Both are backward-stable float64 SVDs of the same matrix: they agree to the
    # tolerance of one (16 eps sqrt(n) S[0]).
    atol = tolerance(np.float64, size=n, scale=s[0])
    np.testing.assert_allclose(result.singular_values, s, rtol=0, atol=atol)
    rel = 1e-12  # norms from sums of squares, accumulated in float64
    assert result.norm_fro == pytest.approx(np.linalg.norm(delta), rel=rel)
    assert result.spectral_norm == pytest.approx(s[0], rel=rel, abs=atol)
    assert result.stable_rank == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-10)
    assert result.relative_size == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(W), rel=rel)
    cumulative = np.cumsum(s**2) / np.sum(s**2)
    for energy, rank in result.energy_ranks:
        # The smallest r with energy(r) >= e; no energy of this spectrum lies within
        # rounding of a threshold, so the rank is exact.
        assert rank == int(np.searchsorted(cumulative, energy) + 1), (result.name, energy)
    for rank, err in result.rank_errors:
        expected = np.sqrt(np.sum(s[rank:] ** 2)) / np.linalg.norm(delta)
        assert err == pytest.approx(expected, rel=1e-8, abs=1e-12), (result.name, rank)


def test_update_analysis_matches_a_float64_svd_of_the_difference(made):
    report = analyze_update(made.tuned_full, made.base, workers=1)
    assert [m.name for m in report.matrices] == NAMES
    assert sorted(s.name for s in report.skipped) == ["0.bias", "2.bias", "4.bias"]
    base, tuned = load_tensors(made.base), load_tensors(made.tuned_full)
    for m in report.matrices:
        W = base[m.name].astype(np.float64)
        delta = tuned[m.name].astype(np.float64) - W
        _check_update(m, delta, W)
    ranks = {m.name: dict(m.energy_ranks)[0.9] for m in report.matrices}
    # Full fine-tuning moves every weight, yet the update is far from full rank.
    assert all(r < min(m.shape) // 2 for r, m in zip(ranks.values(), report.matrices, strict=True))


def test_adapter_analysis_matches_the_dense_update(made):
    report = analyze_adapter(made.adapter, base=made.base)
    assert [m.name for m in report.matrices] == NAMES
    adapter = load_peft_adapter(made.adapter)
    base = load_tensors(made.base)
    for m in report.matrices:
        module = adapter.modules[m.name.removesuffix(".weight")]
        A = np.asarray(module.lora_A, np.float64)
        B = np.asarray(module.lora_B, np.float64)
        delta = module.scaling * (B @ A)
        W = base[m.name].astype(np.float64)
        _check_update(m, delta, W)
        assert m.numerical_rank == made.rank


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match=r"rank must satisfy 1 <= rank <= 64; got 0"):
        make_digits_finetune(tmp_path, rank=0)
    with pytest.raises(InputError, match=r"rank must satisfy 1 <= rank <= 64; got 65"):
        make_digits_finetune(tmp_path, rank=65)
    with pytest.raises(InputError, match=r"rng must be an integer; got True of type bool"):
        make_digits_finetune(tmp_path, rng=True)
    with pytest.raises(InputError, match=r"directory must be a non-empty path .*; got 3"):
        make_digits_finetune(3)
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match=r"directory must be a folder; '.*f' is a file"):
        make_digits_finetune(tmp_path / "f")


def test_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pip install -e '\.\[cli\]'"):
        make_digits_finetune(tmp_path)
