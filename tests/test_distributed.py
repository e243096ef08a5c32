"""Analysis on a real dask.distributed LocalCluster (loopback, 2 worker processes, 1 thread
each): the same numbers as the local process pool, and nothing lost when a worker is
killed mid-run.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from lowrank.analysis import (  # noqa: E402
    Report,
    SchedulerError,
    analyze,
    dask_executor,
)
from lowrank.errors import InputError  # noqa: E402
from lowrank.io import save_safetensors  # noqa: E402

N_MATRICES = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    rng = np.random.default_rng(2024)
    path = tmp_path_factory.mktemp("dask") / "model.safetensors"
    # Matrices big enough (a few tens of ms each) that work is still pending when the
    # first result arrives, small enough for a light test.
    save_safetensors(
        path,
        {
            f"layers.{i}.mlp.weight": rng.standard_normal((700, 400 + 10 * i)).astype(np.float32)
            for i in range(N_MATRICES)
        },
    )
    return path


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=50,
    ) as local:
        yield local


@pytest.fixture(scope="module")
def local_report(checkpoint) -> Report:
    """The local run, in this process on one BLAS thread like each Dask worker (the local
    process pool gives the same numbers: test_analysis_run.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), ThreadPoolExecutor(1) as pool:
        return analyze(checkpoint, executor=pool)


def numbers(report: Report):
    return [replace(m, seconds=0.0) for m in report.matrices]


def test_same_numbers_as_local_processes(checkpoint, cluster, local_report):
    with dask_executor(cluster.scheduler_address) as executor:
        report = analyze(checkpoint, executor=executor)
    assert report.run.executor == f"dask scheduler {cluster.scheduler_address}"
    assert not report.partial and report.skipped == ()
    # Bit-for-bit: the same code, single-threaded BLAS on both sides.
    assert numbers(report) == numbers(local_report)


def test_killing_a_worker_mid_run_loses_nothing(checkpoint, cluster, local_report, tmp_path):
    killed: list[str] = []
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2

        def kill_a_busy_worker(outcome, run):
            if not killed:
                # A worker that holds a task right now: its task must be redone elsewhere.
                busy = [w for w, tasks in client.processing().items() if tasks]
                assert busy, "every task finished before the first result was seen"
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        with dask_executor(cluster.scheduler_address) as executor:
            report = analyze(
                checkpoint,
                executor=executor,
                on_result=kill_a_busy_worker,
                checkpoint=tmp_path / "r.json",
            )
    assert len(killed) == 1
    assert not report.partial
    assert [m.name for m in report.matrices] == [m.name for m in local_report.matrices]
    assert numbers(report) == numbers(local_report)
    assert Report.read_json(tmp_path / "r.json") == report


@pytest.mark.parametrize(
    ("address", "kwargs", "error", "message"),
    [
        ("", {}, InputError, "address must be a scheduler address like 'tcp://host:8786'"),
        (None, {}, InputError, "address must be a scheduler address"),
        ("tcp://127.0.0.1:9", {"timeout": 0}, InputError, "timeout must be finite and > 0"),
        (
            "tcp://127.0.0.1:9",
            {"timeout": 0.5},
            SchedulerError,
            "could not connect to the Dask scheduler at 'tcp://127.0.0.1:9'",
        ),
    ],
)
def test_dask_executor_rejects(address, kwargs, error, message):
    with pytest.raises(error, match=message), dask_executor(address, **kwargs):
        pass  # pragma: no cover
