"""CLI audit 6: outputs that are not regular files, interrupts at any moment, SIGTERM,
non-UTF-8 consoles, one error line, outputs that would join an input directory.

Signals are sent only once the child says where it is (a gate, tests/_gates.py), never
after a fixed sleep. Device files are never written: /dev/null is only named as an output
that must be refused before any write (a safety net makes a write next to it fail).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _gates import TESTS_DIR, TIMEOUT, Gate

import lowrank
from lowrank.analysis import Report, thread_executor
from lowrank.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from lowrank.errors import InputError
from lowrank.io import atomic_path, atomic_write_text, save_safetensors

REPO = Path(lowrank.__file__).resolve().parent.parent
EXIT_TERMINATED = 143


def child_env(**extra: str) -> dict[str, str]:
    path = [str(TESTS_DIR), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        **extra,
    }


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "model.safetensors"
    save_safetensors(
        path,
        {f"encoder.layer.{i}.dense.weight": rng.standard_normal((12, 8), np.float32)
         for i in range(4)},
    )  # fmt: skip
    return path


@pytest.fixture
def allnan(tmp_path: Path) -> Path:
    path = tmp_path / "allnan.safetensors"
    save_safetensors(path, {"x": np.full((8, 8), np.nan, np.float32)})
    return path


# -- 1. outputs that are not regular files ------------------------------------------------


def test_a_fifo_output_is_refused_and_left_a_fifo(model, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    status = main(["analyze", str(model), "--json", str(tmp_path / "r.json"),
                   "--md", str(fifo), "--no-progress"])  # fmt: skip
    lines = errors(capsys)
    assert status == EXIT_USAGE
    assert len(lines) == 1 and lines[0].startswith("lowrank: error: --md ")
    assert "FIFO" in lines[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not (tmp_path / "r.json").exists()  # refused before any write


def test_a_symlink_output_is_refused_and_neither_link_nor_target_changes(model, tmp_path, capsys):
    target = tmp_path / "kept.txt"
    target.write_text("kept")
    (tmp_path / "link.csv").symlink_to(target)
    (tmp_path / "so").symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    for flag, name in (("--csv", "link.csv"), ("--json", "so")):
        status = main(["analyze", str(model), flag, str(tmp_path / name), "--no-progress"])
        lines = errors(capsys)
        assert status == EXIT_USAGE
        assert len(lines) == 1 and lines[0].startswith(f"lowrank: error: {flag} ")
        assert "symbolic link" in lines[0]
        assert (tmp_path / name).is_symlink()
    assert target.read_text() == "kept"


def test_dash_is_refused_not_a_file_named_dash(model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flag in ("--json", "--csv", "--md"):
        assert main(["analyze", str(model), flag, "-", "--no-progress"]) == EXIT_USAGE
        lines = errors(capsys)
        assert len(lines) == 1 and "standard output" in lines[0]
    assert not (tmp_path / "-").exists()


def test_dev_null_is_refused_before_any_write(model, capsys, monkeypatch):
    # Safety net for the old code: a temporary file next to /dev/null, or a rename onto
    # it, fails the test instead of touching /dev.
    import lowrank.io._atomic as atomic

    real_create = atomic._create_temp

    def guarded(target: Path):  # type: ignore[no-untyped-def]
        if Path(target).parent == Path("/dev"):
            raise AssertionError(f"would write next to {target}")
        return real_create(target)

    monkeypatch.setattr(atomic, "_create_temp", guarded)
    before = os.stat("/dev/null")
    status = main(["analyze", str(model), "--md", "/dev/null", "--no-progress"])
    lines = errors(capsys)
    assert status == EXIT_USAGE
    assert lines == [lines[0]] and "character device" in lines[0]
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_plot_refuses_a_symlink_output(model, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["analyze", str(model), "--json", str(report), "--no-progress"]) == EXIT_OK
    capsys.readouterr()
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    (tmp_path / "fig.png").symlink_to(target)
    status = main(["plot", str(report), "--kind", "curves", "-o", str(tmp_path / "fig.png")])
    lines = errors(capsys)
    assert status == EXIT_USAGE and len(lines) == 1 and "symbolic link" in lines[0]
    assert target.read_bytes() == b"old" and (tmp_path / "fig.png").is_symlink()


def test_atomic_writes_refuse_links_and_fifos(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "real").write_text("old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InputError, match="FIFO"):
        atomic_write_text(fifo, "new")
    with pytest.raises(InputError, match="symbolic link"):
        atomic_write_text(tmp_path / "link", "new")
    with pytest.raises(InputError, match="symbolic link"), atomic_path(tmp_path / "link"):
        pass  # pragma: no cover
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").read_text() == "old"
    assert temporaries(tmp_path) == []
    atomic_write_text(tmp_path / "real", "new")  # a regular file is replaced as before
    assert (tmp_path / "real").read_text() == "new"


# -- 2. Ctrl-C at start-up: the partial report, and an exit that cannot hang -----------


def test_ctrl_c_while_the_run_starts_keeps_the_partial_report(model, tmp_path, capsys,
                                                              monkeypatch):  # fmt: skip
    # A real SIGINT, delivered while the tasks are being submitted (before the result
    # loop): it used to skip the documented partial CSV/Markdown reports.
    from lowrank.analysis import _executors

    real_submit = _executors.BLASLimitedThreadPool.submit
    calls = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(fn)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(_executors.BLASLimitedThreadPool, "submit", submit)
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md")}
    status = main(["analyze", str(model), "--json", str(out["json"]), "--csv", str(out["csv"]),
                   "--md", str(out["md"]), "--no-progress"])  # fmt: skip
    lines = errors(capsys)
    assert status == EXIT_INTERRUPTED
    assert len(lines) == 1 and lines[0].startswith("lowrank: interrupted after ")
    assert all(str(p) in lines[0] for p in out.values())
    assert all(p.is_file() for p in out.values())
    assert temporaries(tmp_path) == []


def test_the_thread_pool_cannot_keep_the_process_alive(tmp_path):
    # A task that never ends (a worker waiting for an import lock an interrupt left
    # behind): once the pool is shut down without waiting, the process must still exit.
    script = textwrap.dedent(
        """
        import threading
        from lowrank.analysis import thread_executor
        pool = thread_executor(workers=1, threads_per_worker=1)
        started = threading.Event()
        def stuck():
            started.set()
            threading.Event().wait()
        pool.submit(stuck)
        started.wait()
        pool.shutdown(wait=False, cancel_futures=True)
        print("leaving", flush=True)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], env=child_env(),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert child.returncode == 0, child.stderr
    assert child.stdout == "leaving\n"


