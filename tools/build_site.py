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

API entries: nbdev 2.4.14 inserts a show_doc cell for every exported name the notebook does not document, but it
misses `@patch`ed methods that the notebook documents (they appear twice) and inserts a cell's entries in reverse.
`tidy_api_entries` keeps one entry per name (the notebook's own), restores definition order and puts each class
before its methods; `render_api_entries` writes each entry again from the object: a `def`/`class` signature without
comments or links (a default whose repr is long is shown by the module constant holding it, else `…`), the
docstring, and the documented parameters (nbdev docments) as a table of name, type, default and description.
Also: stderr outputs (log lines, warnings) are left out; doc links to private names become plain code; notebook
names in code spans (`00_data`) link to their pages and the home page gets a generated "Contents" section; the
sidebar is grouped in `NAV_SECTIONS`; the header links the repository (settings.ini `git_url`) and every page links
its notebook ("Edit this page") and the issue tracker. After the build every `page.html#anchor` link is checked
against the ids of its target (missing ones retargeted to the class or unlinked), duplicate ids are renamed, and
the search index text is cleaned (no copy-button text, TeX without `$`).

Math is typeset by MathJax 3 served from the site itself (`assets/mathjax/`), copied at build time from the
`django-static-mathjax` package; the theme's web fonts are turned off. The pages load nothing from other hosts.

This file is also the mkdocs hooks module of the generated configuration (`on_page_content`).
"""
from __future__ import annotations

import argparse
import html
import inspect
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
EXTRA_CSS = """/* groupinf docs: notebook pages rendered by mkdocs-jupyter (rules prefixed by `body` to win over the
   notebook stylesheet that mkdocs-jupyter puts in each page). */
/* A wide content column: the theme's default grid (61rem) leaves ~690 px for notebooks on a 1400 px screen. */
.md-grid { max-width: 100rem; }
body .jupyter-wrapper .jp-RenderedMarkdown hr { margin: 1.5em 0 0.5em 0; }
/* Outputs wrap at spaces, never inside words; a token longer than the line scrolls. */
body .jupyter-wrapper .jp-OutputArea-output pre { white-space: pre-wrap; word-break: normal; overflow-wrap: normal;
  overflow-x: auto; }
/* Code blocks (cells, signatures) wrap long lines at spaces, never inside words; a longer token scrolls. */
body .jupyter-wrapper .highlight pre, body .jupyter-wrapper .highlight-ipynb pre, body .jupyter-wrapper .jp-RenderedMarkdown pre,
body .jupyter-wrapper .jp-OutputArea-output .highlight pre { white-space: pre-wrap; word-break: normal;
  overflow-wrap: normal; overflow-x: auto; }
body .jupyter-wrapper .jp-InputArea-editor pre { padding-right: 2.5em; }
body .jupyter-wrapper .zeroclipboard-container { opacity: 0.6; }
body .jupyter-wrapper .zeroclipboard-container:hover { opacity: 1; }
.md-typeset code { word-break: normal; }
/* Wide outputs (tables, figures, display math) scroll inside their own box instead of being clipped. */
body .jupyter-wrapper .jp-OutputArea-output, body .jupyter-wrapper .jp-RenderedHTMLCommon { overflow-x: auto; }
body .jupyter-wrapper .jp-RenderedImage img, body .jupyter-wrapper .jp-RenderedMarkdown img { max-width: 100%;
  height: auto; }
body .jupyter-wrapper .jp-RenderedHTMLCommon table { display: block; overflow-x: auto; max-width: 100%; }
mjx-container[display="true"] { display: block; overflow-x: auto; overflow-y: hidden; max-width: 100%;
  padding: 0.2em 0; }
/* API entries: signature, then the parameter table (as nbdev's Quarto pages show docments). */
body .jupyter-wrapper table.groupinf-params { display: table; width: 100%; border-collapse: collapse;
  margin: 0.5em 0 1em 0; font-size: 0.95em; }
body .jupyter-wrapper table.groupinf-params th, body .jupyter-wrapper table.groupinf-params td { text-align: left;
  vertical-align: top; padding: 0.3em 0.6em; border-bottom: 1px solid var(--md-default-fg-color--lightest); }
body .jupyter-wrapper table.groupinf-params code { white-space: nowrap; word-break: normal; }
.md-typeset blockquote { font-style: italic; }
.groupinf-page-actions { margin-top: 2em; font-size: 0.85em; opacity: 0.8; }
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


# ------------------------------------------------------------------------------------------- API entries
# nbdev's `add_show_docs` (2.4.14) inserts a `show_doc` cell after every exported definition that the notebook does
# not document itself. It compares the bare name of a `@patch`ed method (`fit`) with the documented names
# (`LogisticRegression.fit`), so a patched method that the notebook documents gets a second entry; and it inserts the
# entries of one cell in reverse order. `tidy_api_entries` undoes both and puts each class entry before its methods;
# `render_api_entries` then writes every entry again from the object itself: signature (no comments, no links, long
# defaults by name), docstring, and the documented parameters as a table, as nbdev's Quarto pages show them.
_re_show_doc_call = re.compile(r'show_doc\(\s*([A-Za-z_][\w.]*)\s*(?:,[^()]*)?\)')
_re_src_link = re.compile(r'/blob/[^/\s]+/([\w/]+)\.py#L(\d+)')
LONG_DEFAULT = 60  # a default whose repr is longer is shown by the name of the module constant holding it, else `…`


def show_doc_name(cell) -> str | None:
    "The name a `show_doc(name)` cell documents, or None for any other cell."
    if cell['cell_type'] != 'code': return None
    _, code = split_directives(_src(cell))
    m = _re_show_doc_call.fullmatch(code.strip())
    return m.group(1) if m else None


def _markdown_output(cell) -> str:
    for out in cell.get('outputs', []):
        v = out.get('data', {}).get('text/markdown')
        if v is not None: return ''.join(v) if isinstance(v, list) else v
    return ''


def _set_markdown_output(cell, md: str) -> None:
    for out in cell.get('outputs', []):
        if 'text/markdown' in out.get('data', {}): out['data']['text/markdown'] = md


def _source_pos(cell):
    m = _re_src_link.search(_markdown_output(cell))
    return (m.group(1), int(m.group(2))) if m else None


def tidy_api_entries(nb: dict, own_ids: set) -> dict:
    """API entries once each, in definition order, each class before its methods. `own_ids`: ids of the cells of the
    notebook itself (the cells nbdev inserted have others); of two entries for one name the notebook's own is kept."""
    cells = nb['cells']
    names = [show_doc_name(c) for c in cells]
    keep = {}
    for i, (c, n) in enumerate(zip(cells, names)):
        if n is None: continue
        own = c.get('id') in own_ids
        if n not in keep or (own and not keep[n][1]): keep[n] = (i, own)
    out = [(c, n) for i, (c, n) in enumerate(zip(cells, names)) if n is None or keep[n][0] == i]
    # runs of inserted entries, back in definition order (by source line)
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j][1] and out[j][0].get('id') not in own_ids: j += 1
        run = out[i:j]
        if len(run) > 1 and all(_source_pos(c) for c, _ in run):
            out[i:j] = sorted(run, key=lambda cn: _source_pos(cn[0]))
        i = max(j, i + 1)
    # each class entry before the first entry of its methods
    for n in [n for _, n in out if n and '.' not in n]:
        pos = next(k for k, (_, m) in enumerate(out) if m == n)
        first = next((k for k, (_, m) in enumerate(out) if m and m.startswith(n + '.')), None)
        if first is not None and first < pos: out.insert(first, out.pop(pos))
    nb['cells'] = [c for c, _ in out]
    return nb


