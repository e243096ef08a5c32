"""Outputs that would replace inputs: every writing command and entry point refuses them
before any work (one stderr line, exit 2, the input's bytes unchanged, no file left behind).

Also the command line's small input checks: a malformed ``--scheduler`` address (one line,
no "Exception ignored in Client.__del__"), an ``-o`` below a file, a directory given as a
report, empty ``--ranks`` items, ``--plot-kind`` without ``--plot``.

Inputs are real files: safetensors written by the ``safetensors`` package, sharded
checkpoints with a real index, PEFT adapter folders written by :mod:`lowrank.io.peft`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowrank.analysis import Report, analyze, analyze_update, extract_checkpoint
from lowrank.cli import EXIT_OK, EXIT_USAGE, main
from lowrank.errors import InputError
from lowrank.io.peft import save_peft_adapter


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (temporary files included) and its content's hash."""
    return {
        str(p.relative_to(folder)): digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def error_line(capsys) -> str:
    """The one line a refused command wrote to stderr (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder holding a base and a tuned checkpoint, a sharded checkpoint (index and two
    shards), a plain checkpoint directory and a PEFT adapter folder; the current directory."""
    rng = np.random.default_rng(3)
    base = {"a.weight": rng.standard_normal((6, 4)).astype(np.float32)}
    save_file(base, str(tmp_path / "base.safetensors"))
    tuned = {"a.weight": base["a.weight"] + np.eye(6, 4, dtype=np.float32)}
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"a.weight": base["a.weight"]}, str(sharded / "model-00001-of-00002.safetensors"))
    save_file(
        {"b.weight": np.ones((3, 5), np.float32)}, str(sharded / "model-00002-of-00002.safetensors")
    )
    index = {
        "metadata": {},
        "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
        },
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    plain = tmp_path / "plain"
    plain.mkdir()
    save_file(base, str(plain / "model.safetensors"))
    A = rng.standard_normal((2, 4)).astype(np.float32)
    B = rng.standard_normal((6, 2)).astype(np.float32)
    save_peft_adapter(tmp_path / "adapter", {"a": (A, B)}, {"r": 2, "lora_alpha": 4})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(argv: list[str], workdir: Path, capsys, message: str) -> str:
    """Run ``argv``; check exit 2, one stderr line matching ``message``, no file changed,
    added or removed under ``workdir``; return the line."""
    import re

    before = snapshot(workdir)
    assert main(argv) == EXIT_USAGE
    line = error_line(capsys)
    assert re.search(message, line), line
    assert snapshot(workdir) == before
    return line


# -- analyze ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["analyze", "base.safetensors", "--json", "base.safetensors"],
            r"^lowrank: error: --json would overwrite the input PATH: both name '.*/base\."
            r"safetensors'; write the output elsewhere$",
        ),
        (
            ["analyze", "tuned.safetensors", "--csv", "tuned.safetensors"],
            "--csv would overwrite the input PATH",
        ),
        (
            ["analyze", "tuned.safetensors", "--md", "./sub/../tuned.safetensors"],
            "--md would overwrite the input PATH",
        ),
        (
            [
                "analyze",
                "tuned.safetensors",
                "--base",
                "base.safetensors",
                "--spectra",
                "base.safetensors",
            ],
            "--spectra would overwrite the input --base",
        ),
        (
            ["analyze", "tuned.safetensors", "--json", "r.out", "--csv", "r.out"],
            r"--json and --csv name the same file '.*/r\.out'; give each output its own file",
        ),
        (
            ["analyze", "tuned.safetensors", "--json", "r.png", "--plot", "r.png"],
            "--json and --plot name the same file",
        ),
        (
            [
                "analyze",
                "sharded/model.safetensors.index.json",
                "--json",
                "sharded/model-00002-of-00002.safetensors",
            ],
            r"--json would overwrite the input PATH \(a file of PATH, '.*model-00002-of-00002",
        ),
        (
            ["analyze", "sharded", "--csv", "sharded/model-00001-of-00002.safetensors"],
            "--csv would overwrite the input PATH",
        ),
        (
            ["analyze", "sharded", "--json", "sharded/model.safetensors.index.json"],
            "--json would overwrite the input PATH",
        ),
        (
            ["analyze", "adapter", "--json", "adapter/adapter_config.json"],
            r"--json would overwrite the input PATH \(a file of PATH, '.*adapter_config\.json'",
        ),
        (
            [
                "analyze",
                "adapter",
                "--base",
                "base.safetensors",
                "--spectra",
                "adapter/adapter_model.safetensors",
            ],
            "--spectra would overwrite the input PATH",
        ),
        (
            ["analyze", "adapter", "--base", "base.safetensors", "--md", "base.safetensors"],
            "--md would overwrite the input --base",
        ),
    ],
)
def test_analyze_refuses_an_output_onto_an_input(workdir, capsys, argv, message):
    (workdir / "sub").mkdir()
    # --workers is refused for an adapter folder (its modules run in this process).
    workers = [] if argv[1] == "adapter" else ["--workers", "1"]
    refused([*argv, "--no-progress", *workers], workdir, capsys, message)