STUCK_CHILD = """
import sys, threading
import lowrank.analysis._run as run_module
from _gates import wait_at_gate
from lowrank.cli import main

address = {address!r}


def stuck(info, **kwargs):
    wait_at_gate(address, "task", block=False)
    threading.Event().wait()  # never returns, like a worker blocked on an import lock


class SignallingRun(run_module.AnalysisRun):
    said = False

    def __next__(self):
        if not SignallingRun.said:
            SignallingRun.said = True
            wait_at_gate(address, "waiting", block=False)
        return super().__next__()


run_module.analyze_tensor = stuck
run_module.AnalysisRun = SignallingRun
sys.exit(main({argv!r}))
"""


def run_until_waiting(argv: list[str], sig: int) -> subprocess.CompletedProcess[str]:
    """``lowrank`` in a child whose tasks never end; ``sig`` once a task runs and the
    main thread waits for results."""
    with Gate() as gate:
        script = STUCK_CHILD.format(address=gate.address, argv=argv)
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            labels: set[str] = set()
            while not {"task", "waiting"} <= labels:
                labels.add(gate.started().label)
            child.send_signal(sig)
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    return subprocess.CompletedProcess(argv, child.returncode, out, err)


def test_ctrl_c_with_a_task_that_never_ends_exits_promptly(model, tmp_path):
    target = tmp_path / "r.json"
    done = run_until_waiting(["analyze", str(model), "--json", str(target)], signal.SIGINT)
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr.splitlines() == [
        f"lowrank: interrupted after 0 of 4 matrices; partial report in {target}"
    ]
    assert Report.read_json(target).partial


