#!/usr/bin/env python
"""Build the groupinf documentation site offline, without Quarto.

    python tools/build_site.py                  # writes site/ at the project root
    python tools/build_site.py --site-dir DIR   # or anywhere else

Two steps, both done by maintained tools:

1. nbdev's own notebook processing (`nbdev.serve.proc_nbs`, the step `nbdev_docs` runs before Quarto) writes
   the processed notebooks to `_proc/`: frontmatter from the `# Title` / `> summary` cells, `#| hide` and
   `#| export` cells removed, `show_doc` cells executed, backtick names linked to their API entries.
   Nothing else is executed: every other output is the one stored in the notebook.
2. mkdocs with the mkdocs-material theme and the mkdocs-jupyter plugin renders those notebooks to `site/`,
   one page per notebook in file-name order (`index.ipynb` is the home page), with mkdocs-material's search.

Between the two, each processed notebook gets the small translation that Quarto/Pandoc would otherwise do:
the frontmatter becomes the page title, Quarto cell options (`#| echo: false`, `#| include: false`,
`#| output: false`) are applied and stripped, show_doc's Pandoc-only link syntax becomes HTML, and links to
notebooks or to the published site (`doc_host` + `doc_baseurl`) become relative links inside this site.
Each page's table of contents lists its sections and its API entries, like nbdev's Quarto pages.

Math is typeset by MathJax 3 served from the site itself (`assets/mathjax/`), copied at build time from the
`django-static-mathjax` package; the theme's web fonts are turned off. The pages load nothing from other hosts.

This file is also the mkdocs hooks module of the generated configuration (`on_page_content`).
"""
from __future__ import annotations

import argparse
import html
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
DEFAULT_ROOT = TOOLS_DIR.parent

# Files that nbdev copies into `_proc/` for Quarto and that are no part of the mkdocs site.
QUARTO_FILES = {'_quarto.yml', 'nbdev.yml', 'sidebar.yml', 'styles.css', '_brand.yml'}

# MathJax 3 is served from the site itself (`assets/mathjax/`), copied at build time from the PyPI package
# django-static-mathjax (a plain copy of MathJax 3.2's `es5/` folder; no Django needed). mkdocs-jupyter writes
# one MathJax address into every page; it is given `MATHJAX_MARKER`, which `on_page_content` replaces by the
# MathJax configuration and a script tag whose address is relative to that page.
MATHJAX_DIR = 'assets/mathjax'
MATHJAX_BUNDLE = 'tex-chtml-full.js'
MATHJAX_MARKER = 'GROUPINF-MATHJAX'
MATHJAX_CONFIG = """<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}
};
</script>
"""
# Parts of MathJax's es5 folder that the bundle loads (fonts, on-demand TeX extensions, menu, a11y).
MATHJAX_PARTS = (MATHJAX_BUNDLE, 'input', 'output/chtml', 'ui', 'a11y', 'adaptors')

TOC_DEPTH = 3  # headings in each page's table of contents: sections and show_doc entries (###)
EXTRA_CSS_PATH = 'assets/stylesheets/groupinf.css'
EXTRA_CSS = """/* groupinf docs: notebook pages rendered by mkdocs-jupyter. */
.jupyter-wrapper .jp-RenderedMarkdown hr { margin: 1.5em 0 0.5em 0; }
.jupyter-wrapper .jp-OutputArea-output pre { white-space: pre-wrap; }
.md-typeset blockquote { font-style: italic; }
"""


# --------------------------------------------------------------------------------------------- notebooks
def notebook_paths(nbs_path: Path, recursive: bool = True) -> list[Path]:
    "Notebooks of the site, relative to `nbs_path`: `index.ipynb` first, then by path; `_`/`.` names skipped."
    pattern = '**/*.ipynb' if recursive else '*.ipynb'
    paths = []
    for p in nbs_path.glob(pattern):
        rel = p.relative_to(nbs_path)
        if any(part.startswith(('_', '.')) for part in rel.parts): continue
        if '.ipynb_checkpoints' in rel.parts: continue
        paths.append(rel)
    return sorted(paths, key=lambda r: (r.parent.parts, r.name != 'index.ipynb', r.name))


