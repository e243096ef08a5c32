"""The benchmark harness cannot rot: run it in quick mode (tiny sizes, a few seconds).

No test here asserts a time. They check that the command runs end to end, writes its
Markdown and JSON, records the machine, removes the OpenBLAS overrides, runs cases in child
processes with a timeout, and reports absent peers and pending suites instead of failing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.threads import default_threads

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (ROOT / "benchmarks" / "__main__.py").exists(), reason="benchmarks/ not in this tree"
)


def run_bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = tmp_path / "out"
    full_env = {**os.environ, "LOWRANK_BENCH_CACHE": str(tmp_path / "cache"), **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "results.md").exists()
    return json.loads((out / "results.json").read_text())


def results(data: dict, suite: str) -> list[dict]:
    return [
        item["result"] | {"id": item["case"]["id"]} for item in data["suites"][suite]["results"]
    ]


def test_quick_run_of_every_suite(tmp_path):
    data = run_bench(tmp_path, "--suite", "all", env={"OPENBLAS_CORETYPE": "Haswell"})
    meta = data["meta"]
    # The override was removed by re-executing, and recorded.
    assert meta["openblas_env_removed"] == {"OPENBLAS_CORETYPE": "Haswell"}
    assert meta["openblas_env_now"] == {}
    assert meta["cpu"] and meta["logical_cores"] >= 1 and meta["versions"]["numpy"]
    assert any(b.get("internal_api") == "openblas" or "error" in b for b in meta["blas"])
    svd = results(data, "svd")
    by_id = {r["id"]: r for r in svd}
    # lowrank's default and its fast preset ran and report accuracy.
    lowrank = [r for r in svd if r["id"].endswith(("/lowrank/r4", "/lowrank/r16"))]
    assert lowrank and all(r["status"] == "ok" for r in lowrank)
    assert all(r["top_r_rel_err"] < 1e-3 and "excess" in r and r["seconds"] > 0 for r in lowrank)
    assert all(by_id[k]["status"] == "ok" for k in by_id if "/lowrank_fast/" in k)
    assert all(r["status"] in {"ok", "absent", "not reached", "error"} for r in svd)
    if "torch" not in sys.modules and meta["versions"]["torch"] is None:
        assert all(r["status"] == "absent" for r in svd if "/torch_lowrank/" in r["id"])
    targets = data["suites"]["svd"]["summary"]["targets"]
    assert {t["rank"] for t in targets} == {4, 16}
    assert all(t["lowrank_converged"] for t in targets)
    # Thread scaling (issue 15, goal 2): cases at the thread count of 1 and 2 that the run's
    # default is not (2 on a 2-core machine; 1 under `tasks.py test`, which sets
    # OPENBLAS_NUM_THREADS=1), which they had.
    other = 2 if default_threads() == 1 else 1
    scaled = [r for r in svd if r["id"].endswith(f"/threads{other}")]
    assert scaled and all(r["status"] in {"ok", "absent", "error"} for r in scaled)
    lowrank_scaled = [r for r in scaled if "/lowrank/" in r["id"]]
    assert lowrank_scaled and lowrank_scaled[0]["status"] == "ok"
    counts = lowrank_scaled[0]["thread_counts"]
    assert counts and all(v == other for k, v in counts.items() if k.startswith("openblas"))
    scaling = data["suites"]["svd"]["summary"]["scaling"]
    assert any(s["method"] == "lowrank" and s["goal"] for s in scaling)
    curve = results(data, "curve")
    assert curve and all(r["status"] == "ok" for r in curve)
    # Every method that returns singular values is checked; floor_syrk returns the Gram matrix.
    assert all(r["curve_over_fro"] < 1e-5 for r in curve if "/floor_syrk" not in r["id"])
    assert {r["id"].rsplit("/", 1)[1] for r in curve} >= {"floor_syrk", "floor_gram"}
    assert all(t["floor_gram_seconds"] for t in data["suites"]["curve"]["summary"]["targets"])
    for name in ("checkpoint", "lora", "pissa"):
        suite = data["suites"][name]
        assert suite["available"] or suite["reason"]  # a pending module says why
        if suite["available"]:
            assert all(r["status"] in {"ok", "absent"} for r in results(data, name)), name
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Truncated SVD at matched accuracy" in text and "| method |" in text
    assert "## Summary against issue 15's goals" in text
    for goal in ("| 1 |", "| 2 |", "| 3 |", "| 4 |", "2 threads ÷ 1 thread"):
        assert goal in text, goal
    # Runs can be merged (a rerun of some cases replaces them) and rendered again.
    merged = tmp_path / "merged"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--merge", str(tmp_path / "out" / "results.json"),
         "--out", str(merged)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged_text = (merged / "results.md").read_text()
    assert "merged from" in merged_text and "## Summary against issue 15's goals" in merged_text


def test_suite_lists():
    """``--suite`` takes several suites (one run for issue 15's ratios) and the 'speed' alias."""
    from benchmarks.cli import _parser

    def parse(text: str) -> list[str]:
        return _parser().parse_args(["--suite", text]).suite

    assert parse("curve,svd") == ["svd", "curve"]
    assert parse("speed") == ["svd", "curve"]
    assert parse("all")[0] == "svd" and len(parse("all")) == 5
    with pytest.raises(SystemExit):
        parse("svd,nope")


@pytest.mark.slow  # 20-30 s: child processes for every group; .ci/run runs the slow group
def test_child_processes_and_timeouts(tmp_path):
    """The full mode's isolation: each group of cases in a child process."""
    data = run_bench(tmp_path, "--suite", "curve", "--isolation", "process", "--only", "flat_")
    curve = results(data, "curve")
    assert curve and all(r["status"] == "ok" for r in curve)
    from benchmarks.runner import run_in_child
    from benchmarks.suites import Options
    from benchmarks.worker import options_to_dict

    # A call that reports no progress within the timeout is killed; the error says so.
    sleeper = {
        "suite": "svd",
        "id": "sleep",
        "group": "sleep",
        "params": {"op": "sleep", "seconds": 60},
    }
    task = {"options": options_to_dict(Options(quick=True)), "cases": [sleeper]}
    events, error = run_in_child(task, call_timeout=1.0, setup_timeout=20.0)
    assert error is not None and error.startswith("timeout")
    assert not [e for e in events if e.get("event") == "result"]
