"""The exported module and the tests have no undefined names, unused imports or unused variables (ruff's F rules,
configured in pyproject.toml), so a name that only a notebook's hidden cell imports cannot hide a NameError; and no
notebook cell that the documentation build runs uses names from cells it does not run."""
import ast, json, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_pyflakes_errors_in_the_package_and_tests():
    ruff = shutil.which("ruff") or (Path(sys.executable).parent / "ruff")
    if not Path(str(ruff)).exists(): pytest.fail("ruff is not installed: it is a dev requirement (pip install -e '.[dev]')")
    out = subprocess.run([str(ruff), "check", "--no-cache", "groupinf", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


_DOC_RUN = re.compile(r"^#\|\s*(export|exports|exporti|exec_doc)\b", re.M)


def _cells_the_docs_build_runs_with_other_code(nb_path):
    "Code cells that nbdev's docs processing runs because they import, yet that also hold other statements."
    out = []
    for i, cell in enumerate(json.loads(nb_path.read_text())["cells"]):
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or _DOC_RUN.search(src) or re.search(r"^#\|\s*eval:\s*false", src, re.M): continue
        code = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
        try: tree = ast.parse(code)
        except SyntaxError: continue
        if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): continue
        runs_code = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
        if runs_code and "nbdev_export()" not in src: out.append(f"{nb_path.name} cell {i}: {src[:80]!r}")
    return out


def test_docs_build_runs_no_cell_that_mixes_imports_with_code():
    "nbdev runs every cell with an import when it builds the docs; such a cell must hold imports (and definitions) only."
    bad = [c for nb in sorted((ROOT / "nbs").glob("*.ipynb")) for c in _cells_the_docs_build_runs_with_other_code(nb)]
    assert not bad, "keep imports in cells of their own:\n" + "\n".join(bad)
