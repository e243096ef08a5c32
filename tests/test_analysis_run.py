"""Running an analysis: streaming, executors, interruption, crashed workers, hard kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _gates import TESTS_DIR, TIMEOUT, Gate, GatedExecutor

from lowrank.analysis import (
    AnalysisError,
    MatrixResult,
    Report,
    analyze,
    available_cores,
    dask_executor,
    describe_executor,
    local_executor,
    start_analysis,
    thread_executor,
)
from lowrank.errors import InputError, MissingFileError
from lowrank.io import save_safetensors


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


N_MATRICES = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("run") / "model.safetensors"
    tensors = {
        f"layers.{i}.proj.weight": rng.standard_normal((30 + 5 * i, 20)).astype(np.float32)
        for i in range(N_MATRICES)
    }
    tensors["layers.0.proj.bias"] = np.zeros(30, np.float32)
    save_safetensors(path, tensors)
    return path


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports ``_gates``."""
    path = [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def numbers(report: Report) -> list[MatrixResult]:
    """The results without their timings, to compare runs."""
    return [replace(m, seconds=0.0) for m in report.matrices]


def test_streams_outcomes_and_reports_partial_until_done(checkpoint):
    with ThreadPoolExecutor(1) as pool, start_analysis(checkpoint, executor=pool) as run:
        assert (run.total, run.done) == (N_MATRICES, 0)
        assert run.report().partial and len(run.report().pending) == N_MATRICES
        first = next(run)
        assert isinstance(first, MatrixResult)
        middle = run.report()
        assert middle.partial and len(middle.matrices) == 1
        assert first.name not in middle.pending
        rest = list(run)
        assert run.done == N_MATRICES and len(rest) == N_MATRICES - 1
        final = run.report()
    assert not final.partial
    # Completion order may vary; the report is in storage order.
    assert [m.name for m in final.matrices] == [
        f"layers.{i}.proj.weight" for i in range(N_MATRICES)
    ]
    assert list(run) == []  # a finished run stays finished


def test_on_result_sees_every_outcome(checkpoint):
    seen: list[tuple[str, int]] = []
    with ThreadPoolExecutor(2) as pool:
        report = analyze(
            checkpoint,
            executor=pool,
            on_result=lambda outcome, run: seen.append((outcome.name, run.done)),
        )
    assert sorted(name for name, _ in seen) == sorted(m.name for m in report.matrices)
    assert [done for _, done in seen] == list(range(1, N_MATRICES + 1))


@pytest.mark.slow  # a 2-process pool: 3 s; test_workers_ask_for_processes stays in the default run
def test_numbers_do_not_depend_on_the_executor(checkpoint):
    from threadpoolctl import threadpool_info

    with ThreadPoolExecutor(1) as pool:
        threads = analyze(checkpoint, executor=pool)
    with local_executor(workers=2, threads_per_worker=1) as pool:
        processes = analyze(checkpoint, executor=pool)
        # The pool is the caller's: still running, and its workers use one BLAS thread.
        info = pool.submit(threadpool_info).result()
    assert processes.run.executor == "ProcessPoolExecutor (2 workers)"
    assert numbers(processes) == numbers(threads)
    assert info and all(lib["num_threads"] == 1 for lib in info)


def test_keyboard_interrupt_leaves_a_valid_partial_checkpoint(checkpoint, tmp_path):
    # The first task runs freely; every later one waits at the gate. The interrupt comes
    # from the first result's callback once the second task has started (so it is held,
    # mid-run): exactly one matrix is done, the others pending, however fast the machine.
    target = tmp_path / "report.json"
    held = []

    def interrupt(outcome, run):
        held.append(gate.started())
        raise KeyboardInterrupt

    # Leaving: the gate opens (the held task finishes), then the pool shuts down.
    with ThreadPoolExecutor(1) as pool, Gate() as gate:
        executor = GatedExecutor(pool, gate, free=1)
        with pytest.raises(KeyboardInterrupt):
            analyze(checkpoint, executor=executor, checkpoint=target, on_result=interrupt)
    assert len(held) == 1
    saved = Report.read_json(target)
    assert saved.partial
    assert len(saved.matrices) == 1
    assert len(saved.pending) == N_MATRICES - 1
    assert held[0].label in saved.pending
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_checkpoint_is_written_before_work_and_at_the_end(checkpoint, tmp_path):
    target = tmp_path / "report.json"
    states = []
    with ThreadPoolExecutor(1) as pool:
        report = analyze(
            checkpoint,
            executor=pool,
            checkpoint=target,
            checkpoint_interval=0,
            on_result=lambda o, r: states.append(Report.read_json(target)),
        )
    assert [len(s.matrices) for s in states] == list(range(1, N_MATRICES + 1))
    assert Report.read_json(target) == report and not report.partial


def test_a_dead_worker_process_stops_the_run_with_a_partial_report(checkpoint, tmp_path):
    # One worker process. The first task runs freely; the second waits at the gate and
    # reports the process it runs in, which the test kills after the first result.
    target = tmp_path / "report.json"
    killed = []

    def kill_worker(outcome, run):
        if not killed:
            started = gate.started()
            os.kill(started.pid, signal.SIGKILL)
            killed.append(started)

    pool = local_executor(workers=1)
    try:
        with Gate() as gate:
            executor = GatedExecutor(pool, gate, free=1)
            with pytest.raises(
                AnalysisError, match=r"stopped after 1 of 6 matrices: the task for"
            ) as info:
                analyze(checkpoint, executor=executor, checkpoint=target, on_result=kill_worker)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert len(killed) == 1 and killed[0].pid != os.getpid()
    assert "BrokenProcessPool" in str(info.value)
    assert info.value.report.partial and len(info.value.report.matrices) == 1
    saved = Report.read_json(target)
    assert saved.partial and len(saved.matrices) == 1
    assert killed[0].label in saved.pending


def test_a_killed_main_process_leaves_a_valid_report(checkpoint, tmp_path):
    # SIGKILL gives no chance to clean up: the atomic writes alone keep the file valid.
    # The child's result callback (after the checkpoint with one result is written) says
    # so at the gate and waits there: the kill lands mid-run, after exactly one result.
    target = tmp_path / "report.json"
    with Gate() as gate:
        script = textwrap.dedent(f"""
            from concurrent.futures import ThreadPoolExecutor
            from _gates import wait_at_gate
            from lowrank.analysis import analyze
            with ThreadPoolExecutor(1) as pool:
                analyze({str(checkpoint)!r}, executor=pool, checkpoint={str(target)!r},
                        checkpoint_interval=0,
                        on_result=lambda o, r: wait_at_gate({gate.address!r}, o.name))
        """)
        env = child_env()
        child = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            first = gate.started()
            assert first.pid == child.pid
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    saved = Report.read_json(target)
    assert saved.partial and [m.name for m in saved.matrices] == [first.label]
    assert len(saved.pending) == N_MATRICES - 1


def test_empty_selection_starts_no_worker(checkpoint):
    report = analyze(checkpoint, include="nothing.*")
    assert report.matrices == () and not report.partial
    assert report.run.executor == "none (no matrix selected)"
    assert len(report.skipped) == N_MATRICES + 1


def test_describe_executor():
    with ThreadPoolExecutor(3) as pool:
        assert describe_executor(pool) == "ThreadPoolExecutor (3 workers)"

    class Client:
        class scheduler:
            address = "tcp://127.0.0.1:8786"

    class Fake(ThreadPoolExecutor):
        _client = Client()

    with Fake(1) as fake:
        assert describe_executor(fake) == "dask scheduler tcp://127.0.0.1:8786"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"executor": "pool"},
            InputError,
            "executor must be a concurrent.futures.Executor; got str",
        ),
        (
            {"executor": ThreadPoolExecutor(1), "workers": 2},
            InputError,
            "give workers or executor, not both; got workers=2",
        ),
        ({"workers": 0}, InputError, "workers must be >= 1; got 0"),
        ({"threads_per_worker": 0}, InputError, "threads_per_worker must be >= 1; got 0"),
        (
            {"executor": ThreadPoolExecutor(1), "threads_per_worker": 1},
            InputError,
            "threads_per_worker applies to the default executor only",
        ),
        ({"checkpoint_interval": -1}, InputError, "checkpoint_interval must be finite and >= 0"),
        ({"ranks": [0]}, InputError, "ranks must be positive integers"),
        ({"nd_policy": "crop"}, InputError, "nd_policy must be one of"),
        (
            {"checkpoint": "/nonexistent-dir/r.json"},
            MissingFileError,
            "checkpoint must be in an existing directory",
        ),
    ],
)
def test_start_analysis_rejects(checkpoint, kwargs, error, message):
    with pytest.raises(error, match=message):
        start_analysis(checkpoint, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be >= 1; got 0"),
        ({"threads_per_worker": 1.5}, "threads_per_worker must be an integer; got 1.5"),
    ],
)
def test_local_executor_rejects(kwargs, message):
    with pytest.raises(InputError, match=message):
        local_executor(**kwargs)


