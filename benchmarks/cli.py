"""``python -m benchmarks``: run benchmark suites and write ``results.md`` and ``results.json``."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import (
    load_average,
    machine_info,
    reexec_without_openblas_overrides,
)
from benchmarks.goals import issue15_markdown
from benchmarks.matrices import default_cache_dir
from benchmarks.report import machine_markdown, write_outputs
from benchmarks.runner import run_in_child
from benchmarks.suites import SUITES, Case, Options, Suite, get_suite

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time lowrank against its peers at matched accuracy; write results.md "
        "and results.json.",
    )
    p.add_argument(
        "--suite",
        type=_suite_list,
        default=list(SUITES),
        metavar="NAME[,NAME...]",
        help=f"which suites to run, comma-separated, in one run: {', '.join(SUITES)}, "
        f"'all', or 'speed' (= {','.join(SPEED_SUITES)}, issue 15's goals) (default: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one timed run: a smoke test of a few seconds",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/benchmarks"),
        help="directory for results.md and results.json (default: out/benchmarks)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache of generated matrices and references "
        "(default: $LOWRANK_BENCH_CACHE or .cache/benchmarks)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs after the warm-up (default: 3, quick: 1)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="per-call timeout in seconds (default: 60, quick: 30)",
    )
    p.add_argument(
        "--search-budget",
        type=float,
        default=None,
        help="seconds spent searching a peer's settings (default: 10, quick: 2)",
    )
    p.add_argument(
        "--isolation",
        choices=["process", "none"],
        default=None,
        help="run each group of cases in a child process (default) or in this "
        "process (default with --quick; no timeouts)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only cases whose id contains TEXT (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument(
        "--merge",
        action="append",
        default=[],
        type=Path,
        metavar="JSON",
        help="run nothing: merge results.json files (later ones replace the cases they "
        "repeat, e.g. a rerun with --only) and write the tables again to --out",
    )
    return p


# The suites of issue 15's goals: truncated SVD (goals 1, 2, 4) and the whole spectrum (3).
SPEED_SUITES: tuple[str, ...] = ("svd", "curve")


def _suite_list(text: str) -> list[str]:
    """``--suite``: suite names separated by commas; ``all`` and ``speed`` expand."""
    names: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if word == "all":
            names += SUITES
        elif word == "speed":
            names += SPEED_SUITES
        elif word in SUITES:
            names.append(word)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown suite {word!r}; choose from {', '.join(SUITES)}, all, speed"
            )
    return [n for n in SUITES if n in names]  # each once, in the usual order


def _options(args: argparse.Namespace) -> Options:
    return Options(
        quick=args.quick,
        cache=args.cache or default_cache_dir(),
        repeat=args.repeat,
        call_timeout=args.timeout or (30.0 if args.quick else 60.0),
        search_budget=args.search_budget or (2.0 if args.quick else 10.0),
        only=tuple(args.only),
    )


def _summary_line(case: Case, result: dict[str, Any]) -> str:
    status = result.get("status", "?")
    parts = [f"[{case.suite}] {case.id}: {status}"]
    if "seconds" in result:
        parts.append(f"{result['seconds']:.4g} s (n={result.get('n')})")
    for key in ("top_r_rel_err", "excess", "curve_over_fro"):
        if key in result:
            parts.append(f"{key} {result[key]:.1e}")
    if result.get("error"):
        parts.append(str(result["error"]).splitlines()[0][:200])
    return " ".join(parts)


def _run_group(
    cases: list[Case], options: Options, isolation: str, log: Any
) -> list[dict[str, Any]]:
    from benchmarks.worker import options_to_dict, run_cases

    results: list[dict[str, Any]] = []
    if isolation == "none":

        def emit(event: dict[str, Any]) -> None:
            if event.get("event") == "result":
                results.append(event)

        run_cases(cases, options, emit)
    else:
        task = {"options": options_to_dict(options), "cases": [c.to_dict() for c in cases]}
        events, error = run_in_child(task, call_timeout=options.call_timeout)
        results = [e for e in events if e.get("event") == "result"]
        done = {e["case"]["id"] for e in results}
        first = True
        for case in cases:
            if case.id in done:
                continue
            status = (
                ("timeout" if error and error.startswith("timeout") else "error")
                if first
                else "skipped"
            )
            why = error if first else f"not run: an earlier case of {case.group} failed"
            results.append({"case": case.to_dict(), "result": {"status": status, "error": why}})
            first = False
    for item in results:
        print(_summary_line(Case.from_dict(item["case"]), item["result"]), file=log, flush=True)
    return results


def _run_suite(suite: Suite, options: Options, isolation: str, log: Any) -> dict[str, Any]:
    ok, why = suite.available()
    if not ok:
        print(f"[{suite.name}] not available: {why}", file=log, flush=True)
        return {"available": False, "reason": why, "results": []}
    start = time.perf_counter()
    prep = suite.prepare(options)
    for _, prep_group in itertools.groupby(prep, key=lambda c: c.group):
        _run_group(list(prep_group), options, isolation, log)
    cases = [
        c for c in suite.cases(options) if not options.only or any(t in c.id for t in options.only)
    ]
    results: list[dict[str, Any]] = []
    for _, group_iter in itertools.groupby(cases, key=lambda c: c.group):
        group = list(group_iter)
        requirement = getattr(suite, "requirement", None)
        missing = requirement(group[0]) if requirement else None
        if missing:
            for case in group:
                item = {"case": case.to_dict(), "result": {"status": "absent", "error": missing}}
                results.append(item)
                print(_summary_line(case, item["result"]), file=log, flush=True)
            continue
        results += _run_group(group, options, isolation, log)
    return {"available": True, "results": results, "wall_seconds": time.perf_counter() - start}


def _goals_section(data: dict[str, Any]) -> str:
    """Issue 15's summary, when the run has a suite it is about."""
    if not any(name in data["suites"] for name in SPEED_SUITES):
        return ""
    return issue15_markdown(data) + "\n\n"