def default_page_name(rel: Path) -> str:
    "nbdev's page name for a notebook: numeric prefix dropped, lower case, `.html` (`00_data.ipynb` -> `data.html`)."
    name = re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())
    return (rel.parent / Path(name).with_suffix('.html')).as_posix()


def read_frontmatter(nb: dict) -> dict:
    "The YAML frontmatter that nbdev put in the first raw cell (title, description, output-file, ...)."
    import yaml
    for cell in nb['cells']:
        if cell['cell_type'] != 'raw': continue
        src = _src(cell).strip()
        if src.startswith('---') and src.count('---') >= 2:
            try: fm = yaml.safe_load(src.strip('-').strip()) or {}
            except yaml.YAMLError: return {}
            return fm if isinstance(fm, dict) else {}
        return {}
    return {}


def nav_title(title: str) -> str:
    "A page title as plain text for the navigation (markdown code marks and emphasis dropped)."
    return re.sub(r'[`*]', '', str(title)).strip()


def page_name(rel: Path, fm: dict) -> str:
    "Site path of a notebook's page, as Quarto would name it."
    out = fm.get('output-file')
    if out: return (rel.parent / out).as_posix()
    return default_page_name(rel)


def _src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')


def split_directives(source: str) -> tuple[dict, str]:
    "Leading `#| key: value` lines of a code cell as a dict, and the code without them."
    lines = source.splitlines()
    opts, i = {}, 0
    while i < len(lines):
        m = _re_directive.match(lines[i])
        if m: opts[m.group(1).lower()] = m.group(2).strip().strip('"\'').lower()
        elif lines[i].strip(): break
        i += 1
    return opts, '\n'.join(lines[i:]).strip('\n')


def _is_false(v) -> bool: return str(v).strip().lower() in ('false', 'no', '0')


def apply_cell_options(nb: dict) -> dict:
    "Apply Quarto's cell options (include/echo/output) to code cells and strip all `#|` directive lines."
    cells = []
    for cell in nb['cells']:
        if cell['cell_type'] == 'code':
            opts, code = split_directives(_src(cell))
            if _is_false(opts.get('include', 'true')): continue
            if _is_false(opts.get('output', 'true')): cell['outputs'] = []
            tags = cell.setdefault('metadata', {}).get('tags', [])
            if _is_false(opts.get('echo', 'true')) or not code.strip():
                if not cell.get('outputs'): continue
                cell['metadata']['tags'] = [*tags, 'remove_input']
            cell['source'] = code
        elif cell['cell_type'] == 'markdown' and 'THIS FILE WAS AUTOGENERATED' in _src(cell):
            continue
        cells.append(cell)
    nb['cells'] = cells
    return nb


def frontmatter_to_title(nb: dict, fm: dict) -> dict:
    "Replace nbdev's raw frontmatter cell by the `# Title` and `> summary` markdown that it came from."
    cells = [c for c in nb['cells'] if not (c['cell_type'] == 'raw' and _src(c).strip().startswith('---'))]
    head = []
    if fm.get('title'): head.append(f"# {fm['title']}")
    if fm.get('description'): head.append(f"> {fm['description']}")
    if head: cells.insert(0, {'cell_type': 'markdown', 'metadata': {}, 'source': '\n\n'.join(head)})
    nb['cells'] = cells
    return add_cell_ids(nb)


def add_cell_ids(nb: dict) -> dict:
    "Give every cell a unique id (nbformat 4.5 requires one; nbdev's inserted cells have none)."
    used = {c.get('id') for c in nb['cells']}
    for i, c in enumerate(nb['cells']):
        if not c.get('id'):
            k = i
            while f'cell-{k}' in used: k += 1
            c['id'] = f'cell-{k}'
            used.add(c['id'])
    if nb.get('nbformat') == 4 and nb.get('nbformat_minor', 0) < 5: nb['nbformat_minor'] = 5
    return nb


