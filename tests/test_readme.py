"""The READMEs run as written: every fenced block of README.md, notebooks/README.md and
benchmarks/README.md is executed or accounted for, so a README edit that breaks a snippet
fails CI.

Conventions a README edit must follow
-------------------------------------
``python``
    The blocks of one file run in order in one namespace (``__name__ == "__main__"``), in a
    temporary working directory, so files they write land there. A block written as a
    ``>>>`` session is run by :mod:`doctest` with ``NORMALIZE_WHITESPACE | ELLIPSIS``: the
    output it shows is checked, so show numbers rounded (``f"{x:.2f}"``, ``round(x, 3)``) or
    as comparisons (``x < 1e-6``) that do not change with the BLAS build. A plain block is
    executed; it has no output to check.
``bash``, ``sh``, ``console``
    Every command (``$`` prompts in ``console`` blocks; ``#`` comments and ``\\``
    continuations are understood) is run or listed in :data:`SKIPPED` with the reason it is
    not; any other command fails :func:`test_shell_command`. ``lowrank ...`` commands run
    through :func:`lowrank.cli.main` in order, in a temporary directory that holds small
    stand-ins under the README's own file names (:data:`STAND_INS`), with
    :data:`SUBSTITUTIONS` applied to their arguments; each must exit 0 and write every
    output it names.
``text``
    Output shown as text, never run; allowed only where :data:`TEXT_BLOCKS` says what checks
    it.
A block without a language fails: say which kind it is.

The opening of README.md (a figure of the real all-MiniLM-L6-v2 checkpoint and a
three-line result, before the API tour) is checked against the real checkpoint when it is
in the download cache (``lowrank.examples``; nothing is downloaded here), else against a
stand-in for what can be checked without it.
"""

from __future__ import annotations

import doctest
import io
import itertools
import json
import re
import shlex
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lowrank.io import save_safetensors

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FILES = [README, ROOT / "notebooks" / "README.md", ROOT / "benchmarks" / "README.md"]
FIGURE = ROOT / "docs" / "minilm-heatmap.png"
RESULT_MARKER = "<!-- readme-result: minilm -->"

# -- the fenced blocks --------------------------------------------------------------------

SHELL = {"bash", "sh", "shell", "console"}
KNOWN = SHELL | {"python", "text"}
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    line: int  # of the first line inside the fence, 1-based
    text: str
    heading: str  # the closest heading above
    before: str  # the non-blank line just above the opening fence

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_session(self) -> bool:
        first = next((s for s in self.text.splitlines() if s.strip()), "")
        return first.lstrip().startswith(">>>")


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    heading = before = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            if lines[i].startswith("#"):
                heading = lines[i].lstrip("#").strip()
            if lines[i].strip():
                before = lines[i].strip()
            i += 1
            continue
        fence, lang = opening.groups()
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if lines[j].startswith(fence[0] * len(fence)) and not lines[j].strip(fence[0])
            ),
            None,
        )
        assert end is not None, f"{path.relative_to(ROOT)}:{i + 1}: unclosed code fence"
        text = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(path, lang.lower(), i + 2, text, heading, before))
        before = ""
        i = end + 1
    return blocks