def test_an_interrupt_while_submitting_cancels_what_was_submitted(model, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from lowrank.analysis import start_analysis

    submitted = []  # the blocker, then the run's tasks

    class Interrupted(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            if len(submitted) == 3:
                raise KeyboardInterrupt
            future = super().submit(fn, *args, **kwargs)
            submitted.append(future)
            return future

    import threading

    release = threading.Event()
    with Interrupted(1) as pool:
        pool.submit(release.wait)  # holds the only thread: the run's tasks stay queued
        with pytest.raises(KeyboardInterrupt):
            start_analysis(model, executor=pool, checkpoint=tmp_path / "r.json")
        release.set()
    assert submitted[1].cancelled() and submitted[2].cancelled()
    assert Report.read_json(tmp_path / "r.json").partial


# -- 3. SIGTERM ------------------------------------------------------------------------------


def test_sigterm_during_the_run_is_one_line_exit_143_and_the_partial_report(model, tmp_path):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md")}
    argv = ["analyze", str(model), "--json", str(out["json"]), "--csv", str(out["csv"]),
            "--md", str(out["md"])]  # fmt: skip
    done = run_until_waiting(argv, signal.SIGTERM)
    assert done.returncode == EXIT_TERMINATED, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lowrank: terminated (SIGTERM) after 0 of 4 matrices; partial")
    assert all(p.is_file() for p in out.values())
    assert Report.read_json(out["json"]).partial
    assert temporaries(tmp_path) == []


WRITING_CHILD = """
import sys
import lowrank.io._atomic as atomic
from _gates import wait_at_gate
from lowrank.cli import main

address = {address!r}
real = atomic._fsync_file


def held(path):
    if path.name.startswith(".r.md."):  # the Markdown report's temporary file, written
        wait_at_gate(address, "writing")
    return real(path)


atomic._fsync_file = held
sys.exit(main({argv!r}))
"""


def test_sigterm_while_writing_leaves_no_temporary_file(model, tmp_path):
    argv = ["analyze", str(model), "--json", str(tmp_path / "r.json"),
            "--md", str(tmp_path / "r.md"), "--no-progress"]  # fmt: skip
    with Gate() as gate:
        script = WRITING_CHILD.format(address=gate.address, argv=argv)
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert gate.started().label == "writing"
            assert len(temporaries(tmp_path)) == 1
            child.send_signal(signal.SIGTERM)
            _, err = child.communicate(timeout=TIMEOUT)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert child.returncode == EXIT_TERMINATED, err
    assert err.splitlines() == ["lowrank: terminated (SIGTERM)"]
    assert temporaries(tmp_path) == []
    assert not (tmp_path / "r.md").exists()


# -- 4. no traceback, one error line ------------------------------------------------------


def test_an_ascii_stdout_prints_the_table_without_a_traceback(model):
    done = subprocess.run([sys.executable, "-m", "lowrank", "analyze", str(model),
                           "--no-progress"], env=child_env(PYTHONIOENCODING="ascii"),
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert "|A|_F" in done.stdout and "encoder.layer.0.dense.weight" in done.stdout


def test_a_missing_figure_and_failed_matrices_are_one_error_line(allnan, tmp_path, capsys):
    status = main(["analyze", str(allnan), "--json", str(tmp_path / "a.json"),
                   "--plot", str(tmp_path / "a.png"), "--no-progress"])  # fmt: skip
    lines = [line for line in errors(capsys) if line.startswith("lowrank: error:")]
    assert status == EXIT_FAILURE
    assert len(lines) == 1
    assert "no curves figure" in lines[0] and "could not be analysed" in lines[0]


# -- 5. outputs inside an input directory; exit codes; help -------------------------------


@pytest.mark.parametrize(
    ("flag", "name"),
    [("--spectra", "x.npz"), ("--csv", "t.npy"), ("--json", "more.safetensors"),
     ("--json", "model.safetensors.index.json")],
)  # fmt: skip
def test_an_output_that_would_join_an_input_directory_is_refused(model, flag, name, capsys):
    folder = model.parent / "ck"
    folder.mkdir()
    model.rename(folder / "model.safetensors")
    status = main(["analyze", str(folder), flag, str(folder / name), "--no-progress"])
    lines = errors(capsys)
    assert status == EXIT_USAGE
    assert len(lines) == 1 and f"{flag} would add '{name}' to the input directory" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]


def test_a_report_beside_the_checkpoint_of_a_directory_is_fine(model, capsys):
    folder = model.parent / "ck"
    folder.mkdir()
    model.rename(folder / "model.safetensors")
    status = main(["analyze", str(folder), "--json", str(folder / "r.json"), "--no-progress"])
    assert status == EXIT_OK
    assert main(["analyze", str(folder), "--no-progress"]) == EXIT_OK  # still readable


def test_an_unreadable_input_is_an_input_error(model, capsys, monkeypatch):
    from lowrank.io import _sources

    def denied(file: Path):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setitem(_sources._FILE_LISTERS, ".safetensors", denied)
    status = main(["analyze", str(model), "--no-progress"])
    lines = errors(capsys)
    assert status == EXIT_USAGE
    assert len(lines) == 1 and f"Permission denied: '{model}'" in lines[0]


def test_cache_help_names_the_real_default(capsys):
    for command in ("analyze", "demo"):
        assert main([command, "--help"]) == EXIT_OK
        text = " ".join(capsys.readouterr().out.split())
        assert "$LOWRANK_CACHE, else $XDG_CACHE_HOME/lowrank, else ~/.cache/lowrank" in text


def test_thread_executor_still_behaves_as_an_executor():
    with thread_executor(workers=2, threads_per_worker=1) as pool:
        assert pool.submit(sum, [1, 2]).result() == 3
        failing = pool.submit(int, "x")
        with pytest.raises(ValueError, match="invalid literal"):
            failing.result()
    with pytest.raises(RuntimeError):
        pool.submit(sum, [1])
