"""Audit io6: weight files truncated while read, FIFOs, hostile headers/archives, write errors.

Grouped by defect of the audit report:

1. A ``.safetensors`` file truncated or replaced after it was listed: a ``FileFormatError``
   before the library maps it (a truncation *during* the library's copy out of its memory
   map remains a ``SIGBUS``, as for every mapping reader); float8 tensors are read with
   ``read`` calls, which report a truncation at any time.
2. A named pipe (FIFO) given as a weight file: a prompt lowrank error, no hang.
3. Hostile JSON (digit limit, deep nesting) in headers and indexes, and ``.npz`` archives
   with unsupported compression, encryption, or sizes that lie: ``FileFormatError``.
4. A full disk while writing: the documented ``OSError``, naming the target file.
5. Impossible shapes refused at listing; index shards outside the index's directory.

Tests that would crash or hang the old code run in a child process (the timeout there is
only a guard against a hang, not part of what is checked).
"""

from __future__ import annotations

import io
import json
import lzma
import os
import re
import resource
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
safetensors = pytest.importorskip("safetensors")

import lowrank  # noqa: E402
from lowrank.errors import FileFormatError, InputError  # noqa: E402
from lowrank.io import (  # noqa: E402
    TensorInfo,
    list_tensors,
    load_tensor,
    save_peft_adapter,
    save_safetensors,
)

ROOT = Path(lowrank.__file__).resolve().parents[1]


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout of lowrank."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang only
        env=env,
        check=False,
    )