def _resolve(name: str, lib: str, syms: dict, module_hint: str | None = None, page: str | None = None):
    """The object `name` (`f`, `Class`, `Class.method`) of the library, from nbdev's index of its symbols; of two
    modules with that name, the one whose entry is on `page` first, then `module_hint` (show_doc's source link)."""
    import importlib
    def own_page(m):  # the module documented on this page (nbdev's index: name -> (page#anchor, file))
        e = syms[m].get(f'{m}.{name}')
        return bool(page and e and str(e[0]).split('#')[0] == page)
    mods = sorted(syms, key=lambda m: (not own_page(m), m != module_hint))
    for mod in mods:
        entries = syms[mod]
        if f'{mod}.{name}' not in entries: continue
        obj = importlib.import_module(mod)
        for part in name.split('.'): obj = getattr(obj, part)
        return obj, mod
    return None, None


def _fmt_anno(anno) -> str:
    if isinstance(anno, str): return anno
    return inspect.formatannotation(anno).strip("'")


def fmt_default(value, module) -> str:
    "A parameter default as shown: its repr, or for a long one the module constant holding it, else `…`."
    if inspect.isfunction(value) or inspect.isclass(value): return value.__name__
    r = repr(value)
    if len(r) <= LONG_DEFAULT and '\n' not in r: return r
    for k, v in vars(module).items() if module else ():
        if v is value and not k.startswith('_'): return k
    return '…'


