"Command-line and fresh-install checks: what a notebook cannot host."
import json, os, re, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}


CLI = str(Path(sys.executable).parent / 'vlkd-reproduce')  # the console script installed with the package


def run(*args, **kw):
    return subprocess.run([sys.executable, *args], cwd=kw.pop('cwd', ROOT), env=ENV, capture_output=True, text=True, **kw)


def run_cli(*args):
    return subprocess.run([CLI, *args], cwd=ROOT, env=ENV, capture_output=True, text=True)


def test_reproduce_cli_tiny_writes_only_to_out(tmp_path):
    before = {p: p.stat().st_mtime for p in (ROOT / 'figures').glob('*')}
    r = run_cli('--tiny', '--only', 'losses', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob('00_losses_*.png')), r.stdout
    assert 'losses' in r.stdout
    after = {p: p.stat().st_mtime for p in (ROOT / 'figures').glob('*')}
    assert before == after, 'a tiny run wrote into figures/'


def test_reproduce_cli_rejects_unknown_chapter(tmp_path):
    r = run_cli('--tiny', '--only', 'nonsense', '--out', str(tmp_path))
    assert r.returncode != 0 and 'unknown chapter' in r.stderr


def test_import_is_light_and_offline():
    code = ("import sys, importlib, vlkd.reproduce as r\n"
            "[importlib.import_module('vlkd.' + c) for c in r.CHAPTERS]\n"
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported at import time'\n"
            "print(vlkd.__version__ if hasattr(sys.modules['vlkd'], '__version__') else '')")
    r = run('-c', 'import vlkd\n' + code)
    assert r.returncode == 0, r.stderr


def test_wheel_contains_every_module(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (whl,) = tmp_path.glob('vlkd-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    for nb in (ROOT / 'nbs').glob('[0-9]*.ipynb'):
        src = ''.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'])
        mod = re.search(r'#\| default_exp (\w+)', src).group(1)
        assert f'vlkd/{mod}.py' in names, f'{mod} missing from the wheel'
