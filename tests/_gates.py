"""Event-based synchronisation for the tests that interrupt, kill or stream an analysis.

A :class:`Gate` is a loopback socket server in the test process. A task wrapped by
:func:`gated` (in a thread, a worker process, a Dask worker or a child process) connects
to it, says that it has started (its process id and a label), and blocks until the test
releases it or the gate closes. The test waits for that signal and only then interrupts,
kills or releases: no sleeps, no bet on how long the work takes, no private attributes of
an executor (a task reports its own process id).

The module is imported by worker processes (``spawn`` children and Dask workers find it
through the ``sys.path`` they inherit, child interpreters through ``PYTHONPATH``), so it
uses the standard library only. Timeouts are long: they are reached only by a test that
is already broken, and turn a hang into a failure.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["TESTS_DIR", "TIMEOUT", "Gate", "GatedExecutor", "Started", "gated", "wait_at_gate"]

T = TypeVar("T")
Address = tuple[str, int]

TIMEOUT = 120.0
"""Seconds before a wait that should take milliseconds is declared a failure."""

TESTS_DIR = Path(__file__).resolve().parent
"""For ``PYTHONPATH`` of a child interpreter that imports this module."""


# -- task side -------------------------------------------------------------------------


def wait_at_gate(address: Address, label: str = "", *, block: bool = True) -> None:
    """Tell the gate at ``address`` that this task started; block until released.

    With ``block=False`` only the signal is sent (a notification). A gate that is closed
    already lets the task through.
    """
    try:
        conn = socket.create_connection(tuple(address), timeout=TIMEOUT)
    except ConnectionRefusedError:
        return
    with conn:
        conn.sendall(f"{os.getpid()} {label}\n".encode())
        if block:
            with contextlib.suppress(ConnectionResetError):
                conn.recv(1)  # b"" once the test releases the task (closes its end)


def gated(address: Address, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` once the gate lets it through (label: ``args[0].name``)."""
    wait_at_gate(address, str(getattr(args[0], "name", "")) if args else "")
    return fn(*args, **kwargs)


# -- test side -------------------------------------------------------------------------


@dataclass
class Started:
    """A task that has reached the gate: where it runs, what it is, and its release."""

    pid: int
    label: str
    _conn: socket.socket = field(repr=False)

    def release(self) -> None:
        """Let the task go on (harmless twice, or when its process was killed)."""
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)
        self._conn.close()


class Gate:
    """The test's end: :meth:`started` returns the tasks as they arrive, in order.

    Tasks are held until released one by one (:meth:`Started.release`) or all at once
    (:meth:`open`, which also lets every later task straight through). Use as a context
    manager: leaving opens the gate and stops the server.
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        host, port = self._server.getsockname()[:2]
        self.address: Address = (host, port)
        self._arrivals: queue.Queue[Started] = queue.Queue()
        self._held: list[Started] = []
        self._open = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="gate", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # the server was shut down
                return
            conn.settimeout(TIMEOUT)
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                conn.close()
                continue
            pid, _, label = data.decode().strip().partition(" ")
            started = Started(int(pid or 0), label, conn)
            with self._lock:
                if self._open:
                    started.release()
                else:
                    self._held.append(started)
            self._arrivals.put(started)

    def started(self, timeout: float = TIMEOUT) -> Started:
        """The next task to reach the gate (waiting for it); held unless the gate is open."""
        try:
            return self._arrivals.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no task reached the gate within {timeout} s") from None

    def open(self) -> None:
        """Release every held task and let later ones through without stopping."""
        with self._lock:
            self._open = True
            held, self._held = self._held, []
        for started in held:
            started.release()

    def close(self) -> None:
        self.open()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of _serve
        self._server.close()
        self._thread.join(TIMEOUT)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GatedExecutor(Executor):
    """Submits to ``inner`` every task behind ``gate``, except the first ``free`` ones.

    The tasks are wrapped, not replaced: each runs the real work once released. The
    inner executor stays the caller's (``shutdown`` is passed on to it).
    """

    def __init__(self, inner: Executor, gate: Gate, *, free: int = 0) -> None:
        self.inner = inner
        self.gate = gate
        self._free = free
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            free, self._free = self._free > 0, self._free - 1
        if free:
            return self.inner.submit(fn, *args, **kwargs)
        return self.inner.submit(partial(gated, self.gate.address, fn), *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)
