"""The chapters in a real browser: Debian's chromium driven by Playwright, as a reader uses them.

On a scratch clone of the working tree (`tools/scratch.py`) this starts JupyterLab from `.venv`
with the repository's `jupyter_server_config.py` (as `make lab` does) on a free port of 127.0.0.1
with a token, and for each notebook:
1. opens it, waits for its kernel, saves it, and checks that `git status` of the clone is clean;
2. runs all cells (JupyterLab's `notebook:run-all-cells`) and checks that no cell shows an error
   and that nothing but the notebook itself changed in the clone (no stray writes); after a save,
   `tools/nbclean.py` (`make clean-nbs`) must restore the committed notebook;
3. moves the first ipywidgets slider in the outputs and checks that the plot image changed
   (`test_widget_moves_plot` skips notebooks that have no slider yet; the skips are the count).
Then it builds the static site of `make docs` for those notebooks and loads every page, checking
that every <img> loaded. With `VLKD_BROWSER_SHOTS=<folder>` it also saves a screenshot of each notebook's
first widget cell, after the slider moved, as `<folder>/<stem>_lab.png`.

Kernels get a temporary VLKD_CACHE and Jupyter a temporary home, so nothing outside the clone is
written. `VLKD_BROWSER_NOTEBOOKS="000_utils 00_losses"` restricts the notebooks (default: all of
nbs/). Without chromium or playwright the tests skip, unless `VLKD_REQUIRE_BROWSER=1` (set by
.ci/run), which makes that a failure. `VLKD_CHROMIUM` points at another chromium binary.
"""
from __future__ import annotations
import importlib.util, json, os, secrets, shutil, socket, subprocess, sys, threading, time, urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_ALL_TIMEOUT = int(os.environ.get('VLKD_BROWSER_TIMEOUT', 1200))  # seconds for one notebook's Run All


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'vlkd_tools_{name}', ROOT / 'tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def selected() -> list[str]:
    "Notebook stems to test: `$VLKD_BROWSER_NOTEBOOKS` (space or comma separated), else every notebook of nbs/."
    every = [p.stem for p in sorted((ROOT / 'nbs').glob('*.ipynb'))]
    want = os.environ.get('VLKD_BROWSER_NOTEBOOKS', '').replace(',', ' ').split()
    unknown = set(want) - set(every)
    if unknown: raise ValueError(f"VLKD_BROWSER_NOTEBOOKS: no notebook {sorted(unknown)} in nbs/")
    return want or every


def chromium_path() -> str | None:
    "`$VLKD_CHROMIUM`, else Debian's `chromium` on PATH."
    for c in (os.environ.get('VLKD_CHROMIUM'), shutil.which('chromium'), shutil.which('chromium-browser')):
        if c and Path(c).exists(): return c
    return None


def _missing(reason):
    if os.environ.get('VLKD_REQUIRE_BROWSER') == '1': pytest.fail(f'{reason} (VLKD_REQUIRE_BROWSER=1)')
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _git_status(repo: Path) -> list[str]:
    out = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=repo, capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.strip()]


RESULTS: dict[str, dict] = {}  # per notebook: what the lab test saw (read by the widget report)
SITE: dict = {}  # the docs build started by `clone`


@pytest.fixture(scope='module')
def browser():
    exe = chromium_path()
    if exe is None: _missing('chromium is not installed (apt-get install -y chromium)')
    try: from playwright.sync_api import sync_playwright
    except ImportError: _missing('playwright is not installed (it is in requirements.txt: make venv)')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-dev-shm-usage'])
        yield b
        b.close()


