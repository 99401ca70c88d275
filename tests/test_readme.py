"""Every ```python block of README.md runs, in order, in one namespace (```bash and ```toml
blocks are not run here; the toml ones are checked by test_cli.py). A README block that is too
slow for the suite is made cheaper in the README itself, never here."""

import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# The quickstart's gradient through a cosine that reaches 0 at the last output time: the ODE
# accepts a zero learning rate only after the integrator rewrite (issue 14); its own test below.
_COSINE_GRAD = "hsgd.Cosine(peak, 10.0)"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _statements(block: str) -> list[str]:
    """The block cut into top-level statements (a line starting in column 0 opens one)."""
    out: list[str] = []
    for line in block.splitlines():
        if out and (not line or line[0] in " )]}#" or out[-1].rstrip().endswith(("(", ",", "\\"))):
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def _run(code: str, namespace: dict, where: str):
    exec(compile(code, where, "exec"), namespace)


def test_readme_has_python_blocks():
    blocks = _blocks()
    assert len(blocks) >= 5
    assert sum(_COSINE_GRAD in b for b in blocks) == 1


@pytest.mark.slow  # ~2-3 min on 2 busy cores, almost all of it compiling the ODE and its gradient
def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (a sweep folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(_blocks()):
        code = "\n".join(s for s in _statements(block) if _COSINE_GRAD not in s)
        _run(code, namespace, f"README.md python block {i + 1}")


def test_readme_gradient_through_cosine_to_zero(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    quickstart = next(b for b in _blocks() if _COSINE_GRAD in b)
    statements = _statements(quickstart)
    setup = [s for s in statements
             if s.startswith(("import", "jax.config", "spectrum", "problem", "ts"))]
    namespace: dict = {"__name__": "__readme__"}
    _run("\n".join(setup), namespace, "README.md quickstart (setup)")
    line = next(s for s in statements if _COSINE_GRAD in s)
    _run(line, namespace, "README.md quickstart (gradient)")
    assert math.isfinite(float(namespace["grad"]))
