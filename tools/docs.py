"""`make docs`: a static HTML site of the notebooks, built with nbconvert (Quarto is not installable here).

    python tools/docs.py [--out _docs] [--jobs 2] [--only STEM ...] [--timeout 900]

Each notebook of `nbs/` is executed top to bottom in a fresh kernel (cwd `nbs/`), the way a reader
runs it, except cells that nbdev_test skips too (`#| eval: false`, and the `tst_flags` of
settings.ini such as `#| slow`): they are shown, not run. A chapter runs its tiny tests and
displays the committed full-run figures and tables of `figures/`. Pages follow nbdev's
directives: `#| hide` cells are left out, `#| echo: false` cells show only their output, and
`#| ...` lines are not shown. Every page has a bar with all chapters and previous/next links;
`figures/` is copied into the site so image links resolve.

Nothing outside the site is written: each notebook runs in its own scratch copy of the working tree
(`tools/scratch.py`) with a temporary `VLKD_CACHE`; whatever it writes into that copy is reported
as a stray write, and the hidden `nbdev_export()` cells are not run. Exit status 1 when a cell
raised (its page still shows the error).
"""
from __future__ import annotations
import argparse, configparser, copy, html, json, os, re, shutil, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import copy_tree, tree_state, changed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'


def directives(source: str) -> dict:
    "nbdev's `#| key: value` lines at the top of a cell, as {key: value} (`#| hide` gives {'hide': ''})."
    out = {}
    for line in source.splitlines():
        if not line.startswith('#|'):
            if line.strip(): break
            continue
        m = re.match(r'([\w-]+)\s*:?\s*(.*)', line[2:].strip())
        if m: out[m.group(1)] = m.group(2).strip()
    return out


def _strip_directives(source: str) -> str:
    lines = source.splitlines()
    while lines and (lines[0].startswith('#|') or not lines[0].strip()): lines.pop(0)
    return '\n'.join(lines)


def skip_flags(root: Path = ROOT) -> set[str]:
    "The cell flags nbdev_test skips by default (settings.ini `tst_flags`)."
    cp = configparser.ConfigParser(); cp.read(root / 'settings.ini')
    return set(cp['DEFAULT'].get('tst_flags', '').replace(',', ' ').split())


def runs(cell, flags: set[str]) -> bool:
    "Whether the docs build executes `cell` (as nbdev_test would)."
    if cell.cell_type != 'code': return False
    d = directives(cell.source)
    return d.get('eval', 'true').lower() != 'false' and not (flags & set(d))


def pages(nbs: Path = NBS) -> list[Path]:
    "The notebooks of the site in reading order: index first, then by name."
    found = sorted(nbs.glob('*.ipynb'))
    return sorted(found, key=lambda p: (p.stem != 'index', p.stem))


def title(path: Path) -> str:
    "The first `# heading` of a notebook, else its stem."
    for c in json.loads(path.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+)$', src, re.M)
            if m: return m.group(1).strip()
    return path.stem