# The child interpreter of the Ctrl-C test: `lowrank analyze` as the command line runs it,
# with each matrix's task held at the gate in its worker process (so that the run is
# always mid-way when the SIGINT comes), and the main thread saying when it waits for
# results inside the command's loop (so that the SIGINT never lands before it).
CTRL_C_CHILD = """
import functools, sys
import lowrank.analysis._run as run_module
from _gates import gated, wait_at_gate
from lowrank.cli import main

address = {address!r}
run_module.analyze_tensor = functools.partial(gated, address, run_module.analyze_tensor)


class SignallingRun(run_module.AnalysisRun):
    said = False

    def __next__(self):
        if not SignallingRun.said:
            SignallingRun.said = True
            wait_at_gate(address, "waiting", block=False)
        return super().__next__()


run_module.AnalysisRun = SignallingRun
sys.exit(main({argv!r}))
"""


def test_ctrl_c_to_the_process_group_is_one_line_and_a_partial_report(tmp_path):
    # A real Ctrl-C: SIGINT to the whole process group of `lowrank analyze` (two worker
    # processes) once both workers hold a task and the parent waits for results. The
    # workers stay quiet (SIGINT ignored from birth), the parent writes the partial
    # report and says so in one line.
    rng = np.random.default_rng(0)
    path = tmp_path / "model.safetensors"
    count = 4
    save_safetensors(
        path, {f"m{i}.weight": rng.standard_normal((30, 20), np.float32) for i in range(count)}
    )
    target = tmp_path / "report.json"
    argv = ["analyze", str(path), "--workers", "2", "--threads-per-worker", "1",
            "--json", str(target)]  # fmt: skip
    with Gate() as gate:
        script = CTRL_C_CHILD.format(address=gate.address, argv=argv)
        env = child_env()
        child = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            arrived = [gate.started() for _ in range(3)]
            os.killpg(child.pid, signal.SIGINT)
            out, err = child.communicate(timeout=TIMEOUT)
        finally:
            if child.poll() is None:  # pragma: no cover - only if the test failed
                child.kill()
                child.communicate()
    workers = {a.pid for a in arrived if a.label != "waiting"}
    assert [a.pid for a in arrived if a.label == "waiting"] == [child.pid]
    assert len(workers) == 2 and child.pid not in workers
    assert child.returncode == 130, err
    assert out == ""
    assert err.splitlines() == [
        f"lowrank: interrupted after 0 of {count} matrices; partial report in {target}"
    ]
    saved = Report.read_json(target)
    assert saved.partial and saved.matrices == () and len(saved.pending) == count