def _own_init(cls) -> bool:
    "Whether the class (or a non-builtin base) defines its constructor's signature."
    for k in cls.__mro__:
        if k is object: return False
        if '__init__' in vars(k) or '__new__' in vars(k) or '__signature__' in vars(k):
            return k.__module__ != 'builtins'
    return False


def _strip_md_links(text: str) -> str:
    "Markdown links `[`x`](url)` and `[x](url)` as their bare text (for code, where links cannot be)."
    text = re.sub(r'\[`([^`\]\n]+)`\]\([^)\s]*\)', r'\1', text)
    return re.sub(r'\[([^\]\n]+)\]\([^)\s]*\)', r'\1', text)


def signature_parts(obj, name: str):
    "(kind, params, return annotation) of an API entry; params are (name, annotation, default) strings or None."
    module = sys.modules.get(getattr(obj, '__module__', '') or '')
    if inspect.isclass(obj):
        if not _own_init(obj):
            bases = [b.__name__ for b in obj.__bases__ if b is not object]
            return 'class', [(b, None, None) for b in bases], None
        try: sig = inspect.signature(obj)
        except (TypeError, ValueError): return 'class', [], None
        ret = None
    else:
        try: sig = inspect.signature(obj)
        except (TypeError, ValueError): return 'def', None, None
        ret = None if sig.return_annotation is inspect.Signature.empty else _fmt_anno(sig.return_annotation)
    params = list(sig.parameters.values())
    if '.' in name and params and params[0].name in ('self', 'cls') and not inspect.ismethod(obj): params = params[1:]
    res = []
    for p in params:
        pre = '*' if p.kind == p.VAR_POSITIONAL else '**' if p.kind == p.VAR_KEYWORD else ''
        anno = None if p.annotation is p.empty else _fmt_anno(p.annotation)
        default = None if p.default is p.empty else fmt_default(p.default, module)
        res.append((pre + p.name, anno, default))
    return ('class' if inspect.isclass(obj) else 'def'), res, ret


def format_signature(kind: str, short: str, params, ret, width: int = 76) -> str:
    "`def f(a: int = 1, b=2) -> float` on one line, or one parameter a line when longer than `width`."
    if params is None: return f'{kind} {short}'
    def one(p):
        n, a, d = p
        if a is None: return n if d is None else f'{n}={d}'
        return f'{n}: {a}' if d is None else f'{n}: {a} = {d}'
    items = [one(p) for p in params]
    tail = f' -> {ret}' if ret else ''
    line = f'{kind} {short}({", ".join(items)}){tail}'
    if len(line) <= width: return line
    return f'{kind} {short}(\n' + ''.join(f'    {it},\n' for it in items) + f'){tail}'


def _inline_md(text: str) -> str:
    "Markdown of one table cell as HTML (code spans, links, emphasis)."
    import markdown
    h = markdown.markdown(text or '', extensions=[])
    return re.sub(r'^<p>(.*)</p>$', r'\1', h.strip(), flags=re.DOTALL)


