"""README.md is rendered from nbs/index.ipynb by `tools/build_readme.py`; it must be in step with the notebook."""
from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import build_readme  # noqa: E402


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    if not (ROOT / 'nbs' / 'index.ipynb').exists(): pytest.skip('nbs/index.ipynb does not exist yet')
    out = tmp_path_factory.mktemp('readme') / 'README.md'
    build_readme.build_readme(ROOT, out)
    return out


def test_readme_in_step_with_index(rendered):
    want = rendered.read_text(encoding='utf-8')
    have = (ROOT / 'README.md').read_text(encoding='utf-8') if (ROOT / 'README.md').exists() else ''
    diff = ''.join(difflib.unified_diff(have.splitlines(True), want.splitlines(True), 'README.md',
                                        'rendered from nbs/index.ipynb', n=1))
    assert have == want, f'README.md is out of step with nbs/index.ipynb; run `python tools/build_readme.py`:\n{diff[:4000]}'


def test_readme_has_no_directives_and_a_title(rendered):
    text = rendered.read_text(encoding='utf-8')
    assert text.startswith('# ')
    assert not re.search(r'^\s*#\|', text, re.MULTILINE), 'a cell directive (#|) leaked into the README'
    assert 'show_doc(' not in text


def test_readme_figures_exist(rendered):
    text = rendered.read_text(encoding='utf-8')
    for target in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', text):
        if '://' in target or target.startswith('data:'): continue
        assert (ROOT / target).exists(), f'README.md shows {target}, which is not in the repository'


def test_hidden_cells_and_directives_are_dropped(tmp_path):
    "On a small index notebook: `#| hide` cells are dropped, `#| echo: false` keeps only the output."
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('# Pkg\n\n> One line.'),
                nbformat.v4.new_code_cell('#| hide\nsecret = 1'),
                nbformat.v4.new_code_cell('#| echo: false\nprint("shown")',
                                          outputs=[nbformat.v4.new_output('stream', text='shown\n')]),
                nbformat.v4.new_code_cell('1 + 1', outputs=[nbformat.v4.new_output(
                    'execute_result', data={'text/plain': '2'}, execution_count=1)])]
    (tmp_path / 'nbs').mkdir()
    nbformat.write(nb, tmp_path / 'nbs' / 'index.ipynb')
    cfg = (ROOT / 'settings.ini').read_text(encoding='utf-8')
    (tmp_path / 'settings.ini').write_text(cfg, encoding='utf-8')
    out = build_readme.build_readme(tmp_path, tmp_path / 'README.md')
    text = out.read_text(encoding='utf-8')
    assert text.startswith('# Pkg\n') and '> One line.' in text
    assert 'secret' not in text and '#|' not in text
    assert 'print("shown")' not in text and 'shown' in text
    assert '1 + 1' in text and '2' in text
