"""Tests of lowrank.io: real files written with the real safetensors library and ml_dtypes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import pickle
import stat
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from lowrank.errors import (  # noqa: E402
    DTypeError,
    FileFormatError,
    InputError,
    MissingFileError,
    ShapeError,
)
from lowrank.io import (  # noqa: E402
    Selection,
    TensorInfo,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    list_tensors,
    load_matrix,
    load_tensor,
    load_tensors,
    matrix_shape,
    read_safetensors_metadata,
    save_safetensors,
    select,
)

BF16 = np.dtype(ml_dtypes.bfloat16)


# --------------------------------------------------------------------------------------
# helpers


def write_raw_safetensors(
    path: Path, header: Mapping[str, Any] | bytes, data: bytes = b"", *, length: int | None = None
) -> Path:
    """Write a safetensors file byte by byte, so that headers can be made wrong on purpose."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", size) + raw + data)
    return path


def spec(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Exact equality, bit for bit (NaN payloads and signed zeros included)."""
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def names(infos: Any) -> list[str]:
    return [i.name for i in infos]


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------
# safetensors: round trips and listing


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16, np.float64])
def test_safetensors_round_trip_is_exact(
    tmp_path: Path, rng: np.random.Generator, dtype: Any
) -> None:
    values = rng.standard_normal((7, 5)) * 1e3
    W = values.astype(dtype)
    W[0, 0] = -0.0  # signed zero must survive
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"W": W, "b": np.arange(3, dtype=dtype)}, metadata={"k": "v"})

    infos = {i.name: i for i in list_tensors(path)}
    assert infos["W"] == TensorInfo(
        name="W",
        shape=(7, 5),
        dtype=np.dtype(dtype).name,
        file=path,
        nbytes=W.nbytes,
        format="safetensors",
    )
    loaded = load_tensor(infos["W"])
    same_bits(loaded, W)
    assert loaded.flags.writeable
    assert read_safetensors_metadata(path) == {"k": "v"}


def test_bfloat16_loads_as_ml_dtypes_bfloat16(tmp_path: Path) -> None:
    W = np.array([[1.0, -2.5], [3.0e38, 1e-40]], dtype=np.float32).astype(BF16)
    path = tmp_path / "bf16.safetensors"
    save_safetensors(path, {"W": W})
    (info,) = list_tensors(path)
    assert info.dtype == "bfloat16"
    out = load_matrix(info)
    assert out.dtype == BF16  # stays bfloat16: the analysis layer converts
    same_bits(out, W)


def test_float8_tensor_is_read_raw_with_ml_dtypes(tmp_path: Path) -> None:
    # safetensors 0.8's numpy path cannot build float8 arrays; lowrank reads the bytes.
    W = np.array([[0.5, -1.0], [2.0, 448.0]], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
    path = tmp_path / "f8.safetensors"
    save_safetensors(path, {"q": W, "x": np.ones(3, np.float32)})
    info = next(i for i in list_tensors(path) if i.name == "q")
    assert info.dtype == "float8_e4m3fn"
    same_bits(load_tensor(info), W)


def test_non_contiguous_and_big_endian_arrays_are_saved_by_value(tmp_path: Path) -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = base[:, ::2]
    big = base.astype(">f8")
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"strided": strided, "big": big})
    loaded = load_tensors(path)
    np.testing.assert_array_equal(loaded["strided"], strided)
    np.testing.assert_array_equal(loaded["big"], big)


def test_empty_and_scalar_tensors_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    tensors: dict[str, np.ndarray] = {
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5, np.float64),
    }
    save_safetensors(path, tensors)
    loaded = load_tensors(path)
    assert loaded["empty"].shape == (0, 3)
    assert loaded["scalar"].shape == ()
    assert loaded["scalar"] == 2.5


def bytes_read() -> int:
    """Bytes this process has read through read() calls so far (Linux), else 0: the
    byte count, not a duration, shows that listing leaves the data alone."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:  # pragma: no cover - not Linux
        return 0
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("rchar:"))