ALL_BLOCKS = [b for path in FILES if path.exists() for b in fenced_blocks(path)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


@dataclass(frozen=True)
class Command:
    block: Block
    line: int
    text: str  # as written, continuation lines joined, comment included

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def key(self) -> str:
        """How :data:`SKIPPED` names it: the words without the comment, re-quoted."""
        return shlex.join(self.argv)

    @property
    def where(self) -> str:
        return f"{self.block.path.relative_to(ROOT)}:{self.line}"


def shell_commands(block: Block) -> list[Command]:
    found: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if not pending:
            if block.lang == "console":
                if not line.startswith("$ "):
                    continue  # output shown after a command
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = block.line + offset
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        command = Command(block, start, " ".join([*pending, line]))
        pending = []
        if command.argv:
            found.append(command)
    assert not pending, f"{block.where}: a command ends in a backslash continuation"
    return found


SHELL_COMMANDS = [c for b in ALL_BLOCKS if b.lang in SHELL for c in shell_commands(b)]


def test_every_block_says_what_it_is():
    unknown = [f"{b.where} (```{b.lang})" for b in ALL_BLOCKS if b.lang not in KNOWN]
    assert not unknown, (
        "fenced blocks need a language this test knows (python, bash/sh/console for "
        f"commands, text for output shown): {', '.join(unknown)}"
    )


def test_the_readmes_have_what_this_test_runs():
    """Guards the parser: a fence it stopped seeing would pass silently."""
    assert len([b for b in PYTHON_BLOCKS if b.path == README]) >= 3
    assert sum(c.argv[0] == "lowrank" for c in SHELL_COMMANDS) >= 6


# -- python blocks ------------------------------------------------------------------------


@dataclass
class Session:
    """One file's python blocks: a namespace, a working directory, what ran and what failed."""

    workdir: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__main__"})
    done: dict[int, str | None] = field(default_factory=dict)  # block line -> failure


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    if block.is_session:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(
            block.text, namespace, block.where, str(block.path), block.line - 1
        )
        report = io.StringIO()
        runner = doctest.DocTestRunner(
            optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
        )
        runner.run(test, out=report.write, clear_globs=False)
        if runner.failures:
            raise AssertionError(
                f"{block.where}: {runner.failures} of {runner.tries} examples failed\n"
                + report.getvalue()
            )
    else:
        code = compile("\n" * (block.line - 1) + block.text, str(block.path), "exec")
        exec(code, namespace)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Callable[[Path], Session]:
    made: dict[Path, Session] = {}

    def session(path: Path) -> Session:
        if path not in made:
            made[path] = Session(tmp_path_factory.mktemp(f"readme-{path.parent.name}"))
        return made[path]

    return session


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_block(block: Block, sessions, monkeypatch):
    session = sessions(block.path)
    monkeypatch.chdir(session.workdir)
    for earlier in [b for b in PYTHON_BLOCKS if b.path == block.path and b.line <= block.line]:
        if earlier.line not in session.done:  # run alone (-k): run what it builds on first
            try:
                run_block(earlier, session.namespace)
            except BaseException as exc:
                session.done[earlier.line] = f"{type(exc).__name__}: {exc}"
                if earlier is block:
                    raise
            else:
                session.done[earlier.line] = None
        failure = session.done[earlier.line]
        if failure is not None and earlier is not block:
            pytest.fail(f"builds on {earlier.where}, which failed: {failure.splitlines()[0]}")


# -- shell commands -----------------------------------------------------------------------

#: Commands shown but not run here, with the reason and what runs them instead.
SKIPPED: dict[str, str] = {
    "python3 tasks.py demo": (
        "creates .venv and installs the cli extra; the demo itself (`lowrank demo` on the "
        "real checkpoint) is tests/test_minilm.py, and its result is checked below"
    ),
    "python3 tasks.py test": "the test suite itself: .ci/run runs this very line",
    "python3 tasks.py test-interop": (
        "creates .venv-interop with PyTorch and PEFT (minutes, network); CI runs it"
    ),
    "python3 tasks.py lint": "ruff and mypy over the tree (minutes); CI runs it",
    "python3 tasks.py docs": "installs the docs extra and builds the whole reference; CI runs it",
    "python3 tasks.py bench --quick": (
        "installs the dev extras into .venv; tests/test_benchmarks_smoke.py runs "
        "`python -m benchmarks --quick`"
    ),
    "python3 tasks.py bench '[ARGS]'": "a synopsis (ARGS is a placeholder)",
    "python -m benchmarks '[--suite' 'NAME[,NAME...]]' '[--quick]' '[--out' 'DIR]'": (
        "a synopsis with placeholders; tests/test_benchmarks_smoke.py runs `--quick`"
    ),
    ".venv/bin/python -m benchmarks --suite speed --out out/bench-speed": (
        "issue 15's full benchmark run (about 30 minutes on a quiet machine; its result is "
        "benchmarks/RESULTS.md); tests/test_benchmarks_smoke.py runs the same suites `--quick`"
    ),
    "cp out/bench-speed/results.md benchmarks/RESULTS.md": (
        "copies the full run's result into the repository, after the run above"
    ),
    "cd lowrank": "the clone's root: where this test runs already",
    "python3 -m venv .venv": "creates a virtual environment (the test runs in one)",
    ".venv/bin/pip install -e .": "installs from the network",
    ".venv/bin/pip install -e '.[cli]'": "installs from the network",
    ".venv/bin/pip install -e '.[testing]'": "installs from the network",
    ".venv/bin/pip install -e '.[test]'": "installs from the network",
    ".venv/bin/pip install '/path/to/lowrank[cli,testing]'": (
        "installs from the network; /path/to is a placeholder"
    ),
    ".venv/bin/python -m pytest --nbmake notebooks/01_svd_eckart_young.ipynb": (
        "runs a notebook (a minute); the suite runs every notebook with --nbmake"
    ),
    ".venv/bin/python -m pytest --nbmake notebooks": (
        "runs every notebook (minutes); `python3 tasks.py test` does"
    ),
}

#: The checkpoints the README's commands name, created under those names in the
#: directory the commands run in (the real ones are hundreds of MB to GB).
STAND_INS: dict[str, str] = {
    "model.safetensors": (
        "BERT names as all-MiniLM-L6-v2's (embeddings, 6 layers of query/key/value/"
        "attention output 32 x 32, intermediate 128 x 32, output 32 x 128, LayerNorms); "
        "for the command in MINILM_COMMANDS the real checkpoint when it is cached"
    ),
    "ckpt/model.safetensors.index.json": (
        "a checkpoint in 2 shards with Llama names (model.layers.N.self_attn.q_proj.weight, "
        "mlp.gate_proj.weight, ..., model.embed_tokens.weight), hidden 24"
    ),
    "base.safetensors": "the BERT-named stand-in",
    "tuned.safetensors": "base.safetensors plus a rank-4 update of every matrix",
}

#: Arguments replaced before a command runs.
SUBSTITUTIONS: dict[str, str] = {
    "tcp://HOST:8786": "the address of an in-process dask.distributed LocalCluster",
}

#: Commands run on the real all-MiniLM-L6-v2 when it is in the download cache: the README
#: says these patterns fit its names.
MINILM_COMMANDS = {"lowrank analyze model.safetensors --include '*attention*' --md report.md"}

#: Options whose value is a file or folder the command must have written.
OUTPUT_OPTIONS = {"--json", "--csv", "--md", "--spectra", "--plot", "-o", "--output"}


def cached_minilm() -> Path | None:
    """The real checkpoint if it is in the download cache (never downloads)."""
    from lowrank.examples import MINILM, default_cache_dir

    path = default_cache_dir() / f"{MINILM.package}-{MINILM.version}" / MINILM.filename
    return path if path.is_file() and path.stat().st_size == MINILM.size else None


def bert_tensors(rng: np.random.Generator, hidden: int = 32, layers: int = 6) -> dict:
    def weight(out: int, inp: int) -> np.ndarray:
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    tensors = {
        "embeddings.word_embeddings.weight": weight(200, hidden),
        "embeddings.position_embeddings.weight": weight(64, hidden),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
        "embeddings.position_ids": np.arange(64, dtype=np.int64).reshape(1, 64),
    }
    for i in range(layers):
        at = f"encoder.layer.{i}"
        for m in ("self.query", "self.key", "self.value", "output.dense"):
            tensors[f"{at}.attention.{m}.weight"] = weight(hidden, hidden)
        tensors[f"{at}.attention.output.LayerNorm.weight"] = np.ones(hidden, np.float32)
        tensors[f"{at}.intermediate.dense.weight"] = weight(4 * hidden, hidden)
        tensors[f"{at}.output.dense.weight"] = weight(hidden, 4 * hidden)
    tensors["pooler.dense.weight"] = weight(hidden, hidden)
    return tensors


def write_stand_ins(root: Path) -> None:
    rng = np.random.default_rng(20261205)
    base = bert_tensors(rng)
    save_safetensors(root / "model.safetensors", base)
    save_safetensors(root / "base.safetensors", base)
    tuned = {
        name: w
        + 0.1
        * rng.standard_normal((w.shape[0], 4)).astype(np.float32)
        @ rng.standard_normal((4, w.shape[1])).astype(np.float32)
        if w.ndim == 2 and w.dtype == np.float32
        else w
        for name, w in base.items()
    }
    save_safetensors(root / "tuned.safetensors", tuned)
    hidden = 24
    llama = {"model.embed_tokens.weight": rng.standard_normal((100, hidden)).astype(np.float32)}
    for i in range(2):
        at = f"model.layers.{i}"
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            llama[f"{at}.self_attn.{m}.weight"] = rng.standard_normal((hidden, hidden))
        llama[f"{at}.mlp.gate_proj.weight"] = rng.standard_normal((2 * hidden, hidden))
        llama[f"{at}.mlp.up_proj.weight"] = rng.standard_normal((2 * hidden, hidden))
        llama[f"{at}.mlp.down_proj.weight"] = rng.standard_normal((hidden, 2 * hidden))
        llama[f"{at}.input_layernorm.weight"] = np.ones(hidden)
    llama = {k: v.astype(np.float32) for k, v in llama.items()}
    ckpt = root / "ckpt"
    ckpt.mkdir()
    names = list(llama)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    weight_map = {}
    for shard, members in shards.items():
        save_safetensors(ckpt / shard, {n: llama[n] for n in members})
        weight_map |= dict.fromkeys(members, shard)
    (ckpt / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )


@dataclass
class ShellSession:
    """One file's ``lowrank`` commands: the directory with the stand-ins, what ran."""

    workdir: Path
    done: dict[int, str | None] = field(default_factory=dict)  # command line -> failure


@pytest.fixture(scope="module")
def shell_sessions(tmp_path_factory) -> Callable[[Path], ShellSession]:
    made: dict[Path, ShellSession] = {}

    def session(path: Path) -> ShellSession:
        if path not in made:
            made[path] = ShellSession(tmp_path_factory.mktemp(f"shell-{path.parent.name}"))
            write_stand_ins(made[path].workdir)
        return made[path]

    return session


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,  # in-process: starts in about a second
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",  # any free port: a fixed one may be taken by another run
        silence_logs=50,
    ) as cluster:
        yield cluster.scheduler_address


