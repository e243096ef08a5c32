"""The report of an analysis: what it ran on, the results, and its files.

A :class:`Report` is written as JSON (and read back exactly: every float is written by
``repr``, which round-trips), CSV, Markdown and, for the singular values, ``.npz``. Every
write is atomic (:func:`lowrank.io.atomic_path`): a reader sees the previous file or the
complete new one, never a torn file. A report of an interrupted run is *partial*: it lists
the matrices still pending, and it is a valid report all the same.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowrank._typing import Array
from lowrank._validation import check_int, check_mapping, check_path, check_str
from lowrank.analysis._render import table, to_csv, to_markdown, to_text
from lowrank.analysis._results import (
    MatrixResult,
    SkippedTensor,
    UpdateResult,
    _read_bool,
    _read_float,
    _read_int,
    _read_list,
    _read_str,
)
from lowrank.analysis._summary import RandomMatrixOverview, summarize
from lowrank.errors import FileFormatError, InputError, MissingFileError
from lowrank.io import atomic_path, atomic_write_text
from lowrank.io._paths import check_distinct_paths

__all__ = ["REPORT_FORMAT", "REPORT_FORMAT_VERSION", "Report", "RunInfo"]

REPORT_FORMAT = "lowrank-analysis-report"
"""The ``"format"`` tag of a report's JSON file."""

REPORT_FORMAT_VERSION = 1
"""The ``"format_version"`` written; readers accept this version only."""


def _refuse_constant(token: str) -> None:
    raise ValueError(
        f"{token} is not a JSON number (a report writes non-finite values as the strings "
        '"inf" or "nan", where its fields allow them)'
    )