def params_table(name: str, rows) -> str:
    "The parameter table of an API entry as HTML: name, type, default, description."
    head = ('<thead><tr><th>Parameter</th><th>Type</th><th>Default</th><th>Description</th></tr></thead>')
    body = []
    for n, anno, default, doc in rows:
        cells = [f'<code>{html.escape(n)}</code>' if not n.startswith('**Returns') else '<strong>Returns</strong>',
                 f'<code>{html.escape(anno)}</code>' if anno else '',
                 f'<code>{html.escape(default)}</code>' if default is not None else '',
                 _inline_md(doc)]
        body.append('<tr>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>')
    return (f'<table class="groupinf-params" data-api="{html.escape(name)}">{head}<tbody>'
            + ''.join(body) + '</tbody></table>')


def api_entry_markdown(obj, name: str, old_md: str, linkify=None) -> str:
    "The markdown of one API entry, written from the object (`old_md`: nbdev's, for its source link and level)."
    from fastcore.docments import docments
    kind, params, ret = signature_parts(obj, name)
    short = name.rsplit('.', 1)[-1]
    level = (re.search(r'^(#{1,6}) ', old_md, re.MULTILINE) or [None, '###'])[1]
    src = re.search(r'\[source\]\([^)]*\)\{[^}\n]*\}|<a href="[^"]*"[^>]*>source</a>', old_md)
    try: dm = docments(obj, full=True, returns=True, eval_str=False)
    except Exception: dm = {}
    if not isinstance(dm, dict): dm = {}
    doc = inspect.getdoc(obj) or ''
    if inspect.isclass(obj) and doc == inspect.getdoc(object): doc = ''
    link = linkify or (lambda t: t)
    parts = ['---', '']
    if src: parts += [src.group(0), '']
    parts += [f'{level} {name}', '', '```python', format_signature(kind, short, params, ret), '```', '']
    if doc:
        first, _, rest = link(doc).partition('\n')
        parts += [f'*{first.strip()}*' + (f'\n{rest}' if rest else ''), '']
    rows = []
    if params and (not inspect.isclass(obj) or _own_init(obj)):
        for n, anno, default in params:
            e = dm.get(n.lstrip('*'))
            d = e.get('docment') if isinstance(e, dict) else None
            rows.append((n, anno, default, link(d) if d else ''))
        r = dm.get('return') if isinstance(dm.get('return'), dict) else None
        if r and r.get('docment'): rows.append(('**Returns**', ret, None, link(r['docment'])))
    if any(doc_ for *_, doc_ in rows): parts += [params_table(name, rows), '']
    return '\n'.join(parts)


def render_api_entries(nb: dict, syms: dict, lib: str, linkify=None, page: str | None = None) -> dict:
    """Write each `show_doc` entry again from its object (the one documented on `page` when two modules have the
    name); entries that cannot be resolved keep nbdev's text."""
    for cell in nb['cells']:
        name = show_doc_name(cell)
        old = _markdown_output(cell) if name else ''
        if not old: continue
        try:
            pos = _source_pos(cell)
            hint = pos[0].replace('/', '.') if pos else None
            obj, mod = _resolve(name, lib, syms, hint, page)
            if obj is not None and pos and mod != hint:  # nbdev showed a namesake from another module
                try: line = inspect.getsourcelines(inspect.unwrap(obj))[1]
                except (OSError, TypeError): line = 1
                old = _re_src_link.sub(lambda m: m.group(0).replace(f'{pos[0]}.py#L{pos[1]}',
                                                                     f"{mod.replace('.', '/')}.py#L{line}"), old)
            new = api_entry_markdown(obj, name, old, linkify) if obj is not None and not isinstance(obj, property) else None
        except Exception as e:  # keep nbdev's entry, but never its links inside the signature
            print(f'note: API entry {name} kept as nbdev wrote it ({type(e).__name__}: {e})', file=sys.stderr)
            new = None
        if new is None:
            new = re.sub(r'```python\n.*?```', lambda m: _strip_md_links(m.group(0)), old, flags=re.DOTALL)
        _set_markdown_output(cell, new)
    return nb


