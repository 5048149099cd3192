"""Build the docs site and README.md from the notebooks' saved outputs, offline (no quarto needed).

    python tools/build_docs.py                 # -> _site/ ; preview: python -m http.server -d _site
    python tools/build_docs.py --readme        # -> README.md (+ README_files/) from nbs/index.ipynb, as nbdev_readme

Notebooks are processed by nbdev itself (`nbdev.serve.proc_nbs`: `#| hide` cells vanish, show_doc renders,
doclinks are added), exactly what `nbdev_docs` feeds to quarto; then Sphinx + myst-nb + sphinx-book-theme
renders them (navigation, search, an API reference from the docstrings). Nothing is executed: each page
shows the outputs saved in nbs/*.ipynb and says which SCALE produced them. Generated pages: papers.html
(status of every paper notebook, parsed from its saved claim table) and ledger.html (bench/ledger.md).
Users with quarto can still run `nbdev_docs` (settings.ini is untouched by this tool).
"""
from __future__ import annotations
import argparse, copy, html.parser, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package from this checkout, installed or not
CONF_DIR = ROOT/'tools'/'docs'
CLAIM_COLS = {'claim': ('paper claim', 'claim'), 'paper': ('paper number', 'paper'),
              'ours': ('our number', 'ours', 'our result'), 'reproduced': ('reproduced?', 'reproduced')}
SCALES = ('ci', 'cpu', 'gpu')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'


# ---------------------------------------------------------------- reading saved notebooks
def notebooks(nbs_path: Path) -> list[Path]:
    "The notebooks nbdev tests and documents: every *.ipynb under nbs_path except `_`/`.`-prefixed parts."
    return sorted(p for p in nbs_path.rglob('*.ipynb')
                  if not any(part.startswith(('_', '.')) for part in p.relative_to(nbs_path).parts))


def _src(cell) -> str: return ''.join(cell.get('source', ''))


def _out_texts(cell) -> list[str]:
    "Every text a code cell's saved outputs carry (stream, text/plain, text/markdown, text/html)."
    res = []
    for o in cell.get('outputs', []):
        if 'text' in o: res.append(''.join(o['text']))
        for k in ('text/plain', 'text/markdown', 'text/html'):
            if k in o.get('data', {}): res.append(''.join(o['data'][k]))
    return res


def detect_scale(nb: dict) -> str | None:
    """The scale that produced a notebook's saved outputs, or None.

    Convention: the parameter cell `SCALE = get_scale()` shows the scale in its output (e.g. a last line
    `SCALE` or `print(f"SCALE = {SCALE}")`). Fallback: any output line like `SCALE = 'cpu'` / `SCALE: cpu`."""
    cells = [c for c in nb.get('cells', []) if c.get('cell_type') == 'code']
    for c in cells:
        if re.search(r'^\s*SCALE\s*=', _src(c), re.M):
            for t in _out_texts(c):
                m = re.search(r"(?<![\w-])['\"]?(ci|cpu|gpu)['\"]?(?![\w-])", t)
                if m: return m.group(1)
    for c in cells:
        for t in _out_texts(c):
            m = re.search(r"\bSCALE\b\s*[=:]?\s*['\"]?(ci|cpu|gpu)\b", t)
            if m: return m.group(1)
    return None


def has_scale_cell(nb: dict) -> bool:
    return any(c.get('cell_type') == 'code' and re.search(r'^\s*SCALE\s*=', _src(c), re.M) for c in nb.get('cells', []))


def has_outputs(nb: dict) -> bool:
    return any(c.get('outputs') for c in nb.get('cells', []))


def _canon(header: list[str]) -> dict[str, int] | None:
    "Column positions of the four claim-table columns, or None when `header` is not a claim table."
    norm = [re.sub(r'[*_`]', '', h).strip().lower() for h in header]
    pos = {}
    for key, names in CLAIM_COLS.items():
        hit = [i for i, h in enumerate(norm) if h in names]
        if not hit: return None
        pos[key] = hit[0]
    return pos


def _md_tables(text: str) -> list[list[list[str]]]:
    "Pipe tables in markdown text, as lists of rows (the separator row dropped)."
    tables, cur = [], []
    for line in text.splitlines() + ['']:
        s = line.strip()
        if s.startswith('|'):
            cells = [c.strip().replace('\\|', '|') for c in re.split(r'(?<!\\)\|', s.strip('|'))]
            if not all(re.fullmatch(r':?-{2,}:?', c) for c in cells if c) or not any(cells): cur.append(cells)
        elif cur: tables.append(cur); cur = []
    return tables


