"""Sphinx configuration of the lowrank API reference.

Build with ``python3 tasks.py docs`` (warnings are errors: ``-W --keep-going -n``).

What the build enforces
-----------------------
* Every public module's ``__all__`` is documented (``api/*.rst`` use the ``apimodule``
  directive below, which reads ``__all__``), so a name
  added to ``__all__`` appears without editing the pages.
* nitpicky mode: every cross-reference (``:func:``, ``:class:``, ``:mod:`` ...) must resolve.
* numpydoc validation (``numpydoc_validation_checks`` below) of every documented object.
* The examples: the ``>>>`` sessions are the doctests run by the test suite
  (``python3 tasks.py test`` runs ``pytest --doctest-modules lowrank``); the docs build does not
  re-run them, except those of :mod:`lowrank.plot`, whose figures are rendered by matplotlib's
  ``plot_directive`` (``numpydoc_use_plots``) and fail the build if they raise.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging as logging_std
import os
import pkgutil
import re
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from numpydoc.docscrape import ClassDoc, FunctionDoc
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.logging import get_node_location

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import lowrank  # noqa: E402

logger = logging.getLogger(__name__)

project = "lowrank"
author = "The lowrank developers"
copyright = "The lowrank developers"
release = lowrank.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"lowrank {release}"

# Every reference must resolve (the build runs with -n -W). No intersphinx (the build needs
# no network): references into Python, NumPy, SciPy and matplotlib are left unlinked.
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = []
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|scipy|matplotlib|hypothesis|dask|distributed|safetensors|ml_dtypes)\..*"),
    (r"py:.*", r"(os|re|fnmatch|collections|typing|pathlib|concurrent|json|io)\..*"),
]
# numpydoc renders References as citations; a reference list need not be cited in the text.
suppress_warnings = ["ref.citation"]

# autodoc: members follow each module's __all__ (imported names included), in its order.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "member-order": "bysource",
}
autodoc_typehints = "none"  # the numpydoc Parameters/Returns sections carry the types
autodoc_inherit_docstrings = False
autosummary_generate = False

# numpydoc -----------------------------------------------------------------------------
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_use_plots = True  # Examples that import matplotlib become rendered ``.. plot::``

# The checks every documented object must pass (numpydoc's codes), chosen to be what the
# project meets today; a failing check is a warning, hence a build error:
#   PR01  a parameter of the signature is not documented
#   PR02  a documented parameter is not in the signature
#   PR10  "x:int" with no space before the colon
#   RT01  no Returns section (functions and methods that return)
#   YD01  no Yields section (generators)
#   GL08  the object has no docstring
#   SS01  no summary line
#   GL06  an unknown section (a misspelt "Parameter" or "Return" would hide its content)
#   GL07  sections out of numpydoc's order
# PR01/PR02 are the drift checks: renaming, adding or removing an argument without the
# docstring fails CI. For classes numpydoc checks the constructor's parameters. Not held
# yet (hundreds of objects fail them): EX01 (an Examples section on every class and
# method: the sections check below asks it of every public function), SA01 (See Also),
# ES01 (an extended summary), RT03/PR07/PR04 (descriptions and types of every entry).
numpydoc_validation_checks = {
    "PR01",
    "PR02",
    "PR10",
    "RT01",
    "YD01",
    "GL08",
    "SS01",
    "GL06",
    "GL07",
}

# A frozen result type documents its fields under Attributes (they are read, not passed):
# then the constructor's parameters are not asked for under Parameters (PR01); instead
# ``_check_fields`` below requires every dataclass field to appear under Attributes.
numpydoc_validation_overrides = {"PR01": [r"(?m)^Attributes\n-{10}"]}

# Objects whose docstrings do not pass yet, by the file that owns them (regexes on the
# object's full name, with the failing checks). Remove an entry once its docstring is fixed.
# BEGIN numpydoc_validation_exclude
numpydoc_validation_exclude: set[str] = set()
# END numpydoc_validation_exclude


# plot directive: the examples of lowrank.plot, run as written.
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 80)]
plot_pre_code = "import numpy as np"

# The API pages: every public module of the package (no ``_`` in its path), found by walking
# it, so a new module is documented (and validated) without editing this file. The
# command line (``lowrank.cli``, ``lowrank.__main__``) is documented by ``lowrank --help``.
# Packages come in layer order, each followed by its public submodules; a name in several
# ``__all__`` is documented in the first of them and linked from the others.
LAYER_ORDER = [
    "lowrank",
    "lowrank.errors",
    "lowrank.svd",
    "lowrank.io",
    "lowrank.approx",
    "lowrank.curves",
    "lowrank.metrics",
    "lowrank.lora",
    "lowrank.adapter",
    "lowrank.analysis",
    "lowrank.plot",
    "lowrank.testing",
    "lowrank.examples",
]
NOT_DOCUMENTED = {"lowrank.cli", "lowrank.__main__"}


def _public_modules() -> list[str]:
    found = {"lowrank"}
    for info in pkgutil.walk_packages(lowrank.__path__, "lowrank."):
        name = info.name
        if name in NOT_DOCUMENTED or any(p.startswith("_") for p in name.split(".")[1:]):
            continue
        found.add(name)

    def key(name: str) -> tuple[int, str]:
        top = ".".join(name.split(".")[:2])
        rank = LAYER_ORDER.index(top) if top in LAYER_ORDER else len(LAYER_ORDER)
        return (rank, "" if name == top else name)

    return sorted(found, key=key)


API_MODULES = _public_modules()


def _write_api_pages() -> None:
    """Write ``api/<module>.rst`` (generated, git-ignored) and ``api/index.rst``."""
    out = Path(__file__).resolve().parent / "api"
    out.mkdir(exist_ok=True)
    pages = []
    for modname in API_MODULES:
        module = importlib.import_module(modname)
        first = (module.__doc__ or "").strip().split("\n\n")[0]  # the summary paragraph
        summary = " ".join(first.split()).rstrip(".")
        summary = summary.removeprefix(f"{modname.rsplit('.', 1)[-1]}: ")
        title = f"``{modname}``" + (f": {summary}" if summary else "")
        body = [f".. currentmodule:: {modname}", "", title, "=" * len(title), ""]
        body += [f".. automodule:: {modname}", "   :no-members:", ""]
        body += ["Contents", "--------", "", f".. apimodule:: {modname}"]
        body += ["   :summary-only:", ""] if modname == "lowrank" else [""]
        text = "\n".join(body)
        page = out / f"{modname}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        pages.append(modname)
    for stale in out.glob("*.rst"):
        if stale.stem not in pages and stale.name != "index.rst":
            stale.unlink()
    index = ["API reference", "=============", "", ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {m}" for m in pages]
    text = "\n".join([*index, ""])
    if not (out / "index.rst").exists() or (out / "index.rst").read_text() != text:
        (out / "index.rst").write_text(text)


_write_api_pages()


def _data_names() -> set[str]:
    """Constants and type aliases of every ``__all__``: numpydoc validates an object's own
    ``__doc__``, which for a constant is that of its type (``tuple``, ``Literal``); theirs
    are attribute docstrings, which autodoc shows and numpydoc does not see."""
    names = set()
    for modname in API_MODULES:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (isinstance(obj, type) or inspect.isroutine(obj)):
                names.add(rf"^{re.escape(modname)}\.{re.escape(name)}$")
    return names


numpydoc_validation_exclude |= _data_names()


def _canonical_names() -> dict[int, str]:
    """Map ``id(obj)`` to the name under which it is documented (its first public module)."""
    names: dict[int, str] = {}
    for modname in API_MODULES:
        if modname == "lowrank":
            continue
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if callable(obj) or isinstance(obj, type):
                names.setdefault(id(obj), f"{modname}.{name}")
    return names


class ApiModule(Directive):
    """``.. apimodule:: module``: a summary table of ``__all__``, then each name documented.

    Names re-exported from a module documented earlier (``lowrank.truncated_svd`` is
    ``lowrank.svd.truncated_svd``) link there instead of being documented twice.
    ``:summary-only:`` gives the table alone.
    """

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"summary-only": directives.flag}

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        canonical = _canonical_names()
        table = [".. autosummary::", ""]
        body: list[str] = []
        for name in module.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            full = f"{modname}.{name}"
            home = canonical.get(id(obj), full)
            if home == full:
                table.append(f"   {name}")
            elif home.startswith(f"{modname}."):  # relative, or autosummary sees a cycle
                table.append(f"   ~{home[len(modname) + 1 :]}")
            else:
                table.append(f"   ~{home}")
            if home != full or "summary-only" in self.options:
                continue
            if isinstance(obj, type):
                kind = "exception" if issubclass(obj, BaseException) else "class"
            elif callable(obj) and hasattr(obj, "__code__"):
                kind = "function"
            else:
                kind = "data"
            body += [f".. auto{kind}:: {full}", ""]
        node = nodes.section()
        node.document = self.state.document
        lines = StringList([*table, "", *body], source=modname)
        self.state.nested_parse(lines, self.content_offset, node)
        return node.children


def _lookup(path: str) -> tuple[Any, list[str]] | None:
    """Import the longest module prefix of ``path``; return the object and the names walked."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        walked = parts[:i]
        for attr in parts[i:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                return None
            walked.append(attr)
        return obj, walked
    return None


def _resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to where its object is documented.

    ``lowrank.truncated_svd`` (a re-export), ``lowrank.adapter.base.Layer.freeze`` (a class
    documented as ``lowrank.adapter.Layer``) and a short name used in another module's
    docstring (``SVD_DTYPES``, ``LoRALinear.merge``) when exactly one documented object has
    that name.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    context = [c for c in (node.get("py:module"), node.get("py:class")) if c]
    candidates = [f"{'.'.join(context[: i + 1])}.{target}" for i in range(len(context))]
    candidates = [*reversed(candidates), target]
    canonical = _canonical_names()
    homes = []
    for cand in candidates:
        if not cand.startswith("lowrank"):
            continue
        found = _lookup(cand)
        if found is None:
            continue
        # the deepest object on the path that is documented under another name
        obj_path = found[1]
        for i in range(len(obj_path), 0, -1):
            hit = _lookup(".".join(obj_path[:i]))
            if hit is not None and id(hit[0]) in canonical:
                homes.append(".".join([canonical[id(hit[0])], *obj_path[i:]]))
                break
    suffix = [name for name in domain.objects if name.endswith(f".{target}")]
    if len(suffix) == 1:
        homes.append(suffix[0])
    for home in homes:
        if home in domain.objects:
            new = node.deepcopy()
            new["reftarget"] = home
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], home, new, contnode
            )
    return None


