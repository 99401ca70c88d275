"""Release packaging: `python -m build` makes an sdist and a wheel (built from the sdist) with the
files they must hold, the version comes from `hsgd.__version__` only, and the wheel installed
into a fresh virtual environment runs `hsgd run`."""

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import hsgd

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("build")
pytest.importorskip("hatchling")


def _source_modules():
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hsgd").rglob("*.py")
                  if "__pycache__" not in p.parts)


def _run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_build_install_and_run(tmp_path):
    dist = tmp_path / "dist"
    # --no-isolation: hatchling from this environment (the test extra), no download.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)])
    version = hsgd.__version__
    (wheel,) = dist.glob(f"hsgd-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"hsgd-{version}.tar.gz")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"hsgd-{version}.dist-info/METADATA").decode()
        entry_points = z.read(f"hsgd-{version}.dist-info/entry_points.txt").decode()
    package = sorted(n for n in names if not n.startswith(f"hsgd-{version}.dist-info/"))
    assert package == _source_modules()  # every module, nothing else (no tests, no caches)
    assert f"\nVersion: {version}\n" in metadata
    assert "hsgd = hsgd._cli:main" in entry_points

    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    for required in ("pyproject.toml", "README.md", "mkdocs.yml", "PKG-INFO",
                     *_source_modules(),
                     *(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")),
                     *(p.relative_to(ROOT).as_posix()
                       for p in (ROOT / "notebooks").glob("*.ipynb")),
                     *(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))):
        assert required in members, f"{required} missing from the sdist"
    extra = [m for m in members if m.startswith((".ci/", ".venv/", "site/", ".cache/"))
             or "__pycache__" in m]
    assert not extra, f"the sdist holds build or CI files: {extra[:5]}"

    # A fresh environment with the wheel; its dependencies come from this environment through
    # a .pth file (no download), after the environment's own site-packages, so `import hsgd`
    # finds the installed wheel and not this checkout.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                         "['purelib'])"]).strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
          str(wheel)])
    work = tmp_path / "work"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([str(python), "-c", "import hsgd; print(hsgd.__file__, hsgd.__version__)"],
                 cwd=work, env=clean).split()
    assert Path(where[0]).is_relative_to(site) and where[1] == version

    (work / "tiny.toml").write_text("""
[problem]
kind = "finite"
data = "gaussian"
n = 60
d = 20
[optimizer.schedule]
kind = "constant"
value = 0.5
[run]
horizon = 1.0
num_times = 3
methods = ["volterra"]
""")
    _run([str(env_dir / "bin" / "hsgd"), "run", "tiny.toml", "--out", "out"], cwd=work,
         env=clean)
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert summary["config"]["problem"]["n"] == 60
    assert (work / "out" / "curves.csv").is_file() and (work / "out" / "risk.png").is_file()