def test_listing_reads_no_data(tmp_path: Path) -> None:
    # A 1 GiB tensor in a sparse file: listing must neither read nor allocate it, and
    # loading the small tensor beside it must allocate about that tensor only.
    big = 1 << 30
    path = write_raw_safetensors(
        tmp_path / "big.safetensors",
        {
            "big": spec("F32", [1 << 14, 1 << 14], 0, big),
            "small": spec("F32", [4, 4], big, big + 64),
        },
    )
    small = np.arange(16, dtype=np.float32).reshape(4, 4)
    with open(path, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(big, os.SEEK_CUR)  # leaves a hole: no bytes written for "big"
        fh.write(small.tobytes())

    tracemalloc.start()
    try:
        read_before = bytes_read()
        infos = list_tensors(path)
        read_by_listing = bytes_read() - read_before
        _, listing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded = load_tensor(infos[1])
        _, loading_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [i.nbytes for i in infos] == [big, 64]
    assert read_by_listing < 1 << 20, read_by_listing  # the header, not the 1 GiB
    assert listing_peak < 1 << 20, listing_peak  # < 1 MiB for a 1 GiB file
    assert loading_peak < 1 << 20, loading_peak
    np.testing.assert_array_equal(loaded, small)


def test_listing_order_follows_the_file(tmp_path: Path) -> None:
    data = np.arange(3, dtype=np.float32).tobytes()
    path = write_raw_safetensors(
        tmp_path / "o.safetensors",
        {"z": spec("F32", [1], 0, 4), "a": spec("F32", [2], 4, 12)},
        data,
    )
    assert names(list_tensors(path)) == ["z", "a"]


# --------------------------------------------------------------------------------------
# sharded checkpoints, npz, npy, directories


def make_sharded(directory: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {
        "model.layers.0.q.weight": rng.standard_normal((6, 4)).astype(BF16),
        "model.layers.0.q.bias": rng.standard_normal(6).astype(np.float32),
        "model.layers.1.q.weight": rng.standard_normal((6, 4)).astype(np.float16),
        "lm_head.weight": rng.standard_normal((3, 4)).astype(np.float32),
    }
    shard1 = {k: tensors[k] for k in list(tensors)[:2]}
    shard2 = {k: tensors[k] for k in list(tensors)[2:]}
    save_safetensors(directory / "model-00001-of-00002.safetensors", shard1)
    save_safetensors(directory / "model-00002-of-00002.safetensors", shard2)
    weight_map = dict.fromkeys(shard1, "model-00001-of-00002.safetensors")
    weight_map |= dict.fromkeys(shard2, "model-00002-of-00002.safetensors")
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    return tensors


def test_sharded_checkpoint_through_index_and_directory(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    tensors = make_sharded(tmp_path, rng)
    (tmp_path / "stray.npy").write_bytes(b"ignored: the index wins")
    via_index = list_tensors(tmp_path / "model.safetensors.index.json")
    via_directory = list_tensors(tmp_path)
    assert via_index == via_directory
    assert names(via_index) == list(tensors)  # the index's order
    assert {i.file.name for i in via_index} == {
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }
    for info in via_index:
        same_bits(load_tensor(info), tensors[info.name])


def test_index_ignores_tensors_it_does_not_name(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "s.safetensors", {"a": np.ones(2), "extra": np.ones(2)})
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s.safetensors"}}))
    assert names(list_tensors(index)) == ["a"]


def test_npy_and_npz(tmp_path: Path, rng: np.random.Generator) -> None:
    A = rng.standard_normal((5, 3)).astype(np.float32)
    B = rng.standard_normal((2, 2))
    C = np.asfortranarray(rng.standard_normal((3, 4)))
    np.save(tmp_path / "A.npy", A)
    np.savez(tmp_path / "plain.npz", B=B, C=C)
    np.savez_compressed(tmp_path / "packed.npz", B=B, C=C)

    (a,) = list_tensors(tmp_path / "A.npy")
    assert (a.name, a.shape, a.dtype, a.nbytes, a.format) == ("A", (5, 3), "float32", 60, "npy")
    same_bits(load_tensor(a), A)
    for archive in ("plain.npz", "packed.npz"):
        infos = list_tensors(tmp_path / archive)
        assert [(i.name, i.shape, i.format) for i in infos] == [
            ("B", (2, 2), "npz"),
            ("C", (3, 4), "npz"),
        ]
        np.testing.assert_array_equal(load_tensor(infos[0]), B)
        np.testing.assert_array_equal(load_tensor(infos[1]), C)


def test_npz_ignores_members_that_are_not_arrays(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, a=np.ones(2))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.txt", "not an array")
    assert names(list_tensors(path)) == ["a"]


def test_directory_reads_all_supported_files_sorted(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.ones((2, 2)))
    np.savez(tmp_path / "c.npz", c1=np.ones(2), c0=np.ones(3))
    save_safetensors(tmp_path / "a.safetensors", {"a": np.ones((1, 2), np.float32)})
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub.npy").mkdir()  # a directory with a supported suffix is not a file
    infos = list_tensors(tmp_path)
    assert names(infos) == ["a", "b", "c1", "c0"]
    assert [i.format for i in infos] == ["safetensors", "npy", "npz", "npz"]
    assert set(load_tensors(tmp_path)) == {"a", "b", "c1", "c0"}


def test_hand_built_tensor_info_is_normalised_and_loads(tmp_path: Path) -> None:
    W = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_safetensors(tmp_path / "w.safetensors", {"W": W})
    info = TensorInfo("W", [2, 3], "float32", str(tmp_path / "w.safetensors"), 24, "safetensors")  # type: ignore[arg-type]
    assert info == list_tensors(tmp_path / "w.safetensors")[0]
    assert hash(info) == hash(list_tensors(tmp_path / "w.safetensors")[0])
    np.testing.assert_array_equal(load_matrix(info), W)


def test_str_paths_are_accepted_and_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "w.npy", np.ones((2, 2)))
    monkeypatch.chdir(tmp_path)
    (info,) = list_tensors("w.npy")
    assert info.file == tmp_path / "w.npy"
    assert info.file.is_absolute()


# --------------------------------------------------------------------------------------
# selection


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    save_safetensors(
        path,
        {
            "enc.0.attn.q_proj.weight": np.ones((4, 3), np.float32),
            "enc.0.attn.v_proj.weight": np.ones((4, 3), BF16),
            "enc.0.attn.q_proj.bias": np.ones(4, np.float32),
            "enc.0.mlp.fc.weight": np.ones((5, 4), np.float16),
            "enc.0.conv.weight": np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2),
            "pos_ids": np.arange(6, dtype=np.int64).reshape(2, 3),
            "mask": np.ones((2, 2), bool),
            "q.qweight": np.ones((2, 2), np.uint8),
            "q.w8": np.ones((2, 2), np.int8),
            "fp8.weight": np.ones((2, 2), ml_dtypes.float8_e5m2),
            "cplx": np.ones((2, 2), np.complex64),
            "scale": np.array(1.0, np.float32),
            "empty.weight": np.zeros((0, 3), np.float32),
        },
    )
    return path


def skip_codes(selection: Selection) -> dict[str, str]:
    return {s.info.name: s.code for s in selection.skipped}


def test_default_selection_and_skip_reasons(checkpoint: Path) -> None:
    sel = select(checkpoint)
    assert sorted(names(sel.matrices)) == [
        "enc.0.attn.q_proj.weight",
        "enc.0.attn.v_proj.weight",
        "enc.0.mlp.fc.weight",
    ]
    assert skip_codes(sel) == {
        "enc.0.attn.q_proj.bias": "ndim",
        "scale": "ndim",
        "enc.0.conv.weight": "ndim",
        "pos_ids": "dtype",
        "mask": "dtype",
        "q.qweight": "dtype",
        "q.w8": "dtype",
        "fp8.weight": "dtype",
        "cplx": "dtype",
        "empty.weight": "empty",
    }
    reasons = {s.info.name: s.reason for s in sel.skipped}
    assert "1-D tensor" in reasons["enc.0.attn.q_proj.bias"]
    assert "0-D tensor" in reasons["scale"]
    assert 'nd_policy="flatten"' in reasons["enc.0.conv.weight"]
    assert "integer type" in reasons["pos_ids"]
    assert "bool is not floating" in reasons["mask"]
    assert "quantised" in reasons["q.qweight"]
    assert "quantised" in reasons["q.w8"]
    assert "quantised low-bit float" in reasons["fp8.weight"]
    assert "complex" in reasons["cplx"]
    assert "no entries" in reasons["empty.weight"]
    assert len(sel.matrices) + len(sel.skipped) == len(list_tensors(checkpoint))


def test_flatten_policy_reads_conv_kernels_as_out_by_in_kh_kw(checkpoint: Path) -> None:
    sel = select(checkpoint, include="*conv*", nd_policy="flatten")
    (conv,) = sel.matrices
    assert sel.nd_policy == "flatten"
    assert matrix_shape(conv, nd_policy="flatten") == (2, 12)
    kernel = load_tensor(conv)
    np.testing.assert_array_equal(load_matrix(conv, nd_policy="flatten"), kernel.reshape(2, 12))
    # The row of output channel o is kernel[o] flattened in (in, kh, kw) order.
    np.testing.assert_array_equal(load_matrix(conv, nd_policy="flatten")[1], kernel[1].ravel())


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"include": "*.weight"},
            {"enc.0.attn.q_proj.weight", "enc.0.attn.v_proj.weight", "enc.0.mlp.fc.weight"},
        ),
        (
            {"include": ["*q_proj*", "*v_proj*"]},
            {"enc.0.attn.q_proj.weight", "enc.0.attn.v_proj.weight"},
        ),
        ({"exclude": "*attn*"}, {"enc.0.mlp.fc.weight"}),
        ({"include": "*.weight", "exclude": ("*v_proj*", "*mlp*")}, {"enc.0.attn.q_proj.weight"}),
        ({"include": "q_proj"}, set()),  # globs match whole names
        ({"include": "*Q_PROJ*"}, set()),  # and are case-sensitive
        (
            {"include": r".*\.(q|v)_proj\.weight", "regex": True},
            {"enc.0.attn.q_proj.weight", "enc.0.attn.v_proj.weight"},
        ),
        ({"include": "q_proj", "regex": True}, set()),  # fullmatch, not search
        ({"exclude": [r"enc\.0\.attn\..*"], "regex": True}, {"enc.0.mlp.fc.weight"}),
        (
            {"include": []},
            {"enc.0.attn.q_proj.weight", "enc.0.attn.v_proj.weight", "enc.0.mlp.fc.weight"},
        ),  # empty: no filter
    ],
)
def test_include_exclude_patterns(
    checkpoint: Path, kwargs: dict[str, Any], expected: set[str]
) -> None:
    sel = select(checkpoint, **kwargs)
    assert set(names(sel.matrices)) == expected
    for skipped in sel.skipped:
        if skipped.code == "name":
            assert skipped.reason in (
                "name matches no include pattern",
                "name matches an exclude pattern",
            )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            # A pattern written for another architecture: names the closest matrix names,
            # one per family of names that differ only in their numbers.
            {"include": "*attn.k_proj.weight"},
            r"include pattern '\*attn\.k_proj\.weight' matches none of the 13 tensors in "
            r"'.*m\.safetensors' \(3 of them matrices\); the closest names: "
            r"'enc\.0\.attn\.q_proj\.weight', 'enc\.0\.attn\.v_proj\.weight', "
            r"'enc\.0\.mlp\.fc\.weight'$",
        ),
        (
            # Several patterns: the best of them; case is ignored in the comparison.
            {"include": ["nothing", "enc.0.mlp.FC.weight"], "regex": True},
            r"include patterns 'nothing', 'enc\.0\.mlp\.FC\.weight' match none of the 13 "
            r"tensors .*; the closest names: 'enc\.0\.mlp\.fc\.weight', ",
        ),
        (
            {"include": "enc.*", "exclude": "enc.0.*"},
            r"exclude pattern 'enc\.0\.\*' excludes all 5 of the 13 tensors in '.*' that "
            r"include pattern 'enc\.\*' matches",
        ),
        (
            {"exclude": "*"},
            r"exclude pattern '\*' excludes all of the 13 tensors in '.*' \(3 of them matrices\)",
        ),
        (
            {"include": "*.bias"},
            r"no matrix of the 13 tensors in '.*' is left by include pattern '\*\.bias': the 1 "
            r"tensor left is not a matrix \('enc\.0\.attn\.q_proj\.bias': 1-D tensor",
        ),
    ],
)
def test_patterns_that_select_no_matrix_are_an_error_naming_close_names(
    checkpoint: Path, kwargs: dict[str, Any], message: str
) -> None:
    assert select(checkpoint, **kwargs).matrices == ()  # without require_match: empty
    with pytest.raises(InputError, match=message):
        select(checkpoint, require_match=True, **kwargs)


