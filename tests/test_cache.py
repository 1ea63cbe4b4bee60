"""Cache sites: every registered trainer's recorded fingerprint matches its code, and the check notices a changed trainer."""
import importlib, linecache, pkgutil, sys, warnings

import pytest
import torch
from torch import nn

import vlkd
from vlkd.train import (CACHE_SITES, TrainConfig, cache_key, cache_site, cached, check_cache_sites, fit,
                        source_fingerprint)


def test_every_cache_site_is_current():
    "Import every vlkd module (each registers its sites), then no site may have code newer than its fingerprint."
    for m in pkgutil.iter_modules(vlkd.__path__): importlib.import_module(f'vlkd.{m.name}')
    assert 'fit' in CACHE_SITES  # the shared loop's own site
    stale = check_cache_sites()
    assert not stale, '\n'.join(stale)


TRAINER = '''
from vlkd.train import cache_site
import torch

def trainer(model):
    {doc}
    return model.weight.data.mul_({factor}){comment}

SITE = cache_site('pytest-toy', 1, {fp!r}, trainer)
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    "Write (and rewrite) a module that registers a site, as a chapter does; import or reload it."
    monkeypatch.syspath_prepend(str(tmp_path)); monkeypatch.setattr(sys, 'dont_write_bytecode', True)
    def write(factor=2.0, fp='', doc='"Scale the weights."', comment=''):
        (tmp_path / 'pytest_toy_trainer.py').write_text(TRAINER.format(factor=factor, fp=fp, doc=doc, comment=comment))
        importlib.invalidate_caches(); linecache.clearcache()  # a rewrite within the same second must not read old source
        mod = sys.modules.get('pytest_toy_trainer')
        return importlib.reload(mod) if mod else importlib.import_module('pytest_toy_trainer')
    yield write
    CACHE_SITES.pop('pytest-toy', None); sys.modules.pop('pytest_toy_trainer', None)


def test_check_notices_a_changed_trainer(toy_module):
    mod = toy_module(fp='')  # first registration: no fingerprint yet
    (msg,) = check_cache_sites([mod.SITE])
    fp = mod.SITE.current()
    assert f"cache_site('pytest-toy', 2, {fp!r}, ...)" in msg  # the message says what to record
    mod = toy_module(fp=fp)
    assert check_cache_sites([mod.SITE]) == [] and CACHE_SITES['pytest-toy'] is mod.SITE
    mod = toy_module(fp=fp, doc='"Another docstring."', comment='  # a comment')  # cosmetic edits
    assert check_cache_sites([mod.SITE]) == []
    mod = toy_module(factor=3.0, fp=fp)  # the trainer changed, its version and fingerprint did not
    (msg,) = check_cache_sites()
    assert "'pytest-toy'" in msg and 'Bump the version' in msg and mod.SITE.current() != fp


def test_cached_warns_on_a_stale_site_and_versions_split_keys(toy_module, tmp_path):
    fp = toy_module().SITE.current()
    stale = toy_module(factor=5.0, fp=fp).SITE
    calls = []
    def train(m): calls.append(1); return fit(m, lambda m, b: m(b).pow(2).mean(), lambda s: torch.ones(4, 2), TrainConfig.tiny(progress=False))
    with pytest.warns(UserWarning, match='pytest-toy'):
        cached(dict(a=1), lambda: nn.Linear(2, 1), train, folder=tmp_path / 'c', site=stale)
    bumped = cache_site('pytest-toy', 2, stale.current(), *stale.code)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a current site warns about nothing
        m = cached(dict(a=1), lambda: nn.Linear(2, 1), train, folder=tmp_path / 'c', site=bumped)
        m2 = cached(dict(a=1), lambda: nn.Linear(2, 1), train, folder=tmp_path / 'c', site=bumped)
    assert len(calls) == 2 and torch.equal(m.weight, m2.weight) and m2.history == m.history
    assert cache_key(dict(a=1), site=stale) != cache_key(dict(a=1), site=bumped) != cache_key(dict(a=1))


def test_fingerprint_errors():
    with pytest.raises(ValueError, match='cannot read the source'): source_fingerprint(len)
    with pytest.raises(ValueError, match='version must be an int'): cache_site('x', -1, '', fit)


def test_cached_files_are_written_atomically(tmp_path):
    "Stale .tmp files from a crash are replaced, and none is left behind."
    def train(m): return fit(m, lambda m, b: m(b).pow(2).mean(), lambda s: torch.ones(4, 2), TrainConfig.tiny(progress=False))
    key = cache_key(dict(a=2), 'net')
    for suffix in ('.safetensors.tmp', '.json.tmp', '.history.json.tmp'): (tmp_path / f'net-{key}{suffix}').write_text('half')
    cached(dict(a=2), lambda: nn.Linear(2, 1), train, name='net', folder=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f'net-{key}{s}' for s in ('.safetensors', '.json', '.history.json'))
