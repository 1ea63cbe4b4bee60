"Property tests (hypothesis) for vlkd.losses; the equation and reference checks live in nbs/00_losses.ipynb."
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, assume, strategies as st
from hypothesis.extra.numpy import arrays

from vlkd.losses import (kd_loss, hkd_loss, clip_loss, siglip_loss, ranking_loss, DINOLoss,
                         data2vec_targets, feature_kd_loss, contrastive_logits, gather_features)

quick = settings(max_examples=50, deadline=None)
floats = st.floats(-20, 20, allow_nan=False, width=32)


def matrices(rows=st.integers(1, 6), cols=st.integers(2, 8), elements=floats):
    "Pairs of float64 tensors of one random shape (B, C)."
    return st.tuples(rows, cols).flatmap(lambda s: st.tuples(
        arrays(np.float64, s, elements=elements), arrays(np.float64, s, elements=elements))).map(
        lambda ab: (torch.from_numpy(ab[0]), torch.from_numpy(ab[1])))


def _nonzero_rows(x):
    x = x.clone(); x[x.norm(dim=1) < 1e-3, 0] = 1.  # cosine needs a direction
    return x


def features(rows=st.integers(2, 6), dim=st.integers(2, 6)):
    "Pairs of (B, D) features without zero rows."
    return matrices(rows, dim, st.floats(-5, 5, allow_nan=False, width=32)).map(
        lambda ab: (_nonzero_rows(ab[0]), _nonzero_rows(ab[1])))


# --- KL / Hinton KD ---------------------------------------------------------------------------
@quick
@given(matrices(), st.floats(0.1, 10))
def test_kd_nonnegative(st_, tau):
    s, t = st_
    assert kd_loss(s, t, tau) >= -1e-12


@quick
@given(matrices(), st.floats(0.1, 10), st.floats(-50, 50))
def test_kd_zero_for_equal_distributions(st_, tau, shift):
    s, _ = st_
    assert abs(kd_loss(s, s, tau).item()) < 1e-10
    assert abs(kd_loss(s + shift, s, tau).item()) < 1e-8  # logits up to a constant: the same softmax


@quick
@given(matrices(), st.floats(0.5, 4))
def test_kd_positive_when_distributions_differ(st_, tau):
    s, t = st_
    p, q = F.softmax(t / tau, -1), F.softmax(s / tau, -1)
    assume((p - q).abs().max() > 1e-3)
    assert kd_loss(s, t, tau) > 0


@quick
@given(matrices(cols=st.integers(2, 6)), st.floats(0, 2), st.floats(0, 2), st.floats(0.5, 4), st.data())
def test_hkd_is_weighted_sum(st_, alpha, beta, tau, data):
    s, t = st_
    y = torch.tensor(data.draw(st.lists(st.integers(0, s.shape[1] - 1), min_size=len(s), max_size=len(s))))
    expected = alpha * kd_loss(s, t, tau) + beta * F.cross_entropy(s, y)
    torch.testing.assert_close(hkd_loss(s, t, y, alpha, beta, tau), expected)


# --- CLIP / SigLIP -----------------------------------------------------------------------------
@quick
@given(features(), st.floats(1, 100), st.randoms(use_true_random=False))
def test_clip_invariant_to_joint_permutation(f, scale, rnd):
    I, T = f
    perm = torch.tensor(rnd.sample(range(len(I)), len(I)))
    torch.testing.assert_close(clip_loss(I[perm], T[perm], scale), clip_loss(I, T, scale))


@quick
@given(features(), st.floats(1, 100), st.floats(0.1, 10), st.floats(0.1, 10))
def test_clip_invariant_to_feature_norms(f, scale, a, b):
    I, T = f
    torch.testing.assert_close(clip_loss(a * I, b * T, scale), clip_loss(I, T, scale))


@quick
@given(features(), st.floats(1, 100))
def test_clip_symmetric_in_modalities(f, scale):
    I, T = f
    torch.testing.assert_close(clip_loss(T, I, scale), clip_loss(I, T, scale))


@quick
@given(features(), st.floats(1, 100), st.floats(-20, 20), st.randoms(use_true_random=False))
def test_siglip_invariant_to_joint_permutation_and_positive(f, scale, bias, rnd):
    I, T = f
    perm = torch.tensor(rnd.sample(range(len(I)), len(I)))
    loss = siglip_loss(I, T, scale, bias)
    torch.testing.assert_close(siglip_loss(I[perm], T[perm], scale, bias), loss)
    assert loss > 0


@quick
@given(features(), st.floats(1, 30), st.floats(-10, 10))
def test_siglip_matches_label_matrix_form(f, scale, bias):
    I, T = f
    L = contrastive_logits(I, T, scale) + bias
    z = 2 * torch.eye(len(L), dtype=L.dtype) - 1
    torch.testing.assert_close(siglip_loss(I, T, scale, bias), -F.logsigmoid(z * L).sum() / len(L))


