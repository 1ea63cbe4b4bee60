"Property checks of vlkd.capgap.overconfidence (002 Eq. 7-8) that a notebook cell cannot host well."
import math
import torch
from hypothesis import given, settings, strategies as st
from vlkd.capgap import overconfidence


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