def write_raw_safetensors(path: Path, header: Mapping[str, Any] | bytes, data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


# --------------------------------------------------------------------------------------
# 1. reading a file truncated or replaced after it was listed


def test_file_truncated_after_listing_is_refused_before_the_library_maps_it(
    tmp_path: Path,
) -> None:
    # Before: the library mapped the short file (a SIGBUS if it was cut inside the tensor's
    # byte range while being copied, its own error otherwise); now the size is checked first.
    path = tmp_path / "r.safetensors"
    save_safetensors(path, {"w": np.ones(1 << 16, np.float32)})
    (info,) = list_tensors(path)
    os.truncate(path, 4096)
    # The changed file is read again (its header cache key changed): its header no longer fits.
    with pytest.raises(FileFormatError, match=r"r\.safetensors': tensor 'w' data_offsets .* past"):
        load_tensor(info)


class _TruncatingHandle:
    """A file handle that truncates its file before the first data read."""

    def __init__(self, fh: Any, path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size

    def __enter__(self) -> _TruncatingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def readinto(self, buffer: Any) -> int:
        os.truncate(self.path, self.size)
        return int(self.fh.readinto(buffer))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int64", "float8_e4m3fn"])
def test_truncation_between_check_and_read_is_a_file_format_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """Truncated after lowrank's checks but before the data are read: the library's own
    size check (it maps the file only if it holds every tensor) or, for float8, the short
    ``read``, reports it."""
    import safetensors

    import lowrank.io._safetensors as st

    path = tmp_path / "t.safetensors"
    np_dtype = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    save_safetensors(path, {"w": np.zeros(1 << 16, np.uint8).view(np_dtype)})
    (info,) = list_tensors(path)
    real_open = st.open_regular
    monkeypatch.setattr(
        st, "open_regular", lambda p, what: _TruncatingHandle(real_open(p, what), p, 100)
    )
    real_safe_open = safetensors.safe_open

    def truncating_safe_open(p: str, framework: str) -> Any:
        os.truncate(p, 100)
        return real_safe_open(p, framework=framework)

    monkeypatch.setattr(safetensors, "safe_open", truncating_safe_open)
    message = "ended after" if dtype.startswith("float8") else "could not read tensor 'w'"
    with pytest.raises(FileFormatError, match=message):
        load_tensor(info)


def test_file_replaced_after_listing_is_not_read_with_the_old_offsets(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"a": np.ones(4, np.float32), "b": np.full(4, 2.0, np.float32)})
    infos = {info.name: info for info in list_tensors(path)}
    # Rewritten in place with another layout: the new header is used, not the old one.
    save_safetensors(path, {"b": np.full(4, 3.0, np.float32)})
    np.testing.assert_array_equal(load_tensor(infos["b"]), np.full(4, 3.0, np.float32))
    with pytest.raises(FileFormatError, match="does not hold tensor 'a'"):
        load_tensor(infos["a"])


def _random_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    names = [
        "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
        "float16", "bfloat16", "float32", "float64", "complex64", "float8_e4m3fn",
        "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    ]  # fmt: skip
    tensors = {}
    for i, name in enumerate(names):
        dtype = np.dtype(getattr(ml_dtypes, name, None) or name)
        shape = (3, 1 + i % 4, 5) if i % 3 else (7,)
        raw = rng.integers(0, 256, size=math_prod(shape) * dtype.itemsize, dtype=np.uint8)
        tensors[name] = raw.view(dtype).reshape(shape)  # every bit pattern, NaNs included
    tensors["scalar"] = np.array(1.5, dtype=np.float64)
    tensors["empty"] = np.zeros((0, 3), np.float32)
    tensors["odd"] = np.arange(3, dtype=np.uint8)  # leaves the later offsets unaligned
    return tensors


def math_prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def test_every_dtype_is_read_bit_exactly_as_the_library_and_the_raw_bytes(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from safetensors import safe_open

    path = tmp_path / "all.safetensors"
    tensors = _random_tensors(rng)
    save_safetensors(path, tensors)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    for info in list_tensors(path):
        loaded = load_tensor(info)
        expected = tensors[info.name]
        assert loaded.dtype == expected.dtype and loaded.shape == expected.shape, info.name
        assert loaded.flags.writeable, info.name
        begin, end = header[info.name]["data_offsets"]
        stored = raw[8 + length + begin : 8 + length + end]
        assert loaded.tobytes() == stored == expected.tobytes(), info.name
        if not info.dtype.startswith("float8"):  # the library's NumPy path lacks float8
            with safe_open(os.fspath(path), framework="np") as fh:
                reference = fh.get_tensor(info.name)
            assert reference.dtype == loaded.dtype, info.name
            assert reference.tobytes() == loaded.tobytes(), info.name


def test_a_tensor_is_read_into_its_array_without_a_second_copy(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    size = 16 << 20
    save_safetensors(path, {"w": np.ones(size // 2, np.float16).astype(ml_dtypes.bfloat16)})
    (info,) = list_tensors(path)
    load_tensor(info)  # imports and header cache out of the measurement
    tracemalloc.start()
    try:
        array = load_tensor(info)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert array.nbytes == size
    assert peak < size * 1.2, peak


def test_more_dimensions_than_numpy_holds_is_a_file_format_error(tmp_path: Path) -> None:
    path = write_raw_safetensors(
        tmp_path / "d.safetensors",
        {"a": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}},
        b"\0" * 4,
    )
    (info,) = list_tensors(path)
    with pytest.raises(FileFormatError, match=r"could not read tensor 'a' .*d\.safetensors"):
        load_tensor(info)


# --------------------------------------------------------------------------------------
# 2. named pipes


FIFO_CHILD = """
import json, os, sys
from pathlib import Path
from lowrank.errors import LowRankError
from lowrank.io import list_tensors, load_tensor, read_safetensors_metadata, select
from lowrank.io import save_safetensors, TensorInfo
import numpy as np

d = Path(sys.argv[1])
for name in ("pipe.safetensors", "pipe.npy", "pipe.npz", "pipe.safetensors.index.json"):
    os.mkfifo(d / name)
(d / "ix").mkdir()
os.mkfifo(d / "ix" / "shard.safetensors")
(d / "ix" / "model.safetensors.index.json").write_text(
    json.dumps({"weight_map": {"w": "shard.safetensors"}})
)
save_safetensors(d / "gone.safetensors", {"w": np.ones((2, 2), np.float32)})
(info,) = list_tensors(d / "gone.safetensors")
os.unlink(d / "gone.safetensors")
os.mkfifo(d / "gone.safetensors")
calls = {
    "list safetensors": lambda: list_tensors(d / "pipe.safetensors"),
    "select": lambda: select(d / "pipe.safetensors"),
    "metadata": lambda: read_safetensors_metadata(d / "pipe.safetensors"),
    "list npy": lambda: list_tensors(d / "pipe.npy"),
    "list npz": lambda: list_tensors(d / "pipe.npz"),
    "list index": lambda: list_tensors(d / "pipe.safetensors.index.json"),
    "shard": lambda: list_tensors(d / "ix"),
    "load replaced by fifo": lambda: load_tensor(info),
}
for label, call in calls.items():
    try:
        call()
        print(label, "| no error")
    except LowRankError as exc:
        print(label, "|", type(exc).__name__, "|", exc)
"""


def test_named_pipes_are_refused_promptly_with_a_clear_error(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    result = run_child(FIFO_CHILD, str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" | ", 1) for line in result.stdout.splitlines())
    assert set(lines) == {
        "list safetensors",
        "select",
        "metadata",
        "list npy",
        "list npz",
        "list index",
        "shard",
        "load replaced by fifo",
    }
    for label, outcome in lines.items():
        kind, _, message = outcome.partition(" | ")
        assert kind == "InputError", (label, outcome)
        assert "named pipe (FIFO)" in message, (label, outcome)
        assert "does not exist" not in message, (label, outcome)
    assert "pipe.npy" in lines["list npy"]
    assert "shard.safetensors" in lines["shard"]


def test_a_directory_with_a_weight_suffix_is_not_read_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "d.safetensors").mkdir()
    from lowrank.io import read_safetensors_metadata

    with pytest.raises(InputError, match="not a directory"):
        read_safetensors_metadata(tmp_path / "d.safetensors")


# --------------------------------------------------------------------------------------
# 3. hostile JSON and archives


HUGE_INT = b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'
DEEP = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [(HUGE_INT, r"is not valid JSON \(Exceeds the limit"), (DEEP, "nests JSON arrays or objects")],
    ids=["huge-int", "deep-nesting"],
)
def test_hostile_header_json_is_a_file_format_error(
    tmp_path: Path, raw: bytes, message: str
) -> None:
    path = write_raw_safetensors(tmp_path / "h.safetensors", raw, b"\0" * 4)
    with pytest.raises(FileFormatError, match=rf"h\.safetensors' has a header that {message}"):
        list_tensors(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"weight_map": {"w": ' + b"9" * 5000 + b"}}", r"is not valid JSON: Exceeds"),
        (b'{"weight_map": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nests JSON arrays"),
    ],
    ids=["huge-int", "deep-nesting"],
)
def test_hostile_index_json_is_a_file_format_error(
    tmp_path: Path, raw: bytes, message: str
) -> None:
    from lowrank.io._paths import check_distinct_paths

    index = tmp_path / "model.safetensors.index.json"
    index.write_bytes(raw)
    with pytest.raises(FileFormatError, match=rf"index file '.*index\.json' {message}"):
        list_tensors(index)
    with pytest.raises(FileFormatError, match=message):
        list_tensors(tmp_path)
    # Checking outputs against the index's files must not fail on it either.
    check_distinct_paths([("--json", tmp_path / "out.json")], [("checkpoint", index)])


def _npz_with(tmp_path: Path, name: str, patch: Any) -> Path:
    path = tmp_path / name
    np.savez(path, w=np.ones((2, 2)))
    raw = bytearray(path.read_bytes())
    patch(raw, raw.rfind(b"PK\x01\x02"))
    path.write_bytes(bytes(raw))
    return path


def test_npz_with_an_unsupported_compression_method_is_a_file_format_error(
    tmp_path: Path,
) -> None:
    def method_97(raw: bytearray, central: int) -> None:
        struct.pack_into("<H", raw, central + 10, 97)
        struct.pack_into("<H", raw, 8, 97)

    path = _npz_with(tmp_path, "method.npz", method_97)
    with pytest.raises(FileFormatError, match=r"member 'w\.npy' of \.npz file '.*method\.npz'"):
        list_tensors(path)
    info = TensorInfo("w", (2, 2), "float64", path, 32, "npz")
    with pytest.raises(FileFormatError, match=r"compression method is not supported"):
        load_tensor(info)


def test_npz_with_an_encrypted_member_is_a_file_format_error(tmp_path: Path) -> None:
    def encrypted(raw: bytearray, central: int) -> None:
        struct.pack_into("<H", raw, central + 8, raw[central + 8] | 1)
        struct.pack_into("<H", raw, 6, raw[6] | 1)

    path = _npz_with(tmp_path, "enc.npz", encrypted)
    with pytest.raises(FileFormatError, match=r"enc\.npz' is unreadable: .*encrypted"):
        list_tensors(path)
    info = TensorInfo("w", (2, 2), "float64", path, 32, "npz")
    with pytest.raises(FileFormatError, match=r"enc\.npz' could not be read: .*encrypted"):
        load_tensor(info)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def test_npz_that_lies_about_a_terabyte_is_refused_without_allocating(tmp_path: Path) -> None:
    # 202 bytes: a deflated member whose .npy header says (2**37,) float64 and whose zip64
    # central directory claims the 1 TiB that needs.
    header = _npy_header((2**37,))
    member = header + b"\0" * 64
    claimed = len(header) + 8 * 2**37
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = compressor.compress(member) + compressor.flush()
    crc, name = zlib.crc32(member), b"w.npy"
    local = (
        struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, len(packed), len(member),
            len(name), 0,
        )
        + name
        + packed
    )  # fmt: skip
    extra = struct.pack("<HHQ", 1, 8, claimed)
    central = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 8, 0, 0, crc, len(packed),
            0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0,
        )
        + name
        + extra
    )  # fmt: skip
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    path = tmp_path / "bomb.npz"
    path.write_bytes(local + central + end)
    with pytest.raises(FileFormatError, match=r"claims 1099511627\d+ bytes, but its \d+ deflated"):
        list_tensors(path)
    info = TensorInfo("w", (2**37,), "float64", path, 8 * 2**37, "npz")
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match=r"bomb\.npz"):
            load_tensor(info)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_npz_member_of_another_method_that_lies_is_read_without_allocating_the_lie(
    tmp_path: Path,
) -> None:
    # An LZMA member (no bound on its expansion) whose header says (2**27,) float64, 1 GiB,
    # and whose directory claims as much, but which holds 64 bytes of data.
    member = _npy_header((2**27,)) + b"\0" * 64
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as archive:
        archive.writestr("w.npy", member)
    raw = bytearray(path.read_bytes())
    claimed = len(member) - 64 + 8 * 2**27
    central = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, claimed)
    struct.pack_into("<I", raw, 22, claimed)
    path.write_bytes(bytes(raw))
    assert lzma  # the archive above needs it
    (info,) = list_tensors(path)
    assert info.nbytes == 8 * 2**27
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match=r"lie\.npz'") as caught:
            load_tensor(info)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak  # the old code allocated the 1 GiB the header claims
    assert re.search(r"is truncated: .* only 64 bytes follow the header", str(caught.value))


