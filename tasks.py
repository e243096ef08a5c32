#!/usr/bin/env python3
"""Set-up and entry points for a fresh machine that has only Python >= 3.10 and pip.

    python3 tasks.py demo          # create .venv, install, analyse the real MiniLM checkpoint
    python3 tasks.py test          # create .venv, install the test extras, run the test suite
    python3 tasks.py test -m "slow or network"  # ... the groups the default run leaves out
    python3 tasks.py test-interop  # .venv-interop with PyTorch, PEFT, WeightWatcher: interop tests
    python3 tasks.py lint          # ruff check, ruff format --check, mypy --strict
    python3 tasks.py bench [ARGS]  # run the benchmarks (see benchmarks/README.md)
    python3 tasks.py docs [ARGS]   # build the API reference into docs/_build/html (warnings fail)

Only the standard library is used here. Each environment is re-installed when
pyproject.toml changes (a stamp file records its hash).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _python(env_dir: Path) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return env_dir / sub / ("python.exe" if os.name == "nt" else "python")


def _run(*args: object, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> int:
    printable = " ".join(str(a) for a in args)
    print(f"+ {printable}", flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode not in ok:
        sys.exit(result.returncode)
    return result.returncode


def ensure_env(extras: str, *, name: str = ".venv", pre: tuple[str, ...] = ()) -> Path:
    """Create ``name`` (once) and install the package with ``extras`` (when they change)."""
    env_dir = ROOT / name
    python = _python(env_dir)
    if not python.exists():
        print(f"creating {name} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + extras.encode() + " ".join(pre).encode()
    ).hexdigest()
    stamp = env_dir / f".lowrank-{extras.replace(',', '-') or 'core'}.stamp"
    if not stamp.exists() or stamp.read_text() != key:
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if pre:
            _run(*pip, *pre)
        target = f".[{extras}]" if extras else "."
        _run(*pip, "-e", target)
        stamp.write_text(key)
    return python


def demo(argv: list[str]) -> None:
    python = ensure_env("cli")
    _run(python, "-m", "lowrank", "demo", "--out", "lowrank-demo", *argv)


# The default selection of `python3 tasks.py test` (the README's command): everything but
# the interop group (its own environment, test-interop), the slow tests and the tests
# that fetch from the package index. CI runs those too: test -m "(slow or network) and
# not interop". An explicit -m replaces this default.
DEFAULT_MARKERS = "not interop and not slow and not network"

# pytest's exit status when no test matches (e.g. an -m group that is empty today).
NO_TESTS_COLLECTED = 5


def _has_marker_option(argv: list[str]) -> bool:
    return any(arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")) for arg in argv)


def test(argv: list[str]) -> None:
    python = ensure_env("test")
    env = dict(os.environ)
    env.setdefault("HYPOTHESIS_PROFILE", "ci" if env.get("CI") else "dev")
    env.setdefault("MPLBACKEND", "Agg")
    # Tests, notebook kernels and worker processes share two cores: OpenBLAS threads that
    # busy-wait on a busy core make small products 10x slower. Speed is measured by benchmarks.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    explicit = _has_marker_option(argv)
    status = _run(
        python,
        "-m",
        "pytest",
        *([] if explicit else ["-m", DEFAULT_MARKERS]),
        "--doctest-modules",
        "--nbmake",
        *[p for p in ("lowrank", "tests", "notebooks") if (ROOT / p).is_dir()],
        *argv,
        env=env,
        ok=(0, NO_TESTS_COLLECTED) if explicit else (0,),
    )
    if status == NO_TESTS_COLLECTED:
        print("no test matches the -m selection: nothing to run", flush=True)


def test_interop(argv: list[str]) -> None:
    python = ensure_env(
        "test", name=".venv-interop", pre=("torch==2.13.0", "peft", "weightwatcher==0.7.7")
    )
    env = dict(os.environ)
    env.setdefault("HYPOTHESIS_PROFILE", "ci" if env.get("CI") else "dev")
    _run(python, "-m", "pytest", "-m", "interop", "tests", *argv, env=env)


def lint(argv: list[str]) -> None:
    python = ensure_env("dev")
    _run(python, "-m", "ruff", "check", "lowrank", "tests", "benchmarks", "tasks.py")
    _run(python, "-m", "ruff", "format", "--check", "lowrank", "tests", "benchmarks", "tasks.py")
    _run(python, "-m", "mypy", "--strict", "lowrank", "benchmarks")


def bench(argv: list[str]) -> None:
    python = ensure_env("dev")
    _run(python, "-m", "benchmarks", *argv)


def docs(argv: list[str]) -> None:
    """Build the API reference: every warning (a bad reference, a docstring whose Parameters
    drift from the signature, a missing section) is an error; all are reported (--keep-going)."""
    python = ensure_env("docs")
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A fresh build: every docstring is read (and checked) each time, and no page of a
    # module that no longer exists is left behind.
    shutil.rmtree(ROOT / "docs" / "_build", ignore_errors=True)
    _run(
        python,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-E",
        "-W",
        "--keep-going",
        "-n",
        "docs",
        "docs/_build/html",
        *argv,
        env=env,
    )


COMMANDS = {
    "demo": demo,
    "test": test,
    "test-interop": test_interop,
    "lint": lint,
    "bench": bench,
    "docs": docs,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