def test_require_match_needs_patterns_and_a_bool(checkpoint: Path, tmp_path: Path) -> None:
    # No pattern: an empty selection is the checkpoint's, not a typo's, so no error.
    save_safetensors(tmp_path / "b.safetensors", {"bias": np.ones(3, np.float32)})
    assert select(tmp_path / "b.safetensors", require_match=True).matrices == ()
    infos = list_tensors(checkpoint)
    with pytest.raises(InputError, match=r"matches none of the 13 tensors given \("):
        select(infos, include="x", require_match=True)
    with pytest.raises(InputError, match="require_match must be a bool; got 'yes'"):
        select(checkpoint, require_match="yes")  # type: ignore[arg-type]


def test_select_accepts_listed_infos(checkpoint: Path) -> None:
    infos = list_tensors(checkpoint)
    assert select(infos, include="enc.*") == select(checkpoint, include="enc.*")
    assert select(iter(infos)).matrices == select(checkpoint).matrices


def test_tensor_info_is_picklable_and_loads_in_a_fresh_process(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    tensors = make_sharded(tmp_path, rng)
    sel = select(tmp_path, include="*.weight")
    assert pickle.loads(pickle.dumps(sel)) == sel
    # spawn: the worker starts from nothing and gets only the pickled TensorInfo.
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        results = list(pool.map(load_matrix, sel.matrices))
    for info, array in zip(sel.matrices, results, strict=True):
        same_bits(array, tensors[info.name])


def test_import_lowrank_io_does_not_import_safetensors_or_ml_dtypes() -> None:
    code = (
        "import sys, lowrank, lowrank.io\n"
        "bad = [m for m in ('safetensors', 'ml_dtypes', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------------------
# atomic writes


def test_atomic_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_bytes(tmp_path / "a.bin", memoryview(b"new"))
    atomic_write_text(tmp_path / "r.txt", "héllo\nworld\n")
    save_safetensors(tmp_path / "w.safetensors", {"W": np.ones((2, 2), BF16)})
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert (tmp_path / "r.txt").read_bytes() == "héllo\nworld\n".encode()  # no \r\n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "r.txt", "w.safetensors"]


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    seen: list[Path] = []

    def write_half_then_fail() -> None:
        with atomic_path(target) as temp:
            seen.append(temp)
            temp.write_text("half of the new cont")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_half_then_fail()
    assert seen[0].parent == tmp_path
    assert target.read_text() == "old"
    assert temp_files(tmp_path) == []


def test_save_safetensors_keeps_the_old_file_when_replace_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "w.safetensors"
    save_safetensors(target, {"old": np.ones(2, np.float32)})
    before = target.read_bytes()

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_safetensors(target, {"new": np.zeros((100, 100), np.float32)})
    assert target.read_bytes() == before
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_atomic_write_keeps_permissions_of_the_replaced_file(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_new_files_get_the_permissions_the_umask_gives(tmp_path: Path, umask: int) -> None:
    # safetensors' save_file writes its file with mode 0o600 whatever the umask: without
    # the atomic writer's chmod, weights would be 0o600 next to a 0o644 JSON file.
    previous = os.umask(umask)
    try:
        save_safetensors(tmp_path / "w.safetensors", {"W": np.ones((2, 2), np.float32)})
        atomic_write_text(tmp_path / "r.json", "{}")
        with atomic_path(tmp_path / "x.bin") as temp:
            temp.chmod(0o600)  # a writer that sets its own mode
    finally:
        os.umask(previous)
    for name in ("w.safetensors", "r.json", "x.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_io_errors_name_the_target_not_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    # A full disk: the write names no file; the error names the file asked for.
    with (  # noqa: PT012
        pytest.raises(OSError, match=r"No space left on device") as info,
        atomic_path(target) as temp,
    ):
        temp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(target))
    # A directory we may not write in: os.open of the temporary file is refused.
    real_open = os.open

    def refused(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".tmp") and args and args[0] & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", refused)
        with pytest.raises(PermissionError) as refusal:
            atomic_write_text(target, "new")
    assert refusal.value.filename == str(target)
    # Errors naming another file are kept as they are.
    with pytest.raises(FileNotFoundError) as other, atomic_path(target):
        (tmp_path / "elsewhere.txt").read_text()
    assert other.value.filename == str(tmp_path / "elsewhere.txt")
    assert target.read_text() == "old"
    assert temp_files(tmp_path) == []


def test_atomic_path_gives_up_when_every_temporary_name_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lowrank.io._atomic.secrets.token_hex", lambda n: "same")
    (tmp_path / ".x.txt.same.tmp").write_text("someone else's")
    with pytest.raises(
        FileExistsError, match=r"could not create a temporary file next to .*x\.txt"
    ):
        atomic_write_text(tmp_path / "x.txt", "new")


def test_atomic_write_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"directory of path must exist; .*nowhere"):
        atomic_write_text(tmp_path / "nowhere" / "x.txt", "a")
    with pytest.raises(InputError, match="path must name a file, not a directory"):
        atomic_write_bytes(tmp_path, b"a")
    with pytest.raises(InputError, match="data must be bytes, bytearray or memoryview; got str"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="text must be a str; got bytes"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_save_safetensors_input_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    with pytest.raises(
        InputError, match="tensors must be a mapping from names to arrays; got list"
    ):
        save_safetensors(path, [np.ones(2)])  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match="tensor names must be strings other than '__metadata__'; got 3"
    ):
        save_safetensors(path, {3: np.ones(2)})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="got '__metadata__'"):
        save_safetensors(path, {"__metadata__": np.ones(2)})
    with pytest.raises(InputError, match=r"tensors\['a'\] must be a numpy.ndarray; got list"):
        save_safetensors(path, {"a": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(
        DTypeError, match=r"tensors\['z'\] has dtype complex128, which safetensors cannot store"
    ):
        save_safetensors(path, {"z": np.ones(2, np.complex128)})
    with pytest.raises(DTypeError, match="has dtype object"):
        save_safetensors(path, {"o": np.array([None])})
    with pytest.raises(InputError, match=r"metadata must map strings to strings; got \{'n': 1\}"):
        save_safetensors(path, {"a": np.ones(2)}, metadata={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(MissingFileError, match="directory of path must exist"):
        save_safetensors(tmp_path / "no" / "w.safetensors", {"a": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# safetensors error paths: every message names the file (and the tensor)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError,
        match=r"path must be an existing file or directory; got .*nope\.safetensors",
    ):
        list_tensors(tmp_path / "nope.safetensors")


def test_truncated_file_cut_in_the_data(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "cut.safetensors"
    save_safetensors(path, {"W": rng.standard_normal((8, 8)).astype(np.float32)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        FileFormatError,
        match=(
            r"cut\.safetensors': tensor 'W' data_offsets \[0, 256\] point past the end of the "
            r"data region, which holds 246 bytes: the file is truncated"
        ),
    ):
        list_tensors(path)


def test_truncated_file_cut_in_the_header(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_safetensors(path, {"W": np.ones((8, 8), np.float32)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(
        FileFormatError,
        match=(
            r"cut\.safetensors' is truncated or not a safetensors file: its header length field "
            r"says \d+ bytes, but only 32 bytes follow it"
        ),
    ):
        list_tensors(path)


def test_file_shorter_than_the_length_field(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(
        FileFormatError,
        match=(
            r"tiny\.safetensors' is truncated: it holds 3 bytes, fewer than the 8-byte header "
            r"length"
        ),
    ):
        list_tensors(path)


def test_header_length_over_the_format_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 100_000_001))
        fh.truncate(100_000_100)  # sparse: nothing is written
    with pytest.raises(
        FileFormatError,
        match=(
            r"huge\.safetensors' has a header length of 100000001 bytes, more than the format's "
            r"limit"
        ),
    ):
        list_tensors(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            b'{"W": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]',
            r"header that is not valid JSON \(Expecting ',' delimiter",
        ),
        (b"\xff\xfe{}", r"header that is not UTF-8 text \(invalid start byte at byte 8\)"),
        (b"[1, 2]", "must have a JSON object as header; got list"),
        (
            b'{"W": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"W": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
            "has a header that names 'W' twice",
        ),
        (
            b'{"__metadata__": {"n": 1}}',
            r"__metadata__ must map strings to strings; got \{'n': 1\}",
        ),
        (b'{"__metadata__": [], "W": {}}', r"__metadata__ must map strings to strings; got \[\]"),
    ],
)
def test_corrupt_header(tmp_path: Path, header: bytes, message: str) -> None:
    path = write_raw_safetensors(tmp_path / "bad.safetensors", header, b"\x00" * 4)
    with pytest.raises(
        FileFormatError, match=r"safetensors file '.*bad\.safetensors'.* " + message
    ):
        list_tensors(path)


@pytest.mark.parametrize(
    ("entries", "data_size", "message"),
    [
        ({"W": [1, 2]}, 4, r"tensor 'W' must be described by a JSON object; got \[1, 2\]"),
        (
            {"W": spec("F99", [1], 0, 4)},
            4,
            r"tensor 'W' has unknown dtype 'F99'; known safetensors dtypes are BOOL, U8",
        ),
        ({"W": {"shape": [1], "data_offsets": [0, 4]}}, 4, "tensor 'W' has unknown dtype None"),
        (
            {"W": spec("F32", [2, -1], 0, 4)},
            4,
            r"tensor 'W' shape must be a list of non-negative integers; got \[2, -1\]",
        ),
        (
            {"W": spec("F32", [True], 0, 4)},
            4,
            r"tensor 'W' shape must be a list of non-negative integers; got \[True\]",
        ),
        (
            {"W": {"dtype": "F32", "shape": [1], "data_offsets": [0]}},
            4,
            r"tensor 'W' data_offsets must be \[begin, end\] with 0 <= begin <= end; got \[0\]",
        ),
        (
            {"W": spec("F32", [1], 4, 0)},
            4,
            r"tensor 'W' data_offsets must be \[begin, end\] with 0 <= begin <= end; got \[4, 0\]",
        ),
        (
            {"W": spec("F4", [3], 0, 2)},
            2,
            r"tensor 'W' shape \[3\] of dtype F4 does not fill whole bytes",
        ),
        (
            {"W": spec("F32", [4], 0, 16)},
            8,
            (
                r"tensor 'W' data_offsets \[0, 16\] point past the end of the data region, which "
                r"holds 8 bytes"
            ),
        ),
        (
            {"W": spec("F32", [3], 0, 8)},
            8,
            (
                r"tensor 'W' data_offsets \[0, 8\] span 8 bytes, but shape \[3\] of dtype F32 "
                r"needs 12 bytes"
            ),
        ),
        (
            {"A": spec("F32", [2], 0, 8), "B": spec("F32", [2], 4, 12)},
            12,
            r"tensor 'B' \(bytes \[4, 12\)\) overlaps tensor 'A', which ends at byte 8",
        ),
        (
            {"A": spec("F32", [1], 4, 8)},
            8,
            r"bytes \[0, 4\) of the data region before tensor 'A' belong to no tensor",
        ),
        (
            {"A": spec("F32", [1], 0, 4)},
            8,
            "the tensors cover 4 bytes, but the data region holds 8; the file has trailing bytes",
        ),
    ],
)
def test_inconsistent_header(
    tmp_path: Path, entries: dict[str, Any], data_size: int, message: str
) -> None:
    path = write_raw_safetensors(tmp_path / "bad.safetensors", entries, b"\x00" * data_size)
    with pytest.raises(FileFormatError, match=r"safetensors file '.*bad\.safetensors': " + message):
        list_tensors(path)


def test_metadata_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError, match=r"safetensors file '.*gone\.safetensors' does not exist"
    ):
        read_safetensors_metadata(tmp_path / "gone.safetensors")


def test_packed_four_bit_tensor_is_listed_but_not_loadable(tmp_path: Path) -> None:
    path = write_raw_safetensors(
        tmp_path / "f4.safetensors", {"W": spec("F4", [2, 2], 0, 2)}, b"\x00\x00"
    )
    (info,) = list_tensors(path)
    assert (info.dtype, info.nbytes) == ("float4_e2m1fn", 2)
    assert select(path).skipped[0].code == "dtype"
    with pytest.raises(
        DTypeError, match=r"tensor 'W' in '.*f4\.safetensors' has the packed sub-byte dtype F4"
    ):
        load_tensor(info)


# --------------------------------------------------------------------------------------
# files that change between listing and loading (a worker loads later)


def test_file_deleted_after_listing(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"W": np.ones((2, 2), np.float32)})
    (info,) = list_tensors(path)
    path.unlink()
    with pytest.raises(
        MissingFileError, match=r"safetensors file '.*w\.safetensors' does not exist"
    ):
        load_tensor(info)


def test_tensor_gone_or_changed_after_listing(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"W": np.ones((2, 2), np.float32)})
    (info,) = list_tensors(path)
    save_safetensors(path, {"V": np.ones((2, 2), np.float32)})
    with pytest.raises(
        FileFormatError, match=r"safetensors file '.*w\.safetensors' does not hold tensor 'W'"
    ):
        load_tensor(info)
    save_safetensors(path, {"W": np.ones((3, 2), np.float32)})
    with pytest.raises(
        FileFormatError,
        match=r"holds tensor 'W' as float32 \(3, 2\), not float32 \(2, 2\) as listed",
    ):
        load_tensor(info)


def test_data_are_read_only_from_the_file_version_of_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A header read from another version of the file (a file replaced between reading the
    # header and the data, simulated by handing load_tensor a header with another stamp)
    # is not used to read the data: its offsets hold only for the version it came from.
    # (lowrank reads the data itself; the safetensors library, which memory-maps the file,
    # is no longer used for reading.)
    import dataclasses

    import lowrank.io._safetensors as st_module
    from lowrank.io._safetensors_header import read_header

    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"W": np.ones((2, 2), np.float32)})
    (info,) = list_tensors(path)
    before = dataclasses.replace(read_header(path), stamp=(0, 0, 0, 0, 0))
    monkeypatch.setattr(st_module, "read_header", lambda p: before)
    with pytest.raises(
        FileFormatError,
        match=r"safetensors file '.*w\.safetensors' was replaced while tensors were being read",
    ):
        load_tensor(info)


# --------------------------------------------------------------------------------------
# index and directory error paths


def test_index_pointing_to_a_missing_shard(tmp_path: Path, rng: np.random.Generator) -> None:
    make_sharded(tmp_path, rng)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        MissingFileError,
        match=(
            r"index file '.*model\.safetensors\.index\.json' maps tensor "
            r"'model\.layers\.1\.q\.weight' to shard 'model-00002-of-00002\.safetensors', but "
            r"'.*' does not exist"
        ),
    ):
        list_tensors(tmp_path)


def test_index_naming_a_tensor_the_shard_lacks(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "s.safetensors", {"a": np.ones(2)})
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s.safetensors", "b": "s.safetensors"}}))
    with pytest.raises(
        FileFormatError,
        match=(
            r"index file '.*m\.safetensors\.index\.json' maps tensor 'b' to shard "
            r"'s\.safetensors', which does not hold it"
        ),
    ):
        list_tensors(index)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON: Expecting property name"),
        ("[]", 'must hold a JSON object with a "weight_map" object'),
        ('{"metadata": {}}', 'must hold a JSON object with a "weight_map" object'),
        ('{"weight_map": {"a": 3}}', 'must hold a JSON object with a "weight_map" object'),
        (
            '{"weight_map": {"a": "pytorch_model.bin"}}',
            "maps tensor 'a' to 'pytorch_model.bin'; shards must be .safetensors files",
        ),
        (
            '{"weight_map": {"a": "/abs/s.safetensors"}}',
            (
                r"maps tensor 'a' to '/abs/s\.safetensors'; shards must be \.safetensors files "
                r"named relative"
            ),
        ),
    ],
)
def test_bad_index_json(tmp_path: Path, content: str, message: str) -> None:
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(content)
    with pytest.raises(
        FileFormatError, match=r"index file '.*m\.safetensors\.index\.json' " + message
    ):
        list_tensors(index)


def test_index_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    index = tmp_path / "m.safetensors.index.json"
    index.write_bytes(b"\xff\xfe")
    with pytest.raises(FileFormatError, match="is not valid JSON: 'utf-8' codec can't decode"):
        list_tensors(index)


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError,
        match=r"directory '.*' holds no \.safetensors, \.npz or \.npy file and no index",
    ):
        list_tensors(tmp_path)
    np.save(tmp_path / "W.npy", np.ones(2))
    np.savez(tmp_path / "x.npz", W=np.ones(3))
    with pytest.raises(
        FileFormatError, match=r"tensor name 'W' appears in both '.*W\.npy' and '.*x\.npz'"
    ):
        list_tensors(tmp_path)
    for name in ("a.safetensors.index.json", "b.safetensors.index.json"):
        (tmp_path / name).write_text('{"weight_map": {}}')
    with pytest.raises(
        InputError,
        match=(
            r"holds several index files \(a\.safetensors\.index\.json, "
            r"b\.safetensors\.index\.json\); pass the one to read as path"
        ),
    ):
        list_tensors(tmp_path)
    assert list_tensors(tmp_path / "a.safetensors.index.json") == ()


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"pickle")
    with pytest.raises(
        InputError,
        match=(
            r"path must be a \.safetensors, \.npz or \.npy file, an \*\.index\.json or a "
            r"directory; got '.*pytorch_model\.bin'"
        ),
    ):
        list_tensors(path)


