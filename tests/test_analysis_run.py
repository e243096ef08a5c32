"""Running an analysis: streaming, executors, interruption, crashed workers, hard kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lowrank.analysis import (
    AnalysisError,
    MatrixResult,
    Report,
    analyze,
    available_cores,
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
    target = tmp_path / "report.json"

    def interrupt(outcome, run):
        raise KeyboardInterrupt

    with ThreadPoolExecutor(1) as pool, pytest.raises(KeyboardInterrupt):
        analyze(checkpoint, executor=pool, checkpoint=target, on_result=interrupt)
    saved = Report.read_json(target)
    assert saved.partial
    assert len(saved.matrices) >= 1
    assert len(saved.matrices) + len(saved.pending) == N_MATRICES
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
    target = tmp_path / "report.json"
    pool = local_executor(workers=1)

    def kill_worker(outcome, run):
        if run.done == 1:
            for process in list(pool._processes.values()):
                os.kill(process.pid, signal.SIGKILL)

    try:
        with pytest.raises(
            AnalysisError, match=r"stopped after [1-5] of 6 matrices: the task for"
        ) as info:
            analyze(checkpoint, executor=pool, checkpoint=target, on_result=kill_worker)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert "BrokenProcessPool" in str(info.value)
    assert info.value.report.partial
    saved = Report.read_json(target)
    assert saved.partial and len(saved.matrices) >= 1


def test_a_killed_main_process_leaves_a_valid_report(checkpoint, tmp_path):
    # SIGKILL gives no chance to clean up: the atomic writes alone keep the file valid.
    target = tmp_path / "report.json"
    script = textwrap.dedent(f"""
        import time
        from concurrent.futures import ThreadPoolExecutor
        from lowrank.analysis import analyze
        with ThreadPoolExecutor(1) as pool:
            analyze({str(checkpoint)!r}, executor=pool, checkpoint={str(target)!r},
                    checkpoint_interval=0, on_result=lambda o, r: time.sleep(0.3))
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if target.exists() and json.loads(target.read_text())["matrices"]:
                break
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    saved = Report.read_json(target)
    assert saved.partial and 1 <= len(saved.matrices) < N_MATRICES


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
            "the directory of path must exist",
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


def test_ctrl_c_to_the_process_group_is_one_line_and_a_partial_report(tmp_path):
    # A real Ctrl-C: SIGINT to the whole process group of `lowrank analyze` while its
    # worker processes start or run. The workers stay quiet (SIGINT ignored from birth),
    # the parent writes the partial report and says so in one line.
    # Enough work (about 0.3 s of CPU per matrix) that the run is still going 0.5 s after
    # it has started, however quiet the machine.
    rng = np.random.default_rng(0)
    path = tmp_path / "slow.safetensors"
    count = 24
    save_safetensors(
        path,
        {f"m{i}.weight": rng.standard_normal((1600, 1200), np.float32) for i in range(count)},
    )
    target = tmp_path / "report.json"
    child = subprocess.Popen(
        [sys.executable, "-m", "lowrank", "analyze", str(path), "--workers", "2",
         "--threads-per-worker", "1", "--json", str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # pragma: no cover - only if the test failed
            child.kill()
    assert child.returncode == 130, err
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("lowrank: interrupted")
    saved = Report.read_json(target)
    assert saved.partial and len(saved.matrices) + len(saved.pending) == count


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
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info()]


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