def _merge(paths: list[Path], out: Path) -> int:
    """Merge the results of several runs and render them again."""
    import json

    runs = [json.loads(p.read_text()) for p in paths]
    meta = dict(runs[0]["meta"])
    meta["merged_from"] = [
        {"file": str(p), "date": r["meta"].get("date"), "argv": r["meta"].get("argv"),
         "load_average_start": r["meta"].get("load_average_start"),
         "load_average_end": r["meta"].get("load_average_end")}
        for p, r in zip(paths, runs, strict=True)
    ]  # fmt: skip
    options = Options(quick=bool(meta.get("quick")))
    data: dict[str, Any] = {"meta": meta, "suites": {}}
    sections = []
    for name in SUITES:
        merged: dict[str, dict[str, Any]] = {}
        outcome: dict[str, Any] | None = None
        for run in runs:
            suite_data = run["suites"].get(name)
            if not suite_data:
                continue
            outcome = outcome or dict(suite_data)
            if suite_data.get("available"):
                outcome.update(available=True, reason=None)
            for item in suite_data.get("results", []):
                merged[item["case"]["id"]] = item
        if outcome is None:
            continue
        suite = get_suite(name)
        if outcome.get("available"):
            order = {c.id: i for i, c in enumerate(suite.cases(options))}
            outcome["results"] = sorted(
                merged.values(), key=lambda it: order.get(it["case"]["id"], 1 << 30)
            )
            markdown, summary = suite.report(outcome["results"], options)
            outcome["summary"] = summary
        else:
            markdown = f"Not run: {outcome.get('reason')}.\n"
        sections.append(f"## {suite.title} (`--suite {name}`)\n\n{markdown}")
        data["suites"][name] = outcome
    notes = "\n".join(
        f"- merged from `{m['file']}` ({m['date']}, load {m['load_average_start']} → "
        f"{m['load_average_end']}): `{' '.join(m['argv'] or [])}`"
        for m in meta["merged_from"]
    )
    text = (
        "# Benchmark results\n\n"
        + machine_markdown(meta)
        + "\n"
        + notes
        + "\n\n"
        + _goals_section(data)
        + "\n\n".join(sections)
    )
    md_path, json_path = write_outputs(out, text, data)
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    reexec_without_openblas_overrides(argv)
    options = _options(args)
    names = args.suite
    if args.list:
        for name in names:
            for case in get_suite(name).cases(options):
                if not options.only or any(t in case.id for t in options.only):
                    print(case.id)
        return 0
    if args.merge:
        return _merge(args.merge, args.out)
    isolation = args.isolation or ("none" if args.quick else "process")
    log = sys.stderr
    meta = machine_info()
    meta.update(
        {
            "argv": argv,
            "quick": args.quick,
            "isolation": isolation,
            "repeat": options.policy.repeat,
            "call_timeout": options.call_timeout,
        }
    )
    print(
        f"benchmarks: suites {', '.join(names)}; {meta['cpu']}; load {meta['load_average_start']}",
        file=log,
        flush=True,
    )
    start = time.perf_counter()
    data: dict[str, Any] = {"meta": meta, "suites": {}}
    sections = []
    for name in names:
        suite = get_suite(name)
        outcome = _run_suite(suite, options, isolation, log)
        if outcome["available"]:
            markdown, summary = suite.report(outcome["results"], options)
            outcome["summary"] = summary
        else:
            markdown = f"Not run: {outcome['reason']}.\n"
        sections.append(f"## {suite.title} (`--suite {name}`)\n\n{markdown}")
        data["suites"][name] = outcome
    meta["load_average_end"] = load_average()
    meta["wall_seconds"] = time.perf_counter() - start
    text = (
        "# Benchmark results\n\n"
        + machine_markdown(meta)
        + "\n\n"
        + _goals_section(data)
        + "\n\n".join(sections)
    )
    md_path, json_path = write_outputs(args.out, text, data)
    print(f"wrote {md_path} and {json_path}", file=log, flush=True)
    return 0