def check_skipped(command: Command) -> None:
    """What can be checked of a command that is not run: the task or file it names exists."""
    argv = command.argv
    if argv[:2] == ["python3", "tasks.py"]:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_readme_tasks", ROOT / "tasks.py")
        assert spec is not None and spec.loader is not None
        tasks = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tasks)
        assert argv[2] in tasks.COMMANDS, f"{command.where}: tasks.py has no {argv[2]!r}"
    for arg in argv:
        if arg.startswith(("notebooks/", "benchmarks/", "tests/")):
            assert (ROOT / arg).exists(), f"{command.where}: {arg} does not exist"


@pytest.mark.parametrize("command", SHELL_COMMANDS, ids=lambda c: f"{c.where} {c.key}")
def test_shell_command(command: Command, shell_sessions, request, monkeypatch):
    argv = command.argv
    if argv[0] != "lowrank":
        assert command.key in SKIPPED, (
            f"{command.where}: `{command.text}` is neither run by this test nor listed in "
            f"SKIPPED; run it, or add {command.key!r} to SKIPPED with the reason"
        )
        check_skipped(command)
        pytest.skip(f"not run: {SKIPPED[command.key]}")
    session = shell_sessions(command.block.path)
    monkeypatch.chdir(session.workdir)
    # In order: a command may read what an earlier one wrote (`lowrank plot r.json`).
    for earlier in [
        c
        for c in SHELL_COMMANDS
        if c.block.path == command.block.path and c.argv[0] == "lowrank" and c.line <= command.line
    ]:
        if earlier.line not in session.done:  # run alone (-k): run what it builds on first
            try:
                run_lowrank(earlier, session.workdir, request)
            except BaseException as exc:
                session.done[earlier.line] = f"{type(exc).__name__}: {exc}"
                if earlier is command:
                    raise
            else:
                session.done[earlier.line] = None
        failure = session.done[earlier.line]
        if failure is not None and earlier is not command:
            pytest.fail(f"builds on {earlier.where}, which failed: {failure.splitlines()[0]}")


