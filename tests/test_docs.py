"""The documentation site (mkdocs.yml, docs/): every public name of `hsgd` has an API entry, and
every Python block of the pages runs. `mkdocs build --strict` itself runs in `.ci/run`."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"\s*$', re.M)
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _public_names():
    """The names `hsgd/__init__.py` re-exports (`from ._x import Name as Name`)."""
    tree = ast.parse((ROOT / "hsgd" / "__init__.py").read_text())
    return sorted(a.asname for node in tree.body if isinstance(node, ast.ImportFrom)
                  for a in node.names if a.asname == a.name and not a.name.startswith("_"))


def _expand(text):
    """Markdown with pymdownx.snippets includes (`--8<-- "FILE:section"`) replaced by the
    included text; returns (origin, text) pieces."""
    pieces, last = [], 0
    for m in _SNIPPET.finditer(text):
        pieces.append(("docs", text[last:m.start()]))
        source = (ROOT / m.group(1)).read_text()
        if m.group(2):
            start = source.index(f"--8<-- [start:{m.group(2)}]")
            start = source.index("\n", start) + 1
            end = source.rindex("\n", 0, source.index(f"--8<-- [end:{m.group(2)}]"))
            source = source[start:end]
        pieces.append((m.group(1), source))
        last = m.end()
    pieces.append(("docs", text[last:]))
    return pieces


# Blocks that run with the slow tests (`pytest -m slow`, in CI after the suite): the scaling
# page's example compiles the same compute-optimal table as tests/test_scaling.py's fixture
# (24 s in the suite).
SLOW_BLOCKS = {"api/scaling.md:docs:0"}


def _blocks():
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for origin, text in _expand(page.read_text()):
            for i, block in enumerate(_PYTHON.findall(text)):
                name = f"{page.relative_to(DOCS)}:{origin}:{i}"
                marks = [pytest.mark.slow] if name in SLOW_BLOCKS else []
                out.append(pytest.param(block, origin, id=name, marks=marks))
    return out


def test_every_public_name_has_an_api_entry():
    import hsgd

    entries = set()
    for page in (DOCS / "api").glob("*.md"):
        text = page.read_text()
        entries |= set(re.findall(r"^::: ([\w.]+)", text, re.M))
        entries |= set(re.findall(r"^\[\]\(\)\{#([\w.]+)\}", text, re.M))  # anchors
    missing = []
    for name in _public_names():
        obj = getattr(hsgd, name)
        canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}"
        if f"hsgd.{name}" not in entries and canonical not in entries:
            missing.append(name)
    assert not missing, f"public names without a `::: hsgd.NAME` entry in docs/api/: {missing}"


def test_snippet_sections_exist():
    for page in DOCS.rglob("*.md"):
        for m in _SNIPPET.finditer(page.read_text()):
            source = (ROOT / m.group(1)).read_text()
            if m.group(2):
                for edge in ("start", "end"):
                    assert f"--8<-- [{edge}:{m.group(2)}]" in source, (page, m.group(0))


@pytest.mark.parametrize("block,origin", _blocks())
def test_docs_python_block_runs(block, origin):
    if origin == "README.md":  # the getting-started page includes the README's quickstart
        pytest.skip("a block of the README: tests/test_readme.py runs the README's blocks")
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(block, f"<docs block from {origin}>", "exec"), {"__name__": "__docs__"})
