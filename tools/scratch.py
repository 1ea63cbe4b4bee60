"""Scratch copies of the working tree, so that docs builds and browser tests never write into it.

`copy_tree` copies what git would see (tracked files plus untracked ones that are not ignored);
`scratch_clone` makes a git clone whose HEAD is that working tree, so `git status` in the clone is
clean until something writes; `tree_state`/`changed` tell what a run wrote into a copy.
"""
from __future__ import annotations
import hashlib, os, shutil, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SKIP = ('.ipynb_checkpoints', '__pycache__', '.pytest_cache', '.hypothesis')


def _git(*args, cwd) -> str:
    return subprocess.run(['git', *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def working_files(root: Path = ROOT) -> list[str]:
    "Relative paths of the regular files git sees in `root` (tracked and untracked, not ignored)."
    out = _git('ls-files', '-z', '--cached', '--others', '--exclude-standard', cwd=root)
    return sorted({p for p in out.split('\0') if p and (Path(root) / p).is_file() and not (Path(root) / p).is_symlink()})


def copy_tree(dest: Path, root: Path = ROOT) -> Path:
    "Copy the working tree of `root` into `dest` (created); returns `dest`."
    dest = Path(dest)
    for rel in working_files(root):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(root) / rel, dest / rel)
    return dest


def scratch_clone(dest: Path, root: Path = ROOT) -> Path:
    "A git clone of `root` at `dest` whose HEAD holds the working tree (uncommitted edits included)."
    dest = Path(dest)
    subprocess.run(['git', 'clone', '-q', '--no-hardlinks', str(root), str(dest)], check=True)
    tracked = set(_git('ls-files', '-z', cwd=dest).split('\0')) - {''}
    keep = set(working_files(root))
    for rel in tracked - keep: (dest / rel).unlink(missing_ok=True)
    copy_tree(dest, root)
    _git('add', '-A', cwd=dest)
    _git('-c', 'user.name=vlkd-scratch', '-c', 'user.email=scratch@localhost', 'commit', '-q', '--allow-empty',
         '--no-verify', '-m', 'working tree', cwd=dest)
    return dest


def tree_state(root: Path) -> dict[str, str]:
    "{relative path: md5} of every file under `root`, caches and checkpoints left out."
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP and d != '.git']
        for f in files:
            p = Path(dirpath) / f
            if p.is_file(): out[str(p.relative_to(root))] = hashlib.md5(p.read_bytes()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    "Paths added, removed or modified between two `tree_state`s."
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
