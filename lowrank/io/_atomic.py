"""Atomic file writes: a temporary file in the target's directory, fsync, then ``os.replace``.

Readers therefore see either the old file or the complete new one, never a half-written
file, even if the process dies mid-write. The temporary file lives in the *same directory*
because ``os.replace`` is atomic only within one file system.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from lowrank._validation import check_path, check_str
from lowrank.errors import InputError, MissingFileError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_replaceable"]

_TEMP_ATTEMPTS = 16


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_replaceable(path: str | os.PathLike[str], *, name: str = "path") -> Path:
    """``path`` as an absolute path, if an atomic write may replace what it names.

    Refused: an existing directory, symbolic link, device (``/dev/null``), FIFO or socket.
    The rename that ends an atomic write would replace any of them with a regular file:
    ``/dev/null`` or the link ``/dev/stdout`` would be gone for every program. A link is
    not written through either: its target may be shared (a cache's blob). ``name`` is the
    argument named in messages (``"--json"``...).

    Raises
    ------
    InputError
        ``path`` names one of the above.
    MissingFileError
        The directory of ``path`` does not exist.
    """
    # abspath rather than resolve(): messages keep the name the caller gave.
    target = Path(os.path.abspath(path))
    try:
        info = os.lstat(target)
    except OSError:  # absent (the usual case), or not reachable: creating it will tell
        info = None
    if info is not None:
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            if target.is_dir():
                raise InputError(f"{name} must name a file, not a directory; got '{target}'")
            raise InputError(
                f"{name} '{target}' is a symbolic link (to '{os.readlink(target)}'); it is not "
                "replaced nor written through: give the file itself, or remove the link"
            )
        if stat.S_ISDIR(mode):
            raise InputError(f"{name} must name a file, not a directory; got '{target}'")
        for test, kind in _KINDS:
            if test(mode):
                raise InputError(
                    f"{name} '{target}' is {kind}, not a regular file; it would be replaced "
                    "by one: give the name of a regular file"
                )
    if not target.parent.is_dir():
        raise MissingFileError(
            f"the directory of {name} must exist; '{target.parent}' does not ({name} '{target}')"
        )
    return target


def _target(path: Path) -> Path:
    return check_replaceable(path)


def _create_temp(target: Path) -> tuple[Path, int]:
    """A new empty temporary file next to ``target``, and the permission bits it must end
    with: those of the file it replaces, or else those the umask gives a new file."""
    for _ in range(_TEMP_ATTEMPTS):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            # Mode 0o666 lets the umask decide the permissions, as for a plain open().
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # 48 random bits colliding: try another name
            continue
        except OSError as exc:  # e.g. a directory we may not write in
            renamed = _naming(exc, temp, target)
            if renamed is exc:
                raise
            raise renamed from None
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 & ~umask, read without os.umask
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(target.stat().st_mode)  # overwriting keeps the old permissions
        return temp, mode
    raise FileExistsError(
        f"could not create a temporary file next to '{target}'"
    )  # pragma: no cover


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open a directory, and a
    # failure here cannot undo a rename that already happened, so it is best effort.
    if os.name == "nt":  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` atomically when the block succeeds.

    Write the new content to the yielded path (with ``open``, ``numpy.save``, a library's
    ``save_file`` ...). On normal exit the temporary file is flushed to disk (``fsync``) and
    moved over ``path`` with :func:`os.replace`; if the block raises, the temporary file is
    deleted and ``path`` is left exactly as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its directory must exist.

    Yields
    ------
    pathlib.Path
        An empty file ``.<name>.<random>.tmp`` in the same directory as ``path``.

    Raises
    ------
    MissingFileError
        The directory of ``path`` does not exist.
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, or is an existing directory,
        symbolic link, device, FIFO or socket (``check_replaceable``).
    OSError
        Creating, writing (if the block's writes raise it), syncing or renaming the
        temporary file failed (disk full, permission denied...). An error that named no
        file or the temporary file names ``path`` instead.

    Notes
    -----
    Only a regular file is replaced: a symbolic link, a device such as ``/dev/null``, a FIFO
    or a socket at ``path`` is refused (the rename would replace it with a regular file, and
    writing through a link could change a file other links share). A replaced file keeps
    its permission bits; a new one gets those of a plain ``open(path, "w")``, 0o666 less
    the umask, whatever the block's writer did to the temporary file's mode
    (``safetensors`` writes its files with mode 0o600). Only a hard kill between creating
    and renaming the temporary file can leave it behind; it never leaves a partial
    ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with atomic_path(Path(d) / "report.txt") as tmp:
    ...         _ = tmp.write_text("done")
    ...     print((Path(d) / "report.txt").read_text(), sorted(p.name for p in Path(d).iterdir()))
    done ['report.txt']
    """
    target = _target(check_path(path, name="path"))
    with _replace(target) as temp:
        yield temp


@contextlib.contextmanager
def _replace(target: Path) -> Iterator[Path]:
    """The body of :func:`atomic_path` for a checked absolute ``target``."""
    temp, mode = _create_temp(target)
    try:
        yield temp
        # The writer may have replaced the file we created (safetensors' save_file writes a
        # new file of mode 0o600 over it), so the mode is set again, on the final content.
        os.chmod(temp, mode)
        _fsync_file(temp)
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        renamed = _naming(exc, temp, target)
        if renamed is exc:
            raise
        raise renamed from None
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_directory(target.parent)


def _naming(exc: OSError, temp: Path, target: Path) -> OSError:
    """``exc``, naming ``target`` where it names no file or the temporary file.

    A full disk (``ENOSPC`` from a write) names no file, and a refused ``open`` or rename
    names ``.<name>.<random>.tmp``; the caller asked for ``target``, so that is the name a
    message should give. Errors without an errno, or naming another file, are kept as they
    are.
    """
    names = {None, os.fspath(temp)}
    filename = None if exc.filename is None else os.fspath(exc.filename)
    if exc.errno is None or filename not in names:
        return exc
    try:
        renamed = type(exc)(exc.errno, exc.strerror, os.fspath(target))
    except TypeError:  # pragma: no cover - a subclass with another signature
        return exc
    return renamed.with_traceback(exc.__traceback__)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its directory must exist.
    data : bytes, bytearray or memoryview
        The complete new content.

    Raises
    ------
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, ``data`` is not bytes-like,
        or ``path`` is not a regular file (``check_replaceable``).
    MissingFileError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from lowrank.io import atomic_write_bytes
    >>> with tempfile.TemporaryDirectory() as d:
    ...     atomic_write_bytes(Path(d) / "blob.bin", b"\\x00\\x01")
    ...     (Path(d) / "blob.bin").read_bytes()
    b'\\x00\\x01'
    """
    file = check_path(path, name="path")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"data must be bytes, bytearray or memoryview; got {type(data).__name__}")
    with _replace(_target(file)) as temp, open(temp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Line endings are written as given (no ``\\n`` → ``\\r\\n`` translation on Windows), so
    the file's bytes do not depend on the platform.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its directory must exist.
    text : str
        The complete new content.
    encoding : str, default "utf-8"
        Text encoding.

    Raises
    ------
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``, ``text`` is not a ``str``,
        ``encoding`` is not the name of a text encoding or cannot encode ``text``, or
        ``path`` is not a regular file (``check_replaceable``).
    MissingFileError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from lowrank.io import atomic_write_text
    >>> with tempfile.TemporaryDirectory() as d:
    ...     atomic_write_text(Path(d) / "notes.txt", "rank 8\\n")
    ...     (Path(d) / "notes.txt").read_text()
    'rank 8\\n'
    """
    file = check_path(path, name="path")
    if not isinstance(text, str):
        raise InputError(f"text must be a str; got {type(text).__name__}")
    check_str(encoding, name="encoding", allow_empty=False)
    try:
        data = text.encode(encoding)
    except LookupError:  # unknown, or a bytes-to-bytes codec such as 'base64'
        raise InputError(
            f"encoding must name a text encoding (e.g. 'utf-8'); got {encoding!r}"
        ) from None
    except UnicodeEncodeError as exc:
        raise InputError(f"text cannot be written with encoding={encoding!r}: {exc}") from None
    with _replace(_target(file)) as temp, open(temp, "wb") as fh:
        fh.write(data)
