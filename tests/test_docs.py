"""The docs site builds offline from the notebooks' saved outputs and works in a real headless browser.

Needs Debian's chromium + chromium-driver (`bash tools/install_browser.sh`) and selenium (dev requirement); the
test installs nothing. It builds into _site/ (gitignored) and keeps a screenshot of the home page there
(_site/_screenshot.png) as a build artefact. A notebook cell cannot drive a browser, hence this file.
"""
import copy, functools, http.server, importlib.util, json, os, re, shutil, subprocess, sys, threading, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse, unquote
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('GCAV_NB_SITE', ROOT/'_site'))
CHROMIUM, CHROMEDRIVER = shutil.which('chromium') or '/usr/bin/chromium', shutil.which('chromedriver') or '/usr/bin/chromedriver'
_spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
bd = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(bd)


# ------------------------------------------------------------------ parsing saved notebooks (no build needed)
def _nb(*cells): return {'cells': list(cells), 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
def _code(src, *outs): return {'cell_type': 'code', 'source': src, 'outputs': list(outs), 'metadata': {}}
def _md_out(text): return {'output_type': 'display_data', 'data': {'text/markdown': text}, 'metadata': {}}

CLAIMS_MD = ('| paper claim | paper number | our number | reproduced? |\n|---|---|---|---|\n'
             '| TGCAV is more stable | CV 0.05 | CV 0.07 | yes |\n| attack fails | 0% | 12% | no |\n')
CLAIMS_HTML = ('<table class="dataframe"><thead><tr style="text-align: right;"><th></th><th>paper claim</th><th>paper number</th>'
               '<th>our number</th><th>reproduced?</th></tr></thead><tbody><tr><th>0</th><td>scores vary by layer</td>'
               '<td>0.3</td><td>0.28</td><td>partly</td></tr></tbody></table>')


def test_claim_tables_are_read_from_markdown_and_dataframe_outputs():
    "Claim tables are parsed from a markdown output and from a pandas DataFrame's HTML."
    nb = _nb(_code('show(claims)', _md_out(CLAIMS_MD)),
             _code('df', {'output_type': 'execute_result', 'data': {'text/html': CLAIMS_HTML, 'text/plain': 'df'}, 'metadata': {}}))
    md, html = bd.claim_tables(nb)
    assert [r['reproduced'] for r in md] == ['yes', 'no'] and md[0]['ours'] == 'CV 0.07'
    assert html == [{'claim': 'scores vary by layer', 'paper': '0.3', 'ours': '0.28', 'reproduced': 'partly'}]
    assert bd.status(md) == 'partly' and bd.status(md[:1]) == 'reproduced' and bd.status(md[1:]) == 'not reproduced'
    assert bd.claim_tables(_nb(_code('x', _md_out('| a | b |\n|---|---|\n| 1 | 2 |')))) == []


@pytest.mark.parametrize('value,expected', [('yes', 'yes'), ('✅ yes', 'yes'), ('**no**', 'no'), ('partly (cpu only)', 'partly'),
                                            ('not at this scale', 'no'), ('n/a', 'unknown'), ('True', 'yes')])
def test_reproduced_column_verdicts(value, expected):
    "The reproduced? column is read as yes / partly / no / unknown."
    assert bd.verdict(value) == expected


@pytest.mark.parametrize('outs,expected', [
    ([{'output_type': 'stream', 'name': 'stdout', 'text': 'SCALE = cpu\n'}], 'cpu'),
    ([{'output_type': 'execute_result', 'data': {'text/plain': "'ci'"}, 'metadata': {}}], 'ci'),
    ([], None)])
def test_scale_is_read_from_the_scale_cell_output(outs, expected):
    "The scale that produced the saved outputs comes from the SCALE cell's own output; none shown -> unknown."
    nb = _nb(_code('SCALE = get_scale()\nSCALE', *outs), _code('x = by_scale(1, 2)'))
    assert bd.detect_scale(nb) == expected
    note = bd.scale_note(expected, True, True)
    assert ('scale unknown' in note) if expected is None else (f'`{expected}`-scale' in note)


@pytest.mark.parametrize('text,expected', [("collect:   0%|          | 0/15 [00:00<?, ?it/s]", True),
                                           ("gradients: 100%|##########| 1/1 [00:01<00:00]", True),
                                           ("HBox(children=(Dropdown(...), IntRangeSlider(...)))", False), ("Explorer", False)])
def test_saved_progress_bars_are_dropped_other_widgets_noted(text, expected):
    "A saved tqdm bar (progress is on by default) is dropped from pages and the README; other widgets get the static note."
    assert bd.is_progress_bar(text) == expected
    w = {'output_type': 'display_data', 'metadata': {}, 'data': {bd.WIDGET_MIME: {'model_id': 'x'}, 'text/plain': [text]}}
    page = bd.page_nb(_nb(_code('run()', w)), '', None, readme=True)
    assert len(page['cells'][0]['outputs']) == (0 if expected else 1)


# ------------------------------------------------------------------ the built site in a browser
class _Links(HTMLParser):
    def __init__(self):
        super().__init__(); self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for k in ('href', 'src'):
            if a.get(k) and not (tag == 'link' and a.get('rel') in ('preconnect', 'dns-prefetch')): self.links.append(a[k])


BUILD_LOG = []   # what the site build printed (the `site` fixture fills it)


@pytest.fixture(scope='module')
def site():
    "Build the site once (the same command a user runs) and serve it over http on a free port."
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(SITE)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"docs build failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    print(f"docs build: {time.perf_counter() - t0:.1f}s\n{p.stdout[-2000:]}")
    BUILD_LOG.append(p.stdout + p.stderr)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(SITE))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "Headless Debian chromium driven by chromedriver through selenium (no network, fresh profile)."
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed: run `bash tools/install_browser.sh` (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1280,1000',
              f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}'):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _open(drv, url: str):
    "Load `url` and wait until the document and its article are complete (chromium may return before rendering)."
    from selenium.webdriver.support.ui import WebDriverWait
    drv.get(url)
    WebDriverWait(drv, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && location.href === arguments[0] && !!document.querySelector('article')", url),
        f"{url} did not finish loading")