def relative_url(target: str, page: str) -> str:
    "Address of site path `target` (`''` for the site root) seen from the page at site path `page`."
    if not target: return '../' * page.count('/') or './'
    return posixpath.relpath(target, posixpath.dirname(page) or '.')


def make_link_rewriter(page: str, pages: dict, doc_base: str):
    "A function rewriting links in markdown/HTML text of `page`: notebooks and published-site URLs -> this site."
    doc_base = doc_base.rstrip('/') + '/' if doc_base else ''
    page_dir = Path(page).parent

    def _nb_target(m):
        pre, path, frag = m.group(1), m.group(2), m.group(3) or ''
        cand = (page_dir / path).as_posix()
        cand = os.path.normpath(cand).replace(os.sep, '/')
        if cand in pages: return f'{pre}{relative_url(pages[cand], page)}{frag}'
        return m.group(0)

    re_nb = re.compile(r'''(\]\(|href=["'])([^)"'#\s]+?\.ipynb)(#[^)"'\s]*)?''')

    def rewrite(text: str) -> str:
        if doc_base: text = text.replace(doc_base, relative_url('', page))
        return re_nb.sub(_nb_target, text)
    return rewrite


_re_api_heading = re.compile(r'^(#{2,6})[ \t]+([A-Za-z_][\w.]*\.[\w.]+)[ \t]*$', re.MULTILINE)


_re_attr_link = re.compile(r'\[([^\]\n]+)\]\(([^)\s]+)\)\{([^}\n]*)\}')
_re_attr = re.compile(r'([A-Za-z][\w-]*)="([^"]*)"')


def pandoc_links_to_html(text: str) -> str:
    "Pandoc's `[text](url){key=\"value\"}` (show_doc's source link) as an HTML link that any renderer reads."
    def _html(m):
        attrs = ''.join(f' {k}="{html.escape(v)}"' for k, v in _re_attr.findall(m.group(3)))
        return f'<a href="{html.escape(m.group(2))}"{attrs}>{m.group(1)}</a>'
    return _re_attr_link.sub(_html, text)


def adapt_show_doc(nb: dict) -> dict:
    """Make `show_doc`'s markdown outputs read right without Pandoc: headings of methods (`### Class.method`)
    get the anchor nbdev's doc links use (`#class.method`; the theme's heading ids drop the dot), and the
    `[source](url){...}` links become HTML links."""
    def _anchor(m): return f'<a id="{m.group(2).lower()}"></a>\n\n{m.group(0)}'
    for cell in nb['cells']:
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if 'text/markdown' in data:
                v = data['text/markdown']
                md = _re_api_heading.sub(_anchor, ''.join(v) if isinstance(v, list) else v)
                data['text/markdown'] = pandoc_links_to_html(md)
    return nb


def drop_widget_state(nb: dict) -> dict:
    "Drop the ipywidgets state that nbdev records: it makes pages fetch a widget renderer from a CDN."
    state = nb.get('metadata', {}).pop('widgets', None) or {}
    if any((v or {}).get('state') for v in state.values() if isinstance(v, dict)):
        print('note: widget state dropped (widgets are not rendered in the offline site)', file=sys.stderr)
    return nb


def rewrite_links(nb: dict, rewrite) -> dict:
    "Apply `rewrite` to markdown cells and to markdown/HTML outputs."
    for cell in nb['cells']:
        if cell['cell_type'] == 'markdown': cell['source'] = rewrite(_src(cell))
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            for mime in ('text/markdown', 'text/html'):
                if mime in data:
                    v = data[mime]
                    data[mime] = rewrite(''.join(v) if isinstance(v, list) else v)
    return nb