def run_lowrank(command: Command, workdir: Path, request: pytest.FixtureRequest) -> None:
    """``lowrank ARGS`` through :func:`lowrank.cli.main`, with the substitutions; it must exit
    0 and write the outputs it names."""
    from lowrank.cli import main

    minilm = cached_minilm() if command.key in MINILM_COMMANDS else None
    args = []
    for arg in command.argv[1:]:
        if minilm is not None and arg == "model.safetensors":
            arg = str(minilm)
        for old in SUBSTITUTIONS:
            if old in arg:
                arg = arg.replace(old, request.getfixturevalue("dask_address"))
        args.append(arg)
    capture = request.getfixturevalue("capsys")
    status = main(args)
    out, err = capture.readouterr()
    assert status == 0, f"{command.where}: `lowrank {shlex.join(args)}` exited {status}: {err}"
    for option, value in itertools.pairwise(args):
        if option in OUTPUT_OPTIONS:
            assert (workdir / value).exists(), f"{command.where}: {value} was not written"
    if args[0] == "analyze":
        assert "complete:" in out, f"{command.where}: {out}"
    if args[0] == "extract":
        folder = workdir / args[args.index("-o") + 1]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert (folder / "adapter_model.safetensors").is_file()
        if "--base-model" in args:
            assert config["base_model_name_or_path"] == args[args.index("--base-model") + 1]