class _HTMLTables(html.parser.HTMLParser):
    "Rows of every <table> in an HTML string (th and td cells alike), e.g. a pandas DataFrame's repr."
    def __init__(self):
        super().__init__(); self.tables, self.row, self.cell = [], None, None
    def handle_starttag(self, tag, attrs):
        if tag == 'table': self.tables.append([])
        elif tag == 'tr' and self.tables: self.row = []
        elif tag in ('td', 'th') and self.row is not None: self.cell = []
    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self.cell is not None: self.row.append(' '.join(''.join(self.cell).split())); self.cell = None
        elif tag == 'tr' and self.row is not None: self.tables[-1].append(self.row); self.row = None
    def handle_data(self, data):
        if self.cell is not None: self.cell.append(data)


def claim_tables(nb: dict) -> list[list[dict[str, str]]]:
    """Every claim table in a notebook's saved outputs (markdown or DataFrame HTML), as rows of
    {claim, paper, ours, reproduced}. A claim table has the columns "paper claim | paper number | our number |
    reproduced?" (DESIGN's short names "claim | paper | ours | reproduced?" are accepted too)."""
    found = []
    for c in nb.get('cells', []):
        for o in c.get('outputs', []):
            data = o.get('data', {})
            tables = []
            if 'text/markdown' in data: tables = _md_tables(''.join(data['text/markdown']))
            elif 'text/html' in data:
                p = _HTMLTables(); p.feed(''.join(data['text/html'])); tables = p.tables
            elif 'text' in o: tables = _md_tables(''.join(o['text']))
            for t in tables:
                if not t: continue
                pos = _canon(t[0])
                if pos is None and len(t) > 1: t = t[1:]; pos = _canon(t[0])   # pandas' column-name row
                if pos is None: continue
                rows = [{k: (r[i] if i < len(r) else '') for k, i in pos.items()} for r in t[1:]]
                found.append([r for r in rows if any(r.values())])
    return [t for t in found if t]


def verdict(value: str) -> str:
    "A reproduced? cell as 'yes' / 'partly' / 'no' / 'unknown'."
    v = re.sub(r'[*_`]', '', str(value)).strip().lower()
    if re.match(r'^(partly|partial|partially|mixed|~|approx|≈|in part|some)', v): return 'partly'
    if v == 'y' or re.match(r'^(yes|true|reproduced|confirmed|holds)\b', v) or (v and v[0] in '✓✔✅'): return 'yes'
    if v == 'n' or re.match(r'^(no|false|not|fails|failed|does not)\b', v) or (v and v[0] in '✗✘❌'): return 'no'
    return 'unknown'


def status(rows: list[dict[str, str]]) -> str:
    "reproduced (every claim yes) / not (every claim no) / partly (anything in between) / unknown."
    vs = [verdict(r['reproduced']) for r in rows]
    known = [v for v in vs if v != 'unknown']
    if not known: return 'unknown'
    if all(v == 'yes' for v in known) and len(known) == len(vs): return 'reproduced'
    if all(v == 'no' for v in known): return 'not reproduced'
    return 'partly'


# ---------------------------------------------------------------- turning processed notebooks into pages
def _frontmatter(nb: dict) -> dict[str, str]:
    for c in nb['cells']:
        s = _src(c)
        if c['cell_type'] == 'raw' and s.lstrip().startswith('---'):
            fm, key = {}, None
            for line in s.strip().strip('-').splitlines():
                m = re.match(r'^([\w-]+):\s*(.*)$', line)
                if m: key = m.group(1); fm[key] = m.group(2).strip()
                elif key and line.startswith(' '): fm[key] += ' ' + line.strip()
            return {k: re.sub(r"^(['\"])(.*)\1$", r'\2', v).replace("''", "'") for k, v in fm.items()}
    return {}


