"""The command-line flows of the fourth CLI audit: what ``extract`` leaves out, nothing to
compare, the overlaps and amplification past the rank of the update, options that do not
apply to an adapter folder, and the messages that name the options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lowrank.cli import EXIT_OK, EXIT_USAGE, main
from lowrank.io import save_safetensors
from lowrank.io.peft import save_peft_adapter

MODULES = ["model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj"]
RANK = 2  # the rank of every update and of the adapter


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread: the 2 cores are shared with other tests."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """float64 base and tuned checkpoints (rank-2 updates, so ΔW has rank 2 up to rounding),
    a tuned one with a transposed and a missing matrix, an unrelated checkpoint, and a
    rank-2 PEFT adapter of the same modules."""
    rng = np.random.default_rng(41)
    root = tmp_path_factory.mktemp("flows")
    base = {f"{m}.weight": rng.standard_normal((12, 10)) for m in MODULES}
    tuned, factors = {}, {}
    for m in MODULES:
        A, B = rng.standard_normal((RANK, 10)), rng.standard_normal((12, RANK))
        factors[m] = (A, B)
        tuned[f"{m}.weight"] = base[f"{m}.weight"] + B @ A
    bad = dict(tuned)
    bad["model.layers.0.q_proj.weight"] = tuned["model.layers.0.q_proj.weight"].T.copy()
    del bad["model.layers.0.v_proj.weight"]
    save_safetensors(root / "base.safetensors", base)
    save_safetensors(root / "tuned.safetensors", tuned)
    save_safetensors(root / "bad.safetensors", bad)
    save_safetensors(root / "other.safetensors", {"unrelated.weight": np.eye(4)})
    # lora_alpha = r: the scaling is 1, so the update is exactly B @ A.
    save_peft_adapter(root / "ad", factors, {"r": RANK, "lora_alpha": RANK})
    return root, base, tuned, factors


def _one_error_line(capsys) -> str:
    _, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- 1. extract names what it leaves out ----------------------------------------------------


def test_extract_names_the_mismatched_and_missing_tensors(files, tmp_path, capsys):
    root = files[0]
    argv = ["extract", "--base", str(root / "base.safetensors"), "--tuned"]
    argv += [str(root / "bad.safetensors"), "--rank", "2", "-o", str(tmp_path / "ad")]
    assert main([*argv, "--base-model", "m"]) == EXIT_OK
    _, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if "not compared" in line]
    assert notes == [
        "lowrank: note: not compared: 1 unpaired: model.layers.0.v_proj.weight; "
        "1 shape mismatch: model.layers.0.q_proj.weight (shape (12, 10) in base but "
        "(10, 12) in tuned) (not in the adapter)"
    ]


# -- 2. nothing to compare ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "base", "merged"),
    [
        ("other.safetensors", "base.safetensors", False),
        ("tuned.safetensors", "ad", False),
        ("ad", "other.safetensors", False),
        ("ad", "other.safetensors", True),
        ("ad", "ad", False),
    ],
)
def test_nothing_to_compare_is_a_usage_error(files, tmp_path, capsys, path, base, merged):
    root = files[0]
    json_out = tmp_path / "r.json"
    argv = ["analyze", str(root / path), "--base", str(root / base), "--json", str(json_out)]
    assert main(argv + (["--merged"] if merged else [])) == EXIT_USAGE
    line = _one_error_line(capsys)
    assert line.startswith("lowrank: error: nothing to compare: ")
    assert str(root / path) in line
    assert str(root / base) in line
    assert not json_out.exists()  # refused before any work


# -- 3. past the rank of the update ---------------------------------------------------------


def _reference(delta, W, r):
    """numpy's overlaps and amplification of ``delta`` at rank ``r`` (Hu et al. §7)."""
    Ud, _, Vhd = np.linalg.svd(delta)
    Uw, _, Vhw = np.linalg.svd(W)
    left = np.linalg.norm(Ud[:, :r].T @ Uw[:, :r]) ** 2 / r
    right = np.linalg.norm(Vhd[:r] @ Vhw[:r].T) ** 2 / r
    amp = np.linalg.norm(delta) / np.linalg.norm(Ud[:, :r].T @ W @ Vhd[:r].T)
    return left, right, amp


