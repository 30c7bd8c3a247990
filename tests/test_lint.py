"""The exported module has no undefined names, unused imports or unused variables (ruff's F rules, configured in
pyproject.toml), so a name that only a notebook's hidden cell imports cannot hide a NameError."""
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_pyflakes_errors_in_the_package():
    ruff = shutil.which("ruff") or (Path(sys.executable).parent / "ruff")
    if not Path(str(ruff)).exists(): pytest.fail("ruff is not installed: it is a dev requirement (pip install -e '.[dev]')")
    out = subprocess.run([str(ruff), "check", "--no-cache", "groupinf"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