def drop_widget_state(nb: dict) -> dict:
    "Drop the ipywidgets state that nbdev records: it makes pages fetch a widget renderer from a CDN."
    state = nb.get('metadata', {}).pop('widgets', None) or {}
    if any((v or {}).get('state') for v in state.values() if isinstance(v, dict)):
        print('note: widget state dropped (widgets are not rendered in the offline site)', file=sys.stderr)
    return nb


def drop_stderr(nb: dict) -> dict:
    "Leave stderr streams (log lines, warnings, temporary paths) out of the pages; stdout and results stay."
    for cell in nb['cells']:
        if 'outputs' in cell:
            cell['outputs'] = [o for o in cell['outputs']
                               if not (o.get('output_type') == 'stream' and o.get('name') == 'stderr')]
    return nb


_re_private_link = re.compile(r'\[`((?:\w+\.)*_(?!_)\w*)`\]\([^)\s]*\)')


def unlink_private(text: str) -> str:
    "Private names (a component with a leading underscore) have no API entry: their doc links become plain code."
    return _re_private_link.sub(r'`\1`', text)


def link_notebook_names(text: str, stems: dict, page: str) -> str:
    "Code spans naming a notebook (`00_data`, `00_data.ipynb`, `01_datasets_*`) as links to its page."
    import fnmatch

    def _link(m):
        name = m.group(1)
        stem = name[:-6] if name.endswith('.ipynb') else name
        hits = [s for s in stems if fnmatch.fnmatchcase(s, stem)] if '*' in stem else ([stem] if stem in stems else [])
        if not hits: return m.group(0)
        return f'[`{name}`]({relative_url(stems[sorted(hits)[0]], page)})'
    out, fence = [], False
    for line in text.split('\n'):
        if line.lstrip().startswith(('```', '~~~')): fence = not fence
        elif not fence: line = re.sub(r'(?<![\[`\w])`(\d[\w*.-]*?)`(?![`\]])', _link, line)
        out.append(line)
    return '\n'.join(out)


# Sidebar sections, in the order a reader learns: (title, pattern on the notebook's file name). Notebooks that
# match none stay at the top level; `index.ipynb` is the home page.
NAV_SECTIONS = (('Library', r'^0\d[a-z]?_(?!datasets_)'),
                ('Datasets', r'^\d+[a-z]?_datasets_'),
                ('Experiments', r'^1\d[a-z]?_'),
                ('Paper', r'^2\d[a-z]?_'))


def nav_section(rel: str) -> str | None:
    "The sidebar section of a notebook (by its file name), or None."
    name = Path(rel).name
    return next((t for t, pat in NAV_SECTIONS if re.match(pat, name)), None)


def contents_markdown(entries, page: str = 'index.html') -> str:
    "A `## Contents` section listing every page by sidebar section: entries are (title, page, notebook, summary)."
    lines, last = ['## Contents', ''], object()
    order = {t: i for i, (t, _) in enumerate(NAV_SECTIONS)}
    entries = sorted(entries, key=lambda e: order.get(nav_section(e[2]), len(order)))  # stable: notebook order inside
    for title, target, rel, summary in entries:
        if target == page: continue
        sec = nav_section(rel)
        if sec != last:
            if sec: lines += ['', f'**{sec}**', '']
            last = sec
        s = f' — {summary}' if summary else ''
        lines.append(f'* [{title}]({relative_url(target, page)}){s}')
    return '\n'.join(lines).strip() + '\n'


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


def source_cell_ids(path: Path) -> set:
    "Ids of the cells of a notebook as written (the cells nbdev's processing inserts have other ids)."
    try: nb = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError): return set()
    return {c.get('id') for c in nb.get('cells', []) if c.get('id')}


