"""Running an analysis over many matrices on an executor, streaming results as they finish."""

from __future__ import annotations

import datetime
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from lowrank._validation import (
    check_bool,
    check_callable,
    check_int,
    check_path,
    check_positive_float,
)
from lowrank._version import __version__
from lowrank.analysis._compute import analyze_tensor
from lowrank.analysis._executors import (
    available_cores,
    describe_executor,
    local_executor,
    thread_executor,
)
from lowrank.analysis._report import Report, RunInfo
from lowrank.analysis._results import (
    DEFAULT_ENERGIES,
    DEFAULT_RANKS,
    AnalysisOptions,
    MatrixResult,
    SkippedTensor,
    UpdateResult,
    skipped_tensor,
)
from lowrank.analysis._update import _analyze_update_pair
from lowrank.errors import InputError, LowRankError, MissingFileError
from lowrank.io import NDPolicy, Patterns, Selection, TensorInfo, select
from lowrank.io._paths import check_distinct_paths

__all__ = ["AnalysisError", "AnalysisRun", "Outcome", "analyze", "start_analysis"]

Outcome = MatrixResult | SkippedTensor
"""What one task gives: a result, or a matrix whose analysis failed (``code="error"``)."""


class AnalysisError(LowRankError, RuntimeError):
    """The run stopped before the end: a worker process died, a scheduler was lost...

    Attributes
    ----------
    report : Report
        The partial report at the moment of the failure (already written to the run's
        checkpoint file, if it has one).
    """

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def _patterns(value: Patterns) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


# The default executor is a thread pool up to this many selected elements (see
# start_analysis).
_THREADS_MAX_ELEMENTS = 1 << 25


