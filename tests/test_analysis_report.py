"""lowrank.analysis.Report: JSON round trip (exact), CSV, Markdown, text, .npz, errors."""

from __future__ import annotations

import csv
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import ml_dtypes
import numpy as np
import pytest

from lowrank.analysis import (
    REPORT_FORMAT,
    Report,
    analyze,
    analyze_matrix,
    layer_grid,
    parse_layer_name,
)
from lowrank.analysis._layers import module_order
from lowrank.errors import FileFormatError, InputError, MissingFileError
from lowrank.io import save_safetensors


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """In-process linear algebra on one BLAS thread: the 2 cores are shared with other
    tests, and OpenBLAS threads waiting on a busy core make small products 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_safetensors(
        path,
        {
            "encoder.layer.0.attention.self.query.weight": rng.standard_normal((24, 16)).astype(
                np.float32
            ),
            "encoder.layer.0.output.dense.weight": rng.standard_normal((16, 40)).astype(
                ml_dtypes.bfloat16
            ),
            "encoder.layer.1.attention.self.query.weight": rng.standard_normal((24, 16)),
            "encoder.layer.0.output.dense.bias": np.zeros(16, np.float32),
            "embeddings.position_ids": np.arange(8, dtype=np.int64).reshape(1, 8),
            "odd|name": np.eye(3, dtype=np.float16) * 1e-3,
        },
    )
    with ThreadPoolExecutor(2) as pool:
        return analyze(path, ranks=[2, 8], energies=[0.5, 0.9], executor=pool, exclude="*.bias")


def test_run_information(report):
    run = report.run
    assert run.source.endswith("model.safetensors")
    assert run.include == () and run.exclude == ("*.bias",)
    assert run.ranks == (2, 8) and run.energies == (0.5, 0.9)
    assert run.lowrank_version and run.created.endswith("+00:00")
    assert run.executor == "ThreadPoolExecutor (2 workers)"
    assert run.elapsed_seconds > 0
    assert not report.partial and report.pending == ()
    skipped = {s.name: (s.code, s.reason) for s in report.skipped}
    assert skipped["embeddings.position_ids"] == (
        "dtype",
        "dtype int64 is an integer type, not floating",
    )
    assert skipped["encoder.layer.0.output.dense.bias"][0] == "name"


def test_json_round_trip_is_exact(report, tmp_path):
    path = tmp_path / "r.json"
    report.write_json(path)
    back = Report.read_json(path)
    assert back == report
    for a, b in zip(back.matrices, report.matrices, strict=True):
        assert a.singular_values.dtype == np.float64
        assert np.array_equal(a.singular_values, b.singular_values)
    # The file is plain JSON with one line per matrix.
    data = json.loads(path.read_text())
    assert data["format"] == REPORT_FORMAT and data["partial"] is False
    # "{", 4 scalar fields, the matrices and skipped lists (2 lines each plus one per
    # item), "pending", "}".
    assert path.read_text().count("\n") == 11 + len(report.matrices) + len(report.skipped)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_equality_sees_one_ulp(report):
    m = report.matrices[0]
    nudged = m.singular_values.copy()
    nudged[-1] = np.nextafter(nudged[-1], 1.0)
    assert replace(m, singular_values=nudged) != m
    assert replace(m, seconds=m.seconds) == m
    assert m != "not a result"


def test_csv_holds_exact_values(report):
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["name"] for r in rows] == [m.name for m in report.matrices]
    for row, m in zip(rows, report.matrices, strict=True):
        assert (int(row["rows"]), int(row["cols"])) == m.shape
        assert float(row["stable_rank"]) == m.stable_rank
        assert float(row["entropy_effective_rank"]) == m.entropy_effective_rank
        assert int(row["rank_energy_0.9"]) == m.rank_for_energy(0.9)
        assert float(row["rel_error_rank_8"]) == m.error_at_rank(8)
        assert row["dtype"] == m.dtype

    by_name = {r["name"]: r for r in rows}
    query = by_name["encoder.layer.1.attention.self.query.weight"]
    assert (query["stack"], query["layer"], query["module"]) == (
        "encoder.layer",
        "1",
        "attention.self.query",
    )
    # a name without a layer index has empty layer columns, not a guess
    assert (by_name["odd|name"]["layer"], by_name["odd|name"]["module"]) == ("", "")


def test_to_pandas_matches_the_csv(report):
    pd = pytest.importorskip("pandas")
    df = report.to_pandas()
    assert isinstance(df, pd.DataFrame)
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert list(df.columns) == list(rows[0])
    assert df["name"].tolist() == [m.name for m in report.matrices]
    assert df["layer"].dtype == "Int64"  # nullable: "odd|name" has no layer index
    assert df["layer"].isna().tolist() == [
        parse_layer_name(m.name) is None for m in report.matrices
    ]
    assert df["rows"].dtype == np.int64 and df["stable_rank"].dtype == np.float64
    for (_, row), m in zip(df.iterrows(), report.matrices, strict=True):
        assert row["stable_rank"] == m.stable_rank  # exact, not through text
        assert row["rank_energy_0.9"] == m.rank_for_energy(0.9)
    by_module = df.groupby("module")["name"].count()
    assert by_module["attention.self.query"] == 2


def test_to_pandas_without_pandas_names_the_extra(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(ImportError, match=r"the pandas extra: pip install -e '\.\[pandas\]'"):
        report.to_pandas()


def test_markdown_and_text(report):
    md = report.to_markdown()
    assert md.startswith("# Low-rank analysis of `")
    assert "| encoder.layer.0.output.dense.weight | 16x40 | bfloat16 |" in md
    assert "odd\\|name" in md  # the pipe is escaped, the table keeps its columns
    assert "## Skipped tensors" in md and "dtype int64 is an integer type" in md
    header = next(line for line in md.splitlines() if line.startswith("| name"))
    # fixed columns, energies, ranks, alpha and spikes; one per edge
    assert header.count("|") == 9 + 2 + 2 + 2 + 1
    text = report.to_text()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["name", "shape", "dtype"]
    assert lines[0].split()[-6:] == ["r@50%", "r@90%", "err@2", "err@8", "α", "spikes"]
    assert "complete: 4 matrices" in lines[-1]
    assert "dtype: embeddings.position_ids: dtype int64 is an integer type, not floating" in text
    short = report.to_text(max_name=10)
    assert "…" in short


def test_spectra_npz(report, tmp_path):
    path = tmp_path / "spectra"  # no suffix added: the name is used as given
    report.write_spectra(path)
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(m.name for m in report.matrices)
        for m in report.matrices:
            np.testing.assert_array_equal(archive[m.name], m.singular_values)


def test_spectra_npz_accepts_names_that_numpy_savez_rejects(report, tmp_path):
    m = replace(report.matrices[0], name="file")
    odd = replace(report, matrices=(m,))
    odd.write_spectra(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as archive:
        np.testing.assert_array_equal(archive["file"], m.singular_values)


def test_result_lookup(report):
    assert report.result("odd|name").dtype == "float16"
    with pytest.raises(InputError, match="name must be one of the 4 analysed matrices; got 'q'"):
        report.result("q")


def test_writes_need_an_existing_directory(report, tmp_path):
    for write in (report.write_json, report.write_csv, report.write_markdown, report.write_spectra):
        with pytest.raises(MissingFileError, match="the directory of path must exist"):
            write(tmp_path / "missing" / "out")


class TestReadErrors:
    def test_missing(self, tmp_path):
        with pytest.raises(MissingFileError, match=r"report file must exist; got '.*nope\.json'"):
            Report.read_json(tmp_path / "nope.json")

    def test_a_directory(self, tmp_path):
        # It exists, so "must exist" (the message before) sent people looking for a typo.
        with pytest.raises(
            InputError, match=r"^report file must be a JSON file, not a directory; got '.*'$"
        ):
            Report.read_json(tmp_path)

    def test_not_utf8(self, tmp_path):
        (tmp_path / "r.json").write_bytes(b"\xff\xfe{")
        with pytest.raises(FileFormatError, match="is not UTF-8 text"):
            Report.read_json(tmp_path / "r.json")

    def test_not_json(self, tmp_path):
        (tmp_path / "r.json").write_text("{truncated")
        with pytest.raises(FileFormatError, match=r"report file '.*r.json' is not valid JSON"):
            Report.read_json(tmp_path / "r.json")

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda d: [1, 2], "is not a lowrank analysis report"),
            (lambda d: {**d, "format": "other"}, "is not a lowrank analysis report"),
            (
                lambda d: {**d, "format_version": 99},
                "has format_version 99; this lowrank reads version 1",
            ),
            (
                lambda d: {k: v for k, v in d.items() if k != "run"},
                "is malformed: missing field 'run'",
            ),
            (lambda d: {**d, "matrices": [{"name": "x"}]}, "is malformed: missing field 'file'"),
            (lambda d: {**d, "matrices": 3}, "is malformed: matrices must be a list; got 3"),
            (lambda d: {**d, "skipped": [{**d["skipped"][0], "shape": None}]}, "is malformed"),
            (
                lambda d: {**d, "partial": True},
                'is malformed: "partial" is True but 0 matrices are pending',
            ),
        ],
    )
    def test_malformed(self, report, mutate, message):
        data = mutate(report.to_dict())
        with pytest.raises(FileFormatError, match=message):
            Report.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("stored", "ordered"),
    [
        (  # BERT, as stored
            [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ],
            [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ],
        ),
        (  # GPT-2: c_proj is the attention output under attn, the down projection under mlp
            ["mlp.c_proj", "mlp.c_fc", "attn.c_proj", "attn.c_attn"],
            ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
        ),
        (  # Llama with an unknown module kept after the known ones, in first-seen order
            ["zz", "mlp.down_proj", "mlp.gate_proj", "aa", "mlp.up_proj", "self_attn.v_proj"],
            ["self_attn.v_proj", "mlp.up_proj", "mlp.gate_proj", "mlp.down_proj", "zz", "aa"],
        ),
        (  # T5 (layer.0.SelfAttention.o; DenseReluDense.wi/wo) and DistilBERT
            [
                "layer.1.DenseReluDense.wo",
                "layer.1.DenseReluDense.wi",
                "layer.0.SelfAttention.o",
                "ffn.lin2",
                "attention.q_lin",
            ],
            [
                "attention.q_lin",
                "layer.0.SelfAttention.o",
                "layer.1.DenseReluDense.wi",
                "layer.1.DenseReluDense.wo",
                "ffn.lin2",
            ],
        ),
    ],
)
def test_module_order(stored, ordered):
    assert module_order(stored) == ordered
    assert module_order(stored + stored[:1]) == ordered  # duplicates once


def test_module_order_rejects_non_strings():
    with pytest.raises(InputError, match="modules must be an iterable of str; got 'q'"):
        module_order("q")
    with pytest.raises(InputError, match="modules must hold str; got an item of type int"):
        module_order(["q", 3])


def test_layer_grid_columns_follow_the_block_order():
    results = [
        analyze_matrix(np.eye(3), name=f"model.layers.0.{m}.weight")
        for m in ("mlp.down_proj", "self_attn.q_proj")
    ]
    assert layer_grid(results, energy=0.9).modules == ("self_attn.q_proj", "mlp.down_proj")


def test_pandas_is_imported_only_by_to_pandas():
    import subprocess

    code = (
        "import sys, lowrank, lowrank.analysis, lowrank.plot, lowrank.cli\n"
        "assert 'pandas' not in sys.modules, 'pandas loaded at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
