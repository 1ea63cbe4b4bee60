"Property tests (hypothesis) for vlkd.losses; the equation and reference checks live in nbs/00_losses.ipynb."
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, assume, strategies as st
from hypothesis.extra.numpy import arrays

from vlkd.losses import (kd_loss, hkd_loss, clip_loss, siglip_loss, ranking_loss, DINOLoss, dino_teacher_probs,
                         dino_cross_entropy, ema_center, data2vec_targets, feature_kd_loss, contrastive_logits,
                         gather_features)

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
    loss = crit(s, t)
    assert loss >= entropy - 1e-9  # Gibbs: cross-entropy >= entropy
    torch.testing.assert_close(loss, -(p * F.log_softmax(s / ts, -1)).sum(-1).mean())  # 003 Eq. 2 by hand
    torch.testing.assert_close(dino_cross_entropy(s, dino_teacher_probs(t, c0, tt), ts), loss)  # the stateless pieces
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


def _torch_targets(hs, eps=1e-5):
    "Eq. 34-38 from torch's own norms: instance_norm over time per layer, layer mean, layer_norm."
    inorm = [F.instance_norm(h.transpose(1, 2), eps=eps).transpose(1, 2) for h in hs]
    return F.layer_norm(torch.stack(inorm).mean(0), hs[0].shape[-1:], eps=eps)


@quick
@given(hidden, st.integers(1, 3), st.integers(0, 2**16))
def test_feature_kd_equals_mse_of_torch_targets(t, n_student, seed):
    g = torch.Generator().manual_seed(seed)
    s = [torch.randn(t[0].shape, generator=g, dtype=t[0].dtype) for _ in range(n_student)]
    expected = ((_torch_targets(s) - _torch_targets(t)) ** 2).mean()
    torch.testing.assert_close(feature_kd_loss(s, t), expected, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(feature_kd_loss(s, targets=_torch_targets(t)), expected, atol=1e-9, rtol=1e-7)
    assert abs(feature_kd_loss(t, t).item()) < 1e-12


# --- bad inputs: one table, the exact outcome of each ----------------------------------------------
nan, inf = float('nan'), float('inf')
S, T5, Y = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)), torch.randn(4, 5, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 4])
I6, T6 = torch.randn(6, 8, generator=torch.Generator().manual_seed(2)), torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
HS = [torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(4)) for _ in range(2)]
KEEP = [0, 1, 3, 4]  # class 2 is the masked one below


def _masked(x, col=2):
    x = x.clone(); x[:, col] = -inf; return x


def _t_only_reference(s, t, tau=1.):
    "KL with the teacher's class 2 masked: the sum over the other classes, the student's softmax over all."
    p = F.softmax(t[:, KEEP] / tau, -1)
    return tau**2 * (p * (p.log() - F.log_softmax(s / tau, -1)[:, KEEP])).sum(-1).mean()


def _student_inf(s):
    s = s.clone(); s[0, 2] = -inf; return s


