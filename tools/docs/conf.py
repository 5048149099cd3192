"""Sphinx settings for the offline docs site (built by tools/build_docs.py; quarto users keep `nbdev_docs`).

Project facts come from settings.ini, so nothing here needs editing when the version or URL changes.
"""
import sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))       # autodoc imports the exported package from the checkout

_ini = ConfigParser(delimiters=['='])
_ini.read(ROOT/'settings.ini', encoding='utf-8')
_s = _ini['DEFAULT']

project = _s['lib_name']
author = _s['author']
copyright = _s['copyright']
release = version = _s['version']
html_title = f"{project} {version}"

extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.githubpages']
root_doc = 'index'
exclude_patterns = ['**.ipynb_checkpoints']

# notebooks are never executed here: the site shows the outputs saved in nbs/*.ipynb
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'          # show_doc and claim tables are markdown outputs
nb_output_stderr = 'remove'                  # progress bars and warnings are noise on a docs page
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_heading_anchors = 4                     # `config.html#get_scale` style anchors, as nbdev's doclinks use
myst_all_links_external = True               # nbdev doclinks point at pages by their .html name
suppress_warnings = ['myst.header', 'myst.xref_missing', 'mystnb.unknown_mime_type', 'misc.highlighting_failure',
                     'toc.not_included', 'myst.anchor', 'ref.python']

autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
default_role = 'literal'                    # nbdev docstrings are markdown: `x` means code, not RST's italics


def _docments(app, what, name, obj, options, lines):
    "Append nbdev docments (the comment after each parameter) to the autodoc text as :param: fields."
    for i, l in enumerate(lines):             # `config.document_params`' plain-text Args:/Returns: (for help()) -> :param: fields below
        if l in ('Args:', 'Returns:') and (i == 0 or not lines[i - 1].strip()): del lines[i:]; break
    docs = {}
    if what in ('function', 'method', 'class'):
        try:
            from fastcore.docments import docments
            docs = docments(obj, full=True)
        except Exception: docs = {}       # builtins, C extensions, odd signatures: keep the docstring alone
    extra = [f":param {k}: {v['docment']}" for k, v in docs.items() if k != 'return' and v.get('docment')]
    ret = docs.get('return')
    if ret and ret.get('docment'): extra.append(f":returns: {ret['docment']}")
    if extra: lines.extend(['', *(e.replace('*', r'\*') for e in extra)])   # `[*pos]` in a comment is not RST emphasis
    lines[:] = [l.replace('|', r'\|') for l in lines]          # markdown docstrings: `|x|` is not an RST substitution


def setup(app):
    app.connect('autodoc-process-docstring', _docments)


html_theme = 'sphinx_book_theme'
html_theme_options = {
    'repository_url': _s['git_url'],
    'repository_branch': _s.get('branch', 'main'),
    'path_to_docs': _s.get('nbs_path', 'nbs'),
    'use_repository_button': True,
    'use_download_button': False,           # it would link to _sources/, which html_copy_source=False leaves out
    'home_page_in_toc': True,
    'show_toc_level': 2,
}
html_copy_source = False        # the .ipynb sources would double the size of the site
html_show_sourcelink = False
html_last_updated_fmt = None