@pytest.mark.parametrize("adapter", [True, False])
def test_ranks_above_the_update_rank_are_undefined(files, tmp_path, capsys, adapter):
    root, base, tuned, _ = files
    source = root / ("ad" if adapter else "tuned.safetensors")
    argv = ["analyze", str(source), "--base", str(root / "base.safetensors"), "--ranks", "1,2,4"]
    csv = tmp_path / "r.csv"
    assert main([*argv, "--json", str(tmp_path / "r.json"), "--csv", str(csv)]) == EXIT_OK
    stdout, _ = capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["matrices"]) == len(MODULES)
    for m in report["matrices"]:
        W = base[m["name"]]
        delta = tuned[m["name"]] - W
        for key in ("overlap_left", "overlap_right", "amplification"):
            assert dict(m[key])[4] is None, (m["name"], key)
        for r in (1, 2):
            # Distinct singular values of random factors: the subspaces are well defined,
            # and both SVDs are backward stable in float64 (a few hundred eps suffice).
            left, right, amp = _reference(delta, W, r)
            np.testing.assert_allclose(dict(m["overlap_left"])[r], left, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(dict(m["overlap_right"])[r], right, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(dict(m["amplification"])[r], amp, rtol=1e-9)
    header = csv.read_text().splitlines()[0].split(",")
    row = csv.read_text().splitlines()[1].split(",")
    assert row[header.index("amplification_rank_4")] == ""
    assert row[header.index("overlap_left_rank_4")] == ""
    assert "nan" not in stdout


# -- 4. options that do not apply to an adapter folder --------------------------------------


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--workers", "2"], "--workers"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        (["--threads-per-worker", "1"], "--threads-per-worker"),
    ],
)
def test_execution_options_are_refused_for_an_adapter(files, capsys, extra, flag):
    root = files[0]
    argv = ["analyze", str(root / "ad"), "--base", str(root / "base.safetensors"), *extra]
    assert main(argv) == EXIT_USAGE
    line = _one_error_line(capsys)
    assert f"{flag} (its modules are analysed one after another in this process)" in line
    assert "every adapted module" not in line


def test_include_is_refused_with_its_own_reason(files, capsys):
    root = files[0]
    assert main(["analyze", str(root / "ad"), "--include", "*q_proj*"]) == EXIT_USAGE
    line = _one_error_line(capsys)
    assert line.endswith("--include (every adapted module is analysed)")


# -- 5. messages that name the options ------------------------------------------------------


def test_merged_without_base_names_the_options(files, capsys):
    assert main(["analyze", str(files[0] / "ad"), "--merged"]) == EXIT_USAGE
    assert _one_error_line(capsys).startswith("lowrank analyze: error: --merged needs --base")


@pytest.mark.parametrize("flag", ["--base", "--tuned"])
def test_extract_missing_input_names_the_option(files, tmp_path, capsys, flag):
    root = files[0]
    paths = {"--base": str(root / "base.safetensors"), "--tuned": str(root / "tuned.safetensors")}
    paths[flag] = str(tmp_path / "nope.safetensors")
    argv = ["extract", "--base", paths["--base"], "--tuned", paths["--tuned"], "--rank", "1"]
    assert main([*argv, "-o", str(tmp_path / "ad")]) == EXIT_USAGE
    assert _one_error_line(capsys) == (
        f"lowrank: error: {flag} must be an existing file or directory; "
        f"got '{tmp_path / 'nope.safetensors'}'"
    )


def test_update_spectra_of_an_all_unchanged_report(files, tmp_path, capsys):
    root = files[0]
    report = tmp_path / "same.json"
    argv = ["analyze", str(root / "base.safetensors"), "--base", str(root / "base.safetensors")]
    assert main([*argv, "--json", str(report)]) == EXIT_OK
    capsys.readouterr()
    argv = ["plot", str(report), "--kind", "update-spectra", "-o", str(tmp_path / "s.png")]
    assert main(argv) == EXIT_USAGE
    line = _one_error_line(capsys)
    assert "plain matrices" not in line
    assert line.endswith(f"'{report}' holds no analysed matrix (skipped: 3 unchanged)")
