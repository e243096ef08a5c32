"""Run one benchmark task in a child process, with a per-call timeout.

The child (:mod:`benchmarks.worker`) reads the task as JSON on stdin and writes events as
JSON lines prefixed with ``@@`` on stdout: ``progress`` and ``call`` events while it works, a
``result`` event per finished case. The parent kills the child's process group when no
event arrives within ``call_timeout`` seconds (plus ``setup_timeout`` before the first one),
and reports what had finished by then.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import clean_env

__all__ = ["EVENT_PREFIX", "run_in_child"]

EVENT_PREFIX = "@@"
_ROOT = Path(__file__).resolve().parent.parent


def _reader(stream: Any, sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def run_in_child(
    task: dict[str, Any],
    *,
    call_timeout: float,
    setup_timeout: float = 120.0,
) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``task`` in ``python -m benchmarks.worker``; returns its events and an error.

    The error is ``None`` on success, ``"timeout ..."`` when the child was killed, or the
    tail of its stderr when it failed.
    """
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=_ROOT,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(json.dumps(task))
    proc.stdin.close()
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []
    out_thread = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    stderr = proc.stderr
    err_thread = threading.Thread(target=lambda: errors.extend(stderr), daemon=True)
    out_thread.start()
    err_thread.start()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + setup_timeout + call_timeout
    error: str | None = None
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            error = f"timeout: no progress for {call_timeout:.0f} s"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        if line is None:
            break
        if not line.startswith(EVENT_PREFIX):
            continue
        event = json.loads(line[len(EVENT_PREFIX) :])
        events.append(event)
        deadline = time.monotonic() + call_timeout
    proc.wait()
    err_thread.join(timeout=5)
    if error is None and proc.returncode != 0:
        tail = "".join(errors)[-1500:].strip()
        error = f"child exited with {proc.returncode}: {tail}"
    return events, error