@pytest.fixture(scope='module')
def clone(tmp_path_factory, request):
    "The scratch clone; it also starts building the docs site of the selected notebooks next to the lab tests."
    repo = _tool('scratch').scratch_clone(tmp_path_factory.mktemp('browser') / 'repo', ROOT)
    if not any(i.name.startswith('test_docs') for i in request.session.items):
        yield repo; return
    out = tmp_path_factory.mktemp('site')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTEST_CURRENT_TEST', 'IN_TEST')}
    log = open(out.parent / 'docs.log', 'w')
    stems = sorted(set(selected()) | {'index'})  # one worker: the lab tests keep the other core busy
    proc = subprocess.Popen([sys.executable, str(repo / 'tools' / 'docs.py'), '--out', str(out), '--jobs', '1', '--only', *stems],
                            cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    SITE.update(proc=proc, out=out, log=Path(log.name), t0=time.time())
    yield repo
    if proc.poll() is None: proc.kill(); proc.wait()
    log.close()


@pytest.fixture(scope='module')
def lab(clone, tmp_path_factory):
    "JupyterLab on the clone: (base url, token)."
    home = tmp_path_factory.mktemp('jupyter-home')
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'IN_TEST', 'PYTEST_CURRENT_TEST', 'VLKD_FIGURES')}
    env.update(JUPYTER_CONFIG_PATH=str(clone), JUPYTER_CONFIG_DIR=str(home / 'config'), JUPYTER_DATA_DIR=str(home / 'data'),
               JUPYTER_RUNTIME_DIR=str(home / 'runtime'), IPYTHONDIR=str(home / 'ipython'),
               JUPYTERLAB_WORKSPACES_DIR=str(home / 'workspaces'), JUPYTERLAB_SETTINGS_DIR=str(home / 'settings'),
               VLKD_CACHE=str(home / 'vlkd-cache'), PYTHONPATH=str(clone), MPLCONFIGDIR=str(home / 'mpl'),
               HF_HUB_OFFLINE=os.environ.get('HF_HUB_OFFLINE', '1'), TRANSFORMERS_OFFLINE=os.environ.get('TRANSFORMERS_OFFLINE', '1'))
    log = open(home / 'lab.log', 'w')
    proc = subprocess.Popen([str(BIN / 'jupyter'), 'lab', '--no-browser', '--allow-root', '--ServerApp.ip=127.0.0.1',
                             f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
                             f'--ServerApp.root_dir={clone}', '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=None',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited: {(home / "lab.log").read_text()[-2000:]}')
            try: urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
            except OSError: time.sleep(0.5)
        else: pytest.fail('jupyter lab did not answer within 120 s')
        yield url, token
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


_OPEN = """async (path) => {
  const app = window.jupyterapp;
  const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await w.context.ready; await w.sessionContext.ready;
  for (let i = 0; i < 1200; i++) {
    const k = w.sessionContext.session && w.sessionContext.session.kernel;
    if (k && k.status === 'idle') break;
    await new Promise(r => setTimeout(r, 100));
  }
  app.shell.activateById(w.id);
  await w.context.save();
  return w.sessionContext.session.kernel.status;
}"""

_RUN_ALL = """async (timeoutMs) => {
  const app = window.jupyterapp, w = app.shell.currentWidget;
  const t = new Promise(r => setTimeout(() => r('timeout'), timeoutMs));
  const done = await Promise.race([app.commands.execute('notebook:run-all-cells'), t]);
  for (let i = 0; i < 600; i++) {  // the kernel finishes what it was given
    if (w.sessionContext.session.kernel.status === 'idle') break;
    await new Promise(r => setTimeout(r, 100));
  }
  await new Promise(r => setTimeout(r, 1000));  // widget views render after the reply
  const cells = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    const errs = c.model.outputs.toJSON().filter(o => o.output_type === 'error');
    cells.push({index: i, ran: c.model.executionCount !== null, first: c.model.sharedModel.getSource().split('\\n')[0],
                errors: errs.map(o => ({ename: o.ename, evalue: String(o.evalue).slice(0, 300)}))});
  });
  return {done: done === 'timeout' ? 'timeout' : String(done), cells};
}"""

_CLOSE = """async () => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.sessionContext) return;
  await w.sessionContext.shutdown();
  w.context.model.dirty = false; w.dispose();
}"""

_PLOT_SRCS = """(handle) => {
  const area = handle.closest('.jp-OutputArea-output') || handle.closest('.jp-Cell');
  return Array.from(area.querySelectorAll('img')).map(i => i.src);
}"""


def _move_first_slider(page, timeout_s: float = 60):
    "Move the first ipywidgets slider right by three steps; (found, changed) for the plot next to it."
    handles = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider .noUi-handle')
    if handles.count() == 0: return False, False
    h = handles.first
    h.scroll_into_view_if_needed()
    before = h.evaluate(_PLOT_SRCS)
    h.focus()
    for _ in range(3): page.keyboard.press('ArrowRight')
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        after = h.evaluate(_PLOT_SRCS)
        if after and after != before: return True, True
        time.sleep(0.5)
    return True, False


@pytest.mark.parametrize('stem', selected())
def test_notebook_in_lab(stem, browser, lab, clone):
    "Open + save leaves git clean; Run All shows no error and writes nothing else; the first slider moves its plot."
    url, token = lab
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    page.set_default_timeout(120_000)
    problems, t0 = [], time.time()
    try:
        page.goto(f'{url}/lab?reset&token={token}')
        page.wait_for_function('window.jupyterapp && window.jupyterapp.started !== undefined', timeout=120_000)
        page.evaluate('() => window.jupyterapp.restored')
        page.evaluate(_OPEN, f'nbs/{stem}.ipynb')
        dirty = _git_status(clone)
        if dirty: problems.append(f'opening and saving {stem} in JupyterLab changed the clone (run `make clean-nbs`?): {dirty}')
        t1 = time.time()
        r = page.evaluate(_RUN_ALL, RUN_ALL_TIMEOUT * 1000)
        t_run = time.time() - t1
        if r['done'] == 'timeout': problems.append(f'{stem}: Run All did not finish within {RUN_ALL_TIMEOUT} s')
        ran = sum(c['ran'] for c in r['cells'])
        for c in r['cells']:
            for e in c['errors']:
                problems.append(f"{stem}: cell {c['index']} ({c['first'][:60]!r}) raised {e['ename']}: {e['evalue'].splitlines()[0] if e['evalue'] else ''}"
                                f" [{ran} of {len(r['cells'])} code cells ran]")
        found, moved = _move_first_slider(page)
        if found and os.environ.get('VLKD_BROWSER_SHOTS'):  # a picture of the widget cell after the move, e.g. for the README
            cell = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider').first.locator('xpath=ancestor::div[contains(@class, "jp-Cell ")][1]')
            cell.screenshot(path=str(Path(os.environ['VLKD_BROWSER_SHOTS']) / f'{stem}_lab.png'))
        page.evaluate('() => window.jupyterapp.shell.currentWidget.context.save()')
        stray = [l for l in _git_status(clone) if not l.endswith(f'nbs/{stem}.ipynb')]
        if stray: problems.append(f'{stem}: Run All wrote outside the notebook: {stray}')
        subprocess.run([sys.executable, 'tools/nbclean.py', f'nbs/{stem}.ipynb'], cwd=clone, check=True, capture_output=True)
        if _git_status(clone) != stray: problems.append(f'{stem}: `make clean-nbs` after Run All + save left {_git_status(clone)}')
        RESULTS[stem] = dict(slider=found, moved=moved, seconds=round(time.time() - t0, 1), run_all=round(t_run, 1))
        print(f'\n{stem}: open+save+Run All {time.time() - t0:.0f} s (Run All {t_run:.0f} s), {ran}/{len(r["cells"])} code cells ran, '
              f'slider: {"moved the plot" if moved else "did not change the plot" if found else "none"}')
    finally:
        try: page.evaluate(_CLOSE)
        except Exception: pass
        page.close()
        subprocess.run(['git', 'checkout', '-q', '--', '.'], cwd=clone, check=True)
        subprocess.run(['git', 'clean', '-fdq'], cwd=clone, check=True)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('stem', selected())
def test_widget_moves_plot(stem):
    "The first slider in a notebook's outputs changes its plot (skipped where a notebook has no slider yet)."
    r = RESULTS.get(stem)
    if r is None: pytest.skip(f'{stem}: test_notebook_in_lab did not run to the widget step')
    if not r['slider']: pytest.skip(f'{stem}: no ipywidgets slider in the outputs yet (issue 17 item 3)')
    assert r['moved'], f'{stem}: moving the first slider did not change the plot next to it within 60 s'


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope='module')
def site(clone):
    "The `make docs` site of the selected notebooks (index always): (folder, exit status, report)."
    rc = SITE['proc'].wait()
    report = '\n'.join(l for l in SITE['log'].read_text().splitlines() if 'IPKernelApp' not in l)
    print(f"\ndocs build of {len(list(SITE['out'].glob('*.html')))} page(s) done {time.time() - SITE['t0']:.0f} s after it started")
    return SITE['out'], rc, report


def test_docs_pages_show_their_images(browser, site):
    "Every page of the site loads and every <img> on it loaded (naturalWidth > 0); the build reported no error."
    out, rc, report = site
    assert rc == 0, f'tools/docs.py failed:\n{report[-5000:]}'
    assert 'WARNING' not in report, report
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(_QuietHandler, directory=str(out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{srv.server_address[1]}'
    page = browser.new_page()
    page.route('**/*', lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
    bad, n_img = [], 0
    try:
        pages = sorted(out.glob('*.html'))
        assert pages, 'no page built'
        for p in pages:
            page.goto(f'{base}/{p.name}', wait_until='load')
            imgs = page.evaluate('Array.from(document.images).map(i => [i.getAttribute("src").slice(0, 80), i.complete && i.naturalWidth > 0])')
            n_img += len(imgs)
            bad += [f'{p.name}: {src}' for src, ok in imgs if not ok]
            links = page.evaluate('Array.from(document.querySelectorAll("nav.vlkd a")).map(a => a.getAttribute("href"))')
            if not links: bad.append(f'{p.name}: no navigation bar')
    finally:
        page.close(); srv.shutdown()
    print(f'\n{len(pages)} page(s), {n_img} image(s)')
    assert not bad, 'images that did not load:\n' + '\n'.join(bad)