# The sections every public function has (beyond numpydoc's checks, which have no code for
# a missing Raises section): Parameters (when it takes any), Returns (or Yields; unless
# annotated ``-> None``), Raises (when it takes any argument: every argument is checked)
# and Examples. Objects listed in
# SECTIONS_EXCLUDE are not held to it yet.
# BEGIN SECTIONS_EXCLUDE
SECTIONS_EXCLUDE: set[str] = set()
# END SECTIONS_EXCLUDE

# Markup that does not render (docutils errors, references that resolve nowhere) in
# docstrings owned elsewhere, by object: its messages are dropped until the owner fixes it.
# Nothing else can be excluded: a new markup error anywhere fails the build.
# BEGIN KNOWN_MARKUP_FAILURES
KNOWN_MARKUP_FAILURES: dict[str, list[str]] = {}
# END KNOWN_MARKUP_FAILURES


class _KnownFailures(logging_std.Filter):
    """Drop the warnings located in the docstrings of KNOWN_MARKUP_FAILURES, and repeats (a
    docstring is processed once per page and summary table that shows it)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging_std.LogRecord) -> bool:
        location = getattr(record, "location", None)
        if isinstance(location, nodes.Node):
            location = get_node_location(location)
        elif isinstance(location, tuple):
            location = ":".join(map(str, location))
        where = f"{location or ''} {record.getMessage()}"
        if "[numpydoc]" in where or "[sections]" in where or "[fields]" in where:
            if where in self.seen:
                return False
            self.seen.add(where)
        return not any(
            re.search(
                rf"docstring of {re.escape(name)}:|target not found: {re.escape(name)}(\s|$)", where
            )
            for name in KNOWN_MARKUP_FAILURES
        )


def _where(obj: Any) -> str | None:
    """``file:line`` of ``obj``'s definition, for a warning's location."""
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return None


def _excluded(name: str, patterns: set[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def _check_sections(app: Any, what: str, name: str, obj: Any, options: Any, lines: Any) -> None:
    """Warn (a build error) when a public function lacks one of its sections."""
    if what != "function" or _excluded(name, SECTIONS_EXCLUDE):
        return
    doc = FunctionDoc(obj, config={})
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = [
        p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    returns = signature.return_annotation not in (None, "None")  # assertions return None
    wanted = {"Returns": returns, "Parameters": bool(params), "Raises": bool(params)}
    wanted["Examples"] = True
    missing = [
        sec
        for sec, need in wanted.items()
        if need and not doc[sec] and not (sec == "Returns" and doc["Yields"])
    ]
    if missing:
        logger.warning(
            "[sections] %s has no %s section", name, ", ".join(missing), location=_where(obj)
        )


def _check_fields(app: Any, what: str, name: str, obj: Any, options: Any, lines: Any) -> None:
    """Warn when a dataclass field is documented under neither Attributes nor Parameters."""
    if what not in ("class", "exception") or not dataclasses.is_dataclass(obj):
        return
    if _excluded(name, numpydoc_validation_exclude):
        return
    doc = ClassDoc(obj, config={"show_class_members": False})
    documented = {
        n.strip() for item in (*doc["Attributes"], *doc["Parameters"]) for n in item.name.split(",")
    }
    fields = [f.name for f in dataclasses.fields(obj) if not f.name.startswith("_")]
    missing = [f for f in fields if f not in documented]
    if missing:
        logger.warning(
            "[fields] %s: fields %s documented under neither Attributes nor Parameters",
            name,
            ", ".join(missing),
            location=_where(obj),
        )


def _reexported_data_doc(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give a re-exported constant or type alias the docstring written where it is defined.

    autodoc reads ``#:`` comments and attribute docstrings from the module being documented
    only; ``lowrank.io.FileKind`` is defined (and documented) in ``lowrank.io._info``.
    """
    if what != "data" or any(line.strip() for line in lines):
        return
    modname, _, attr = name.rpartition(".")
    for other in sorted(sys.modules):
        module = sys.modules[other]
        if other == modname or not other.startswith("lowrank.") or module is None:
            continue
        if getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(other).find_attr_docs()
        except PycodeError:
            continue
        if ("", attr) in docs:
            lines[:] = list(docs[("", attr)])
            return


def _fresh_plots(app: Any) -> None:
    """Forget the figures of the previous build: plot_directive redraws a figure only when
    its page's file is newer, and the generated pages do not change when a docstring does."""
    shutil.rmtree(Path(app.doctreedir).parent / "plot_directive", ignore_errors=True)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _fresh_plots)
    app.add_directive("apimodule", ApiModule)
    for handler in logging_std.getLogger("sphinx").handlers:
        handler.filters.insert(0, _KnownFailures())  # before the filter that counts warnings
    app.connect("missing-reference", _resolve_reexport)
    app.connect("autodoc-process-docstring", _reexported_data_doc, priority=300)
    app.connect("autodoc-process-docstring", _check_sections, priority=400)
    app.connect("autodoc-process-docstring", _check_fields, priority=400)
    return {"parallel_read_safe": True}