def _images_ok(drv) -> tuple[int, list[str]]:
    "(number of content images, srcs of those that did not load)"
    res = drv.execute_script("""const imgs = [...document.querySelectorAll('article img, main img')];
        return [imgs.length, imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)];""")
    return res[0], res[1]


def test_home_page_loads_with_setup_commands_and_navigation(site, browser):
    "The home page renders the index notebook (title, the two set-up commands) with navigation; screenshot kept."
    _open(browser, site + 'index.html')
    assert 'gcav_nb' in browser.title
    text = browser.find_element('tag name', 'body').text
    assert 'bash tools/install.sh && .venv/bin/gcav_nb gcav --out results/gcav' in text
    assert 'bash tools/test.sh' in text
    nav = browser.execute_script("return [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
    for page in ('papers.html', 'api.html', 'ledger.html', 'explorer.html'):
        assert page in nav, f"{page} missing from the navigation: {nav}"
    n, broken = _images_ok(browser)
    assert not broken, f"images that did not load on the home page: {broken}"
    browser.save_screenshot(str(SITE/'_screenshot.png'))
    assert (SITE/'_screenshot.png').stat().st_size > 10_000


def _paper_page_with_figure() -> str:
    "A paper notebook's page that has a figure in its saved outputs; the explorer page until one exists."
    cfg = bd.get_cfg()
    entries = bd.collect(cfg.config_path/'_proc', {})
    def has_png(e): return any('image/png' in o.get('data', {}) for c in e['orig']['cells'] for o in c.get('outputs', []))
    papers = [e for e in entries if bd.is_paper(e) and has_png(e)]
    return (papers[0]['page'] if papers else 'explorer') + '.html'


def test_a_paper_page_loads_with_its_figures_and_scale(site, browser):
    "A paper page (or the explorer page) shows its saved figures, all loaded, and says which scale produced them."
    page = _paper_page_with_figure()
    _open(browser, site + page)
    n, broken = _images_ok(browser)
    assert n >= 1, f"{page}: no figure on the page ({browser.current_url}, title {browser.title!r})"
    assert not broken, f"{page}: images that did not load: {broken}"
    text = browser.find_element('tag name', 'body').text
    entry = next(e for e in bd.collect(bd.get_cfg().config_path/'_proc', {}) if e['page'] + '.html' == page)
    if entry['scale_cell']:
        assert ('-scale** run' in text or 'scale run' in text or 'scale unknown' in text or 'no saved outputs' in text), text[:2000]


def test_papers_page_lists_every_paper_notebook(site, browser):
    "The generated papers page lists every paper notebook with a status."
    _open(browser, site + 'papers.html')
    text = browser.find_element('tag name', 'body').text.replace('\u2019', "'").replace('\u201c', '"').replace('\u201d', '"')   # sphinx's smart quotes
    assert 'Papers: what reproduces' in text
    entries = [e for e in bd.collect(bd.get_cfg().config_path/'_proc', {}) if bd.is_paper(e)]
    for e in entries: assert e['title'] in text, f"{e['title']} missing from papers.html"


def test_search_finds_a_documented_function(site, browser):
    "Sphinx's offline search index answers a query for an exported name."
    browser.get(site + 'search.html?q=plot_layer_curves')
    for _ in range(40):
        links = browser.execute_script("return [...document.querySelectorAll('#search-results a')].map(a => a.getAttribute('href'))")
        if links: break
        time.sleep(0.25)
    assert any('explorer' in l or 'api' in l for l in links), links


def test_every_notebook_is_processed_by_nbdev(site):
    "nbdev renders every page with its show_doc sections (a page it cannot process loses its API anchors)."
    bad = [l for l in BUILD_LOG[-1].splitlines() if 'could not process' in l]
    assert not bad, "\n".join(bad)


def test_no_broken_internal_links(site):
    "Every relative href/src in every page of the site points at a file that exists (and an id that exists)."
    pages = {p.relative_to(SITE).as_posix(): p for p in SITE.rglob('*.html') if '_static' not in p.parts}   # _static: theme templates
    parsed = {}
    for rel, p in pages.items():
        h = _Links(); h.feed(p.read_text(encoding='utf-8', errors='replace')); parsed[rel] = h
    broken = []
    for rel, h in parsed.items():
        for link in h.links:
            u = urlparse(link)
            if u.scheme or link.startswith(('//', 'mailto:', 'javascript:', 'data:')) or link.startswith('#') and not u.fragment: continue
            target = (SITE/rel).parent/unquote(u.path) if u.path else SITE/rel
            target = Path(os.path.normpath(target))
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f"{rel}: {link}"); continue
            if u.fragment and target.suffix == '.html' and target.is_relative_to(SITE):
                t_rel = target.relative_to(SITE).as_posix()
                if t_rel in parsed and u.fragment not in parsed[t_rel].ids and rel not in ('genindex.html',):
                    broken.append(f"{rel}: {link} (no id {u.fragment!r})")
    assert not broken, f"{len(broken)} broken internal links, e.g. {broken[:15]}"