def scale_note(scale: str | None, scale_cell: bool, executed: bool) -> str | None:
    "The admonition telling which run produced a page's figures and numbers."
    if not scale_cell: return None
    if not executed: return ":::{warning}\nThis notebook has no saved outputs yet: run it to see its figures.\n:::\n"
    if scale is None:
        return (":::{note}\nOutputs on this page: **scale unknown** (the `SCALE` cell shows no scale in its saved "
                "output).\n:::\n")
    extra = {'ci': ' These are the tiny test-suite settings: the numbers are not meaningful.',
             'cpu': ' (SmolLM2-135M offline, minutes on 2 CPU cores.)', 'gpu': ' (the papers\' own models and data.)'}[scale]
    kind = 'warning' if scale == 'ci' else 'note'
    return f":::{{{kind}}}\nOutputs on this page come from a saved **`{scale}`-scale** run.{extra}\n:::\n"


def _md_cell(text: str, cid: str) -> dict:
    return {'cell_type': 'markdown', 'id': cid, 'metadata': {}, 'source': text}


_re_bar = re.compile(r'^\S[^|\n]*:\s+\d+%\|')


def is_progress_bar(text: str) -> bool:
    "True for the text/plain of a tqdm notebook bar ('collect:  40%|####  | 2/5 [...]')."
    return bool(_re_bar.match(text.strip()))