def test_analyze_refuses_an_output_through_a_symlink(workdir, capsys):
    os.symlink(workdir / "base.safetensors", workdir / "link.json")
    os.symlink(workdir / "plain", workdir / "also-plain")
    refused(
        ["analyze", "base.safetensors", "--json", "link.json", "--no-progress"],
        workdir,
        capsys,
        "--json would overwrite the input PATH: both name '.*/base.safetensors'",
    )
    refused(
        ["analyze", "plain", "--csv", "also-plain/model.safetensors", "--no-progress"],
        workdir,
        capsys,
        "--csv would overwrite the input PATH",
    )


def test_analyze_refuses_an_output_that_is_a_hard_link_of_the_input(workdir, capsys):
    os.link(workdir / "base.safetensors", workdir / "hard.csv")
    refused(
        ["analyze", "base.safetensors", "--csv", "hard.csv", "--no-progress"],
        workdir,
        capsys,
        "--csv would overwrite the input PATH",
    )


def test_analyze_keeps_writing_reports_beside_and_inside_inputs(workdir, capsys):
    # Not over-eager: a report in the checkpoint's directory is fine, and so is running
    # the same command again over the report it wrote.
    argv = ["analyze", "sharded", "--json", "sharded/report.json", "--no-progress"]
    for _ in range(2):
        assert main([*argv, "--workers", "1"]) == EXIT_OK
    assert Report.read_json(workdir / "sharded" / "report.json").matrices


def test_the_real_command_refuses_json_onto_the_checkpoint(workdir):
    # The reproducer of the audit, through the installed entry point: before the fix the
    # JSON report replaced the checkpoint and the run then failed reading it.
    before = digest(workdir / "base.safetensors")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lowrank",
            "analyze",
            "base.safetensors",
            "--json",
            "base.safetensors",
            "--no-progress",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("lowrank: error: --json would overwrite the input PATH")
    assert digest(workdir / "base.safetensors") == before


# -- extract and plot ---------------------------------------------------------------------


def test_extract_refuses_an_adapter_folder_that_is_an_input_directory(workdir, capsys):
    # The adapter's weights file would join the checkpoint directory 'plain'.
    save_file({"a.weight": np.zeros((6, 4), np.float32)}, str(workdir / "zero.safetensors"))
    refused(
        ["extract", "--base", "zero.safetensors", "--tuned", "plain", "--rank", "1", "-o", "plain"],
        workdir,
        capsys,
        r"^lowrank: error: -o would write into the input --tuned: both name the directory",
    )


def test_extract_refuses_an_adapter_file_that_is_an_input(workdir, capsys):
    # --tuned is the adapter folder's own weights file: --overwrite would replace it.
    folder = workdir / "adapter"
    refused(
        [
            "extract",
            "--base",
            "base.safetensors",
            "--tuned",
            "adapter/adapter_model.safetensors",
            "--rank",
            "1",
            "-o",
            str(folder),
            "--overwrite",
        ],
        workdir,
        capsys,
        "-o would overwrite the input --tuned",
    )


def test_plot_refuses_an_output_onto_its_report(workdir, capsys):
    with ThreadPoolExecutor(1) as pool:
        analyze(workdir / "base.safetensors", executor=pool).write_json(workdir / "r.png")
    refused(
        ["plot", "r.png", "--kind", "curves", "-o", "r.png"],
        workdir,
        capsys,
        "^lowrank: error: -o would overwrite the input REPORT",
    )


