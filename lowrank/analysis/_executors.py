"""Executors for an analysis: local worker processes or threads, or a Dask cluster.

Any :class:`concurrent.futures.Executor` works (a ``ThreadPoolExecutor`` too); these
helpers set up the usual ones well:

* :func:`local_executor`: a ``ProcessPoolExecutor`` whose workers are started with
  ``spawn`` (no fork of a process that may hold threads), ignore Ctrl-C (the parent
  handles it and stops them), and limit their BLAS/OpenMP thread pools with
  ``threadpoolctl`` so that workers × threads does not exceed the cores.
* :func:`thread_executor`: daemon threads of this process, with the BLAS thread pools
  limited the same way while the pool lives: no processes to start, which is what small
  checkpoints spend most of their time on.
* :func:`dask_executor`: a ``dask.distributed`` client's executor. Dask's nanny starts
  workers with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``, so each worker
  thread runs single-threaded BLAS, as a local worker with one thread does.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from lowrank._validation import check_int, check_positive_float
from lowrank.errors import InputError, LowRankError

__all__ = [
    "SchedulerError",
    "available_cores",
    "dask_executor",
    "describe_executor",
    "local_executor",
    "thread_executor",
]

T = TypeVar("T")

# The threadpoolctl limiter of a worker process, kept alive for the worker's lifetime.
_WORKER_LIMITS: list[Any] = []


class SchedulerError(LowRankError, ConnectionError):
    """The Dask scheduler cannot be reached, or ``dask.distributed`` is not installed."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS and Windows


def _init_worker(threads: int) -> None:
    # Ctrl-C goes to the whole process group; the parent stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the cli extra
        return
    _WORKER_LIMITS.append(threadpool_limits(limits=threads))


def local_executor(
    *, workers: int | None = None, threads_per_worker: int | None = None
) -> ProcessPoolExecutor:
    """A process pool for :func:`analyze`, with BLAS threads limited in each worker.

    Parameters
    ----------
    workers : int, optional
        Number of worker processes (default: the available cores).
    threads_per_worker : int, optional
        BLAS/OpenMP threads per worker (default: ``max(1, cores // workers)``, so that
        workers × threads does not exceed the cores).

    Returns
    -------
    concurrent.futures.ProcessPoolExecutor
        Owned by the caller: use it in a ``with`` block or call ``shutdown()``.

    Raises
    ------
    InputError
        ``workers`` or ``threads_per_worker`` is not a positive integer.

    Examples
    --------
    >>> pool = local_executor(workers=2)   # processes start at the first submit
    >>> pool.shutdown()
    """
    n, threads = _workers_and_threads(workers, threads_per_worker)
    return ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    )


_Task = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _work(tasks: queue.SimpleQueue[_Task | None]) -> None:
    """A thread of :class:`BLASLimitedThreadPool`: run tasks until told to stop (None)."""
    while True:
        task = tasks.get()
        if task is None:
            return
        future, fn, args, kwargs = task
        del task
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # as ThreadPoolExecutor: the future carries it
                future.set_exception(exc)
                del exc
            else:
                future.set_result(result)
                del result
        del future, fn, args, kwargs


class BLASLimitedThreadPool(Executor):
    """A pool of daemon threads that limits the process's BLAS/OpenMP threads while it
    lives (made by :func:`thread_executor`); :meth:`shutdown` restores them.

    Unlike a ``ThreadPoolExecutor``, whose threads the interpreter joins at exit, its
    threads are daemon threads: a task left running after ``shutdown(wait=False)`` (a run
    stopped by Ctrl-C) cannot keep the process alive, even one that can never finish (a
    thread waiting for an import that an interrupt left unfinished in the main thread).
    """

    def __init__(self, workers: int, blas_threads: int) -> None:
        self._max_workers = workers  # read by describe_executor, as a ThreadPoolExecutor's
        self.blas_threads = blas_threads
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        self._limits: Any = None
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with the cli extra
            return
        self._limits = threadpool_limits(limits=blas_threads)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[T] = Future()
            self._tasks.put((future, fn, args, kwargs))
            if len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=_work,
                    args=(self._tasks,),
                    name=f"lowrank-analysis_{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            stops = len(self._threads) if first else 0
            if cancel_futures:
                while True:
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if task is None:  # the stop of an earlier shutdown: put back below
                        stops += 1
                    else:
                        task[0].cancel()
            for _ in range(stops):
                self._tasks.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()
        limits, self._limits = self._limits, None
        if limits is not None:
            limits.restore_original_limits()


def thread_executor(
    *, workers: int | None = None, threads_per_worker: int | None = None
) -> BLASLimitedThreadPool:
    """A thread pool for :func:`analyze`, with BLAS threads limited while it lives.

    NumPy and SciPy release the GIL in their BLAS and LAPACK calls, so threads run the
    matrices in parallel as processes do, without starting interpreters (about a second
    of CPU each: two thirds of the CPU time on MiniLM-L6). The BLAS limit
    (``threadpoolctl``) applies to the whole process until the pool is shut down.

    Parameters
    ----------
    workers : int, optional
        Number of threads (default: the available cores).
    threads_per_worker : int, optional
        BLAS/OpenMP threads per call (default: ``max(1, cores // workers)``).

    Returns
    -------
    BLASLimitedThreadPool
        Owned by the caller: use it in a ``with`` block or call ``shutdown()``.

    Raises
    ------
    InputError
        ``workers`` or ``threads_per_worker`` is not a positive integer.

    Examples
    --------
    >>> with thread_executor(workers=2, threads_per_worker=1) as pool:
    ...     pool.submit(sum, [1, 2]).result()
    3
    """
    n, threads = _workers_and_threads(workers, threads_per_worker)
    return BLASLimitedThreadPool(n, threads)


