"vlkd.capgap: property checks of overconfidence (002 Eq. 7-8), and a tiny reproduce that writes only to its out_dir (never figures/ or the teacher cache)."
import json, math
from pathlib import Path
import torch
from hypothesis import given, settings, strategies as st
from vlkd.capgap import overconfidence, reproduce
from vlkd.evaluate import load_verdicts

ROOT = Path(__file__).resolve().parent.parent


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(2, 12), scale=st.floats(0.1, 10.0), seed=st.integers(0, 10_000),
       g1=st.floats(0.01, 0.99), g2=st.floats(0.01, 0.99))
def test_p_in_unit_interval_and_non_increasing_in_gamma(n, c, scale, seed, g1, g2):
    g = torch.Generator().manual_seed(seed)
    logits, labels = scale * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    lo, hi = sorted((g1, g2))
    p_lo, p_hi = overconfidence(logits, labels, lo), overconfidence(logits, labels, hi)
    if math.isnan(p_lo): assert math.isnan(p_hi) and bool((logits.argmax(1) == labels).all())
    else: assert 0.0 <= p_hi <= p_lo <= 1.0


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_every_error_counts_below_one_over_c(n, c, seed):
    "The max of C probabilities is >= 1/C, so for gamma <= 1/C every error is over-confident."
    g = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    p = overconfidence(logits, labels, 0.999 / c)
    assert math.isnan(p) or p == 1.0


def test_shift_invariance_and_device_free_labels():
    "Adding a constant to every logit of a row changes nothing (softmax is shift invariant); labels may be a list."
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    shift = 100 * torch.randn(50, 1, generator=g)
    assert overconfidence(logits + shift, labels, 0.4) == overconfidence(logits, labels.tolist(), 0.4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), c=st.integers(2, 9), scale=st.floats(0.1, 8.0), seed=st.integers(0, 10_000), gamma=st.floats(0.01, 0.99))
def test_matches_an_independent_numpy_count(n, c, scale, seed, gamma):
    "Eq. 7-8 counted one sample at a time in numpy (float64 softmax): errors, and errors whose top probability is >= gamma."
    import numpy as np
    g = torch.Generator().manual_seed(seed)
    logits, labels = scale * torch.randn(n, c, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)
    n_err = n_err_oc = 0
    for row, y in zip(logits.numpy(), labels.numpy()):
        prob = np.exp(row - row.max()); prob /= prob.sum()
        if int(np.argmax(prob)) != int(y): n_err += 1; n_err_oc += bool(prob.max() >= gamma)
    p = overconfidence(logits, labels, gamma)
    if n_err == 0: assert math.isnan(p)
    else: assert abs(p - n_err_oc / n_err) < 1e-12


def test_tiny_reproduce_writes_only_to_out_dir(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cache, figures = tmp_path / 'cache', ROOT / 'figures'
    monkeypatch.setenv('VLKD_CACHE', str(cache))  # a tiny run keeps its teachers and CLIP in a temporary folder
    before = {p: p.stat().st_mtime for p in figures.glob('*')}
    paths = reproduce(out_dir=tmp_path / 'out', tiny=True)
    names = sorted(p.name for p in paths)
    assert names == ['06_capgap_interactive.png', '06_capgap_lowshot.png', '06_capgap_overconfidence.png', '06_capgap_pgamma.md', '06_capgap_probe.md', '06_capgap_runs.md',
                     *[f'06_capgap_table{i}.md' for i in range(1, 5)], '06_capgap_teachers.md', '06_capgap_verdicts.json'], names  # no Table 5: tiny mobilenet=''
    assert all(p.parent == tmp_path / 'out' and p.exists() for p in paths)
    rows = load_verdicts('06_capgap', tmp_path / 'out')  # checked: every verdict is the one its CI and gates give
    assert {r['verdict'] for r in rows} == {'not tested'}  # teachers trained for a few steps miss their gates
    assert {g['threshold'] for r in rows for g in r['gates']} == {90.0, 56.25, 0.0, 5.0}  # CE: 90 %; CLIP-style: halfway_gate(8); knowledge: 0; match: 5 points
    runs = json.loads((tmp_path / 'out' / '06_capgap_runs.json').read_text())
    assert runs['meta']['smoke_run'] and {(r['arm'], r['seed']) for r in runs['rows'] if r['student'] == 'cnn4' and r['k'] is None} \
        == {(a, s) for a in ('none', 'cnn4', 'cnn8', 'clip-raw', 'clip-ft') for s in (0, 1)}
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())
    assert before == {p: p.stat().st_mtime for p in figures.glob('*')}, 'a tiny run wrote into figures/'