def page_nb(nb: dict, doc_url: str, note: str | None, readme: bool = False, depth: int = 0) -> dict:
    "A processed notebook made ready for myst-nb (or nbconvert, for the README)."
    nb = copy.deepcopy(nb)
    fm, cells, titled = _frontmatter(nb), [], False
    for c in nb['cells']:
        c.pop('has_sd', None)                             # nbdev-internal key: fails nbformat validation
        s = c['source'] = _src(c)
        if c['cell_type'] == 'raw' and s.lstrip().startswith('---'):
            head = f"# {fm.get('title', '')}\n\n" + (f"> {fm['description']}\n" if fm.get('description') else '')
            cells.append(_md_cell(head, 'frontmatter')); titled = True
            if note and not readme: cells.append(_md_cell(note, 'scale-note'))
            continue
        if c['cell_type'] == 'markdown' and 'AUTOGENERATED! DO NOT EDIT' in s: continue
        if doc_url and not readme:                                   # doclinks -> relative links inside the site
            c['source'] = s.replace(doc_url, '../' * depth)   # a page in a subfolder links up to the site root
        if c['cell_type'] == 'code':
            flags = re.findall(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', s, re.M)
            fl = {k: v.strip() for k, v in flags}
            if fl.get('include') == 'false': continue
            tags = c.setdefault('metadata', {}).setdefault('tags', [])
            if fl.get('echo') == 'false': tags.append('remove-input')
            if fl.get('output') == 'false': tags.append('remove-output')
            c['source'] = '\n'.join(l for l in s.splitlines() if not re.match(r'^\s*#\|', l))
            outs = []
            for o in c.get('outputs', []):
                data = o.get('data', {})
                for k in list(data):
                    if isinstance(data[k], list): data[k] = ''.join(data[k])
                    if k == 'text/markdown' and doc_url and not readme: data[k] = data[k].replace(doc_url, '../' * depth)
                    if k == 'text/markdown': data[k] = re.sub(r'\{target="_blank"[^}]*\}', '', data[k])
                    if k == 'text/markdown' and not readme:     # show_doc's leading rule: invalid inside an output
                        data[k] = re.sub(r'^\s*---\s*\n', '', data[k])
                if WIDGET_MIME in data and is_progress_bar(data.get('text/plain', '')): continue   # a saved tqdm bar says nothing
                if WIDGET_MIME in data:                               # a live widget cannot run on a static page
                    o = {'output_type': 'display_data', 'metadata': {},
                         'data': {'text/markdown': '*(interactive widget: run this notebook in Jupyter to use it; '
                                                   'the static figure below shows the same data)*'}}
                outs.append(o)
            c['outputs'] = outs
            if not c['source'].strip() and not outs: continue
        cells.append(c)
    if not titled and fm.get('title'): cells.insert(0, _md_cell(f"# {fm['title']}\n", 'frontmatter'))
    nb['cells'] = cells
    nb.setdefault('metadata', {}).setdefault('kernelspec', {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'})
    return nb


# ---------------------------------------------------------------- generated pages
def papers_page(entries: list[dict]) -> str:
    "papers.md: every paper notebook with its claim-table verdict and the scale that produced it."
    lines = ['# Papers: what reproduces', '',
             'Generated by `tools/build_docs.py` from the claim tables saved in each notebook\'s outputs '
             '(never typed by hand). A paper is **reproduced** when every claim is, **partly** when some are, '
             '**not reproduced** when none is. The scale says which run produced the saved numbers '
             '(`ci`: test-suite settings, not meaningful; `cpu`: the offline SmolLM2-135M experiment; `gpu`: the paper\'s own setting).',
             '']
    if not entries:
        return '\n'.join(lines + ['*No notebook has a saved claim table yet.*', ''])
    lines += ['| notebook | status | claims (yes / partly / no) | scale |', '| --- | --- | --- | --- |']
    for e in entries:
        if e['rows']:
            vs = [verdict(r['reproduced']) for r in e['rows']]
            counts = f"{len(vs)} ({vs.count('yes')} / {vs.count('partly')} / {vs.count('no')})"
            st = status(e['rows'])
        else: counts, st = '0', 'no claim table saved'
        lines.append(f"| [{e['title']}]({e['page']}.html) | {st} | {counts} | {e['scale'] or 'scale unknown'} |")
    for e in entries:
        if not e['rows']: continue
        lines += ['', f"## {e['title']}", '', f"From [{e['title']}]({e['page']}.html), {e['scale'] or 'scale unknown'} scale.", '',
                  '| paper claim | paper number | our number | reproduced? |', '| --- | --- | --- | --- |']
        lines += ['| ' + ' | '.join(r[k].replace('|', '\\|') for k in ('claim', 'paper', 'ours', 'reproduced')) + ' |'
                  for r in e['rows']]
    return '\n'.join(lines) + '\n'


def ledger_page() -> str:
    for p in (ROOT/'bench'/'ledger.md', ROOT/'bench'/'out'/'ledger.md'):
        if p.exists():
            text = p.read_text(encoding='utf-8')
            src = p.relative_to(ROOT)
            if not text.lstrip().startswith('# '): text = '# Benchmark ledger\n\n' + text
            return text + f"\n\n*Source: `{src}`, written by `python bench/run_all.py`.*\n"
    return ('# Benchmark ledger\n\n*No ledger yet: run `python bench/run_all.py --size cpu` '
            '(it writes bench/out/ledger.md; commit a copy as bench/ledger.md).*\n')


def api_page(pages: dict[str, str]) -> str:
    "api.md: autodoc for every exported module listed in gcav_nb/_modidx.py, linked to its notebook page."
    lib = get_cfg().lib_name
    sys.path.insert(0, str(ROOT))
    try:
        import importlib; modidx = importlib.import_module(f'{lib}._modidx').d
    finally: sys.path.pop(0)
    lines = ['# API reference', '', 'Generated from the docstrings (and the docments comments on parameters) '
             'of the exported modules; each module\'s notebook has the prose, the examples and the tests.', '']
    for mod, syms in sorted(modidx['syms'].items()):
        page = next((v[0].split('#')[0].removesuffix('.html') for v in syms.values()), None)
        lines += [f'## `{mod}`', '']
        if page and page in pages: lines += [f'Notebook: [{pages[page]}]({page}.html)', '']
        lines += ['```{eval-rst}', f'.. automodule:: {mod}', '```', '']
    return '\n'.join(lines)


# ---------------------------------------------------------------- build steps
_CFG = None
def get_cfg():
    global _CFG
    if _CFG is None:
        from nbdev.config import get_config
        _CFG = get_config(path=ROOT)
    return _CFG


_WORKER = ("import sys; from pathlib import Path; import nbdev.serve_drv as d; from nbdev.processors import FilterDefaults; "
           "d.main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))")


def _proc_one(o, timeout: float) -> str | None:
    "Process one notebook with nbdev's own worker in a child process (killed after `timeout` s); the error or None."
    src, dst, x = o
    if Path(src).suffix != '.ipynb':
        import nbdev.serve_drv
        try: nbdev.serve_drv.main(o); return None
        except Exception as e: return f"{type(e).__name__}: {e}"
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p), 'MPLBACKEND': 'Agg',
           'GCAV_NB_SCALE': 'ci'}     # nbdev runs import-containing cells only to render show_doc: the cheapest scale
    try: r = subprocess.run([sys.executable, '-c', _WORKER, str(src), str(dst)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"TimeoutError: processing took over {timeout:.0f}s (a cell that mixes imports with slow code?)"
    if r.returncode == 0: return None
    err = [l for l in r.stderr.splitlines() if l.strip()]
    return '\n'.join(err[-12:]) or f"exit code {r.returncode}"


def process(force: bool = False, only: str | None = None, timeout: float = 240) -> tuple[Path, dict[str, str]]:
    """nbdev's own processing (`nbdev.serve.proc_nbs`'s worker: hide cells removed, show_doc rendered, doclinks)
    of nbs/ into _proc/, cached by mtime; `force` redoes every notebook. Unlike proc_nbs, one failing or hanging
    notebook does not stop the build: its error is returned ({notebook path: error}) and its page falls back to
    the raw notebook. Two notebooks at a time, each in its own process with a time limit."""
    from concurrent.futures import ThreadPoolExecutor
    from nbdev.doclinks import nbglob
    from nbdev.serve import _proc_file
    import nbdev.serve
    cfg = get_cfg()
    cache, path = cfg.config_path/'_proc', cfg.path('nbs_path')
    files = nbglob(path, func=Path, file_glob='', file_re='')
    if only: files = files.filter(lambda f: f.name == only)
    chk = max(cfg.config_file.stat().st_mtime, Path(nbdev.serve.__file__).stat().st_mtime)
    cache.mkdir(parents=True, exist_ok=True)
    if force or cache.stat().st_mtime < chk: shutil.rmtree(cache); cache.mkdir()
    todo = list(files.map(_proc_file, mtime=cache.stat().st_mtime, cache=cache, path=path).filter())
    with ThreadPoolExecutor(max(1, min(len(todo), os.cpu_count() or 1, 4))) as ex:
        res = list(ex.map(lambda o: _proc_one(o, timeout), todo))
    errs = {str(o[0]): r for o, r in zip(todo, res) if r}
    for f in errs:                            # never leave a half-written page in the cache
        d = cache/Path(f).relative_to(path)
        if d.exists(): d.unlink()
    cache.touch()
    return cache, errs


def mixed_import_cells(nb: dict) -> list[int]:
    "Indices of code cells that nbdev would execute while rendering docs because they mix imports with other code."
    res = []
    for i, c in enumerate(nb.get('cells', [])):
        if c.get('cell_type') != 'code': continue
        lines = [l for l in _src(c).splitlines() if l.strip() and not l.lstrip().startswith('#')]
        imp = [l for l in lines if re.match(r'^\s*(import|from)\s+\S+', l)]
        if imp and len(imp) < len(lines) and not re.search(r'^\s*#\|\s*(export|exporti|exports|hide)\b', _src(c), re.M):
            res.append(i)
    return res


def _fallback_nb(nb: dict) -> dict:
    "A notebook nbdev could not process, minus its hide/default_exp cells and directive lines (no show_doc)."
    nb, cells = copy.deepcopy(nb), []
    for c in nb['cells']:
        s = _src(c)
        if c['cell_type'] == 'code' and re.search(r'^\s*#\|\s*(hide|default_exp)\b', s, re.M): continue
        cells.append(c)
    nb['cells'] = cells
    return nb


def _doc_url() -> str:
    cfg = get_cfg()
    return (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/'


def _write_nb(nb: dict, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')


def collect(cache: Path, errors: dict[str, str] | None = None) -> list[dict]:
    "One entry per notebook: original + processed json, page name, title, scale, claim tables."
    cfg, out = get_cfg(), []
    nbs_path = cfg.path('nbs_path')
    failed = {Path(k).resolve() for k in (errors or {})}
    for src in notebooks(nbs_path):
        rel = src.relative_to(nbs_path)
        proc = cache/rel
        orig = json.loads(src.read_text(encoding='utf-8'))
        if src.resolve() in failed or not proc.exists(): pnb = _fallback_nb(orig)
        else: pnb = json.loads(proc.read_text(encoding='utf-8'))
        fm = _frontmatter(pnb)
        if 'output-file' not in fm:                                   # unprocessed: the name nbdev would give it
            from nbdev.doclinks import _nbpath2html
            fm['output-file'] = _nbpath2html(rel).name
        page = str(rel.with_name(Path(fm['output-file']).stem).with_suffix(''))
        if rel.stem == Path(cfg.readme_nb).stem and rel.parent == Path('.'): page = 'index'
        h1 = next((m.group(1).strip() for c in orig['cells'] if c['cell_type'] == 'markdown'
                   for m in [re.match(r'^#\s+(.+)$', _src(c).strip(), re.M)] if m), rel.stem)
        out.append(dict(src=src, rel=rel, orig=orig, proc=pnb, page=page, title=fm.get('title') or h1,
                        description=fm.get('description', ''), scale=detect_scale(orig),
                        scale_cell=has_scale_cell(orig), executed=has_outputs(orig), rows=[r for t in claim_tables(orig) for r in t]))
    return out


def is_paper(e: dict) -> bool:
    "A paper notebook: it saves a claim table, or it is numbered 10+ (the per-paper families) or is 04/05*."
    m = re.match(r'^(\d+)', e['rel'].name)
    return bool(e['rows']) or bool(m and (int(m.group(1)) >= 10 or m.group(1) in ('04', '05')))


def build_site(out: Path, force: bool = False, keep_src: Path | None = None, quiet: bool = True, timeout: float = 240) -> dict:
    "Process, write the Sphinx source tree (a temp dir), run Sphinx into `out`. Returns timings and the page list."
    t0 = time.perf_counter()
    cache, errors = process(force, timeout=timeout)
    t1 = time.perf_counter()
    entries = collect(cache, errors)
    work = Path(tempfile.mkdtemp(prefix='gcav_docs_'))   # myst-nb writes next to Sphinx's outdir: keep it all here
    src = Path(keep_src) if keep_src else work/'src'
    if src.exists(): shutil.rmtree(src)
    src.mkdir(parents=True)
    url = _doc_url()
    index, pages = None, {}
    for e in entries:
        note = scale_note(e['scale'], e['scale_cell'], e['executed'])
        _write_nb(page_nb(e['proc'], url, note, depth=e['page'].count('/')), src/f"{e['page']}.ipynb")
        pages[e['page']] = e['title']
        if e['page'] == 'index': index = e
    if index is None: raise FileNotFoundError(f"no {get_cfg().readme_nb} in nbs/: it is the home page")
    (src/'papers.md').write_text(papers_page([e for e in entries if is_paper(e)]), encoding='utf-8')
    (src/'ledger.md').write_text(ledger_page(), encoding='utf-8')
    (src/'api.md').write_text(api_page(pages), encoding='utf-8')
    # navigation: a hidden toctree appended to the home page
    home = json.loads((src/'index.ipynb').read_text(encoding='utf-8'))
    nb_pages = [e['page'] for e in entries if e['page'] != 'index']
    toc = ('```{toctree}\n:hidden:\n:caption: Notebooks\n:maxdepth: 1\n\n' + '\n'.join(nb_pages) + '\n```\n\n'
           '```{toctree}\n:hidden:\n:caption: Reference\n:maxdepth: 1\n\npapers\nledger\napi\n```\n')
    home['cells'].append(_md_cell(toc, 'site-toc'))
    _write_nb(home, src/'index.ipynb')
    out = Path(out)
    if out.exists(): shutil.rmtree(out)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(CONF_DIR), '-d', str(work/'doctrees'),
           *(['-q'] if quiet else []), str(src), str(work/'html')]
    t2 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    warnings = [l for l in (r.stderr or '').splitlines() if 'WARNING' in l or 'ERROR' in l]
    if r.returncode: sys.exit(f"sphinx failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    fixed = fix_fragments(work/'html')
    shutil.move(str(work/'html'), str(out))
    shutil.rmtree(work, ignore_errors=True)
    t3 = time.perf_counter()
    return dict(pages=['index', *nb_pages, 'papers', 'ledger', 'api'], warnings=warnings, errors=errors, fixed_links=fixed,
                process_s=t1 - t0, sphinx_s=t3 - t2, total_s=t3 - t0,
                papers=[(e['page'], status(e['rows']) if e['rows'] else 'no claim table', e['scale']) for e in entries if is_paper(e)])


def fix_fragments(site: Path) -> int:
    """Make `page.html#anchor` links land: nbdev doclinks name `Class.method`, whose heading myst slugs as
    `classmethod`; an anchor that exists in neither form (a method without its own heading) points at the page
    itself. Pages in subfolders included. Returns how many links were changed."""
    pages = {p: p.read_text(encoding='utf-8') for p in site.rglob('*.html') if '_static' not in p.parts}
    ids = {p.resolve(): set(re.findall(r'\bid="([^"]+)"', t)) for p, t in pages.items()}
    n = 0
    for p, t in pages.items():
        def sub(m):
            nonlocal n
            href, frag = m.group(2), m.group(3)
            have = ids.get((p.parent/href).resolve())
            if have is None or frag in have: return m.group(0)
            n += 1
            slug = frag.replace('.', '')
            return f'{m.group(1)}{href}#{slug}"' if slug in have else f'{m.group(1)}{href}"'
        new = re.sub(r'(href=")((?:\.\./)*[\w./-]*?[\w.-]+\.html)#([^"]+)"', sub, t)
        if new != t: p.write_text(new, encoding='utf-8')
    return n


def build_readme(dest: Path = ROOT/'README.md', force: bool = False) -> Path:
    "README.md from the processed index notebook, through nbconvert's markdown exporter (images to README_files/)."
    from nbconvert import MarkdownExporter
    from nbconvert.writers import FilesWriter
    from traitlets.config import Config
    import nbformat
    cfg = get_cfg()
    cache, errors = process(force, only=cfg.readme_nb)
    if errors: print(_errors_text(errors), file=sys.stderr)
    proc = cache/cfg.readme_nb
    if not proc.exists(): sys.exit(f"nbdev could not process {cfg.readme_nb}: README.md left as it was")
    nb = page_nb(json.loads(proc.read_text(encoding='utf-8')), _doc_url(), None, readme=True)
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = ('remove-input',)
    c.TagRemovePreprocessor.remove_all_outputs_tags = ('remove-output',)
    body, res = MarkdownExporter(config=c).from_notebook_node(nbformat.reads(json.dumps(nb), as_version=4), resources={'output_files_dir': f'{dest.stem}_files'})
    old = dest.parent/f'{dest.stem}_files'
    if old.exists(): shutil.rmtree(old)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    FilesWriter(build_directory=str(dest.parent)).write(body, res, notebook_name=dest.stem)
    return dest


def _errors_text(errors: dict[str, str]) -> str:
    return '\n'.join(f"WARNING: nbdev could not process {os.path.relpath(k, ROOT)} (its page shows the raw notebook, "
                     f"without show_doc): " + ' / '.join(_err_lines(v)) + " (nbdev runs every cell that contains an import "
                     "when it renders docs: keep imports in the notebook's import cells)." + _mixed_hint(k)
                     for k, v in errors.items())


def _mixed_hint(path: str) -> str:
    try: idx = mixed_import_cells(json.loads(Path(path).read_text(encoding='utf-8')))
    except Exception: return ''
    return f" Cells mixing imports with other code: {idx}." if idx else ''


def _err_lines(v: str) -> list[str]:
    "The first line of an nbdev processing error and its last two (the exception), shortened."
    ls = [l.strip() for l in v.splitlines() if l.strip()]
    return [l[:200] for l in (ls[:1] + ls[-2:] if len(ls) > 3 else ls)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--readme', nargs='?', const=str(ROOT/'README.md'), default=None, metavar='PATH',
                    help='only write README.md (or PATH) from the index notebook')
    ap.add_argument('--out', default=str(ROOT/'_site'), help='output folder of the site (default _site/)')
    ap.add_argument('--force', action='store_true', help='re-process every notebook (ignore the _proc/ cache)')
    ap.add_argument('--keep-src', default=None, help='keep the generated Sphinx source tree in this folder')
    ap.add_argument('--verbose', action='store_true', help="show Sphinx's own output")
    ap.add_argument('--nb-timeout', type=float, default=240, help='seconds allowed for nbdev to process one notebook')
    a = ap.parse_args(argv)
    if a.readme:
        print(f"wrote {os.path.relpath(build_readme(Path(a.readme).resolve(), force=a.force))}"); return
    info = build_site(Path(a.out), force=a.force, keep_src=a.keep_src, quiet=not a.verbose, timeout=a.nb_timeout)
    for w in info['warnings'][:20]: print(w)
    if info['errors']: print(_errors_text(info['errors']))
    print(f"{len(info['pages'])} pages -> {a.out}  (nbdev processing {info['process_s']:.1f}s, sphinx {info['sphinx_s']:.1f}s, "
          f"{len(info['warnings'])} warnings)\npreview: python -m http.server -d {os.path.relpath(a.out)}")


if __name__ == '__main__': main()