def test_a_closed_run_yields_nothing_more_and_keeps_what_had_finished(checkpoint):
    with ThreadPoolExecutor(1) as pool:
        run = start_analysis(checkpoint, executor=pool)
        first = next(run)
        run.close()
        run.close()  # twice is harmless
        assert list(run) == []
        report = run.report()
    assert first.name in [m.name for m in report.matrices]
    assert len(report.matrices) + len(report.pending) == N_MATRICES


def blas_threads() -> list[int]:
    """The thread counts of the BLAS libraries loaded. OpenMP runtimes are left out: their
    limit is per thread (a pool thread sees the default, the number of cores), and one is
    loaded only once some other test has imported scikit-learn, which made this test
    depend on the order of the suite."""
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_a_small_selection_runs_in_threads_and_restores_the_blas_threads(checkpoint):
    before = blas_threads()
    report = analyze(checkpoint)
    n = min(available_cores(), N_MATRICES)
    assert report.run.executor.startswith(f"local threads: {n} worker")
    assert len(report.matrices) == N_MATRICES
    assert blas_threads() == before
    with thread_executor(workers=1, threads_per_worker=3) as pool:
        inside = pool.submit(blas_threads).result()
    assert set(inside) == {3}
    assert blas_threads() == before


def test_workers_ask_for_processes(checkpoint):
    report = analyze(checkpoint, workers=1)
    assert report.run.executor.startswith("local processes: 1 worker x ")
    with ThreadPoolExecutor(1) as pool:
        threads = analyze(checkpoint, executor=pool)
    assert numbers(report) == numbers(threads)


@pytest.mark.parametrize("make", [local_executor, thread_executor])
def test_executor_helpers_reject(make):
    with pytest.raises(InputError, match="workers must be >= 1; got 0"):
        make(workers=0)


@pytest.mark.parametrize(
    ("address", "detail"),
    [
        ("notaurl", r"missing port number in address 'notaurl'"),
        ("tcp://127.0.0.1:notaport", r"invalid literal for int\(\)"),
        ("foo://host:8786", r"unknown address scheme 'foo'"),
        ("tcp://[::1", r"invalid address"),
        ("tcp://127.0.0.1:99999", r"port 99999 is not in 1\.\.65535"),
    ],
)
def test_dask_executor_refuses_a_malformed_address_before_any_client(address, detail):
    # Before any Client: a half-built one printed "Exception ignored in Client.__del__" and
    # a traceback on stderr after the error, and made the error a connection failure.
    import re

    with (
        pytest.raises(
            InputError,
            match=rf"^address must be a scheduler address like 'tcp://host:8786'; got "
            rf"{re.escape(repr(address))} \({detail}",
        ),
        dask_executor(address, timeout=1),
    ):
        pass  # pragma: no cover


def test_a_client_that_fails_to_start_leaves_no_noise():
    # 'inproc://x' passes the address check (in-process addresses have no port) but the
    # Client cannot start: its error is reported, and its __del__ must print nothing. In a
    # fresh interpreter: pytest itself catches what __del__ raises, and hides it.
    code = textwrap.dedent(
        """
        from lowrank.analysis import SchedulerError, dask_executor
        try:
            with dask_executor("inproc://x", timeout=1):
                pass
        except SchedulerError as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=TIMEOUT,
        check=False,
    )
    assert done.stdout.startswith("SchedulerError could not connect to the Dask scheduler at")
    assert done.stderr == ""