def test_npz_and_npy_loads_keep_numpy_values_and_layout(tmp_path: Path) -> None:
    fortran = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    np.savez_compressed(tmp_path / "c.npz", f=fortran, b=big_endian)
    np.savez(tmp_path / "s.npz", f=fortran, b=big_endian)
    np.save(tmp_path / "f.npy", fortran)
    for name in ("c.npz", "s.npz", "f.npy"):
        for info in list_tensors(tmp_path / name):
            loaded = load_tensor(info)
            reference = np.load(tmp_path / name)
            expected = reference if name.endswith(".npy") else reference[info.name]
            assert loaded.dtype == expected.dtype and loaded.shape == expected.shape
            np.testing.assert_array_equal(loaded, expected)
            assert loaded.flags.writeable


# --------------------------------------------------------------------------------------
# 4. write errors


WRITE_FAIL_CHILD = """
import json, os, resource, signal, sys
import numpy as np
from lowrank.io import list_tensors, save_peft_adapter, save_safetensors

d = sys.argv[1]
path = os.path.join(d, "m.safetensors")
save_safetensors(path, {"old": np.ones((2, 2), np.float32)})
os.chmod(path, 0o640)
existing = os.path.join(d, "existing")
save_peft_adapter(existing, {"fc": (np.ones((2, 8), np.float32), np.ones((8, 2), np.float32))},
                  {"r": 2, "lora_alpha": 4})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MiB per file: EFBIG
A, B = np.ones((8, 65536), np.float32), np.ones((1024, 8), np.float32)
calls = {
    "save_safetensors": lambda: save_safetensors(path, {"w": np.ones((1024, 1024), np.float32)}),
    "save_peft_adapter": lambda: save_peft_adapter(
        os.path.join(d, "adapter"), {"fc": (A, B)}, {"r": 8, "lora_alpha": 16}
    ),
    "save_peft_adapter overwrite": lambda: save_peft_adapter(
        existing, {"fc": (A, B)}, {"r": 8, "lora_alpha": 16}, overwrite=True
    ),
}
out = {}
for label, call in calls.items():
    try:
        call()
        out[label] = "no error"
    except OSError as exc:
        out[label] = [type(exc).__name__, exc.errno, exc.filename, str(exc)]
    except BaseException as exc:
        out[label] = ["RAW " + type(exc).__name__, str(exc)]
out["listing"] = sorted(os.listdir(d))
out["existing"] = sorted(os.listdir(existing))
out["old"] = [info.name for info in list_tensors(path)]
out["mode"] = oct(os.stat(path).st_mode & 0o777)
print(json.dumps(out))
"""


