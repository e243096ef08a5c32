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

from _gates import Gate, GatedExecutor, Started  # noqa: E402

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
    # Twelve matrices over two workers; the kill test holds tasks at a gate, so their
    # size does not matter for timing.
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
    # The first task runs freely; every later one waits at the gate, in its worker, and
    # says which process it runs in. After the first result the test kills the worker of
    # a held task (so that task must be redone elsewhere), then opens the gate.
    killed: list[Started] = []

    def kill_a_busy_worker(outcome, run):
        if not killed:
            held = gate.started()
            os.kill(held.pid, signal.SIGKILL)
            killed.append(held)
            gate.open()

    with Gate() as gate, dask_executor(cluster.scheduler_address) as executor:
        report = analyze(
            checkpoint,
            executor=GatedExecutor(executor, gate, free=1),
            on_result=kill_a_busy_worker,
            checkpoint=tmp_path / "r.json",
        )
    assert len(killed) == 1 and killed[0].pid != os.getpid()
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
