"""What ``lowrank`` says happened: exit status 0, 1 or 2 per outcome, one summary line.

0: every selected matrix was analysed. 1: the command was right but the work failed
(matrices that could not be analysed, named in one line; an I/O error; no convergence).
2: usage (bad options, an input that is missing or not a checkpoint, patterns that select
nothing, an existing adapter without ``--overwrite``). Also: the permissions of the files
written, and ``extract``'s named checkpoints.

Small checkpoints in ``tmp_path``; the default executor is a thread pool for them, so
monkeypatched functions are seen by the tasks.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from lowrank.analysis import Report
from lowrank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from lowrank.errors import ConvergenceError
from lowrank.io import save_safetensors
from lowrank.io.peft import load_peft_adapter

# Names as in all-MiniLM-L6-v2 (a BERT), whose matrices no '*proj.weight' pattern selects.
BERT = [
    f"encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "value")
] + ["encoder.layer.0.intermediate.dense.weight", "pooler.dense.weight"]


def bert_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {name: rng.standard_normal((8, 6)).astype(np.float32) for name in BERT}
    tensors["encoder.layer.0.attention.self.query.bias"] = np.zeros(8, np.float32)
    tensors["embeddings.position_ids"] = np.arange(6, dtype=np.int64).reshape(1, 6)
    return tensors


@pytest.fixture
def bert(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "bert.safetensors"
    save_safetensors(path, bert_tensors(rng))
    return path


@pytest.fixture
def with_nan(tmp_path: Path, rng: np.random.Generator) -> Path:
    tensors = bert_tensors(rng)
    tensors["encoder.layer.1.attention.self.value.weight"][2, 3] = np.nan
    path = tmp_path / "nan.safetensors"
    save_safetensors(path, tensors)
    return path


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- analyze: 0, 1, 2 --------------------------------------------------------------------


def test_every_matrix_analysed_exits_0(bert: Path, tmp_path: Path, capsys) -> None:
    assert main(["analyze", str(bert), "--json", str(tmp_path / "r.json")]) == EXIT_OK
    assert capsys.readouterr().err == f"wrote {tmp_path / 'r.json'}\n"
    assert len(Report.read_json(tmp_path / "r.json").matrices) == len(BERT)


def test_a_matrix_with_nan_exits_1_naming_it(with_nan: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "r.json"
    status = main(["analyze", str(with_nan), "--json", str(target), "--csv", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert status == EXIT_FAILURE
    *wrote, summary = err.splitlines()
    assert wrote == [f"wrote {target}", f"wrote {tmp_path / 'c'}"]  # outputs still written
    assert summary == (
        "lowrank: error: 1 of 6 matrices could not be analysed: "
        "'encoder.layer.1.attention.self.value.weight' (NonFiniteError: A must contain only "
        "finite values; got 1 NaN or infinite entry out of 48) (the report lists them as "
        "skipped, code 'error')"
    )
    assert "pooler.dense.weight" in out  # the others are in the table
    report = Report.read_json(target)
    assert len(report.matrices) == 5 and not report.partial
    assert [s.name for s in report.skipped if s.code == "error"] == [
        "encoder.layer.1.attention.self.value.weight"
    ]


def test_data_unreadable_at_load_time_exits_1(tmp_path: Path, capsys) -> None:
    # An .npz member whose bytes were damaged: the listing reads the zip directory and the
    # member's header only, the load reads all of it and fails the CRC check. That matrix
    # fails; the other is analysed.
    path = tmp_path / "w.npz"
    W = np.arange(128 * 128, dtype=np.float64).reshape(128, 128)
    np.savez(path, good=np.eye(4), bad=W)  # stored, not compressed
    raw = bytearray(path.read_bytes())
    raw[raw.find(W[100, 2:4].tobytes())] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert main(["analyze", str(path)]) == EXIT_FAILURE
    out, err = capsys.readouterr()
    assert re.fullmatch(
        r"lowrank: error: 1 of 2 matrices could not be analysed: 'bad' \(FileFormatError: "
        r"member 'bad\.npy' of \.npz file '.*w\.npz' could not be read: Bad CRC-32.*\) "
        r"\(the report lists them as skipped, code 'error'\)",
        one_line(err),
    )
    assert "good" in out


def test_a_convergence_failure_exits_1(bert: Path, capsys, monkeypatch) -> None:
    import lowrank.analysis._compute as compute

    real = compute._analyze

    def no_convergence_for_the_pooler(a, *, name, **kwargs):
        if name == "pooler.dense.weight":
            raise ConvergenceError("LAPACK gesdd and gesvd did not converge")
        return real(a, name=name, **kwargs)

    monkeypatch.setattr(compute, "_analyze", no_convergence_for_the_pooler)
    assert main(["analyze", str(bert)]) == EXIT_FAILURE
    assert one_line(capsys.readouterr().err) == (
        "lowrank: error: 1 of 6 matrices could not be analysed: 'pooler.dense.weight' "
        "(ConvergenceError: LAPACK gesdd and gesvd did not converge) (the report lists them "
        "as skipped, code 'error')"
    )


def test_many_failures_are_one_line_naming_the_first_five(tmp_path: Path, capsys) -> None:
    bad = np.full((3, 3), np.nan, np.float32)
    save_safetensors(tmp_path / "m.safetensors", {f"w{i}": bad for i in range(7)})
    assert main(["analyze", str(tmp_path / "m.safetensors")]) == EXIT_FAILURE
    line = one_line(capsys.readouterr().err)
    assert line.startswith("lowrank: error: 7 of 7 matrices could not be analysed: 'w0' (")
    assert "'w4' (" in line and "'w5'" not in line and "; and 2 more (the report" in line


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        PermissionError(errno.EACCES, "Permission denied", "r.json"),
    ],
)
def test_an_io_error_exits_1(bert: Path, tmp_path: Path, capsys, monkeypatch, error) -> None:
    import lowrank.io._atomic as atomic

    def fail(path):
        raise error

    monkeypatch.setattr(atomic, "_fsync_file", fail)
    target = tmp_path / "r.json"
    assert main(["analyze", str(bert), "--json", str(target)]) == EXIT_FAILURE
    line = one_line(capsys.readouterr().err)
    # The atomic writer names the file asked for where the error named none.
    expected = {
        errno.ENOSPC: f"lowrank: error: No space left on device: '{target}'",
        errno.EACCES: "lowrank: error: Permission denied: 'r.json'",
    }
    assert line == expected[error.errno]
    assert list(tmp_path.iterdir()) == [bert]  # no half-written report, no temporary file


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            # The README's old example, on a BERT's names: nothing matches.
            ["--include", "*proj.weight"],
            r"lowrank: error: include pattern '\*proj\.weight' matches none of the 8 tensors in "
            r"'.*bert\.safetensors' \(6 of them matrices\); the closest names: "
            r"'encoder\.layer\.0\.attention\.self\.query\.weight', '.*', '.*'$",
        ),
        (
            ["--include", "*.atention.*"],
            r".*the closest names: 'encoder\.layer\.0\.attention\.self\.query\.weight', "
            r"'encoder\.layer\.0\.attention\.self\.value\.weight', ",
        ),
        (
            ["--exclude", "*.weight"],
            r"lowrank: error: no matrix of the 8 tensors in '.*' is left by exclude pattern "
            r"'\*\.weight': the 2 tensors left are not matrices \('embeddings\.position_ids': "
            r"dtype int64 is an integer type, not floating\)$",
        ),
        (
            ["--exclude", "*"],
            r"lowrank: error: exclude pattern '\*' excludes all of the 8 tensors in '.*' "
            r"\(6 of them matrices\)$",
        ),
        (
            ["--include", "*.bias"],
            r"lowrank: error: no matrix of the 8 tensors .* is left by include pattern "
            r"'\*\.bias': the 1 tensor left is not a matrix",
        ),
    ],
)
def test_patterns_that_select_nothing_exit_2_naming_close_names(
    bert: Path, tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    target = tmp_path / "r.json"
    assert main(["analyze", str(bert), *flags, "--json", str(target)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert re.match(message, one_line(err)), err
    assert not target.exists()  # refused before any work


def test_bad_input_exits_2(tmp_path: Path, capsys, rng: np.random.Generator) -> None:
    # A file truncated in its data is found when its header is listed, before any work:
    # one line naming the file and the tensor, exit 2 (the input is not a checkpoint).
    path = tmp_path / "cut.safetensors"
    save_safetensors(path, {"a": np.ones((4, 4), np.float32), "b": np.ones((4, 4), np.float32)})
    path.write_bytes(path.read_bytes()[:-8])
    assert main(["analyze", str(path)]) == EXIT_USAGE
    assert re.fullmatch(
        r"lowrank: error: safetensors file '.*cut\.safetensors': tensor 'b' data_offsets "
        r"\[64, 128\] point past the end of the data region.*",
        one_line(capsys.readouterr().err),
    )


# -- permissions --------------------------------------------------------------------------


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_files_get_the_umask_permissions(bert: Path, tmp_path: Path, capsys, umask_027) -> None:
    out = tmp_path / "out"
    out.mkdir()
    files = {k: out / f"r.{k}" for k in ("json", "csv", "md")}
    argv = ["analyze", str(bert), "--spectra", str(out / "s.npz"), "--plot", str(out / "c.png")]
    for kind, path in files.items():
        argv += [f"--{kind}", str(path)]
    assert main(argv) == EXIT_OK
    assert {p.name: mode(p) for p in out.iterdir()} == {
        p.name: 0o640 for p in [*files.values(), out / "s.npz", out / "c.png"]
    }


# -- extract ------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, dict, dict]:
    base = {f"m.l{i}.q.weight": rng.standard_normal((6, 5)).astype(np.float32) for i in range(2)}
    tuned = {
        k: v + np.outer(rng.standard_normal(6), rng.standard_normal(5)).astype(np.float32)
        for k, v in base.items()
    }
    save_safetensors(tmp_path / "base.safetensors", base)
    save_safetensors(tmp_path / "tuned.safetensors", tuned)
    return tmp_path / "base.safetensors", tmp_path / "tuned.safetensors", base, tuned


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_adapter_files_get_the_umask_permissions(pair, tmp_path: Path, capsys, umask_027) -> None:
    # safetensors writes its files 0o600: the weights were 0600 next to a 0644 config.
    base, tuned, *_ = pair
    out = tmp_path / "adapter"
    argv = ["extract", "--base", str(base), "--tuned", str(tuned), "--rank", "1", "-o", str(out)]
    assert main(argv) == EXIT_OK
    assert mode(out) == 0o750
    assert {p.name: mode(p) for p in out.iterdir()} == {
        "adapter_config.json": 0o640,
        "adapter_model.safetensors": 0o640,
    }


def test_base_and_tuned_are_named_in_any_order(pair, tmp_path: Path, capsys) -> None:
    base, tuned, base_w, tuned_w = pair
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--rank", "1", "--base-model", "x/y"]
    assert (
        main(["extract", "--base", str(base), "--tuned", str(tuned), *common, "-o", str(one)]) == 0
    )
    assert (
        main(["extract", "--tuned", str(tuned), "--base", str(base), *common, "-o", str(two)]) == 0
    )
    first, second = load_peft_adapter(one).modules, load_peft_adapter(two).modules
    for name, module in first.items():
        np.testing.assert_array_equal(module.lora_A, second[name].lora_A)
        np.testing.assert_array_equal(module.lora_B, second[name].lora_B)
        # The sign is that of tuned - base (a rank-1 update, recovered to float32 rounding).
        dW = tuned_w[f"{name}.weight"].astype(np.float64) - base_w[f"{name}.weight"]
        rebuilt = module.scaling * module.lora_B.astype(np.float64) @ module.lora_A
        np.testing.assert_allclose(rebuilt, dW, atol=1e-5 * np.abs(dW).max())


def test_extract_of_a_nan_exits_1_and_writes_nothing(pair, tmp_path: Path, capsys) -> None:
    base, _, _, tuned_w = pair
    tuned_w = dict(tuned_w)
    tuned_w["m.l1.q.weight"] = tuned_w["m.l1.q.weight"].copy()
    tuned_w["m.l1.q.weight"][0, 0] = np.inf
    save_safetensors(tmp_path / "bad.safetensors", tuned_w)
    out = tmp_path / "adapter"
    argv = ["extract", "--base", str(base), "--tuned", str(tmp_path / "bad.safetensors")]
    assert main([*argv, "--rank", "1", "-o", str(out)]) == EXIT_FAILURE
    assert one_line(capsys.readouterr().err) == (
        "lowrank: error: no adapter written: layer 'm.l1.q': W_tuned must contain only finite "
        "values; got 1 NaN or infinite entry out of 30"
    )
    assert not out.exists()


def test_extract_convergence_failure_and_full_disk_exit_1(pair, tmp_path, capsys, monkeypatch):
    import lowrank.analysis._extract as extract_module
    import lowrank.io._atomic as atomic

    base, tuned, *_ = pair
    out = tmp_path / "adapter"
    argv = ["extract", "--base", str(base), "--tuned", str(tuned), "--rank", "1", "-o", str(out)]

    def no_convergence(*args, **kwargs):
        raise ConvergenceError("layer 'm.l0.q': LAPACK gesdd and gesvd did not converge")

    with monkeypatch.context() as patch:
        patch.setattr(extract_module, "extract_many", no_convergence)
        assert main(argv) == EXIT_FAILURE
    assert one_line(capsys.readouterr().err) == (
        "lowrank: error: no adapter written: layer 'm.l0.q': LAPACK gesdd and gesvd did not "
        "converge"
    )

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_fsync_file", disk_full)
    assert main(argv) == EXIT_FAILURE
    assert one_line(capsys.readouterr().err).startswith(
        "lowrank: error: No space left on device: '"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.safetensors", "tuned.safetensors"]


def test_extract_says_when_base_model_is_null(pair, tmp_path: Path, capsys) -> None:
    base, tuned, *_ = pair
    out = tmp_path / "adapter"
    argv = ["extract", "--base", str(base), "--tuned", str(tuned), "--rank", "1", "-o", str(out)]
    assert main(argv) == EXIT_OK
    wrote, note = capsys.readouterr().err.splitlines()
    assert wrote == f"wrote {out}"
    assert note == (
        "note: adapter_config.json has base_model_name_or_path null (no --base-model): "
        "PeftModel.from_pretrained(model, folder) loads it on a base model you pass, but "
        "AutoPeftModel and the Hub cannot tell which base model it belongs to"
    )
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    # An existing adapter: the message names the CLI's flag, before any work.
    assert main(argv) == EXIT_USAGE
    assert one_line(capsys.readouterr().err) == (
        f"lowrank: error: adapter folder '{out}' already holds adapter_config.json, "
        "adapter_model.safetensors; pass --overwrite to replace them"
    )


@pytest.mark.parametrize("module", ["tqdm", "matplotlib"])
def test_a_missing_module_of_the_cli_extra_is_one_line(
    module: str, bert: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`pip install -e .` installs the command but not the cli extra; a module that the
    command imports is then missing (None in sys.modules is how Python spells "not
    importable"). Before: a ModuleNotFoundError traceback."""
    import sys

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "r.png"
    argv = ["analyze", str(bert), "--no-progress", "--json", str(tmp_path / "r.json")]
    if module == "matplotlib":
        argv += ["--plot", str(out)]
    status = main(argv)
    err = capsys.readouterr().err
    if module == "matplotlib" and status == EXIT_OK:
        pytest.skip("the plot was not attempted")
    assert status == EXIT_FAILURE
    assert one_line(err.strip().splitlines()[-1] + "\n") == (
        f"lowrank: error: the lowrank command needs the cli extra (module '{module}' is "
        "missing): pip install -e '.[cli]' in the clone of lowrank"
    )