def test_readme_is_rendered_from_the_index_notebook(tmp_path):
    "README.md is what `python tools/build_docs.py --readme` makes of nbs/index.ipynb (run it after editing index)."
    p = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--readme', str(tmp_path/'README.md')], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path/'README.md'
    assert out.read_text(encoding='utf-8') == (ROOT/'README.md').read_text(encoding='utf-8'), \
        "README.md is stale: run `python tools/build_docs.py --readme` and commit README.md (+ README_files/)"


def test_readme_documents_the_top_level_names_and_the_basics():
    "README.md has a row per top-level name (module + docstring line), no lazy-import machinery, and the basics a new user asked for."
    import gcav_nb
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    assert '__getattr__' not in text and '__dir__' not in text and '_LAZY' not in text
    rows = {re.sub(r"\[(`[^`]*`)\]\([^)]*\)", r"\1", l) for l in text.splitlines()}   # lines with doclinks turned back into plain names
    for mod, names in gcav_nb._LAZY.items():
        for n in names:
            doc = (getattr(gcav_nb, n).__doc__ or '').strip().splitlines()[0]
            assert f"| `{n}` | `gcav_nb.{mod}` | {doc} |" in rows, f"{n} missing from the README's table of top-level names"
    for what in ('GCAV_NB_SCALE', 'ConceptSet.from_list', 'ConceptSet.from_file', 'CAVSet.load', 'ConceptResult.load', '--overwrite'):
        assert what in text, f"the README does not mention {what}"