# -- the Python entry points --------------------------------------------------------------


def test_analyze_refuses_its_source_as_checkpoint(workdir):
    before = snapshot(workdir)
    with pytest.raises(
        InputError, match=r"^'checkpoint' would overwrite the input 'source': both name"
    ):
        analyze(workdir / "base.safetensors", checkpoint=workdir / "base.safetensors")
    with pytest.raises(InputError, match="'checkpoint' would overwrite the input 'source'"):
        analyze(
            workdir / "sharded", checkpoint=workdir / "sharded" / "model.safetensors.index.json"
        )
    assert snapshot(workdir) == before


def test_analyze_update_refuses_an_input_as_checkpoint(workdir):
    before = snapshot(workdir)
    for name, target in (("tuned", "tuned.safetensors"), ("base", "base.safetensors")):
        with pytest.raises(InputError, match=f"'checkpoint' would overwrite the input '{name}'"):
            analyze_update(
                workdir / "tuned.safetensors",
                workdir / "base.safetensors",
                checkpoint=workdir / target,
            )
    assert snapshot(workdir) == before


def test_report_writers_refuse_the_analysed_checkpoint(workdir):
    with ThreadPoolExecutor(1) as pool:
        report = analyze_update(
            workdir / "tuned.safetensors", workdir / "base.safetensors", executor=pool
        )
    before = snapshot(workdir)
    for write in (report.write_json, report.write_csv, report.write_markdown):
        with pytest.raises(InputError, match=r"'path' would overwrite the input 'run\.source'"):
            write(workdir / "tuned.safetensors")
    with pytest.raises(InputError, match=r"'path' would overwrite the input 'run\.base'"):
        report.write_spectra(workdir / "base.safetensors")
    assert snapshot(workdir) == before


def test_extraction_save_refuses_an_input(workdir):
    save_file({"a.weight": np.zeros((6, 4), np.float32)}, str(workdir / "zero.safetensors"))
    result = extract_checkpoint(workdir / "zero.safetensors", workdir / "plain", rank=1)
    before = snapshot(workdir)
    with pytest.raises(
        InputError, match=r"^'directory' would write into the input 'tuned': both name the dir"
    ):
        result.save(workdir / "plain")
    assert snapshot(workdir) == before


# -- small command-line checks ------------------------------------------------------------


def test_malformed_scheduler_is_one_line(workdir):
    # A subprocess: the noise came from Client.__del__, which runs when the half-built
    # client is collected, possibly at interpreter exit.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lowrank",
            "analyze",
            "base.safetensors",
            "--scheduler",
            "notaurl",
            "--connect-timeout",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr == (
        "lowrank: error: address must be a scheduler address like 'tcp://host:8786'; got "
        "'notaurl' (missing port number in address 'notaurl')\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "extract",
                "--base",
                "base.safetensors",
                "--tuned",
                "tuned.safetensors",
                "--rank",
                "1",
                "-o",
                "afile/ad",
            ],
            r"^lowrank: error: -o 'afile/ad' cannot be created: '.*afile' is a file, not a "
            "directory$",
        ),
        (
            ["plot", "sharded", "--kind", "curves", "-o", "p.png"],
            "^lowrank: error: report file must be a JSON file, not a directory; got 'sharded'$",
        ),
        (
            ["analyze", "base.safetensors", "--ranks", ""],
            "^lowrank analyze: error: argument --ranks: must be comma-separated positive "
            "integers like 8,16,64; got ''$",
        ),
        (["analyze", "base.safetensors", "--ranks", "1,,2"], "got '1,,2'$"),
        (["analyze", "base.safetensors", "--energy", "0.9,"], "got '0.9,'$"),
        (
            ["analyze", "base.safetensors", "--plot-kind", "spectra"],
            "^lowrank analyze: error: --plot-kind applies to --plot F only$",
        ),
    ],
)
def test_small_usage_errors(workdir, capsys, argv, message):
    (workdir / "afile").write_text("x")
    refused(argv, workdir, capsys, message)
