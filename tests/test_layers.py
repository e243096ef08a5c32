"""The architecture, enforced: lower layers never import upper ones (../shared/design.md).

Each top-level part of the package has a layer; a module may import only parts of a lower
layer (or its own part). ``io`` knows no linear algebra; nothing imports the CLI; the library
never imports ``lowrank.testing``; ``import lowrank`` loads neither matplotlib, hypothesis,
dask, safetensors, ml_dtypes, tqdm nor torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lowrank"

LAYERS = {
    "_typing": 0,
    "_numerics": 0,
    "_validation": 0,
    "_dtypes": 0,
    "_scaling": 0,
    "_spectrum": 0,
    "_storage_noise": 0,
    "_operator": 0,
    "_version": 0,
    "_patterns": 0,
    "errors": 0,
    "svd": 1,
    "io": 1,
    "examples": 1,
    "approx": 2,
    "curves": 2,
    "metrics": 2,
    "rmt": 2,
    "lora": 3,
    "adapter": 4,
    "analysis": 5,
    "examples_digits": 5,
    "plot": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 7,
    "testing": 9,
}
# Parts that may import only layer 0, whatever their own layer.
LAYER_ZERO_ONLY = {"io", "examples"}


def part_of(module: str) -> str:
    """'lowrank.io._select' -> 'io'; 'lowrank' -> '__init__'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def lowrank_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "lowrank"]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "lowrank"
        ):
            if node.module == "lowrank":
                # `from lowrank import x`: a submodule, or the package's namespace.
                found += [
                    f"lowrank.{a.name}" if is_submodule(a.name) else "lowrank" for a in node.names
                ]
            else:
                found.append(node.module)
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda x: str(x))
def test_module_imports_only_lower_layers(name, path):
    part = part_of(name)
    assert part in LAYERS, f"{name}: give the new part '{part}' a layer in tests/test_layers.py"
    for imported in lowrank_imports(path):
        target = part_of(imported)
        if imported == "lowrank":
            # Only the top (CLI, demo) and the side package may use the public namespace.
            assert LAYERS[part] >= 7, f"{name} imports from the package root"
            continue
        if target == part:
            continue
        assert target in LAYERS, f"{name} imports {imported}, which has no layer"
        if part in LAYER_ZERO_ONLY:
            assert LAYERS[target] == 0, f"{name} (no linear algebra) imports {imported}"
        if part != "__main__":
            assert target not in ("cli", "__main__"), f"{name} imports the CLI ({imported})"
        if part != "testing":
            assert target != "testing", f"the library module {name} imports {imported}"
        lower = LAYERS[target] < LAYERS[part] or LAYERS[target] == LAYERS[part] == 0
        assert lower or part == "testing", (
            f"{name} (layer {LAYERS[part]}) imports {imported} (layer {LAYERS[target]})"
        )


def test_import_lowrank_is_light():
    heavy = [
        "matplotlib",
        "hypothesis",
        "dask",
        "distributed",
        "safetensors",
        "ml_dtypes",
        "tqdm",
        "torch",
        "sklearn",
        "lowrank.testing",
        "lowrank.cli",
    ]
    code = (
        "import sys, lowrank, lowrank.io, lowrank.svd, lowrank.approx, lowrank.curves, "
        "lowrank.metrics\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