def test_skip_table_has_no_stale_entries():
    shown = {c.key for c in SHELL_COMMANDS}
    stale = sorted(set(SKIPPED) - shown)
    assert not stale, f"SKIPPED lists commands no README shows any more: {stale}"
    assert not set(MINILM_COMMANDS) - shown, "MINILM_COMMANDS names a command no README shows"


# -- text blocks --------------------------------------------------------------------------

#: Where output shown as ```text is allowed, and what checks it.
TEXT_BLOCKS: dict[str, str] = {
    "Property-testing your approximation": "tests/test_testing_readme.py runs its example",
    RESULT_MARKER: "test_opening_result below recomputes it",
}


@pytest.mark.parametrize(
    "block", [b for b in ALL_BLOCKS if b.lang == "text"], ids=lambda b: b.where
)
def test_text_block_is_checked_elsewhere(block: Block):
    assert block.heading in TEXT_BLOCKS or block.before in TEXT_BLOCKS, (
        f"{block.where}: output shown as ```text in section {block.heading!r} is checked by "
        "nothing; show it as a >>> session in a python block instead"
    )


# -- the opening: a figure and a three-line result of the real checkpoint -----------------


def test_opening_leads_with_setup_then_figure_and_result():
    text = README.read_text(encoding="utf-8")
    first = ALL_BLOCKS[0]
    assert first.path == README and [c.key for c in shell_commands(first)] == [
        "python3 tasks.py demo",
        "python3 tasks.py test",
    ], "README.md must open with its two set-up commands"
    tour = text.index("\n## The core")
    figure = text.index(f"]({FIGURE.relative_to(ROOT).as_posix()})")
    result = text.index(RESULT_MARKER)
    assert text.index(first.text) < figure < tour and figure < result < tour


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's signature and IHDR chunk (its CRC checked)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"{path}: no IHDR chunk first"
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert zlib.crc32(data[12 : 16 + length]) == crc, f"{path}: IHDR checksum mismatch"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    return width, height