# ------------------------------------------------------------------------------------------------- build
def process_notebooks(root: Path, force: bool = False) -> Path:
    "Run nbdev's processing (as `nbdev_docs` does before Quarto) and return the `_proc` folder."
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    cwd = os.getcwd()
    os.chdir(root)
    get_config.cache_clear()  # nbdev caches the configuration of the folder it was first asked in
    try:
        cfg = get_config()
        n = max(1, min(os.cpu_count() or 1, 2))
        try: return Path(proc_nbs(path=str(cfg.nbs_path), n_workers=n, force=force))
        except Exception as e:
            raise RuntimeError(
                f"nbdev's notebook processing failed (nbdev_docs would fail the same way): {e}\n"
                'For the docs nbdev runs only the cells that define or import (`#| export`, imports, show_doc); '
                'a cell that mixes imports with other code is run too, so it must not use names from cells '
                'that are not run. Keep imports in cells of their own.') from e
    finally:
        os.chdir(cwd)
        get_config.cache_clear()


def stage_docs(root: Path, proc: Path, docs: Path) -> list[tuple[str, str]]:
    "Write mkdocs' docs folder from the processed notebooks; return the nav as (title, page) pairs."
    from nbdev.config import get_config
    cfg = get_config(path=root)
    nbs_path = Path(cfg.nbs_path)
    doc_base = (cfg.get('doc_host', '') or '') + (cfg.get('doc_baseurl', '') or '')
    rels = notebook_paths(nbs_path, str(cfg.get('recursive', 'True')).lower() in ('true', '1', 'yes'))
    missing = [r for r in rels if not (proc / r).exists()]
    if missing: raise FileNotFoundError(f'nbdev processing did not produce {", ".join(map(str, missing))} in {proc}')

    nbs = {r: json.loads((proc / r).read_text(encoding='utf-8')) for r in rels}
    fms = {r: read_frontmatter(nb) for r, nb in nbs.items()}
    pages = {r.as_posix(): page_name(r, fms[r]) for r in rels}
    seen = {}
    for r, p in pages.items():
        if p in seen: raise ValueError(f'notebooks {seen[p]} and {r} would both become the page {p}')
        seen[p] = r

    if docs.exists(): shutil.rmtree(docs)
    docs.mkdir(parents=True)
    # Files next to the notebooks (images referenced from markdown, data shown as links).
    for f in proc.rglob('*'):
        rel = f.relative_to(proc)
        if f.is_dir() or f.suffix == '.ipynb' or rel.name in QUARTO_FILES: continue
        if any(part.startswith('.') for part in rel.parts): continue
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, docs / rel)

    nav = []
    for r in rels:
        page = pages[r.as_posix()]
        nb = frontmatter_to_title(nbs[r], fms[r])
        nb = apply_cell_options(nb)
        nb = drop_widget_state(nb)
        nb = adapt_show_doc(nb)
        nb = rewrite_links(nb, make_link_rewriter(page, pages, doc_base))
        dest = docs / Path(page).with_suffix('.ipynb')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
        title = 'Home' if page == 'index.html' else nav_title(fms[r].get('title') or Path(page).stem)
        nav.append((str(title), Path(page).with_suffix('.ipynb').as_posix()))
    return nav


def mathjax_source() -> Path:
    "MathJax 3's `es5` folder inside the django-static-mathjax package."
    try: import mathjax
    except ImportError as e:
        raise ImportError('MathJax for the offline site comes from the PyPI package django-static-mathjax: '
                          'pip install django-static-mathjax') from e
    src = Path(mathjax.__file__).parent / 'static' / 'mathjax' / 'es5'
    if not (src / MATHJAX_BUNDLE).exists(): raise FileNotFoundError(f'{MATHJAX_BUNDLE} not found in {src}')
    return src


def vendor_assets(docs: Path) -> None:
    "Copy MathJax and the extra stylesheet into the docs folder."
    src, dest = mathjax_source(), docs / MATHJAX_DIR
    for part in MATHJAX_PARTS:
        s, d = src / part, dest / part
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir(): shutil.copytree(s, d, dirs_exist_ok=True)
        else: shutil.copy2(s, d)
    css = docs / EXTRA_CSS_PATH
    css.parent.mkdir(parents=True, exist_ok=True)
    css.write_text(EXTRA_CSS, encoding='utf-8')