def _workers_and_threads(workers: int | None, threads_per_worker: int | None) -> tuple[int, int]:
    cores = available_cores()
    n = cores if workers is None else check_int(workers, name="workers", minimum=1)
    threads = (
        max(1, cores // n)
        if threads_per_worker is None
        else check_int(threads_per_worker, name="threads_per_worker", minimum=1)
    )
    return n, threads


@contextmanager
def dask_executor(address: str, *, timeout: float = 30.0) -> Iterator[Executor]:
    """Connect to a Dask scheduler and yield an executor running tasks on its workers.

    Parameters
    ----------
    address : str
        The scheduler, e.g. ``"tcp://10.0.0.5:8786"``. Workers must be able to read the
        checkpoint's files at the same paths (each loads its own matrices).
    timeout : float, default 30
        Seconds to wait for the connection.

    Yields
    ------
    concurrent.futures.Executor
        ``Client(address).get_executor(pure=False)``; the client is closed on exit.

    Raises
    ------
    InputError
        ``address`` is not a non-empty string, is malformed (an unknown scheme, no port,
        a port that is not a number in 1..65535), or ``timeout`` is not positive.
    SchedulerError
        ``dask.distributed`` is not installed, or the scheduler cannot be reached.

    Examples
    --------
    A scheduler and a worker started here (a real cluster is given by its address):

    >>> from distributed import LocalCluster
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
    ...     with dask_executor(cluster.scheduler_address) as executor:
    ...         executor.submit(sum, [1, 2, 3]).result()
    6
    """
    if not isinstance(address, str) or not address.strip():
        raise InputError(
            f"address must be a scheduler address like 'tcp://host:8786'; got {address!r}"
        )
    seconds = check_positive_float(timeout, name="timeout")
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - the test extra installs dask
        raise SchedulerError(
            "a Dask scheduler needs dask.distributed: the dask extra (pip install -e '.[dask]' in "
            "a clone of lowrank) or pip install 'dask[distributed]'"
        ) from None
    _check_address(address)
    failure = None
    with _quiet_client_del():
        try:
            client = Client(address, timeout=seconds, set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            failure = " ".join(str(exc).split()) or type(exc).__name__
        # Leaving the except block drops the traceback, and with it the half-built Client,
        # whose __del__ runs now, inside the quiet block, rather than at exit.
        gc.collect()
    if failure is not None:
        raise SchedulerError(f"could not connect to the Dask scheduler at {address!r}: {failure}")
    try:
        yield client.get_executor(pure=False)  # type: ignore[no-untyped-call]
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _check_address(address: str) -> None:
    """Refuse a malformed scheduler address before a Client is built for it.

    ``Client('notaurl')`` raises from its constructor, and the half-built client's
    ``__del__`` then prints a traceback of its own; parsing the address first (as Dask
    does, without name resolution) makes the common typo one clean error.
    """
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, _ = parse_address(address)
        get_backend(scheme)
        # In-process addresses ('inproc://host/pid/n') have no port to check.
        port = None if scheme == "inproc" else get_address_host_port(address)[1]
    except (ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"address must be a scheduler address like 'tcp://host:8786'; got {address!r} "
            f"({detail})"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise InputError(
            f"address must be a scheduler address like 'tcp://host:8786'; got {address!r} "
            f"(port {port} is not in 1..65535)"
        )


@contextmanager
def _quiet_client_del() -> Iterator[None]:
    """Swallow what a half-built ``distributed.Client``'s ``__del__`` raises meanwhile.

    Its close times out on a client that never started and Python prints that as
    "Exception ignored in Client.__del__" with a traceback; the connection failure itself
    is reported by the caller. Other unraisable exceptions go to the previous hook.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        if where != "Client.__del__":
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def describe_executor(executor: Executor) -> str:
    """A short description of ``executor`` for reports.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Any executor; a Dask client's is described by its scheduler's address.

    Returns
    -------
    str
        E.g. ``"ThreadPoolExecutor (2 workers)"``.

    Raises
    ------
    InputError
        ``executor`` is not an Executor.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as pool:
    ...     describe_executor(pool)
    'ThreadPoolExecutor (2 workers)'
    """
    if not isinstance(executor, Executor):
        raise InputError(
            f"executor must be a concurrent.futures.Executor; got {type(executor).__name__}"
        )
    workers = getattr(executor, "_max_workers", None)
    client = getattr(executor, "_client", None)
    if client is not None:
        address = getattr(getattr(client, "scheduler", None), "address", None)
        return f"dask scheduler {address}" if address else "dask"
    name = type(executor).__name__
    return f"{name} ({workers} workers)" if isinstance(workers, int) else name