def _api_index(root: Path, cfg):
    "nbdev's index of the library's symbols, the library name, and nbdev's doc-link function (for docments)."
    import ast
    lib = cfg.get('lib_name', '')
    idx = root / cfg.get('lib_path', lib) / '_modidx.py'
    syms = {}
    if idx.exists():
        src = idx.read_text(encoding='utf-8')
        try: syms = ast.literal_eval(src[src.index('d = ') + 4:].strip())['syms']
        except (ValueError, SyntaxError, KeyError): syms = {}
    linkify = None
    cwd = os.getcwd()
    try:
        os.chdir(root)
        from nbdev.doclinks import NbdevLookup
        linkify = NbdevLookup().linkify
    except Exception as e: print(f'note: no doc links in parameter tables ({e})', file=sys.stderr)
    finally: os.chdir(cwd)
    return syms, lib, linkify


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

    syms, lib, linkify = _api_index(root, cfg)
    summaries = {r: nav_title(fms[r].get('description') or '') for r in rels}
    titles = {r: ('Home' if pages[r.as_posix()] == 'index.html'
                  else nav_title(fms[r].get('title') or Path(pages[r.as_posix()]).stem)) for r in rels}
    stems = {r.with_suffix('').as_posix(): pages[r.as_posix()] for r in rels}
    nav = []
    for r in rels:
        page = pages[r.as_posix()]
        nb = frontmatter_to_title(nbs[r], fms[r])
        nb = tidy_api_entries(nb, source_cell_ids(nbs_path / r))
        nb = render_api_entries(nb, syms, lib, linkify, page)
        nb = drop_stderr(nb)
        nb = apply_cell_options(nb)
        nb = drop_widget_state(nb)
        nb = adapt_show_doc(nb)
        nb = rewrite_links(nb, make_link_rewriter(page, pages, doc_base))
        nb = rewrite_links(nb, unlink_private)
        for cell in nb['cells']:
            if cell['cell_type'] == 'markdown': cell['source'] = link_notebook_names(_src(cell), stems, page)
        if page == 'index.html':
            entries = [(titles[x], pages[x.as_posix()], x.as_posix(), summaries[x]) for x in rels]
            nb['cells'].append({'cell_type': 'markdown', 'id': 'groupinf-contents', 'metadata': {},
                                'source': contents_markdown(entries, page)})
        dest = docs / Path(page).with_suffix('.ipynb')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
        nav.append((titles[r], Path(page).with_suffix('.ipynb').as_posix(), r.as_posix()))
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


def nav_tree(nav: list) -> list:
    """mkdocs `nav`: the home page, then the sections of `NAV_SECTIONS` in their order (notebook order inside each);
    nav entries are (title, page) or (title, page, notebook). Notebooks in subfolders go into a section per folder,
    as nbdev's sidebar does."""
    tree: list = []
    sections: dict = {(): tree}
    named: dict = {t: [] for t, _ in NAV_SECTIONS}
    for item in nav:
        title, page = item[0], item[1]
        sec = nav_section(item[2]) if len(item) > 2 and Path(page).name != 'index.ipynb' else None
        parts = Path(page).parent.parts
        top = () if sec is None else ('\0' + sec,)
        if sec is not None and top not in sections: sections[top] = named[sec]
        for i in range(len(parts)):
            key = top + parts[:i + 1]
            if key not in sections:
                sections[key] = []
                sections[key[:-1]].append({re.sub(r'^\d+_', '', key[-1]): sections[key]})
        sections[top + tuple(parts)].append({title: page})
    for t, _ in NAV_SECTIONS:
        if named[t]: tree.append({t: named[t]})
    return tree


def nav_pages(tree: list) -> list[str]:
    "The pages of a mkdocs nav in reading order."
    out = []
    for item in tree:
        for v in item.values(): out += nav_pages(v) if isinstance(v, list) else [v]
    return out