# --------------------------------------------------------------------------------------
# npy / npz error paths


def test_npy_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(
        FileFormatError, match=r"\.npy file '.*bad\.npy' has an unreadable header: .*magic"
    ):
        list_tensors(bad)
    future = tmp_path / "future.npy"
    future.write_bytes(b"\x93NUMPY\x09\x00" + b"\x00" * 16)
    with pytest.raises(
        FileFormatError,
        match=r"future\.npy' has an unreadable header: unsupported \.npy format version 9\.0",
    ):
        list_tensors(future)
    cut = tmp_path / "cut.npy"
    np.save(cut, np.ones((10, 10)))
    cut.write_bytes(cut.read_bytes()[:-8])
    with pytest.raises(
        FileFormatError,
        match=(
            r"\.npy file '.*cut\.npy' is truncated: its header promises 800 bytes of float64 data "
            r"of shape \(10, 10\), but only 792 bytes follow the header"
        ),
    ):
        list_tensors(cut)


def test_npy_versions_2_and_3_are_read(tmp_path: Path) -> None:
    A = np.arange(6.0).reshape(2, 3)
    for version in ((2, 0), (3, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        with open(path, "wb") as fh:
            np.lib.format.write_array(fh, A, version=version)
        (info,) = list_tensors(path)
        np.testing.assert_array_equal(load_tensor(info), A)


def test_npy_replaced_after_listing(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.ones((2, 2)))
    (info,) = list_tensors(path)
    np.save(path, np.ones((2, 3)))
    with pytest.raises(
        FileFormatError,
        match=r"'.*w\.npy' holds array 'w' as float64 \(2, 3\), not float64 \(2, 2\) as listed",
    ):
        load_tensor(info)
    path.write_bytes(b"garbage")
    with pytest.raises(FileFormatError, match=r"\.npy file '.*w\.npy' could not be read"):
        load_tensor(info)
    path.unlink()
    with pytest.raises(MissingFileError, match=r"\.npy file '.*w\.npy' does not exist"):
        load_tensor(info)


def test_object_arrays_are_listed_but_never_unpickled(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", o=np.array([None], dtype=object))
    for name in ("obj.npy", "obj.npz"):
        (info,) = list_tensors(tmp_path / name)
        assert info.dtype == "object"
        with pytest.raises(
            DTypeError, match=r"holds Python objects; lowrank does not load pickled data"
        ):
            load_tensor(info)


def test_npz_errors(tmp_path: Path) -> None:
    not_zip = tmp_path / "a.npz"
    not_zip.write_bytes(b"PK but not really")
    with pytest.raises(
        FileFormatError, match=r"\.npz file '.*a\.npz' is unreadable: File is not a zip file"
    ):
        list_tensors(not_zip)

    cut = tmp_path / "cut.npz"
    np.savez(cut, W=np.ones((10, 10)))
    cut.write_bytes(cut.read_bytes()[:-30])  # loses the central directory
    with pytest.raises(FileFormatError, match=r"cut\.npz' is unreadable"):
        list_tensors(cut)

    bad_member = tmp_path / "member.npz"
    with zipfile.ZipFile(bad_member, "w") as archive:
        archive.writestr("W.npy", b"garbage")
    with pytest.raises(
        FileFormatError, match=r"member 'W\.npy' of \.npz file '.*member\.npz' is unreadable"
    ):
        list_tensors(bad_member)

    short = tmp_path / "short.npz"
    payload = tmp_path / "payload.npy"
    np.save(payload, np.ones((4, 4), np.float32))
    with zipfile.ZipFile(short, "w") as archive:
        archive.writestr("W.npy", payload.read_bytes()[:-4])
    payload.unlink()
    with pytest.raises(
        FileFormatError,
        match=(
            r"member 'W\.npy' of \.npz file '.*short\.npz' is truncated: its header promises 64 "
            r"bytes"
        ),
    ):
        list_tensors(short)


def test_npz_corruption_found_at_load_time(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    W = np.arange(64, dtype=np.float64)
    np.savez(path, W=W)  # stored, not compressed: the data bytes are in the file as is
    (info,) = list_tensors(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(W[10:12].tobytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(
        FileFormatError,
        match=r"member 'W\.npy' of \.npz file '.*w\.npz' could not be read: Bad CRC-32",
    ):
        load_tensor(info)

    np.savez(path, V=W)
    with pytest.raises(FileFormatError, match=r"\.npz file '.*w\.npz' has no member 'W\.npy'"):
        load_tensor(info)
    path.unlink()
    with pytest.raises(MissingFileError, match=r"\.npz file '.*w\.npz' does not exist"):
        load_tensor(info)


# --------------------------------------------------------------------------------------
# selection and loading argument errors


def test_select_argument_errors(checkpoint: Path) -> None:
    with pytest.raises(
        InputError, match="nd_policy must be one of 'skip', 'flatten'; got 'reshape'"
    ):
        select(checkpoint, nd_policy="reshape")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="regex must be a bool; got 1"):
        select(checkpoint, regex=1)  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match="include must be None, a string or a sequence of strings; got 5"
    ):
        select(checkpoint, include=5)  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match=r"exclude must be None, a string or a sequence of strings; got \['a', 1\]"
    ):
        select(checkpoint, exclude=["a", 1])  # type: ignore[list-item]
    with pytest.raises(
        InputError, match=r"include pattern '\(q' must be a valid regular expression; missing \)"
    ):
        select(checkpoint, include="(q", regex=True)
    with pytest.raises(
        InputError,
        match="source must be a path or an iterable of TensorInfo; got items of type int",
    ):
        select([1, 2])  # type: ignore[list-item]


def test_load_matrix_errors(checkpoint: Path) -> None:
    infos = {i.name: i for i in list_tensors(checkpoint)}
    with pytest.raises(
        ShapeError,
        match=(
            r"tensor 'enc.0.attn.q_proj.bias' in '.*m\.safetensors': 1-D tensor of shape \(4,\) "
            r"is not a matrix"
        ),
    ):
        load_matrix(infos["enc.0.attn.q_proj.bias"])
    with pytest.raises(
        ShapeError,
        match=(
            r"4-D tensor of shape \(2, 3, 2, 2\) is not a matrix; nd_policy=\"flatten\" reads it "
            r"as"
        ),
    ):
        matrix_shape(infos["enc.0.conv.weight"])
    with pytest.raises(
        DTypeError,
        match=r"tensor 'pos_ids' in '.*' is not a matrix: dtype int64 is an integer type",
    ):
        load_matrix(infos["pos_ids"])
    with pytest.raises(InputError, match="nd_policy must be one of"):
        load_matrix(infos["enc.0.mlp.fc.weight"], nd_policy="auto")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="info must be a TensorInfo; got str"):
        load_matrix("enc.0.mlp.fc.weight")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"info must be a TensorInfo; got (Posix|Windows)Path"):
        load_tensor(checkpoint)  # type: ignore[arg-type]
    bogus = TensorInfo("W", (2, 2), "float32", checkpoint, 16, "bin")  # type: ignore[arg-type]
    with pytest.raises(
        InputError, match=r"info\.format must be one of 'safetensors', 'npz', 'npy'; got 'bin'"
    ):
        load_tensor(bogus)


def test_errors_are_also_builtin_exceptions(tmp_path: Path) -> None:
    # Callers that know nothing of lowrank can catch the built-in types.
    with pytest.raises(FileNotFoundError):
        list_tensors(tmp_path / "missing.npy")
    path = write_raw_safetensors(tmp_path / "bad.safetensors", b"{", b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        list_tensors(path)


# --------------------------------------------------------------------------------------
# arguments checked at the boundary (issue 11 section 2): the parameter, the rule, the value


@pytest.mark.parametrize("bad", [3, None, ""])
@pytest.mark.parametrize(
    "call",
    [
        lambda p: list_tensors(p),
        lambda p: load_tensors(p),
        lambda p: read_safetensors_metadata(p),
        lambda p: save_safetensors(p, {"W": np.ones(2)}),
        lambda p: atomic_write_bytes(p, b"x"),
        lambda p: atomic_write_text(p, "x"),
        lambda p: atomic_path(p).__enter__(),
    ],
    ids=[
        "list_tensors",
        "load_tensors",
        "read_safetensors_metadata",
        "save_safetensors",
        "atomic_write_bytes",
        "atomic_write_text",
        "atomic_path",
    ],
)
def test_path_arguments_must_be_paths(call: Any, bad: object) -> None:
    with pytest.raises(
        InputError, match=rf"path must be a non-empty path \(str or os\.PathLike\); got {bad!r}"
    ):
        call(bad)


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        (3, r"encoding must be a string; got 3 of type int"),
        (None, r"encoding must be a string; got None of type NoneType"),
        ("", r"encoding must be a non-empty string; got ''"),
        ("no-such-codec", r"encoding must name a text encoding \(e\.g\. 'utf-8'\); got 'no-such"),
        ("base64", r"encoding must name a text encoding \(e\.g\. 'utf-8'\); got 'base64'"),
        ("ascii", r"text cannot be written with encoding='ascii': .*codec can't encode"),
    ],
)
def test_atomic_write_text_checks_the_encoding(
    tmp_path: Path, encoding: object, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        atomic_write_text(tmp_path / "t.txt", "café", encoding=encoding)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # checked before any file is made


@pytest.mark.parametrize("bad", ["x", 3, None])
def test_matrix_shape_checks_info(bad: object) -> None:
    with pytest.raises(InputError, match=rf"info must be a TensorInfo; got {type(bad).__name__}"):
        matrix_shape(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (3, r"source must be a path \(str or os\.PathLike\) or an iterable of TensorInfo; got 3 "),
        (None, r"source must be a path .* or an iterable of TensorInfo; got None of type None"),
        (b"m.npy", r"source must be a path .* or an iterable of TensorInfo; got b'm\.npy'"),
        ("", r"source must be a non-empty path \(str or os\.PathLike\); got ''"),
    ],
)
def test_select_checks_source(source: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        select(source)  # type: ignore[arg-type]


def test_select_names_a_missing_source(tmp_path: Path) -> None:
    # The sentence starts as list_tensors' (the command line shows it) and names source.
    with pytest.raises(
        MissingFileError,
        match=r"^path must be an existing file or directory; got '.*gone\.npz' as source$",
    ):
        select(tmp_path / "gone.npz")


def test_read_safetensors_metadata_names_path(tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError,
        match=r"path must be an existing file; safetensors file '.*gone\.safetensors' does not",
    ):
        read_safetensors_metadata(tmp_path / "gone.safetensors")
    with pytest.raises(InputError, match=r"path must be a \.safetensors file, not a directory"):
        read_safetensors_metadata(tmp_path)


@pytest.mark.parametrize("bad", [3, None])
def test_peft_readers_check_directory(tmp_path: Path, bad: object) -> None:
    from lowrank.io import load_peft_adapter, read_peft_config

    for read in (read_peft_config, load_peft_adapter):
        with pytest.raises(
            InputError,
            match=rf"directory must be a non-empty path \(str or os\.PathLike\); got {bad!r}",
        ):
            read(bad)  # type: ignore[arg-type]


def test_peft_readers_name_a_missing_directory(tmp_path: Path) -> None:
    from lowrank.io import load_peft_adapter, read_peft_config

    for read in (read_peft_config, load_peft_adapter):
        with pytest.raises(
            MissingFileError,
            match=r"directory must name an adapter folder that exists; got '.*nowhere', which",
        ):
            read(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"directory": 3}, r"directory must be a non-empty path \(str or os\.PathLike\); got 3"),
        ({"directory": None}, r"directory must be a non-empty path .*; got None"),
        ({"base_model_name_or_path": 3}, r"base_model_name_or_path must be a string; got 3"),
        ({"base_model_name_or_path": ""}, r"base_model_name_or_path must be a non-empty string"),
        ({"task_type": 3}, r"task_type must be a string; got 3 of type int"),
        ({"task_type": ""}, r"task_type must be a non-empty string; got ''"),
        ({"overwrite": "yes"}, r"overwrite must be True or False; got 'yes' of type str"),
        ({"modules": {}}, r"modules must be a non-empty mapping .*; got an empty mapping"),
        ({"modules": [1]}, r"modules must be a non-empty mapping .*; got list"),
    ],
)
def test_save_peft_adapter_checks_arguments_before_the_folder(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    from lowrank.io import save_peft_adapter

    A, B = np.ones((2, 3), np.float32), np.zeros((4, 2), np.float32)
    call: dict[str, Any] = {
        "directory": tmp_path / "ad",
        "modules": {"fc": (A, B)},
        "config": {"r": 2, "lora_alpha": 4},
    }
    save_peft_adapter(**call)
    # The folder now holds an adapter, yet a bad argument is reported, not the folder.
    with pytest.raises(InputError, match=message):
        save_peft_adapter(**{**call, **kwargs})


class TestDistinctPaths:
    """lowrank.io._paths: outputs that would replace inputs or each other."""

    def test_input_files_of_a_file_an_index_and_a_directory(self, tmp_path):
        from lowrank.io._paths import input_files

        save_safetensors(tmp_path / "s1.safetensors", {"a": np.ones((2, 2), np.float32)})
        index = tmp_path / "m.safetensors.index.json"
        index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors"}}))
        (tmp_path / "adapter_config.json").write_text("{}")
        (tmp_path / "notes.txt").write_text("x")
        assert input_files(tmp_path / "s1.safetensors") == (tmp_path / "s1.safetensors",)
        assert input_files(index) == (index, tmp_path / "s1.safetensors")
        assert set(input_files(tmp_path)) == {
            tmp_path,
            tmp_path / "adapter_config.json",
            index,
            tmp_path / "s1.safetensors",
        }
        # An unreadable index is its reader's error to report; here it stands for itself.
        index.write_text("{not json")
        assert input_files(index) == (index,)
        assert input_files(tmp_path / "missing") == (tmp_path / "missing",)

    def test_refusals_name_both_arguments(self, tmp_path):
        from lowrank.io._paths import check_distinct_paths

        src = tmp_path / "m.safetensors"
        save_safetensors(src, {"a": np.ones((2, 2), np.float32)})
        with pytest.raises(
            InputError,
            match=r"^'out' would overwrite the input 'source': both name '.*m\.safetensors'; "
            "write the output elsewhere$",
        ):
            check_distinct_paths(
                [("out", tmp_path / "x" / ".." / "m.safetensors")], [("source", src)]
            )
        with pytest.raises(InputError, match=r"^'a' and 'b' name the same file '.*r\.json'"):
            check_distinct_paths([("a", tmp_path / "r.json"), ("b", tmp_path / "r.json")])
        with pytest.raises(
            InputError, match=r"^'out' would write into the input 'source': both name the dir"
        ):
            check_distinct_paths([], [("source", tmp_path)], folders=[("out", tmp_path)])
        with pytest.raises(InputError, match="out must be a non-empty path"):
            check_distinct_paths([("out", "")], [("source", src)])
        # Distinct files, None entries and a folder that is not an input are fine.
        check_distinct_paths(
            [("out", tmp_path / "r.json"), ("csv", None)],
            [("source", src), ("base", None)],
            folders=[("dir", tmp_path / "ad")],
        )


# --------------------------------------------------------------------------------------
# audit io3: replaced files, duplicate entries, null metadata


def _replace_keeping_size_and_mtime(path: Path, new: Path) -> None:
    """``new`` takes ``path``'s place with ``path``'s mtime, as ``cp -p`` or ``rsync -a`` do."""
    st = path.stat()
    assert new.stat().st_size == st.st_size
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)
    assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_same_size_same_mtime_replacement_is_read_afresh_float8(tmp_path: Path) -> None:
    # The header was cached by (path, size, mtime): the float8 tensors, read by offset from
    # the cached header, came back with each other's bytes (a=4, b=3).
    e4 = np.dtype(ml_dtypes.float8_e4m3fn)
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"a": np.full(8, 1.0).astype(e4), "b": np.full(8, 2.0).astype(e4)})
    assert [load_tensor(i).astype(np.float32)[0] for i in list_tensors(path)] == [1.0, 2.0]
    # Same names, shapes and header length; b's bytes now come first.
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    entries = {"a": spec("F8_E4M3", [8], 8, 16), "b": spec("F8_E4M3", [8], 0, 8)}
    header = json.dumps(entries, separators=(",", ":"))
    padded = header.encode().ljust(length)
    data = np.full(8, 4.0).astype(e4).tobytes() + np.full(8, 3.0).astype(e4).tobytes()
    new = write_raw_safetensors(tmp_path / "new.safetensors", padded, data)
    _replace_keeping_size_and_mtime(path, new)
    got = {i.name: load_tensor(i).astype(np.float32)[0] for i in list_tensors(path)}
    assert got == {"a": 3.0, "b": 4.0}