@dataclass(frozen=True)
class RunInfo:
    """What an analysis ran on and how.

    Attributes
    ----------
    source : str
        Absolute path of the analysed file, index or directory.
    include, exclude : tuple of str
        The name patterns of the selection.
    regex : bool
        Patterns are regular expressions (else globs).
    nd_policy : str
        ``"skip"`` or ``"flatten"`` for tensors of 3 or more dimensions.
    ranks : tuple of int
        Ranks whose relative error was reported.
    energies : tuple of float
        Energy fractions whose rank was reported.
    executor : str
        How the matrices were processed, e.g. ``"local processes: 2 workers x 1 BLAS
        thread"``.
    lowrank_version : str
        Version of :mod:`lowrank` that computed the report.
    created : str
        Start time, ISO 8601 in UTC.
    elapsed_seconds : float
        Wall time from start to the last result.
    base : str or None
        For an update analysis (:func:`lowrank.analysis.analyze_update`), the absolute path
        of the base checkpoint (``source`` is then the tuned one); else None.
    """

    source: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    regex: bool
    nd_policy: str
    ranks: tuple[int, ...]
    energies: tuple[float, ...]
    executor: str
    lowrank_version: str
    created: str
    elapsed_seconds: float
    base: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns
        -------
        dict of str to Any
            The fields, tuples as lists.
        """
        return {
            "source": self.source,
            "include": list(self.include),
            "exclude": list(self.exclude),
            "regex": self.regex,
            "nd_policy": self.nd_policy,
            "ranks": list(self.ranks),
            "energies": list(self.energies),
            "executor": self.executor,
            "lowrank_version": self.lowrank_version,
            "created": self.created,
            "elapsed_seconds": self.elapsed_seconds,
            # Written for update analyses only, so plain reports stay as they were.
            **({} if self.base is None else {"base": self.base}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        """Rebuild from :meth:`to_dict` output (``KeyError``/``TypeError`` if malformed).

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (or its JSON, parsed).

        Returns
        -------
        RunInfo
            Equal to the one that wrote ``data``.
        """
        check_mapping(data, name="data")

        def strings(key: str) -> tuple[str, ...]:
            return tuple(_read_str(p, key) for p in _read_list(data[key], key))

        return cls(
            source=_read_str(data["source"], "source"),
            include=strings("include"),
            exclude=strings("exclude"),
            regex=_read_bool(data["regex"], "regex"),
            nd_policy=_read_str(data["nd_policy"], "nd_policy"),
            ranks=tuple(_read_int(r, "ranks") for r in _read_list(data["ranks"], "ranks")),
            energies=tuple(
                _read_float(e, "energies") for e in _read_list(data["energies"], "energies")
            ),
            executor=_read_str(data["executor"], "executor"),
            lowrank_version=_read_str(data["lowrank_version"], "lowrank_version"),
            created=_read_str(data["created"], "created"),
            elapsed_seconds=_read_float(data["elapsed_seconds"], "elapsed_seconds"),
            base=None if data.get("base") is None else _read_str(data["base"], "base"),
        )


@dataclass(frozen=True)
class Report:
    """The results of an analysis, in the checkpoint's storage order.

    Attributes
    ----------
    run : RunInfo
        What was analysed, with which options, by which version, when.
    matrices : tuple of MatrixResult
        One result per analysed matrix, singular values included (an
        :class:`UpdateResult` per pair of an update analysis).
    skipped : tuple of SkippedTensor
        Tensors passed over by the selection, and matrices whose analysis failed
        (``code="error"``), each with its reason.
    pending : tuple of str
        Names of the selected matrices not analysed because the run was interrupted;
        empty for a complete report.
    """

    run: RunInfo
    matrices: tuple[MatrixResult, ...]
    skipped: tuple[SkippedTensor, ...] = ()
    pending: tuple[str, ...] = field(default=())

    @property
    def partial(self) -> bool:
        """True when the run stopped before every selected matrix was analysed."""
        return bool(self.pending)

    def _output(self, path: object) -> Path:
        """``path`` checked not to be a file of the analysed checkpoints (atomic writes
        would replace them without an error)."""
        target = check_path(path, name="path")
        inputs = [
            (label, value)
            for label, value in (("run.source", self.run.source), ("run.base", self.run.base))
            if isinstance(value, str) and value  # reports built by hand may name no file
        ]
        check_distinct_paths([("path", target)], inputs)
        return target

    def result(self, name: str) -> MatrixResult:
        """The result of the matrix called ``name``.

        Parameters
        ----------
        name : str
            A tensor name, as in :attr:`MatrixResult.name`.

        Returns
        -------
        MatrixResult
            Its result.

        Raises
        ------
        InputError
            No analysed matrix has that name.
        """
        for m in self.matrices:
            if m.name == name:
                return m
        raise InputError(
            f"name must be one of the {len(self.matrices)} analysed matrices; got {name!r}"
        )

    def random_matrix_summary(self) -> RandomMatrixOverview:
        r"""The random-matrix view of the model: per module type and overall.

        Groups the matrices by module type (:func:`~lowrank.analysis.parse_layer_name`;
        a matrix without a layer index is a group of its own, under its name) and gives
        for each group and for all matrices: the count, the mean and median power-law
        :math:`\alpha`, the mean :math:`\alpha` weighted, the total number of spikes
        above the closed-form Marchenko–Pastur edge and the shares of matrices flagged
        under-trained (:math:`\alpha > 6`) or over-trained (:math:`\alpha < 2`). For an
        update report, of the updates :math:`\Delta W`.

        Returns
        -------
        RandomMatrixOverview
            ``modules`` (a :class:`RandomMatrixGroup` per module type, in report order)
            and ``overall``. Matrices without a power-law fit (or read from a report
            written before the random-matrix view existed) count in ``count`` only.

        Notes
        -----
        WeightWatcher's rules of thumb, not tests: :math:`\alpha` of a tail of a few
        values is noisy (see :func:`lowrank.rmt.power_law_fit`), so read the shares with
        the ``n_tail`` of each matrix in mind.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from lowrank.analysis import analyze
        >>> rng = np.random.default_rng(0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for i in range(2):
        ...         np.save(Path(d) / f"layer.{i}.query.weight.npy", rng.standard_normal((60, 30)))
        ...     report = analyze(d)
        >>> summary = report.random_matrix_summary()
        >>> [(g.name, g.count, g.fitted) for g in summary.modules], summary.overall.count
        ([('query', 2, 2)], 2)
        """
        return summarize(self.matrices)

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as a dict (see :meth:`write_json`).

        Returns
        -------
        dict of str to Any
            ``format``, ``format_version``, ``partial``, ``run``, ``matrices``, ``skipped``,
            ``pending``.
        """
        return {
            "format": REPORT_FORMAT,
            "format_version": REPORT_FORMAT_VERSION,
            "partial": self.partial,
            "run": self.run.to_dict(),
            "matrices": [m.to_dict() for m in self.matrices],
            "skipped": [s.to_dict() for s in self.skipped],
            "pending": list(self.pending),
        }

    def to_json(self) -> str:
        """The report as JSON text; :meth:`from_json` reads it back exactly.

        One line per top-level field and per matrix (its singular values included), so the
        file stays readable with line-oriented tools however long the spectra are.

        Returns
        -------
        str
            The JSON document, ending in a newline.
        """
        fields = []
        for key, value in self.to_dict().items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                items = ",\n".join("  " + json.dumps(v, allow_nan=False) for v in value)
                text = f"[\n{items}\n ]"
            else:
                text = json.dumps(value, allow_nan=False)
            fields.append(f" {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(fields) + "\n}\n"

    @classmethod
    def from_dict(cls, data: object, *, where: str = "report") -> Report:
        """Rebuild a report from :meth:`to_dict` output.

        Parameters
        ----------
        data : object
            A dict, as :meth:`to_dict` returns it.
        where : str, default "report"
            How error messages name the source (e.g. the file).

        Returns
        -------
        Report
            Equal to the one that wrote ``data``.

        Raises
        ------
        FileFormatError
            ``data`` is not a lowrank analysis report of a known format version, or a
            field is missing or of the wrong type.
        """
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            raise FileFormatError(
                f'{where} is not a lowrank analysis report (no "format": "{REPORT_FORMAT}")'
            )
        version = data.get("format_version")
        if version != REPORT_FORMAT_VERSION:
            raise FileFormatError(
                f"{where} has format_version {version!r}; this lowrank reads version "
                f"{REPORT_FORMAT_VERSION}"
            )
        # What is being read, for the message: the run, or a matrix by name (or index).
        part = ""
        try:
            run_data = data["run"]
            part = "run"
            run = RunInfo.from_dict(run_data)
            part = ""
            matrices = []
            for k, m in enumerate(_read_list(data["matrices"], "matrices")):
                name = m.get("name") if isinstance(m, dict) else None
                part = f"matrix {name!r}" if isinstance(name, str) else f"matrices[{k}]"
                update = isinstance(m, dict) and "relative_size" in m
                matrices.append((UpdateResult if update else MatrixResult).from_dict(m))
            part = ""
            skipped = tuple(
                SkippedTensor.from_dict(s) for s in _read_list(data["skipped"], "skipped")
            )
            pending = tuple(_read_str(n, "pending") for n in _read_list(data["pending"], "pending"))
            report = cls(run=run, matrices=tuple(matrices), skipped=skipped, pending=pending)
        except KeyError as exc:
            raise FileFormatError(
                f"{where} is malformed: missing field {exc}" + (f" ({part})" if part else "")
            ) from None
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise FileFormatError(
                f"{where} is malformed: {exc}" + (f" ({part})" if part else "")
            ) from None
        if data.get("partial") != report.partial:
            raise FileFormatError(
                f'{where} is malformed: "partial" is {data.get("partial")!r} but '
                f"{len(report.pending)} matrices are pending"
            )
        return report

    @classmethod
    def from_json(cls, text: str, *, where: str = "report") -> Report:
        """Parse :meth:`to_json` output.

        Parameters
        ----------
        text : str
            The JSON document.
        where : str, default "report"
            How error messages name the source (e.g. the file).

        Returns
        -------
        Report
            Equal to the one that wrote ``text``.

        Raises
        ------
        FileFormatError
            ``text`` is not JSON, or not a report (see :meth:`from_dict`).
        """
        check_str(text, name="text")
        check_str(where, name="where")
        try:
            # NaN and Infinity are not JSON (Python reads them by default): a report writes
            # such values as the strings "inf"/"nan", and only where its fields allow them.
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, or a NaN/Infinity token
            raise FileFormatError(f"{where} is not valid JSON: {exc}") from None
        return cls.from_dict(data, where=where)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The file to create or replace; its directory must exist.

        Raises
        ------
        MissingFileError
            The directory of ``path`` does not exist.
        InputError
            ``path`` is a directory, or resolves to the analysed checkpoint
            (``run.source``, ``run.base``) or a file of it.
        """
        atomic_write_text(self._output(path), self.to_json())

    @classmethod
    def read_json(cls, path: str | os.PathLike[str]) -> Report:
        """Read a report written by :meth:`write_json`.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Returns
        -------
        Report
            The report, exactly as written.

        Raises
        ------
        MissingFileError
            ``path`` does not exist.
        InputError
            ``path`` is a directory.
        FileFormatError
            The file is not UTF-8 JSON or not a report.
        """
        file = check_path(path, name="path")
        if file.is_dir():
            raise InputError(f"report file must be a JSON file, not a directory; got '{file}'")
        if not file.is_file():
            raise MissingFileError(f"report file must exist; got '{file}'")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"report file '{file}' is not UTF-8 text: {exc}") from None
        return cls.from_json(text, where=f"report file '{file}'")

    # -- other formats --------------------------------------------------------------------

    def to_csv(self) -> str:
        """One row per analysed matrix; floats written exactly (``repr``).

        Returns
        -------
        str
            CSV text with a header row.
        """
        return to_csv(self)

    def to_pandas(self) -> Any:
        """The CSV table as a pandas ``DataFrame``: one row per matrix.

        The columns are those of :meth:`to_csv`, among them ``stack``, ``layer`` and
        ``module`` parsed from the name (:func:`~lowrank.analysis.parse_layer_name`;
        missing for names without a layer index: embeddings, pooler, heads), so that
        ``df.groupby("module")`` compares one module type across layers. Integer columns
        with missing cells (``layer``, ``mp_spikes``...) are pandas' nullable ``Int64``.

        Returns
        -------
        pandas.DataFrame
            One row per analysed matrix, in the report's order.

        Raises
        ------
        ImportError
            pandas is not installed (the ``pandas`` extra: ``pip install -e '.[pandas]'`` in
            a clone).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from lowrank.analysis import analyze
        >>> from lowrank.io import save_safetensors
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> save_safetensors(path, {"h.0.attn.q.weight": np.eye(4), "wte.weight": np.eye(3)})
        >>> report = analyze(path, energies=(0.9,), ranks=(1,))
        >>> df = report.to_pandas()
        >>> df["name"].tolist(), df["rank_energy_0.9"].tolist()
        (['h.0.attn.q.weight', 'wte.weight'], [4, 3])
        >>> int(df.loc[0, "layer"]), df.loc[0, "module"]
        (0, 'attn.q')
        >>> df["layer"].isna().tolist()  # wte.weight has no layer index
        [False, True]
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Report.to_pandas needs pandas, which lowrank does not require: "
                "pip install pandas (or the pandas extra: pip install -e '.[pandas]' in a clone "
                "of lowrank)"
            ) from None
        columns, rows = table(self)
        data: dict[str, Any] = {}
        for j, column in enumerate(columns):
            cells = [row[j] for row in rows]
            given = [v for v in cells if v is not None]
            if len(given) < len(cells) and given and all(type(v) is int for v in given):
                data[column] = pd.array(cells, dtype="Int64")
            else:
                data[column] = cells
        return pd.DataFrame(data, columns=columns)

    def to_markdown(self) -> str:
        """A Markdown document: run information, the results table, the skipped tensors.

        Returns
        -------
        str
            The document.
        """
        return to_markdown(self)

    def to_text(self, *, max_name: int = 48) -> str:
        """A fixed-width summary table for a terminal (names cut to ``max_name`` chars).

        Parameters
        ----------
        max_name : int, default 48
            Longer names are cut to this many characters.

        Returns
        -------
        str
            The table.
        """
        return to_text(self, max_name=check_int(max_name, name="max_name", minimum=1))

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_csv` atomically (errors as :meth:`write_json`).

        Parameters
        ----------
        path : str or os.PathLike
            The file to create or replace; its directory must exist.
        """
        atomic_write_text(self._output(path), self.to_csv())

    def write_markdown(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_markdown` atomically (errors as :meth:`write_json`).

        Parameters
        ----------
        path : str or os.PathLike
            The file to create or replace; its directory must exist.
        """
        atomic_write_text(self._output(path), self.to_markdown())

    def spectra(self) -> dict[str, Array]:
        """Singular values of every analysed matrix, by name (float64, descending).

        Returns
        -------
        dict of str to ndarray
            In storage order.
        """
        return {m.name: m.singular_values for m in self.matrices}

    def write_spectra(self, path: str | os.PathLike[str]) -> None:
        r"""Save :meth:`spectra` as an ``.npz`` archive (one array per tensor name), atomically.

        The name is used as given (``numpy.savez`` would add ``.npz`` to a path without it)
        and any tensor name is a valid key (even ``"file"``, which ``numpy.savez`` rejects);
        read it with ``numpy.load(path)``. In an update report the key ``NAME`` holds the
        spectrum of :math:`\Delta W` and ``base:NAME`` that of its base :math:`W`
        (:attr:`UpdateResult.base_singular_values`, where the report has it).

        Parameters
        ----------
        path : str or os.PathLike
            The archive to create or replace, whatever its suffix.

        Raises
        ------
        MissingFileError, InputError
            As :meth:`write_json`; also ``InputError`` when a tensor's name is the
            ``base:NAME`` key of another's base spectrum.
        """
        target = self._output(path)
        arrays = self.spectra()
        for m in self.matrices:
            if isinstance(m, UpdateResult) and m.base_singular_values is not None:
                key = f"base:{m.name}"
                if key in arrays:
                    raise InputError(
                        f"the .npz key {key!r} of the base spectrum of {m.name!r} is also a "
                        "tensor name; rename one of them"
                    )
                arrays[key] = m.base_singular_values
        with (
            atomic_path(target) as temp,
            zipfile.ZipFile(temp, mode="w", compression=zipfile.ZIP_STORED) as archive,
        ):
            # What numpy.savez does, without its keyword arguments shadowing tensor names.
            for name, values in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, values, allow_pickle=False)
