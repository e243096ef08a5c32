"""Opening a file to read only if it is a regular file.

``open()`` on a named pipe (FIFO) blocks until a writer appears, and on a character device
may read forever; a weight file is never either. The file is therefore opened with
``O_NONBLOCK`` (which makes opening a FIFO return at once and changes nothing for a regular
file) and refused unless ``fstat`` says it is a regular file. Checking the open descriptor,
not the path beforehand, leaves no window in which the path could be swapped.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from lowrank.errors import InputError, MissingFileError

__all__ = ["describe_mode", "open_regular"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def describe_mode(mode: int) -> str:
    """What a non-regular file is, for messages ("a named pipe (FIFO)", ...)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def not_regular(path: Path, what: str, mode: int) -> InputError:
    """The error for ``path`` (described as ``what``) that is not a regular file."""
    return InputError(
        f"{what} '{path}' must be a regular file, but it is {describe_mode(mode)}; "
        "weight files cannot be read from pipes, sockets or devices"
    )


def open_regular(path: Path, what: str) -> io.BufferedReader:
    """Open ``path`` for binary reading, refusing anything but an existing regular file.

    ``what`` names the file in messages ("safetensors file", ".npy file", ...).

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InputError
        ``path`` is a directory, a FIFO, a socket or a device.
    OSError
        ``path`` cannot be opened (permissions, a symbolic link loop, ...).
    """
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise MissingFileError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:  # not on Linux, where O_RDONLY opens a directory
        raise not_regular(path, what, stat.S_IFDIR) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, what, mode)
        return open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
