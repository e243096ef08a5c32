"""The README's property-testing example runs as printed and catches what it says it
catches: the crude randomized SVD (one sketch of width `rank`, no power iterations) fails
with a shrunk counterexample, scikit-learn's randomized_svd(n_iter=7) passes.

The block is the fenced ``python`` block after the marker comment
``<!-- readme-example: property-testing -->`` in README.md, executed unchanged; the
``text`` block after it, the failure a reader is shown, must contain the message the
shrunk counterexample actually raises.

Why the outcome is reliable, not lucky (measured on 300 matrices of the example's
strategy, float32 and float64): the crude SVD's Frobenius excess over the optimum is at
least 4.7% (the 1% bound fails on every example), randomized_svd's at most 6.4e-5.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- readme-example: property-testing -->"


def _after_marker() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, f"README.md lost the marker {MARKER!r}"
    return text.split(MARKER, 1)[1]


def readme_output() -> str:
    """The ```text block after the example: the failure a reader is shown."""
    match = re.search(r"```text\n(.*?)\n```", _after_marker(), flags=re.DOTALL)
    assert match, "the example must be followed by the ```text output it prints"
    return match.group(1)


def _words(text: str) -> str:
    return " ".join(re.sub(r"^E ", "", line.strip()) for line in text.splitlines()).replace(
        "  ", " "
    )


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, f"README.md lost the marker {MARKER!r}"
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, flags=re.DOTALL)
    assert match, "the marker must be followed by a ```python fenced block"
    return match.group(1)


@pytest.fixture(scope="module")
def example() -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    return namespace


def test_the_example_uses_matrices_larger_than_the_sketch(example):
    """Sides >= 40 > RANK + 10 (randomized_svd's oversampling); real dtypes only."""
    assert example["RANK"] + 10 < 40
    assert "shape=st.tuples(st.integers(40, 80)" in readme_example()
    assert "complex" not in readme_example().split("WEIGHTS =", 1)[1].split("def ", 1)[0]


def test_correct_randomized_svd_passes(example):
    example["test_sklearn_randomized_svd"]()


def test_crude_randomized_svd_fails_with_a_shrunk_counterexample(example):
    with pytest.raises(AssertionError, match=r"not within a factor 1 \+ 0.01") as info:
        example["test_crude_svd"]()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "test(" in notes and "WeightLike(" in notes, notes
    # Shrunk: the smallest shape the strategy allows.
    assert "shape=(40, 40)" in notes, notes
    # The failure shown in the README is the one a reader gets (the shrunk example is
    # deterministic: float64, 40x40, no spikes, seed 0).
    shown = " ".join(_words(readme_output()).split())
    assert " ".join(str(info.value).split()) in shown, (str(info.value), shown)