def test_same_size_same_mtime_replacement_lists_the_new_shape(tmp_path: Path) -> None:
    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"w": np.arange(8, dtype=np.float32).reshape(2, 4)})
    assert list_tensors(path)[0].shape == (2, 4)
    new = tmp_path / "s2.safetensors"
    save_safetensors(new, {"w": np.arange(8, dtype=np.float32).reshape(4, 2)})
    _replace_keeping_size_and_mtime(path, new)
    (info,) = list_tensors(path)
    assert info.shape == (4, 2) and load_tensor(info).shape == (4, 2)


def test_rewritten_in_place_with_the_old_mtime_is_read_afresh(tmp_path: Path) -> None:
    # Same inode, size and mtime: only the ctime tells the versions apart.
    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"w": np.arange(8, dtype=np.float32).reshape(2, 4)})
    assert list_tensors(path)[0].shape == (2, 4)
    st = path.stat()
    other = tmp_path / "o.safetensors"
    save_safetensors(other, {"w": np.arange(8, dtype=np.float32).reshape(4, 2)})
    with open(path, "r+b") as fh:
        fh.write(other.read_bytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns
    if path.stat().st_ctime_ns == st.st_ctime_ns:
        pytest.skip("the file system's ctime did not change within its resolution")
    assert list_tensors(path)[0].shape == (4, 2)


def test_stale_header_offsets_past_the_end_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should a stale header still be used (no stamp to compare), data it places past the
    # end of the file are refused before any array is allocated.
    import lowrank.io._safetensors as st_module
    from lowrank.io._safetensors_header import Entry, Header

    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"w": np.arange(8, dtype=np.float32).reshape(4, 2)})
    stale = TensorInfo("w", (2, 4), "float32", path, 32, "safetensors")
    begin = path.stat().st_size - 16
    header = Header(entries={"w": Entry(info=stale, code="F32", begin=begin)}, metadata={})
    monkeypatch.setattr(st_module, "read_header", lambda p: header)
    with pytest.raises(FileFormatError, match=r"ended after 16 of the 32 bytes at offset"):
        load_tensor(stale)


