"""Refusing an output path that would overwrite an input, or another output of the same run.

Every writer here replaces its target atomically, so a report written onto the checkpoint
it analyses replaces the checkpoint without any error. Commands and entry points that take
both inputs and outputs therefore call :func:`check_distinct_paths` before any work.

Paths are compared by what they resolve to: :func:`os.path.realpath` (symbolic links, ``..``)
and, for files that exist, :func:`os.path.samefile` (hard links). An input is every file that
reading it reads: a weight file, a sharded checkpoint's index and its shards, or the weight,
index and adapter files directly in a directory (:func:`input_files`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from lowrank._validation import check_path
from lowrank.errors import InputError

__all__ = ["check_distinct_paths", "input_files"]

# What lowrank.io reads from a directory (_sources, peft): weight files, indexes, and the two
# adapter files (the legacy pickled weights too: they are the adapter's, not ours to replace).
_WEIGHT_SUFFIXES = (".safetensors", ".npz", ".npy", ".bin")
_INDEX_SUFFIX = ".index.json"
_ADAPTER_CONFIG = "adapter_config.json"

Labelled = Sequence[tuple[str, "str | os.PathLike[str] | None"]]
"""(argument name, path or None) pairs; None entries (outputs not asked for) are ignored."""


def _shards(index: Path) -> list[Path]:
    """The shard files an index names, or none if it cannot be read: the reader reports that
    with its own message; here it is only a question of which files must not be replaced."""
    # RecursionError: json's decoder recurses once per nested array or object. A FIFO is
    # not read: open() would wait for a writer forever.
    with contextlib.suppress(OSError, ValueError, RecursionError):
        if not index.is_file():
            return []
        parsed = json.loads(index.read_text(encoding="utf-8"))
        weight_map = parsed.get("weight_map") if isinstance(parsed, dict) else None
        if isinstance(weight_map, dict):
            return [index.parent / s for s in set(weight_map.values()) if isinstance(s, str) and s]
    return []


def input_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The files reading ``path`` reads, as absolute paths (links not resolved).

    Parameters
    ----------
    path : str or os.PathLike
        A weight file, a sharded checkpoint's ``*.index.json``, a checkpoint directory or a
        PEFT adapter folder. It need not exist.

    Returns
    -------
    tuple of pathlib.Path
        ``path`` itself; for an index also its shards; for a directory every ``.safetensors``,
        ``.npz``, ``.npy``, ``.bin``, ``*.index.json`` and ``adapter_config.json`` file
        directly in it and the shards of its indexes. Over-inclusive on purpose: replacing
        any of these with a report is never wanted.

    Raises
    ------
    InputError
        ``path`` is not a non-empty ``str`` or ``os.PathLike``.
    """
    root = Path(os.path.abspath(check_path(path, name="path")))
    found = [root]
    if root.is_dir():
        with contextlib.suppress(OSError):  # an unreadable directory: its reader reports it
            for entry in sorted(root.iterdir()):
                name = entry.name
                if not entry.is_file():
                    continue
                if name.endswith(_INDEX_SUFFIX):
                    found += [entry, *_shards(entry)]
                elif name == _ADAPTER_CONFIG or entry.suffix in _WEIGHT_SUFFIXES:
                    found.append(entry)
    elif root.name.endswith(_INDEX_SUFFIX):
        found += _shards(root)
    return tuple(found)


def _read_from_directory(name: str) -> bool:
    """Whether reading a directory reads a file called ``name`` in it (:func:`input_files`)."""
    return (
        name.endswith(_INDEX_SUFFIX)
        or name == _ADAPTER_CONFIG
        or Path(name).suffix.lower() in _WEIGHT_SUFFIXES
    )


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links; only when both exist
    except OSError:
        return False


def _quoted(label: str) -> str:
    # Python argument names ("checkpoint", "run.source") are quoted as parameters are
    # elsewhere in messages; options ("--json") and placeholders ("PATH") read as they are.
    return f"{label!r}" if re.fullmatch(r"[a-z_][a-z0-9_.]*", label) else label


def check_distinct_paths(
    outputs: Labelled, inputs: Labelled = (), *, folders: Labelled = ()
) -> None:
    """Raise if an output would replace an input or another output.

    Parameters
    ----------
    outputs : sequence of (str, path or None)
        The files a run will write, each with the argument that names it (``"--json"``,
        ``"checkpoint"``...). ``None`` paths are skipped.
    inputs : sequence of (str, path or None), default ()
        The checkpoints, adapter folders or reports the run reads, with their arguments;
        each stands for all of its :func:`input_files`.
    folders : sequence of (str, path or None), default ()
        Folders the run writes new files into (an adapter folder): refused when one is an
        input directory, whose checkpoint the new weight file would join.

    Raises
    ------
    InputError
        An output resolves (through symbolic links or hard links) to a file of an input,
        or two outputs resolve to one file, or a folder is an input directory, or an
        output is a new file directly in an input directory that reading the directory
        would read (a weight file, an index, ``adapter_config.json``). The message names
        both arguments and the file.
    """
    files = [
        (label, Path(os.path.abspath(check_path(p, name=label))))
        for label, p in outputs
        if p is not None
    ]
    for i, (label, file) in enumerate(files):
        for other, earlier in files[:i]:
            if _same(file, earlier):
                raise InputError(
                    f"{_quoted(other)} and {_quoted(label)} name the same file "
                    f"'{os.path.realpath(file)}'; give each output its own file"
                )
    dirs = [(label, check_path(p, name=label)) for label, p in folders if p is not None]
    for in_label, value in inputs:
        if value is None:
            continue
        given = Path(os.path.abspath(check_path(value, name=in_label)))
        for label, folder in dirs:
            if given.is_dir() and _same(folder, given):
                raise InputError(
                    f"{_quoted(label)} would write into the input {_quoted(in_label)}: both "
                    f"name the directory '{os.path.realpath(given)}'; write the output elsewhere"
                )
        for part in input_files(given):
            for label, file in files:
                if not _same(file, part):
                    continue
                which = "" if part == given else f" (a file of {_quoted(in_label)}, '{part}')"
                raise InputError(
                    f"{_quoted(label)} would overwrite the input {_quoted(in_label)}{which}: "
                    f"both name '{os.path.realpath(file)}'; write the output elsewhere"
                )
        if not given.is_dir():
            continue
        for label, file in files:
            if _read_from_directory(file.name) and _same(file.parent, given):
                raise InputError(
                    f"{_quoted(label)} would add '{file.name}' to the input directory "
                    f"{_quoted(in_label)} ('{os.path.realpath(given)}'): reading that "
                    "directory would then read it as part of the checkpoint; write the "
                    "output elsewhere"
                )