def nav_tree(nav: list[tuple[str, str]]) -> list:
    "mkdocs `nav` in notebook order; notebooks in subfolders go into a section per folder, as nbdev's sidebar does."
    tree: list = []
    sections: dict = {(): tree}
    for title, page in nav:
        parts = Path(page).parent.parts
        for i in range(len(parts)):
            key = parts[:i + 1]
            if key not in sections:
                sections[key] = []
                sections[key[:-1]].append({re.sub(r'^\d+_', '', key[-1]): sections[key]})
        sections[tuple(parts)].append({title: page})
    return tree


def mkdocs_config(root: Path, docs: Path, site: Path, nav: list[tuple[str, str]]) -> dict:
    "The mkdocs configuration: material theme (no web fonts), search, mkdocs-jupyter over the staged notebooks."
    from nbdev.config import get_config
    cfg = get_config(path=root)
    return {
        'site_name': cfg.get('title', cfg.get('lib_name', 'docs')),
        'site_description': cfg.get('description', ''),
        'copyright': f"Copyright {cfg.get('copyright', '')}".strip(),
        'docs_dir': str(docs),
        'site_dir': str(site),
        'use_directory_urls': False,
        'strict': False,
        'theme': {
            'name': 'material',
            'font': False,  # no Google Fonts: system fonts only, nothing fetched from other hosts
            'palette': {'scheme': 'default', 'primary': 'indigo', 'accent': 'indigo'},
            'features': ['navigation.top', 'navigation.footer', 'navigation.tracking', 'toc.follow',
                         'search.highlight', 'search.suggest', 'content.code.copy'],
        },
        'plugins': [
            {'search': {}},
            {'mkdocs-jupyter': {
                'include': ['*.ipynb'],
                'execute': False,
                'allow_errors': False,
                'include_requirejs': False,
                'no_prompt': True,
                'ignore_h1_titles': True,  # navigation titles come from the frontmatter (see nav_title)
                'toc_depth': TOC_DEPTH,
                'theme': 'light',
                'cache': False,
                'custom_mathjax_url': MATHJAX_MARKER,
                'remove_tag_config': {'remove_input_tags': ['remove_input'],
                                      'remove_cell_tags': ['remove_cell'],
                                      'remove_all_outputs_tags': ['remove_output']},
            }},
        ],
        'hooks': [str(Path(__file__).resolve())],
        'extra_css': [EXTRA_CSS_PATH],
        'extra': {'generator': False},  # no "Made with Material" link to another host
        'nav': nav_tree(nav),
    }


def run_mkdocs(config: dict, staging: Path) -> None:
    "Write the configuration next to the docs folder and run `mkdocs build` on it."
    import subprocess
    import yaml
    cfg_file = staging / 'mkdocs.yml'
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding='utf-8')
    cmd = [sys.executable, '-m', 'mkdocs', 'build', '--clean', '-f', str(cfg_file)]
    env = {**os.environ, 'NO_MKDOCS_2_WARNING': '1'}  # mkdocs-material's notice about a future MkDocs 2
    res = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, env=env)
    if res.returncode:
        sys.stderr.write(res.stdout + res.stderr)
        raise RuntimeError(f'mkdocs build failed ({res.returncode})')
    for line in (res.stdout + res.stderr).splitlines():
        if 'WARNING' in line or 'ERROR' in line: print(line, file=sys.stderr)


def build_site(root: Path = DEFAULT_ROOT, site_dir: Path | None = None, force: bool = False,
               keep_staging: Path | None = None) -> Path:
    "Process the notebooks with nbdev and render them with mkdocs into `site_dir`; return `site_dir`."
    root = Path(root).resolve()
    if not (root / 'settings.ini').exists(): raise FileNotFoundError(f'no settings.ini in {root}')
    site = Path(site_dir).resolve() if site_dir else root / 'site'
    t0 = time.time()
    proc = process_notebooks(root, force=force)
    t1 = time.time()
    tmp = Path(keep_staging).resolve() if keep_staging else Path(tempfile.mkdtemp(prefix='groupinf-mkdocs-'))
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        docs = tmp / 'docs'
        nav = stage_docs(root, proc, docs)
        if not nav: raise FileNotFoundError(f'no notebooks found under {root}')
        vendor_assets(docs)
        run_mkdocs(mkdocs_config(root, docs, site, nav), tmp)
    finally:
        if not keep_staging: shutil.rmtree(tmp, ignore_errors=True)
    t2 = time.time()
    print(f'site: {site} ({len(nav)} pages; nbdev processing {t1 - t0:.1f}s, mkdocs {t2 - t1:.1f}s)')
    return site


