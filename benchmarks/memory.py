"""Peak resident memory of a process tree, sampled from ``/proc`` in a background thread.

:class:`TreeRSS` sums ``VmRSS`` (and ``RssAnon``) of a process and all its descendants
every ``interval`` seconds while its ``with`` block runs, and keeps the largest sums: the
peak memory of a call that starts worker processes (``lowrank.analysis`` does), which the
``VmHWM`` of the calling process alone would not show. No dependency beyond the standard
library; on a system without ``/proc`` (macOS, Windows) it records nothing and
:attr:`TreeRSS.available` is False.

Caveats, stated with the numbers it reports:

* a sum of ``VmRSS`` counts the pages of a shared library (OpenBLAS, SciPy) once per process
  that maps it, so it overstates what the tree takes from the machine; ``RssAnon`` (private
  heap, what arrays live in) does not, but leaves out file pages, e.g. a memory-mapped
  checkpoint being read;
* a peak shorter than ``interval`` can be missed (filling a few hundred MB of fresh pages
  takes longer than the default 20 ms).

Descendants are found through ``/proc/PID/task/TID/children`` (Linux 3.5+ with
``CONFIG_PROC_CHILDREN``, as on common distributions), else by scanning ``/proc/*/stat``
for parent ids.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["TreeRSS"]

_PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def _children_by_scan() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def _has_children_file(pid: int) -> bool:
    return (_PROC / str(pid) / "task" / str(pid) / "children").exists()


def _tree(root: int, use_children_file: bool) -> list[int]:
    kids = None if use_children_file else _children_by_scan()
    seen, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack += _children(pid) if kids is None else kids.get(pid, [])
    return seen


def _status_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of ``pid`` in KiB; zeros for a process that has just exited."""
    rss = anon = 0
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("RssAnon:"):
            anon = int(line.split()[1])
    return rss, anon


class TreeRSS:
    """Sample the memory of a process tree while a ``with`` block runs.

    Parameters
    ----------
    pid : int, optional
        Root of the tree (default: this process).
    interval : float, default 0.02
        Seconds between samples.

    Attributes
    ----------
    peak_bytes, peak_anon_bytes : int
        Largest sum over the tree of ``VmRSS`` and of ``RssAnon`` seen (including the
        samples taken on entry and on exit).
    start_bytes : int
        The ``VmRSS`` sum on entry.
    max_processes : int
        Most processes seen in the tree at once.
    samples : int
        Number of samples taken.
    """

    def __init__(self, pid: int | None = None, *, interval: float = 0.02) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.available = (_PROC / str(self.pid) / "status").exists()
        self._use_children = self.available and _has_children_file(self.pid)
        self.peak_bytes = self.peak_anon_bytes = self.start_bytes = 0
        self.max_processes = self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Take one sample now; returns the ``VmRSS`` sum in bytes."""
        if not self.available:
            return 0
        pids = _tree(self.pid, self._use_children)
        rss = anon = 0
        for p in pids:
            r, a = _status_kib(p)
            rss += r
            anon += a
        self.peak_bytes = max(self.peak_bytes, rss * 1024)
        self.peak_anon_bytes = max(self.peak_anon_bytes, anon * 1024)
        self.max_processes = max(self.max_processes, len(pids))
        self.samples += 1
        return rss * 1024

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeRSS:
        self.start_bytes = self.sample()
        if self.available:
            self._thread = threading.Thread(target=self._loop, name="tree-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def to_dict(self) -> dict[str, int | float | bool]:
        return {
            "rss_available": self.available,
            "rss_peak_bytes": self.peak_bytes,
            "rss_anon_peak_bytes": self.peak_anon_bytes,
            "rss_start_bytes": self.start_bytes,
            "rss_max_processes": self.max_processes,
            "rss_samples": self.samples,
            "rss_interval": self.interval,
        }


def _demo() -> None:  # pragma: no cover - a manual check: python -m benchmarks.memory
    import subprocess
    import sys

    code = "import time; b = bytearray(300 << 20); time.sleep(0.5)"
    with TreeRSS() as m:
        subprocess.run([sys.executable, "-c", code], check=True)
    print(f"peak {m.peak_bytes / 2**20:.0f} MiB (start {m.start_bytes / 2**20:.0f} MiB), "
          f"anon {m.peak_anon_bytes / 2**20:.0f} MiB, {m.max_processes} processes, "
          f"{m.samples} samples")  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    _demo()