def repo_links(root: Path, cfg, nav: list) -> dict:
    """The repository (settings.ini's `git_url`, else github.com/`user`/`repo`), and for each page the addresses to
    edit its notebook in `nbs/` and to report an issue, as nbdev's Quarto pages link them."""
    url = (cfg.get('git_url') or '').rstrip('/')
    if not url and cfg.get('user') and cfg.get('repo'): url = f"https://github.com/{cfg.get('user')}/{cfg.get('repo')}"
    branch = cfg.get('branch', 'main') or 'main'
    try: nbs = Path(cfg.nbs_path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError: nbs = 'nbs'
    name = '/'.join(url.split('/')[-2:]) if url else ''
    sources = {item[1]: f'{nbs}/{item[2]}' for item in nav if len(item) > 2}
    return {'url': url, 'name': name, 'edit_uri': f'edit/{branch}/{nbs}/', 'issues': f'{url}/issues/new' if url else '',
            'edit': {page: f'{url}/edit/{branch}/{src}' for page, src in sources.items()} if url else {}}


def mkdocs_config(root: Path, docs: Path, site: Path, nav: list) -> dict:
    "The mkdocs configuration: material theme (no web fonts), search, mkdocs-jupyter over the staged notebooks."
    from nbdev.config import get_config
    cfg = get_config(path=root)
    repo = repo_links(root, cfg, nav)
    return {
        'site_name': cfg.get('title', cfg.get('lib_name', 'docs')),
        **({'repo_url': repo['url'], 'repo_name': repo['name'], 'edit_uri': repo['edit_uri']} if repo['url'] else {}),
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
                         'search.highlight', 'search.suggest', 'content.code.copy', 'content.action.edit'],
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
        # no "Made with Material" link to another host; the repository links of each page (see on_page_content)
        'extra': {'generator': False, 'groupinf': repo},
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
        if 'WARNING' in line or 'ERROR' in line or line.startswith('note:'): print(line, file=sys.stderr)


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


_re_tag_id = re.compile(r'<(\w+)\b[^>]*?\sid="([^"]+)"[^>]*>')
_re_cell_start = re.compile(r'<div class="jp-Cell (jp-\w+Cell)')


def dedupe_ids(html_text: str) -> str:
    """One element per id: of two headings with one id (a section `## Layout` and the API entry `Layout`, two
    `### Checks`), the API entry (a heading in a code cell's output, where nbdev's doc links point) keeps the id,
    else the first; the others get `-2`, `-3`, ... (with their heading's own anchor link)."""
    found = [(m.start(), m.end(), m.group(1), m.group(2)) for m in _re_tag_id.finditer(html_text)]
    by_id: dict = {}
    for f in found: by_id.setdefault(f[3], []).append(f)
    used = set(by_id)
    edits = []
    for i, occ in by_id.items():
        if len(occ) < 2: continue
        def in_code_cell(pos):
            cells = list(_re_cell_start.finditer(html_text, 0, pos))
            return bool(cells) and cells[-1].group(1) == 'jp-CodeCell'
        keep = next((o for o in occ if re.fullmatch(r'h[1-6]', o[2]) and in_code_cell(o[0])), occ[0])
        k = 2
        for o in occ:
            if o is keep: continue
            while f'{i}-{k}' in used: k += 1
            new = f'{i}-{k}'
            used.add(new)
            edits.append((o, new))
    for (start, end, tag, old), new in sorted(edits, key=lambda e: -e[0][0]):
        stop = end
        if re.fullmatch(r'h[1-6]', tag):
            close = html_text.find(f'</{tag}>', end)
            stop = close if close != -1 else end
        seg = html_text[start:stop].replace(f'id="{old}"', f'id="{new}"', 1).replace(f'href="#{old}"', f'href="#{new}"')
        html_text = html_text[:start] + seg + html_text[stop:]
    return html_text


def on_page_content(html_text: str, page, config, files, **kwargs) -> str:
    """mkdocs hook: load the site's own MathJax 3 on notebook pages (from an address relative to the page), rebuild
    the page's table of contents from the rendered headings (mkdocs-jupyter's drops code in headings and links to ids
    that the page does not have), and link the page's notebook in the repository ("edit this page", "report an
    issue")."""
    if MATHJAX_MARKER not in html_text: return html_text
    from mkdocs.structure.toc import get_toc
    src = relative_url(f'{MATHJAX_DIR}/{MATHJAX_BUNDLE}', page.file.url)
    tags = MATHJAX_CONFIG + f'<script id="MathJax-script" defer src="{src}"></script>'
    html_text = _re_mathjax_tags.sub(lambda m: tags, html_text, count=1)
    html_text = dedupe_ids(html_text)
    page.toc = get_toc(toc_tokens_from_html(html_text))
    repo = (config.get('extra') or {}).get('groupinf') or {}
    edit = (repo.get('edit') or {}).get(page.file.src_uri)
    page.edit_url = edit or None
    links = []
    if edit: links.append(f'<a href="{html.escape(edit)}" class="groupinf-edit">Edit this page</a>')
    if repo.get('issues'): links.append(f'<a href="{html.escape(repo["issues"])}" class="groupinf-issue">Report an issue</a>')
    if links: html_text += '\n<p class="groupinf-page-actions">' + ' · '.join(links) + '</p>\n'
    return html_text


def on_post_page(output: str, page, config, **kwargs) -> str:
    """mkdocs hook: the header's repository link stays a plain link (the theme would fetch the repository's stars and
    forks from the GitHub API, and the pages load nothing from other hosts)."""
    return output.replace(' data-md-component="source"', '')


_re_a = re.compile(r'<a\b([^>]*?)\bhref="([^"]*)"([^>]*)>(.*?)</a>', re.DOTALL)
_re_id = re.compile(r'\bid="([^"]+)"')


def fix_anchor_links(site: Path) -> int:
    """Every same-site link `page.html#anchor` must reach an id of that page: a missing `Class.member` anchor falls
    back to `#class` when that exists, else the link becomes plain text. Returns the number of links changed."""
    from urllib.parse import unquote
    pages = {f.relative_to(site).as_posix(): f for f in site.rglob('*.html')}
    ids = {k: {html.unescape(i) for i in _re_id.findall(f.read_text(encoding='utf-8'))} for k, f in pages.items()}
    changed = 0
    for key, f in pages.items():
        text = f.read_text(encoding='utf-8')

        def fix(m):
            nonlocal changed
            href = html.unescape(m.group(2))
            path, hash_, frag = href.partition('#')
            if not hash_ or not frag or '://' in path or path.startswith(('mailto:', 'data:', '//')): return m.group(0)
            target = key if not path else posixpath.normpath(posixpath.join(posixpath.dirname(key), path))
            if target not in ids: return m.group(0)
            frag = unquote(frag)
            if frag in ids[target]: return m.group(0)
            changed += 1
            parent = frag.rsplit('.', 1)[0] if '.' in frag else None
            if parent and parent in ids[target]:
                return f'<a{m.group(1)}href="{html.escape(path + "#" + parent)}"{m.group(3)}>{m.group(4)}</a>'
            return m.group(4)
        new = _re_a.sub(fix, text)
        if new != text: f.write_text(new, encoding='utf-8')
    return changed


_re_inline_math = re.compile(r'(?<![\\$])\$([^$\n]+?)\$(?!\$)')


def clean_search_text(text: str) -> str:
    "Search-index text without the copy buttons' notice and with TeX as plain text (no `$` delimiters)."
    text = text.replace('Copied!', ' ')
    text = re.sub(r'\$\$(.+?)\$\$', r' \1 ', text, flags=re.DOTALL)
    text = _re_inline_math.sub(r'\1', text)
    text = text.replace('\\$', '$')
    return re.sub(r'[ \t]{2,}', ' ', text)


def clean_search_index(site: Path) -> None:
    path = site / 'search' / 'search_index.json'
    if not path.exists(): return
    index = json.loads(path.read_text(encoding='utf-8'))
    for doc in index.get('docs', []):
        for k in ('text', 'title'):
            if isinstance(doc.get(k), str): doc[k] = clean_search_text(doc[k])
    path.write_text(json.dumps(index, ensure_ascii=False, separators=(',', ':')), encoding='utf-8')


def _last(f):
    try: from mkdocs.plugins import event_priority
    except ImportError: return f
    return event_priority(-100)(f)


@_last
def on_post_build(config, **kwargs) -> None:
    "mkdocs hook, after the search plugin: anchors checked site-wide, and the search index's text cleaned."
    site = Path(config['site_dir'])
    n = fix_anchor_links(site)
    if n: print(f'note: {n} links to missing anchors retargeted or unlinked', file=sys.stderr)
    clean_search_index(site)


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