D = torch.randn(4, 7, generator=torch.Generator().manual_seed(5))
# (id, call, outcome): outcome is (ExceptionType, text the message must contain), or ('value', reference) for accepted input
BAD_INPUTS = [
    # temperatures, weights, scales, margins, eps: NaN, ±inf, wrong types and shapes
    ('kd tau nan', lambda: kd_loss(S, T5, nan), (ValueError, 'tau must be > 0 and finite')),
    ('kd tau +inf', lambda: kd_loss(S, T5, inf), (ValueError, 'tau must be > 0 and finite')),
    ('kd tau -inf', lambda: kd_loss(S, T5, -inf), (ValueError, 'tau must be > 0 and finite')),
    ('kd tau -1', lambda: kd_loss(S, T5, -1), (ValueError, 'tau must be > 0')),
    ('kd tau tensor nan', lambda: kd_loss(S, T5, torch.tensor(nan)), (ValueError, 'tau must be > 0 and finite')),
    ('kd tau str', lambda: kd_loss(S, T5, '2'), (TypeError, 'tau must be a real number')),
    ('kd tau None', lambda: kd_loss(S, T5, None), (TypeError, 'tau must be a real number')),
    ('kd tau bool', lambda: kd_loss(S, T5, True), (TypeError, 'tau must be a real number')),
    ('kd tau vector', lambda: kd_loss(S, T5, torch.ones(2)), (ValueError, 'tau must be a scalar')),
    ('kd tau one-element tensor', lambda: kd_loss(S, T5, torch.tensor([2.])), ('value', lambda: kd_loss(S, T5, 2.))),
    ('kd integer logits', lambda: kd_loss(S.long(), T5), (TypeError, 'student_logits must be a floating-point')),
    ('kd shape mismatch', lambda: kd_loss(S, T5[:3]), (ValueError, 'shape mismatch')),
    ('hkd alpha nan', lambda: hkd_loss(S, T5, Y, alpha=nan), (ValueError, 'alpha must be >= 0 and finite')),
    ('hkd alpha -1', lambda: hkd_loss(S, T5, Y, alpha=-1.), (ValueError, 'alpha must be >= 0 and finite')),
    ('hkd beta inf', lambda: hkd_loss(S, T5, Y, beta=inf), (ValueError, 'beta must be >= 0 and finite')),
    ('hkd beta None', lambda: hkd_loss(S, T5, Y, beta=None), (TypeError, 'beta must be a real number')),
    ('hkd tau inf', lambda: hkd_loss(S, T5, Y, tau=inf), (ValueError, 'tau must be > 0 and finite')),
    ('hkd float labels', lambda: hkd_loss(S, T5, Y.float()), (ValueError, 'labels must be an integer tensor')),
    ('hkd labels out of range', lambda: hkd_loss(S, T5, Y + 1), (ValueError, 'labels out of range')),
    ('clip scale nan', lambda: clip_loss(I6, T6, nan), (ValueError, 'logit_scale must be > 0 and finite')),
    ('clip scale inf', lambda: clip_loss(I6, T6, inf), (ValueError, 'logit_scale must be > 0 and finite')),
    ('clip scale 0', lambda: clip_loss(I6, T6, 0.), (ValueError, 'logit_scale must be > 0')),
    ('clip scale learned nan', lambda: clip_loss(I6, T6, torch.tensor(nan, requires_grad=True)), (ValueError, 'logit_scale must be > 0 and finite')),
    ('clip scale (1,) inf', lambda: clip_loss(I6, T6, torch.tensor([inf])), (ValueError, 'logit_scale must be > 0 and finite')),
    ('clip scale None', lambda: clip_loss(I6, T6, None), (TypeError, 'logit_scale must be a real number')),
    ('clip scale vector', lambda: clip_loss(I6, T6, torch.full((6,), 10.)), (ValueError, 'logit_scale must be a scalar')),
    ('clip integer features', lambda: clip_loss(I6.long(), T6, 10.), (TypeError, 'image_features must be a floating-point')),
    ('clip empty batch', lambda: clip_loss(I6[:0], T6[:0], 10.), (ValueError, 'empty batch')),
    ('contrastive_logits scale -inf', lambda: contrastive_logits(I6, T6, -inf), (ValueError, 'logit_scale must be > 0 and finite')),
    ('siglip bias None', lambda: siglip_loss(I6, T6, 10., None), (TypeError, 'logit_bias must be a real number')),
    ('siglip bias per column', lambda: siglip_loss(I6, T6, 10., torch.zeros(6)), (ValueError, 'logit_bias must be a scalar')),
    ('siglip bias nan', lambda: siglip_loss(I6, T6, 10., nan), (ValueError, 'logit_bias must be finite')),
    ('siglip bias -inf', lambda: siglip_loss(I6, T6, 10., torch.tensor(-inf)), (ValueError, 'logit_bias must be finite')),
    ('siglip bias str', lambda: siglip_loss(I6, T6, 10., '-10'), (TypeError, 'logit_bias must be a real number')),
    ('siglip scale -inf', lambda: siglip_loss(I6, T6, -inf, -10.), (ValueError, 'logit_scale must be > 0 and finite')),
    ('siglip bias (1,)', lambda: siglip_loss(I6, T6, 10., torch.tensor([-10.])), ('value', lambda: siglip_loss(I6, T6, 10., -10.))),
    ('siglip bias (1, 1)', lambda: siglip_loss(I6, T6, 10., torch.tensor([[-10.]])), ('value', lambda: siglip_loss(I6, T6, 10., -10.))),
    ('ranking margin nan', lambda: ranking_loss(I6, T6, nan), (ValueError, 'margin must be >= 0 and finite')),
    ('ranking margin inf', lambda: ranking_loss(I6, T6, inf), (ValueError, 'margin must be >= 0 and finite')),
    ('ranking margin -0.1', lambda: ranking_loss(I6, T6, -0.1), (ValueError, 'margin must be >= 0')),
    # DINO: out_dim, temperatures, momentum, views
    ('dino out_dim 7.5', lambda: DINOLoss(7.5), (TypeError, 'out_dim must be an integer')),
    ('dino out_dim True', lambda: DINOLoss(True), (TypeError, 'out_dim must be an integer')),
    ('dino out_dim str', lambda: DINOLoss('7'), (TypeError, 'out_dim must be an integer')),
    ('dino out_dim 0', lambda: DINOLoss(0), (ValueError, 'out_dim must be >= 1')),
    ('dino out_dim -3', lambda: DINOLoss(-3), (ValueError, 'out_dim must be >= 1')),
    ('dino teacher_temp nan', lambda: DINOLoss(7, teacher_temp=nan), (ValueError, 'teacher_temp must be > 0 and finite')),
    ('dino student_temp inf', lambda: DINOLoss(7, student_temp=inf), (ValueError, 'student_temp must be > 0 and finite')),
    ('dino center_momentum nan', lambda: DINOLoss(7, center_momentum=nan), (ValueError, 'center_momentum must be finite')),
    ('dino center_momentum 1.5', lambda: DINOLoss(7, center_momentum=1.5), (ValueError, 'center_momentum must be in [0, 1]')),
    ('dino student views of two batch sizes', lambda: DINOLoss(7)([D, D[:3]], [D, D]), (ValueError, 'student_out: view 1 has shape (3, 7)')),
    ('dino teacher views of two batch sizes', lambda: DINOLoss(7)([D, D], [D, D[:2]]), (ValueError, 'teacher_out: view 1 has shape (2, 7)')),
    ('dino student/teacher batch differ', lambda: DINOLoss(7)(D, D[:3]), (ValueError, 'student_out has batch 4, teacher_out 3')),
    ('dino teacher batch 1 (would broadcast)', lambda: DINOLoss(7)(D, D[:1]), (ValueError, 'student_out has batch 4, teacher_out 1')),
    ('dino integer student', lambda: DINOLoss(7)(D.long(), D), (TypeError, 'student_out must be a floating-point')),
    ('dino integer teacher', lambda: DINOLoss(7)(D, D.long()), (TypeError, 'teacher_out must be a floating-point')),
    ('dino wrong width', lambda: DINOLoss(6)(D, D), (ValueError, 'last dim 7 != out_dim 6')),
    ('dino_cross_entropy batch differ', lambda: dino_cross_entropy(D, D[:1].softmax(-1), 0.1), (ValueError, 'batch and K must agree')),
    ('ema_center momentum inf', lambda: ema_center(torch.zeros(1, 7), D, inf), (ValueError, 'momentum must be finite')),
    # Data2Vec targets / feature KD
    ('data2vec T == 1', lambda: data2vec_targets([torch.randn(2, 1, 3)]), (ValueError, 'needs T >= 2 time steps')),
    ('data2vec eps nan', lambda: data2vec_targets(HS, eps=nan), (ValueError, 'eps must be > 0 and finite')),
    ('data2vec eps inf', lambda: data2vec_targets(HS, eps=inf), (ValueError, 'eps must be > 0 and finite')),
    ('data2vec integer states', lambda: data2vec_targets([h.long() for h in HS]), (TypeError, 'hidden_states[0] must be a floating-point')),
    ('feature_kd teacher and targets', lambda: feature_kd_loss(HS, HS, targets=data2vec_targets(HS)), (ValueError, 'exactly one of')),
    ('feature_kd neither', lambda: feature_kd_loss(HS), (ValueError, 'exactly one of')),
    ('feature_kd targets wrong shape', lambda: feature_kd_loss(HS, targets=torch.zeros(2, 4, 3)), (ValueError, 'shape mismatch')),
    ('feature_kd targets (B, T) only', lambda: feature_kd_loss(HS, targets=torch.zeros(2, 5)), (ValueError, 'targets must have 3 dims')),
    ('feature_kd targets given', lambda: feature_kd_loss(HS[:1], targets=data2vec_targets(HS)), ('value', lambda: feature_kd_loss(HS[:1], HS))),
    # masked classes (−inf logits) in the KD losses: accepted, with the value of the logits without that class
    ('kd class masked in both', lambda: kd_loss(_masked(S), _masked(T5), 2.), ('value', lambda: kd_loss(S[:, KEEP], T5[:, KEEP], 2.))),
    ('kd class masked in teacher only', lambda: kd_loss(S, _masked(T5)), ('value', lambda: _t_only_reference(S, T5))),
    ('kd student -inf where teacher has mass', lambda: kd_loss(_student_inf(S), T5), ('value', lambda: torch.tensor(inf))),
    ('hkd class masked in both', lambda: hkd_loss(_masked(S), _masked(T5), torch.tensor([0, 1, 3, 4]), 0.3, 0.7, 2.),
     ('value', lambda: hkd_loss(S[:, KEEP], T5[:, KEEP], torch.tensor([0, 1, 2, 3]), 0.3, 0.7, 2.))),
]


@pytest.mark.parametrize('call, outcome', [pytest.param(c, o, id=i) for i, c, o in BAD_INPUTS])
def test_bad_input_has_its_exact_outcome(call, outcome):
    kind, expected = outcome
    if kind == 'value':
        got, want = call(), expected()
        assert got.shape == want.shape == () and got.isfinite() == want.isfinite(), (got, want)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        return
    with pytest.raises(Exception) as info: call()
    assert type(info.value) is kind, f'{type(info.value).__name__}: {info.value}'
    assert expected in str(info.value), str(info.value)


def test_bad_input_table_counts():
    "The report's numbers: how many bad inputs the table tries, and how many end in each outcome class."
    from collections import Counter
    counts = Counter(o[0].__name__ if isinstance(o[0], type) else 'accepted with the right value' for _, _, o in BAD_INPUTS)
    assert sum(counts.values()) == len(BAD_INPUTS) >= 60, counts
    assert set(counts) == {'ValueError', 'TypeError', 'accepted with the right value'}, counts


def test_gather_features_reexported():
    import vlkd.losses, vlkd.utils
    assert 'gather_features' in vlkd.losses.__all__ and gather_features is vlkd.utils.gather_features