def execute(path: Path,  # a notebook inside a scratch copy of the repository (see `tools/scratch.py`)
            timeout: int = 900,  # seconds per cell
            ) -> dict:
    "Execute `path` as the docs show it; returns the executed notebook, its errors, stray writes and seconds."
    import nbformat
    from nbclient import NotebookClient
    copy_root = path.parent.parent
    nb = nbformat.read(str(path), as_version=4)
    flags = skip_flags(copy_root)
    before = tree_state(copy_root)
    with tempfile.TemporaryDirectory(prefix='vlkd-docs-cache-') as cache:
        env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'IN_TEST', 'PYTEST_CURRENT_TEST', 'VLKD_FIGURES')}
        env.update(VLKD_CACHE=cache, PYTHONPATH=str(copy_root))
        client = NotebookClient(nb, timeout=timeout, kernel_name='python3', allow_errors=True,
                                resources={'metadata': {'path': str(path.parent)}})
        t0 = time.time()
        with client.setup_kernel(env=env, cwd=str(path.parent)):
            for i, cell in enumerate(nb.cells):
                if runs(cell, flags) and 'nbdev_export(' not in cell.source: client.execute_cell(cell, i)
        seconds = time.time() - t0
    errors = [dict(cell=i, ename=o.get('ename'), evalue=str(o.get('evalue'))[:200])
              for i, c in enumerate(nb.cells) if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    return dict(nb=nb, errors=errors, stray=changed(before, tree_state(copy_root)), seconds=seconds)


def _for_page(nb):
    "A copy of executed `nb` prepared for the page: hidden cells dropped, directives stripped, echo: false tagged."
    nb = copy.deepcopy(nb)
    cells = []
    for c in nb.cells:
        d = directives(c.source)
        if 'hide' in d or d.get('include', '').lower() == 'false' or 'default_exp' in d: continue
        if d.get('echo', '').lower() == 'false':
            c.metadata.setdefault('tags', []).append('remove_input')
        if c.cell_type == 'code':
            c.source = _strip_directives(c.source)
            if not c.source.strip() and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    return nb


_CSS = """<style>
nav.vlkd{display:flex;flex-wrap:wrap;gap:2px 10px;font:14px/1.4 system-ui,sans-serif;background:#f6f8fa;border-bottom:1px solid #ddd;padding:6px 12px;position:sticky;top:0;z-index:10}
nav.vlkd a{text-decoration:none;color:#0550ae;white-space:nowrap}
nav.vlkd a.here{font-weight:bold;color:#111}
div.vlkd-pager{font:14px system-ui,sans-serif;display:flex;justify-content:space-between;padding:12px;border-top:1px solid #ddd}
</style>"""


def nav_html(order: list[tuple[str, str]],  # (stem, title) of every page, in reading order
             stem: str,  # the page being rendered
             ) -> tuple[str, str]:
    "The bar of links at the top of page `stem` and its previous/next links."
    link = lambda s, t, cls='': f'<a href="{s}.html"{cls}>{html.escape(t)}</a>'
    bar = ''.join(link(s, s if s != 'index' else 'vlkd', ' class="here"' if s == stem else '') for s, t in order)
    stems = [s for s, _ in order]; i = stems.index(stem)
    prev = link(*order[i - 1]).replace('">', '">← ', 1) if i > 0 else '<span></span>'
    nxt = link(*order[i + 1]).replace('</a>', ' →</a>') if i + 1 < len(order) else '<span></span>'
    pager = f'<div class="vlkd-pager">{prev}{nxt}</div>'
    return f'{_CSS}<nav class="vlkd">{bar}</nav>{pager}', pager


def render(nb, order, stem: str) -> str:
    "The HTML page of executed notebook `nb`."
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    ex = HTMLExporter(config=cfg, template_name='lab')
    body, _ = ex.from_notebook_node(_for_page(nb), resources={'metadata': {'name': f'vlkd: {dict(order)[stem]}'}})
    top, bottom = nav_html(order, stem)
    body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + top, body, count=1)
    body = body.replace('</body>', bottom + '</body>', 1)
    body = body.replace('../figures/', 'figures/')  # figure links are relative to nbs/ in the notebooks
    return re.sub(r'href="([\w.-]+)\.ipynb', r'href="\1.html', body)


def _build_one(args):
    path, base, out, order, timeout = args
    stem = Path(path).stem
    with tempfile.TemporaryDirectory(prefix=f'vlkd-docs-{stem}-') as tmp:
        copy_root = Path(shutil.copytree(base, Path(tmp) / 'repo'))
        r = execute(copy_root / 'nbs' / Path(path).name, timeout=timeout)
    Path(out, f'{stem}.html').write_text(render(r['nb'], order, stem), encoding='utf-8')
    return stem, r['errors'], r['stray'], r['seconds']


def build(out: Path,  # the site folder
          only: list[str] | None = None,  # notebook stems to build; default all
          jobs: int = 2,  # notebooks executed in parallel
          timeout: int = 900,  # seconds per cell
          root: Path = ROOT,  # the repository whose working tree is documented
          ) -> int:
    "Build the site into `out`; print what raised or wrote; return the exit status."
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    if (out / 'figures').exists(): shutil.rmtree(out / 'figures')
    shutil.copytree(root / 'figures', out / 'figures')
    all_pages = pages(root / 'nbs')
    order = [(p.stem, title(p)) for p in all_pages]
    todo = [p for p in all_pages if not only or p.stem in only]
    if only and len(todo) != len(set(only)): raise SystemExit(f"--only: unknown notebook in {only}; known: {[s for s, _ in order]}")
    todo.sort(key=lambda p: -p.stat().st_size)  # long notebooks first keeps both workers busy
    status, t0 = 0, time.time()
    with tempfile.TemporaryDirectory(prefix='vlkd-docs-base-') as base, ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        copy_tree(Path(base), root)
        for stem, errors, stray, secs in pool.map(_build_one, [(str(p), base, str(out), order, timeout) for p in todo]):
            print(f'{stem}: {secs:.0f} s' + (f', {len(errors)} error(s)' if errors else ''), flush=True)
            for e in errors: print(f'  ERROR {stem} cell {e["cell"]}: {e["ename"]}: {e["evalue"]}'); status = 1
            for s in stray: print(f'  WARNING {stem} wrote {s} in its scratch copy of the repository (a stray write)')
    print(f'{len(todo)} page(s) in {time.time() - t0:.0f} s: open {out / "index.html"}')
    return status


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=str(ROOT / '_docs'), help='site folder (default _docs/)')
    p.add_argument('--only', nargs='*', help='notebook stems to build (default: all)')
    p.add_argument('--jobs', type=int, default=2, help='notebooks executed in parallel')
    p.add_argument('--timeout', type=int, default=900, help='seconds per cell')
    a = p.parse_args(argv)
    return build(Path(a.out), a.only, a.jobs, a.timeout)


if __name__ == '__main__': sys.exit(main())