# -------------------------------------------------------------------------------------- mkdocs hooks
_re_mathjax_tags = re.compile(r'<script src="' + MATHJAX_MARKER + r'">\s*</script>'
                              r'(?:\s*<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">.*?</script>)?',
                              re.DOTALL)


class _HeadingParser(HTMLParser):
    "Collects (level, id, text) of the headings with an id, as rendered."
    def __init__(self, max_level: int):
        super().__init__(convert_charrefs=True)
        self.max_level, self.found, self._cur, self._skip = max_level, [], None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if re.fullmatch(r'h[1-6]', tag) and int(tag[1]) <= self.max_level and a.get('id'):
            self._cur = [int(tag[1]), a['id'], []]
        elif self._cur is not None and tag == 'a' and 'anchor-link' in (a.get('class') or ''): self._skip += 1

    def handle_endtag(self, tag):
        if self._cur is not None and tag == 'a' and self._skip: self._skip -= 1
        elif self._cur is not None and tag == f'h{self._cur[0]}':
            level, hid, parts = self._cur
            text = re.sub(r'\s+', ' ', ''.join(parts)).replace('\u00b6', '').strip()
            if text: self.found.append((level, hid, text))
            self._cur = None

    def handle_data(self, data):
        if self._cur is not None and not self._skip: self._cur[2].append(data)


def toc_tokens_from_html(html_text: str, max_level: int = TOC_DEPTH) -> list[dict]:
    "mkdocs TOC tokens (nested by level) for the headings of a rendered page, with their real ids and text."
    p = _HeadingParser(max_level)
    p.feed(html_text)
    root, stack = [], []
    for level, hid, text in p.found:
        tok = {'level': level, 'id': hid, 'name': html.escape(text), 'html': html.escape(text), 'children': []}
        while stack and stack[-1]['level'] >= level: stack.pop()
        (stack[-1]['children'] if stack else root).append(tok)
        stack.append(tok)
    return root


def on_page_content(html_text: str, page, config, files, **kwargs) -> str:
    """mkdocs hook: load the site's own MathJax 3 on notebook pages (from an address relative to the page), and
    rebuild the page's table of contents from the rendered headings (mkdocs-jupyter's drops code in headings
    and links to ids that the page does not have)."""
    if MATHJAX_MARKER not in html_text: return html_text
    from mkdocs.structure.toc import get_toc
    src = relative_url(f'{MATHJAX_DIR}/{MATHJAX_BUNDLE}', page.file.url)
    tags = MATHJAX_CONFIG + f'<script id="MathJax-script" defer src="{src}"></script>'
    html_text = _re_mathjax_tags.sub(lambda m: tags, html_text, count=1)
    page.toc = get_toc(toc_tokens_from_html(html_text))
    return html_text


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', default=str(DEFAULT_ROOT), help='project root (the folder with settings.ini)')
    p.add_argument('--site-dir', default=None, help='output folder (default: <root>/site)')
    p.add_argument('--force', action='store_true', help="reprocess every notebook (ignore nbdev's _proc cache)")
    p.add_argument('--keep-staging', default=None, help='keep the generated mkdocs.yml and docs folder here')
    a = p.parse_args(argv)
    build_site(Path(a.root), Path(a.site_dir) if a.site_dir else None, force=a.force,
               keep_staging=Path(a.keep_staging) if a.keep_staging else None)
    return 0


if __name__ == '__main__':
    sys.exit(main())