# --- ranking loss -------------------------------------------------------------------------------
@quick
@given(features(), st.floats(0.001, 0.5))
def test_ranking_zero_iff_positives_beat_negatives_by_margin(f, delta):
    a, b = f
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    gap = (sim.diagonal()[:, None] - sim).masked_fill(torch.eye(len(sim), dtype=torch.bool), float('inf')).min().item()
    if gap - delta >= 0: assert ranking_loss(a, b, gap - delta).item() == 0  # every positive wins by the margin
    assert ranking_loss(a, b, max(gap, 0) + delta) > 0  # some negative comes within the margin


@quick
@given(features(), st.floats(0, 1))
def test_ranking_mean_is_sum_over_pairs(f, margin):
    a, b = f
    B = len(a)
    torch.testing.assert_close(ranking_loss(a, b, margin, 'mean'), ranking_loss(a, b, margin) / (B * (B - 1)))


# --- DINO ----------------------------------------------------------------------------------------
@quick
@given(matrices(rows=st.integers(1, 5), cols=st.just(6)), st.floats(0.02, 1), st.floats(0.05, 1), st.floats(0, 1))
def test_dino_at_least_teacher_entropy_and_center_is_convex(st_, tt, ts, m):
    s, t = st_
    crit = DINOLoss(6, tt, ts, m).double()
    crit.center.uniform_(-1, 1); c0 = crit.center.clone()
    p = F.softmax((t - c0) / tt, -1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean()
    assert crit(s, t) >= entropy - 1e-9  # Gibbs: cross-entropy >= entropy
    torch.testing.assert_close(crit.center, m * c0 + (1 - m) * t.mean(0, keepdim=True))


# --- Data2Vec targets / feature KD -----------------------------------------------------------------
hidden = st.tuples(st.integers(1, 3), st.integers(2, 5), st.integers(2, 5), st.integers(1, 4)).flatmap(
    lambda s: st.lists(arrays(np.float64, s[1:], elements=st.floats(-5, 5, width=32)), min_size=s[0], max_size=s[0])
).map(lambda hs: [torch.from_numpy(h) for h in hs])  # L layers, each (B, T, D)


@quick
@given(hidden)
def test_targets_are_layer_normalised_and_layer_count_invariant(hs):
    y = data2vec_targets(hs)
    assert y.shape == hs[0].shape
    assert y.mean(-1).abs().max() < 1e-6  # layer norm: each token has mean 0 over D
    torch.testing.assert_close(data2vec_targets(hs + hs), y)  # duplicating every layer changes nothing


@quick
@given(hidden, st.floats(0.5, 5), st.floats(-5, 5))
def test_targets_invariant_to_per_layer_affine(hs, a, b):
    # instance norm removes a positive scale and a shift per layer, up to eps: with a tiny eps and every
    # channel spread over time (first and last step differ by >= 20) the targets agree to rounding
    hs = [h + torch.linspace(0, 30, h.shape[1], dtype=h.dtype)[None, :, None] for h in hs]
    torch.testing.assert_close(data2vec_targets([a * h + b for h in hs], eps=1e-12), data2vec_targets(hs, eps=1e-12),
                               atol=1e-6, rtol=1e-6)


@quick
@given(hidden, hidden)
def test_feature_kd_nonnegative_and_zero_on_self(s, t):
    assert abs(feature_kd_loss(t, t).item()) < 1e-12
    if s[0].shape == t[0].shape: assert feature_kd_loss(s, t) >= 0


# --- errors and the re-export --------------------------------------------------------------------
@pytest.mark.parametrize('call, message', [
    (lambda: kd_loss(torch.zeros(2, 3), torch.zeros(3, 3)), 'shape mismatch'),
    (lambda: kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=-1), 'tau must be > 0'),
    (lambda: hkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3])), 'labels out of range'),
    (lambda: clip_loss(torch.zeros(0, 3), torch.zeros(0, 3), 1.), 'empty batch'),
    (lambda: siglip_loss(torch.ones(2, 3), torch.ones(2, 3), torch.tensor(0.), 0.), 'logit_scale must be > 0'),
    (lambda: data2vec_targets([torch.zeros(1, 4, 2), torch.zeros(1, 5, 2)]), 'layer 1 has shape'),
    (lambda: feature_kd_loss([torch.zeros(1, 4, 2)], [torch.zeros(1, 5, 2)]), 'shape mismatch'),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message): call()


def test_gather_features_reexported():
    import vlkd.losses, vlkd.utils
    assert 'gather_features' in vlkd.losses.__all__ and gather_features is vlkd.utils.gather_features
