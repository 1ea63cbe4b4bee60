"""The committed form of a notebook, and a JupyterLab contents manager that saves in it.

The notebooks in `nbs/` are committed without outputs, in one canonical text form:
nbdev's clean (`nbdev.clean.clean_nb`: execution counts null, cell metadata dropped, notebook
metadata reduced to the kernelspec with `display_name` = `name`), each cell's `source` as one
string, `json.dumps(sort_keys=True, indent=1, ensure_ascii=False)` and a final newline.

JupyterLab writes a notebook differently even when nothing ran: `language_info` and its own
kernelspec `display_name` ("Python 3 (ipykernel)"), and `source` split into a list of lines
(nbformat's `split_lines`). `CommittedFormManager` (used by `make lab` through
`.jupyter/jupyter_server_config.py`) writes what JupyterLab saves in the committed form, keeping
outputs, so opening and saving a notebook leaves `git status` clean and a Run All leaves only the
outputs to strip.

    python tools/nbclean.py [--keep-outputs] [--check] [NOTEBOOK ...]   # default: nbs/*.ipynb

is `make clean-nbs`: it rewrites notebooks in the committed form (outputs and widget state
stripped); `--check` only lists the notebooks that are not in it and exits 1.
"""
from __future__ import annotations
import argparse, copy, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _settings(root: Path = ROOT) -> dict:
    "The nbdev clean settings of `settings.ini` (the keys `clean_nb` takes)."
    import configparser
    cp = configparser.ConfigParser(); cp.read(root / 'settings.ini')
    d = cp['DEFAULT']
    return dict(allowed_metadata_keys=d.get('allowed_metadata_keys', '').split(),
                allowed_cell_metadata_keys=d.get('allowed_cell_metadata_keys', '').split(),
                clean_ids=d.get('clean_ids', 'True').strip().lower() == 'true')


def _join(v):
    return ''.join(v) if isinstance(v, list) else v


def committed_form(nb: dict,  # a notebook as a JSON dict (nbformat 4)
                   keep_outputs: bool = False,  # keep cell outputs (JupyterLab's save) or strip them (commit)
                   root: Path = ROOT,  # the repository whose settings.ini applies
                   ) -> str:
    "The text of `nb` in the committed form; `keep_outputs` leaves outputs in (with null execution counts)."
    from nbdev.clean import clean_nb
    nb = copy.deepcopy(nb)
    if nb.get('nbformat') != 4: raise ValueError(f"committed_form: nbformat {nb.get('nbformat')!r} is not 4")
    clean_nb(nb, clear_all=not keep_outputs, **_settings(root))
    if not keep_outputs: nb['metadata'].pop('widgets', None)  # widget state is output too
    for c in nb['cells']:
        c['source'] = _join(c['source'])
        for o in c.get('outputs', []):
            if 'text' in o: o['text'] = _join(o['text'])
            for k, v in o.get('data', {}).items():
                if isinstance(v, list) and not k.endswith('json'): o['data'][k] = _join(v)
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n'


def clean_file(path,  # a notebook file
               keep_outputs: bool = False,  # see `committed_form`
               check: bool = False,  # only report; do not write
               ) -> bool:
    "Rewrite `path` in the committed form; True when it was not in that form."
    path = Path(path)
    old = path.read_text(encoding='utf-8')
    new = committed_form(json.loads(old), keep_outputs=keep_outputs)
    if new == old: return False
    if not check: path.write_text(new, encoding='utf-8')
    return True


def contents_manager_class():
    "JupyterLab's default contents manager, saving notebooks in the committed form (outputs kept)."
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    class CommittedFormManager(AsyncLargeFileManager):
        "Saves notebooks as `committed_form(..., keep_outputs=True)`: opening and saving changes nothing."
        async def _save_notebook(self, os_path, nb, capture_validation_error=None):
            text = committed_form(dict(nb), keep_outputs=True)
            with self.atomic_writing(os_path, encoding='utf-8') as f: f.write(text)

    return CommittedFormManager


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('notebooks', nargs='*', help='default: nbs/*.ipynb')
    p.add_argument('--keep-outputs', action='store_true', help='keep outputs (the form JupyterLab saves)')
    p.add_argument('--check', action='store_true', help='list notebooks not in the committed form; exit 1 if any')
    a = p.parse_args(argv)
    nbs = [Path(n) for n in a.notebooks] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    changed = [n for n in nbs if clean_file(n, keep_outputs=a.keep_outputs, check=a.check)]
    for n in changed: print(('not in the committed form: ' if a.check else 'cleaned: ') + str(n))
    return 1 if (a.check and changed) else 0


if __name__ == '__main__': sys.exit(main())