def _stop_pool(executor: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks of a pool we own and kill its workers, without waiting."""
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if callable(terminate):  # pragma: no cover - newer Pythons
        terminate()
        return
    # shutdown() forgets the worker processes: take them first. Without the kill, the
    # interpreter's exit would wait for the tasks running in them.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


@contextmanager
def _children_ignore_sigint(executor: Executor) -> Iterator[None]:
    """Ignore SIGINT while a process pool starts its workers (they start in ``submit``).

    A process started while SIGINT is ignored keeps ignoring it from its first instruction
    (the disposition survives ``exec``, and Python leaves an ignored SIGINT alone), so a
    Ctrl-C to the whole process group during worker start-up reaches only the parent, which
    stops the run, instead of printing a traceback from every worker being born. Only the
    main thread may change signal handlers; elsewhere nothing is changed.
    """
    if not (
        isinstance(executor, ProcessPoolExecutor)
        and threading.current_thread() is threading.main_thread()
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class AnalysisRun:
    """A started analysis: iterate to receive outcomes as they finish.

    Made by :func:`start_analysis`. Each iteration step returns the next finished
    :data:`Outcome` (completion order, not storage order); :meth:`report` gives, at any
    moment, the report of what has finished, in storage order, marked partial while
    matrices are pending. Use it as a context manager (or call :meth:`close`): leaving
    early cancels what is pending, stops the workers of an executor the run owns, and
    writes the partial report to the checkpoint file.

    Attributes
    ----------
    selection : Selection
        The matrices analysed and the tensors passed over.
    options : AnalysisOptions
        Ranks and energies reported.
    checkpoint : pathlib.Path or None
        A JSON report kept up to date atomically while the run goes on (see
        :func:`start_analysis`).
    """

    def __init__(
        self,
        *,
        selection: Selection,
        options: AnalysisOptions,
        info: RunInfo,
        executor: Executor | None,
        owns_executor: bool,
        checkpoint: Path | None,
        checkpoint_interval: float,
        bases: Sequence[TensorInfo] | None = None,
        unpaired: tuple[SkippedTensor, ...] = (),
    ) -> None:
        # bases: for an update analysis (start_update_analysis), the base matrix paired
        # with each selected matrix; unpaired: the tensors that found no partner.
        self.selection = selection
        self._unpaired = unpaired
        self.options = options
        self.checkpoint = checkpoint
        self._info = info
        self._executor = executor
        self._owns_executor = owns_executor
        self._interval = checkpoint_interval
        self._start = time.perf_counter()
        self._last_write = -float("inf")
        self._outcomes: dict[int, Outcome] = {}
        self._ready: deque[Future[Outcome]] = deque()
        self._closed = False
        self._end: float | None = None
        self._futures: dict[Future[Outcome], int] = {}
        self._pending: set[Future[Outcome]] = set()
        # The first checkpoint (everything pending) is written before any task is
        # submitted, so that an unwritable checkpoint path fails before work starts.
        self._write_checkpoint(force=True)
        if executor is not None:
            # Largest first: the longest tasks start early, so workers finish together.
            order = sorted(
                range(len(selection.matrices)), key=lambda i: -selection.matrices[i].size
            )
            try:
                self._submit(executor, order, bases)
            except BaseException:
                # Ctrl-C while submitting: what was submitted is cancelled, the checkpoint
                # says partial, and the interrupt goes on to the caller.
                self.close()
                raise

    def _submit(
        self, executor: Executor, order: Sequence[int], bases: Sequence[TensorInfo] | None
    ) -> None:
        selection, options = self.selection, self.options
        with _children_ignore_sigint(executor):
            for i in order:
                future: Future[Outcome] = (
                    executor.submit(
                        analyze_tensor,
                        selection.matrices[i],
                        nd_policy=selection.nd_policy,
                        options=options,
                    )
                    if bases is None
                    else executor.submit(
                        _analyze_update_pair,
                        selection.matrices[i],
                        bases[i],
                        nd_policy=selection.nd_policy,
                        options=options,
                    )
                )
                self._futures[future] = i
                self._pending.add(future)

    # -- progress -------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Number of matrices to analyse."""
        return len(self.selection.matrices)

    @property
    def done(self) -> int:
        """Number of matrices finished (analysed or failed)."""
        return len(self._outcomes)

    def report(self) -> Report:
        """The report of what has finished so far (partial while matrices are pending).

        Returns
        -------
        Report
            In storage order; ``pending`` names the matrices not finished yet.
        """
        matrices: list[MatrixResult] = []
        failed: list[SkippedTensor] = []
        pending: list[str] = []
        for i, info in enumerate(self.selection.matrices):
            outcome = self._outcomes.get(i)
            if outcome is None:
                pending.append(info.name)
            elif isinstance(outcome, MatrixResult):
                matrices.append(outcome)
            else:
                failed.append(outcome)
        skipped = (
            tuple(skipped_tensor(s.info, s.code, s.reason) for s in self.selection.skipped)
            + self._unpaired
        )
        end = self._end if self._end is not None else time.perf_counter()
        return Report(
            run=replace(self._info, elapsed_seconds=end - self._start),
            matrices=tuple(matrices),
            skipped=skipped + tuple(failed),
            pending=tuple(pending),
        )

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> AnalysisRun:
        return self

    def __next__(self) -> Outcome:
        if self._closed:
            raise StopIteration
        if not self._ready:
            if not self._pending:
                self._finish()
                raise StopIteration
            try:
                done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            except BaseException:
                self.close()
                raise
            # Storage order among futures that finished together, for reproducible streams.
            self._ready.extend(sorted(done, key=lambda f: self._futures[f]))
        future = self._ready.popleft()
        try:
            outcome = future.result()
        except BaseException as exc:
            self.close()
            if not isinstance(exc, Exception):
                raise
            name = self.selection.matrices[self._futures[future]].name
            detail = " ".join(str(exc).split())
            raise AnalysisError(
                f"the analysis stopped after {self.done} of {self.total} matrices: the task "
                f"for '{name}' failed with {type(exc).__name__}"
                + (f": {detail}" if detail else ""),
                self.report(),
            ) from exc
        outcome = self._recordable(outcome, self._futures[future])
        self._outcomes[self._futures[future]] = outcome
        self._write_checkpoint(force=False)
        return outcome

    def _recordable(self, outcome: Outcome, index: int) -> Outcome:
        """``outcome``, or, when a report cannot hold it, a ``code="error"`` entry saying
        why: one matrix whose result has a non-finite value where a report holds finite
        numbers (a base W whose norm overflows float64) must not stop the run's report
        from being written, nor lose the other matrices."""
        if not isinstance(outcome, MatrixResult):
            return outcome
        reason = ""
        if isinstance(outcome, UpdateResult) and not math.isfinite(outcome.base_norm_fro):
            # Its relative size and the base's spectrum are then meaningless too.
            reason = (
                "InputError: the base matrix has finite entries, but its Frobenius norm "
                "exceeds the float64 range (about 1.8e308); divide both checkpoints by a "
                "power of two to analyse this update"
            )
        else:
            try:
                outcome.to_dict()
            except InputError as exc:
                reason = f"{type(exc).__name__}: {exc}"
        if not reason:
            return outcome
        return skipped_tensor(self.selection.matrices[index], "error", reason)

    # -- ending ---------------------------------------------------------------------------

    def _write_checkpoint(self, *, force: bool) -> None:
        if self.checkpoint is None:
            return
        now = time.perf_counter()
        if force or now - self._last_write >= self._interval:
            self.report().write_json(self.checkpoint)
            self._last_write = now

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._end = time.perf_counter()
            if self._owns_executor and self._executor is not None:
                self._executor.shutdown(wait=True)
            self._write_checkpoint(force=True)

    def close(self) -> None:
        """Cancel what is pending, stop owned workers, write the checkpoint (if any).

        Safe to call more than once; a finished run is left as it is.
        """
        if self._closed:
            return
        self._closed = True
        self._end = time.perf_counter()
        for future in self._pending:
            future.cancel()
        if self._owns_executor and self._executor is not None:
            if isinstance(self._executor, ProcessPoolExecutor):
                _stop_pool(self._executor)
            else:
                self._executor.shutdown(wait=False, cancel_futures=True)
        # Whatever had finished is kept even if its result was not yet taken.
        for future in list(self._ready) + list(self._pending):
            if future.done() and not future.cancelled() and future.exception() is None:
                index = self._futures[future]
                self._outcomes[index] = self._recordable(future.result(), index)
        self._ready.clear()
        self._pending = set()
        self._write_checkpoint(force=True)

    def __enter__(self) -> AnalysisRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _checkpoint_path(checkpoint: object) -> Path:
    """``checkpoint`` as an absolute path to a file in an existing directory."""
    target = Path(os.path.abspath(check_path(checkpoint, name="checkpoint")))
    if target.is_dir():
        raise InputError(f"checkpoint must name a file, not a directory; got '{target}'")
    if not target.parent.is_dir():
        raise MissingFileError(
            f"checkpoint must be in an existing directory; '{target.parent}' does not exist "
            f"(checkpoint '{target}')"
        )
    return target


def start_analysis(
    source: str | os.PathLike[str],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    nd_policy: NDPolicy = "skip",
    ranks: Sequence[int] = DEFAULT_RANKS,
    energies: Sequence[float] = DEFAULT_ENERGIES,
    executor: Executor | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_interval: float = 5.0,
) -> AnalysisRun:
    """Select the matrices of a checkpoint and submit one task per matrix.

    Parameters
    ----------
    source : str or os.PathLike
        A weight file, a sharded checkpoint's index, or a directory
        (:func:`lowrank.io.list_tensors`).
    include, exclude, regex, nd_policy
        The selection (:func:`lowrank.io.select`).
    ranks : sequence of int, default (8, 16, 64)
        Ranks whose relative Frobenius error is reported.
    energies : sequence of float, default (0.9, 0.99)
        Energy fractions whose rank is reported.
    executor : concurrent.futures.Executor, optional
        Where tasks run: a process pool, a thread pool, a Dask client's executor
        (:func:`dask_executor`)... It is not shut down by the run. Default: owned by the
        run and started only if there is a matrix: a :func:`thread_executor` when the
        selection holds at most 2**25 elements (256 MiB in float64) and neither
        ``workers`` nor ``threads_per_worker`` is given (starting worker processes costs
        more than such work: with two, MiniLM-L6 took 4.1 s of CPU, 1.3 s of it the
        analysis), otherwise a :func:`local_executor`.
    workers : int, optional
        Worker processes of the default executor (default: the available cores, at most
        one per matrix). Only without ``executor``; asks for processes.
    threads_per_worker : int, optional
        BLAS threads of each default worker (default: ``max(1, cores // workers)``). On a
        machine busy with other work, 1 avoids OpenBLAS threads waiting on each other for
        CPU time (measured: 6x slower with 2 threads on a loaded 2-core machine).
    checkpoint : str or os.PathLike, optional
        A JSON report file written atomically at the start, at most every
        ``checkpoint_interval`` seconds as results arrive, and at the end; after a crash
        or Ctrl-C it holds a valid report marked partial.
    checkpoint_interval : float, default 5
        Minimum seconds between checkpoint writes during the run.

    Returns
    -------
    AnalysisRun
        Iterate over it for the outcomes as they finish; :meth:`AnalysisRun.report` gives
        the report.

    Raises
    ------
    InputError
        Invalid options, patterns or ``nd_policy``; ``workers`` with ``executor``; an
        ``executor`` that is not an Executor; a ``checkpoint`` that resolves (through links
        too) to ``source`` or to a file of it.
    MissingFileError, FileFormatError
        As :func:`lowrank.io.list_tensors`, and for a checkpoint in a missing directory.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> weights = {f"layer.{i}.weight": np.eye(3, dtype=np.float32) * (i + 1) for i in range(3)}
    >>> with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(1) as pool:
    ...     save_safetensors(Path(d) / "m.safetensors", weights)
    ...     with start_analysis(Path(d) / "m.safetensors", ranks=[1], executor=pool) as run:
    ...         names = sorted(outcome.name for outcome in run)
    ...         report = run.report()
    >>> names, run.total, run.done, report.partial
    (['layer.0.weight', 'layer.1.weight', 'layer.2.weight'], 3, 3, False)
    """
    check_path(source, name="source")  # existence: lowrank.io's message, which the CLI shows
    checked = _check_run(
        ranks=ranks,
        energies=energies,
        regex=regex,
        executor=executor,
        workers=workers,
        threads_per_worker=threads_per_worker,
        checkpoint=checkpoint,
        checkpoint_interval=checkpoint_interval,
    )
    # Before anything is written: the first checkpoint write would replace the source.
    check_distinct_paths([("checkpoint", checked.target)], [("source", source)])
    selection = select(
        source, include=include, exclude=exclude, regex=checked.regex, nd_policy=nd_policy
    )
    return _start_run(
        selection,
        checked,
        source=source,
        include=include,
        exclude=exclude,
        nd_policy=nd_policy,
    )


@dataclass(frozen=True)
class _CheckedRun:
    """The checked options shared by :func:`start_analysis` and update analyses."""

    options: AnalysisOptions
    regex: bool
    target: Path | None
    executor: Executor | None
    workers: int | None
    threads_per_worker: int | None
    interval: float


def _check_run(
    *,
    ranks: object,
    energies: object,
    regex: object,
    executor: object,
    workers: object,
    threads_per_worker: object,
    checkpoint: object,
    checkpoint_interval: object,
) -> _CheckedRun:
    options = AnalysisOptions(ranks=ranks, energies=energies)  # type: ignore[arg-type]
    regex = check_bool(regex, name="regex")
    target = None if checkpoint is None else _checkpoint_path(checkpoint)
    if executor is not None and not isinstance(executor, Executor):
        raise InputError(
            f"executor must be a concurrent.futures.Executor; got {type(executor).__name__}"
        )
    if executor is not None and workers is not None:
        raise InputError(f"give workers or executor, not both; got workers={workers!r}")
    n_workers = None if workers is None else check_int(workers, name="workers", minimum=1)
    if threads_per_worker is not None:
        if executor is not None:
            raise InputError(
                "threads_per_worker applies to the default executor only; got an executor"
            )
        threads_per_worker = check_int(threads_per_worker, name="threads_per_worker", minimum=1)
    interval = check_positive_float(
        checkpoint_interval, name="checkpoint_interval", allow_zero=True
    )
    return _CheckedRun(
        options=options,
        regex=regex,
        target=target,
        executor=executor,
        workers=n_workers,
        threads_per_worker=threads_per_worker,
        interval=interval,
    )


def _start_run(
    selection: Selection,
    checked: _CheckedRun,
    *,
    source: str | os.PathLike[str],
    include: Patterns,
    exclude: Patterns,
    nd_policy: NDPolicy,
    base: str | None = None,
    bases: Sequence[TensorInfo] | None = None,
    unpaired: tuple[SkippedTensor, ...] = (),
) -> AnalysisRun:
    """Choose the executor and start the run (of an update analysis when ``bases``)."""
    options, regex, executor = checked.options, checked.regex, checked.executor
    n_workers, threads_per_worker = checked.workers, checked.threads_per_worker
    owns = executor is None
    description = ""
    if executor is None and selection.matrices:
        cores = available_cores()
        n = n_workers if n_workers is not None else min(cores, len(selection.matrices))
        threads = max(1, cores // n) if threads_per_worker is None else threads_per_worker
        elements = sum(info.size for info in selection.matrices)
        if bases is not None:
            elements += sum(info.size for info in bases)
        in_threads = (
            n_workers is None and threads_per_worker is None and elements <= _THREADS_MAX_ELEMENTS
        )
        if in_threads:
            executor = thread_executor(workers=n, threads_per_worker=threads)
        else:
            executor = local_executor(workers=n, threads_per_worker=threads)
        description = (
            f"local {'threads' if in_threads else 'processes'}: {n} worker{'s' if n > 1 else ''}"
            f" x {threads} BLAS thread{'s' if threads > 1 else ''}"
        )
    elif executor is not None:
        description = describe_executor(executor)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info = RunInfo(
        source=os.path.abspath(os.fspath(source)),
        include=_patterns(include),
        exclude=_patterns(exclude),
        regex=regex,
        nd_policy=nd_policy,
        ranks=options.ranks,
        energies=options.energies,
        executor=description or "none (no matrix selected)",
        lowrank_version=__version__,
        created=created,
        elapsed_seconds=0.0,
        base=base,
    )
    try:
        return AnalysisRun(
            selection=selection,
            options=options,
            info=info,
            executor=executor,
            owns_executor=owns,
            checkpoint=checked.target,
            checkpoint_interval=checked.interval,
            bases=bases,
            unpaired=unpaired,
        )
    except BaseException:
        if owns and executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        raise


def analyze(
    source: str | os.PathLike[str],
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    regex: bool = False,
    nd_policy: NDPolicy = "skip",
    ranks: Sequence[int] = DEFAULT_RANKS,
    energies: Sequence[float] = DEFAULT_ENERGIES,
    executor: Executor | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_interval: float = 5.0,
    on_result: Callable[[Outcome, AnalysisRun], None] | None = None,
) -> Report:
    r"""Analyse every selected matrix of a checkpoint: norms, effective ranks, rank errors.

    Parameters
    ----------
    source : str or os.PathLike
        A weight file, a sharded checkpoint's index, or a directory
        (:func:`lowrank.io.list_tensors`).
    include, exclude, regex, nd_policy
        The selection (:func:`lowrank.io.select`).
    ranks : sequence of int, default (8, 16, 64)
        Ranks whose relative Frobenius error is reported.
    energies : sequence of float, default (0.9, 0.99)
        Energy fractions whose rank is reported.
    executor : concurrent.futures.Executor, optional
        Where tasks run: a process pool, a thread pool, a Dask client's executor
        (:func:`dask_executor`)... It is not shut down by the run. Default: owned by the
        run and started only if there is a matrix: a :func:`thread_executor` when the
        selection holds at most 2**25 elements (256 MiB in float64) and neither
        ``workers`` nor ``threads_per_worker`` is given (starting worker processes costs
        more than such work: with two, MiniLM-L6 took 4.1 s of CPU, 1.3 s of it the
        analysis), otherwise a :func:`local_executor`.
    workers : int, optional
        Worker processes of the default executor (default: the available cores, at most
        one per matrix). Only without ``executor``; asks for processes.
    threads_per_worker : int, optional
        BLAS threads of each default worker (default: ``max(1, cores // workers)``). On a
        machine busy with other work, 1 avoids OpenBLAS threads waiting on each other for
        CPU time (measured: 6x slower with 2 threads on a loaded 2-core machine).
    checkpoint : str or os.PathLike, optional
        A JSON report file written atomically at the start, at most every
        ``checkpoint_interval`` seconds as results arrive, and at the end; after a crash
        or Ctrl-C it holds a valid report marked partial.
    checkpoint_interval : float, default 5
        Minimum seconds between checkpoint writes during the run.
    on_result : callable, optional
        Called as ``on_result(outcome, run)`` in the calling thread as each matrix
        finishes (completion order), e.g. to update a progress bar; ``run.done`` and
        ``run.total`` tell how far it is.

    Returns
    -------
    Report
        Results in storage order, the skipped tensors with reasons, the run's settings.

    Raises
    ------
    AnalysisError
        A task failed for a reason other than its matrix's data (a worker process died,
        the Dask cluster was lost...). Its ``report`` attribute holds the partial report,
        also written to ``checkpoint``.
    KeyboardInterrupt
        Re-raised after pending work is cancelled and the partial report written to
        ``checkpoint``.
    InputError, MissingFileError, FileFormatError
        As :func:`start_analysis`.

    Notes
    -----
    The default executor starts its workers with ``spawn``, which imports the main module
    of the program again in each worker: a script that calls :func:`analyze` at its top
    level must guard it with ``if __name__ == "__main__":`` (as for any
    ``ProcessPoolExecutor``); ``lowrank analyze`` and notebooks need nothing.

    Each task loads its own matrix from a picklable :class:`~lowrank.io.TensorInfo`, so
    the calling process never holds a matrix and a worker's peak memory follows the
    largest matrix it handles (stored copy + float32/float64 copy), not the checkpoint.
    The numbers do not depend on the executor: each matrix is computed by the same code
    with BLAS limited to the same number of threads (one, when workers fill the cores).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from pathlib import Path
    >>> from lowrank.io import save_safetensors
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(1) as pool:
    ...     path = Path(d) / "m.safetensors"
    ...     save_safetensors(path, {"q.weight": np.eye(4, dtype=np.float32),
    ...                             "q.bias": np.zeros(4, np.float32)})
    ...     report = analyze(path, ranks=[2], executor=pool)
    >>> m = report.matrices[0]
    >>> m.name, m.stable_rank, m.energy_ranks, m.rank_errors
    ('q.weight', 4.0, ((0.9, 4), (0.99, 4)), ((2, 0.7071067811865476),))
    >>> [(s.name, s.code) for s in report.skipped], report.partial
    ([('q.bias', 'ndim')], False)
    """
    if on_result is not None:
        check_callable(on_result, name="on_result")
    run = start_analysis(
        source,
        include=include,
        exclude=exclude,
        regex=regex,
        nd_policy=nd_policy,
        ranks=ranks,
        energies=energies,
        executor=executor,
        workers=workers,
        threads_per_worker=threads_per_worker,
        checkpoint=checkpoint,
        checkpoint_interval=checkpoint_interval,
    )
    return drain(run, on_result)


def drain(run: AnalysisRun, on_result: Callable[[Outcome, AnalysisRun], None] | None) -> Report:
    """Run ``run`` to the end (closing it), calling ``on_result(outcome, run)`` for each
    outcome as it arrives; the final report. Shared by :func:`analyze` and
    :func:`lowrank.analysis.analyze_update`."""
    with run:
        for outcome in run:
            if on_result is not None:
                on_result(outcome, run)
        return run.report()
