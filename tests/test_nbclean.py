"The committed form of the notebooks (tools/nbclean.py): what JupyterLab saves and what `make clean-nbs` restores."
import asyncio, importlib.util, json, os, shutil, sys
from pathlib import Path
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'vlkd_tools_{name}', ROOT / 'tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


nbclean = _tool('nbclean')
NBS = sorted((ROOT / 'nbs').glob('*.ipynb'))


def as_jupyterlab_saves(text: str) -> str:
    "What JupyterLab 4 writes for a committed notebook opened and saved without running (seen in tests/test_browser.py)."
    nb = nbformat.reads(text, as_version=4)
    nb.metadata['kernelspec']['display_name'] = 'Python 3 (ipykernel)'
    nb.metadata['language_info'] = {'codemirror_mode': {'name': 'ipython', 'version': 3}, 'file_extension': '.py',
                                    'mimetype': 'text/x-python', 'name': 'python', 'nbconvert_exporter': 'python',
                                    'pygments_lexer': 'ipython3', 'version': '3.11.7'}
    return nbformat.writes(nb)  # sources as lists of lines


def test_committed_notebooks_are_in_the_committed_form():
    bad = [p.name for p in NBS if nbclean.clean_file(p, check=True)]
    assert not bad, f'not in the committed form (run `make clean-nbs`): {bad}'


@pytest.mark.parametrize('path', NBS[:3], ids=lambda p: p.stem)
def test_jupyterlab_save_is_undone(path):
    text = path.read_text(encoding='utf-8')
    saved = as_jupyterlab_saves(text)
    assert saved != text  # JupyterLab's own form differs ...
    assert nbclean.committed_form(json.loads(saved)) == text  # ... and the committed form undoes it
    assert nbclean.committed_form(json.loads(saved), keep_outputs=True) == text  # no outputs: the same


def test_contents_manager_saves_the_committed_form(tmp_path):
    src = ROOT / 'nbs' / '000_utils.ipynb'; text = src.read_text(encoding='utf-8')
    (tmp_path / 'nbs').mkdir(); shutil.copy(src, tmp_path / 'nbs' / src.name)
    cm = nbclean.contents_manager_class()(root_dir=str(tmp_path))
    nb = json.loads(as_jupyterlab_saves(text))
    nb['cells'][2]['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['a\n', 'b\n']}]
    asyncio.run(cm.save({'type': 'notebook', 'format': 'json', 'content': nb}, 'nbs/000_utils.ipynb'))
    saved = (tmp_path / 'nbs' / src.name).read_text(encoding='utf-8')
    assert saved != text and json.loads(saved)['cells'][2]['outputs'][0]['text'] == 'a\nb\n'  # outputs kept on save
    assert nbclean.committed_form(json.loads(saved)) == text


def test_clean_restores_an_executed_notebook(tmp_path):
    "A Run All (nbclient, as nbconvert --execute) and `make clean-nbs` give back the committed file."
    from nbclient import NotebookClient
    scratch = _tool('scratch')
    repo = scratch.copy_tree(tmp_path / 'repo', ROOT)
    path = repo / 'nbs' / '00_losses.ipynb'; text = path.read_text(encoding='utf-8')
    nb = nbformat.reads(text, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTEST_CURRENT_TEST',)}
    env.update(PYTHONPATH=str(repo), VLKD_CACHE=str(tmp_path / 'cache'), IN_TEST='1')
    client = NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    with client.setup_kernel(env=env, cwd=str(path.parent)):
        for i, c in enumerate(nb.cells):
            if c.cell_type == 'code' and 'nbdev_export(' not in c.source: client.execute_cell(c, i)
    nb.metadata['widgets'] = {'application/vnd.jupyter.widget-state+json': {'state': {}, 'version_major': 2, 'version_minor': 0}}
    nbformat.write(nb, str(path))
    assert any(o.get('output_type') == 'display_data' for c in json.loads(path.read_text())['cells'] for o in c.get('outputs', []))
    assert nbclean.main([str(path)]) == 0
    assert path.read_text(encoding='utf-8') == text
    assert nbclean.main(['--check', str(path)]) == 0