def minilm_report(source: Path):
    from lowrank.analysis import analyze

    return analyze(
        source,
        include=["encoder.*", "embeddings.position_embeddings.weight"],
        ranks=[64],
        energies=[0.9],
    )  # the default: a thread pool, for a checkpoint this small


@pytest.fixture(scope="module")
def opening_report(tmp_path_factory):
    """The encoder and position embeddings of the real checkpoint if cached, else of the
    stand-in (same 6 x 6 layer x module grid): what the README's figure and result show."""
    source = cached_minilm()
    stand_in = source is None
    if source is None:
        root = tmp_path_factory.mktemp("opening")
        write_stand_ins(root)
        source = root / "model.safetensors"
    return minilm_report(source), stand_in


def test_opening_figure_is_lowranks_heatmap(opening_report, tmp_path):
    """The committed figure is a valid PNG under 200 KB with the size and layout
    ``lowrank`` renders for this grid; on the real checkpoint also the same picture
    (block averages, so that font rendering may differ)."""
    import matplotlib.image

    from lowrank.plot import plot_report

    assert FIGURE.stat().st_size < 200_000
    report, stand_in = opening_report
    rendered = tmp_path / "heatmap.png"
    plot_report(report, kind="heatmap", path=rendered)
    assert png_size(FIGURE) == png_size(rendered)
    committed, fresh = matplotlib.image.imread(FIGURE), matplotlib.image.imread(rendered)
    assert committed.shape == fresh.shape
    assert committed[..., :3].std() > 0.1, "the figure is blank"
    if not stand_in:
        h, w = (s // 15 * 15 for s in committed.shape[:2])

        def blocks(image):
            return image[:h, :w, :3].reshape(h // 15, 15, w // 15, 15, 3).mean(axis=(1, 3))

        assert np.abs(blocks(committed) - blocks(fresh)).mean() < 0.02


def opening_lines(report) -> list[str]:
    """The README's three-line result, from a report of the real checkpoint."""
    from lowrank.analysis import parse_layer_name

    def spread(ms, value):
        low, high = min(map(value, ms)), max(map(value, ms))
        return f"{low}" if low == high else f"{low}–{high}"

    def r90(m):
        return m.rank_for_energy(0.9)

    def e64(m):
        return round(100 * dict(m.rank_errors)[64])

    layered = [m for m in report.matrices if parse_layer_name(m.name) is not None]
    attention = [m for m in layered if ".attention." in m.name]
    groups = [
        ("attention (24 × 384 × 384)", attention),
        ("feed-forward (12 × 1536 × 384)", [m for m in layered if m not in attention]),
        (
            "position embeddings (512 × 384)",
            [report.result("embeddings.position_embeddings.weight")],
        ),
    ]
    width = max(len(label) for label, _ in groups) + 2
    return [
        f"{label + ':':<{width}}90 % energy at rank {spread(ms, r90)} of 384; "
        f"rank 64 leaves {spread(ms, e64)} % error"
        for label, ms in groups
    ]


def test_opening_result(opening_report):
    text = README.read_text(encoding="utf-8")
    after = text.split(RESULT_MARKER, 1)[1]
    shown = re.match(r"\s*```text\n(.*?)\n```", after, flags=re.DOTALL)
    assert shown, f"{RESULT_MARKER} must be followed by a ```text block"
    report, stand_in = opening_report
    if stand_in:
        pytest.skip("all-MiniLM-L6-v2 is not in the download cache (lowrank.examples)")
    assert shown.group(1).splitlines() == opening_lines(report)