def test_a_full_disk_raises_the_documented_os_error_naming_the_file(tmp_path: Path) -> None:
    if not hasattr(resource, "RLIMIT_FSIZE"):
        pytest.skip("no file-size limit on this platform")
    result = run_child(WRITE_FAIL_CHILD, str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    target = str(tmp_path / "m.safetensors")
    assert out["save_safetensors"][:3] == ["OSError", 27, target], out
    assert target in out["save_safetensors"][3]
    weights = str(tmp_path / "adapter" / "adapter_model.safetensors")
    assert out["save_peft_adapter"][:3] == ["OSError", 27, weights], out
    existing = str(tmp_path / "existing" / "adapter_model.safetensors")
    assert out["save_peft_adapter overwrite"][:3] == ["OSError", 27, existing], out
    # Cleanup: no temporary file or staging folder, the old file intact with its mode.
    assert out["listing"] == ["existing", "m.safetensors"], out
    assert out["existing"] == ["adapter_config.json", "adapter_model.safetensors"], out
    assert out["old"] == ["old"] and out["mode"] == "0o640", out


def test_other_library_write_errors_are_lowrank_errors_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.numpy

    def refuse(*args: object, **kwargs: object) -> None:
        raise safetensors.SafetensorError("Error while serializing: something else")

    monkeypatch.setattr(safetensors.numpy, "save_file", refuse)
    path = tmp_path / "m.safetensors"
    with pytest.raises(InputError, match=r"could not write safetensors file '.*m\.safetensors'"):
        save_safetensors(path, {"w": np.ones(2, np.float32)})
    assert list(tmp_path.iterdir()) == []

    def full(*args: object, **kwargs: object) -> None:
        raise safetensors.SafetensorError("I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*m\.safetensors'") as caught:
        save_safetensors(path, {"w": np.ones(2, np.float32)})
    assert caught.value.errno == 28 and caught.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match=r"No space left on device: '.*adapter_model\.safetensors'"):
        save_peft_adapter(
            tmp_path / "ad", {"m": (np.ones((2, 4), np.float32), np.ones((4, 2), np.float32))},
            {"r": 2, "lora_alpha": 2},
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# 5. impossible shapes, shards outside the checkpoint


@pytest.mark.parametrize(
    "shape",
    [[2**70, 0], [2**64, 0], [2**63, 0], [2**40, 2**40, 0], [0, 2**40, 2**40], [2**62, 4, 0]],
)
def test_impossible_shapes_are_refused_at_listing(tmp_path: Path, shape: list[int]) -> None:
    path = write_raw_safetensors(
        tmp_path / "s.safetensors",
        {
            "a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        },
        b"\0" * 4,
    )
    with pytest.raises(FileFormatError, match=r"tensor 'a' has the impossible shape"):
        list_tensors(path)


def test_large_empty_shapes_numpy_can_hold_are_listed_and_loaded(tmp_path: Path) -> None:
    path = write_raw_safetensors(
        tmp_path / "s.safetensors",
        {
            "a": {"dtype": "F32", "shape": [2**40, 0], "data_offsets": [0, 0]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        },
        b"\0" * 4,
    )
    infos = {info.name: info for info in list_tensors(path)}
    assert load_tensor(infos["a"]).shape == (2**40, 0)
    assert load_tensor(infos["b"]).tolist() == [0.0]


@pytest.mark.parametrize(
    "shard",
    ["../outside/x.safetensors", "sub/../../outside/x.safetensors", "..\\outside\\x.safetensors"],
)
def test_index_shards_outside_the_checkpoint_directory_are_refused(
    tmp_path: Path, shard: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    save_safetensors(outside / "x.safetensors", {"secret": np.ones(2, np.float32)})
    checkpoint = tmp_path / "ckpt"
    (checkpoint / "sub").mkdir(parents=True)
    index = checkpoint / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"secret": shard}}))
    with pytest.raises(FileFormatError, match=r"maps tensor 'secret' to .*inside it"):
        list_tensors(index)


def test_index_shards_in_a_subdirectory_are_still_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    save_safetensors(tmp_path / "sub" / "a.safetensors", {"w": np.ones(2, np.float32)})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "sub/a.safetensors"}}))
    (info,) = list_tensors(index)
    assert load_tensor(info).tolist() == [1.0, 1.0]