def test_float8_read_checks_the_file_is_the_header_s(tmp_path: Path) -> None:
    from lowrank.io._safetensors import _read_raw

    path = tmp_path / "f.safetensors"
    e4 = np.dtype(ml_dtypes.float8_e4m3fn)
    save_safetensors(path, {"a": np.ones(4).astype(e4)})
    with pytest.raises(FileFormatError, match="was replaced while tensors were being read"):
        _read_raw(path, 8, e4, (4,), (0, 0, 0, 0, 0))
    with pytest.raises(FileFormatError, match="ended after 0 of the 4 bytes"):
        _read_raw(path, path.stat().st_size, e4, (4,), ())


def test_npz_with_a_member_twice_is_refused(tmp_path: Path) -> None:
    import io
    import warnings

    def npy(a: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, a)
        return buffer.getvalue()

    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name"
        archive.writestr("w.npy", npy(np.ones((2, 2))))
        archive.writestr("w.npy", npy(np.full((3, 3), 7.0)))
    with pytest.raises(FileFormatError, match=r"holds member 'w\.npy' twice"):
        list_tensors(path)


def test_index_naming_a_tensor_twice_is_refused(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "model-1.safetensors", {"a": np.ones(2, np.float32)})
    save_safetensors(tmp_path / "model-2.safetensors", {"b": np.ones(2, np.float32)})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(
        '{"weight_map": {"a": "model-1.safetensors", "a": "model-2.safetensors", '
        '"b": "model-2.safetensors"}}'
    )
    for source in (index, tmp_path):
        with pytest.raises(FileFormatError, match=r"index file .* names 'a' twice"):
            list_tensors(source)


def test_null_metadata_is_no_metadata(tmp_path: Path) -> None:
    data = np.arange(4, dtype=np.float32)
    path = write_raw_safetensors(
        tmp_path / "m.safetensors",
        {"__metadata__": None, "a": spec("F32", [4], 0, 16)},
        data.tobytes(),
    )
    assert read_safetensors_metadata(path) == {}
    (info,) = list_tensors(path)
    same_bits(load_tensor(info), data)
    same_bits(safetensors_numpy.load_file(str(path))["a"], data)  # the library agrees
