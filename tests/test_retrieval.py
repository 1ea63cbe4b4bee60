"Property tests of vlkd.evaluate's metrics against independent brute-force loops (too many cases for the notebook)."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import torch.nn.functional as F
from vlkd.evaluate import (retrieval_ranks, retrieval_metrics, median_rank, chunked_median_rank,
                           classification_metrics, miou, accuracy, zero_shot_segmentation, background_miou)


def brute_ranks(S, t2i):
    "Literal definition on a score matrix: rank = 1 + #wrong keys scoring >= the best correct key (ties count against)."
    N, M = S.shape
    i2t = [1 + sum(S[i, k] >= max(S[i, j] for j in range(M) if t2i[j] == i) for k in range(M) if t2i[k] != i) for i in range(N)]
    t2i_r = [1 + sum(S[k, j] >= S[t2i[j], j] for k in range(N) if k != t2i[j]) for j in range(M)]
    return np.array(i2t), np.array(t2i_r)


@st.composite
def problems(draw):
    "Small integer embeddings (exact dot products, many ties), 1-4 captions per image in shuffled order."
    n, d = draw(st.integers(1, 7)), draw(st.integers(1, 4))
    per = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    t2i = [i for i, k in enumerate(per) for _ in range(k)]
    t2i = draw(st.permutations(t2i))
    vals = st.integers(-2, 2)
    img = draw(st.lists(st.lists(vals, min_size=d, max_size=d), min_size=n, max_size=n))
    txt = draw(st.lists(st.lists(vals, min_size=d, max_size=d), min_size=len(t2i), max_size=len(t2i)))
    return torch.tensor(img, dtype=torch.float32), torch.tensor(txt, dtype=torch.float32), list(t2i)


@settings(max_examples=300, deadline=None)
@given(problems(), st.integers(1, 40))
def test_ranks_match_brute_force(p, chunk_size):
    img, txt, t2i = p
    ref_i2t, ref_t2i = brute_ranks((img @ txt.T).numpy(), t2i)
    i2t, t2i_r = retrieval_ranks(img, txt, t2i, chunk_size=chunk_size)
    np.testing.assert_array_equal(i2t.numpy(), ref_i2t)
    np.testing.assert_array_equal(t2i_r.numpy(), ref_t2i)


@settings(max_examples=100, deadline=None)
@given(problems(), st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True))
def test_metrics_match_brute_force(p, ks):
    img, txt, t2i = p
    ref_i2t, ref_t2i = brute_ranks((img @ txt.T).numpy(), t2i)
    ks = [k for k in ks if k <= len(img)] or [1]
    m = retrieval_metrics(img, txt, torch.tensor(t2i), ks=ks)
    for k in ks:
        assert m[f'i2t_R@{k}'] == pytest.approx(100 * np.mean(ref_i2t <= k))
        assert m[f't2i_R@{k}'] == pytest.approx(100 * np.mean(ref_t2i <= k))
    assert m['i2t_medr'] == np.median(ref_i2t) and m['t2i_medr'] == np.median(ref_t2i)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=50))
def test_median_is_numpy_median(r):
    assert median_rank(torch.tensor(r)) == np.median(r)


def test_float_inputs_match_full_matrix():
    "Random floats (no ties): the chunked ranks equal a count on the full matrix, any chunk size."
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(40, 16, generator=g), torch.randn(130, 16, generator=g)
    t2i = torch.cat([torch.arange(40), torch.randint(0, 40, (90,), generator=g)])
    S = img @ txt.T
    best = torch.full((40,), -torch.inf).scatter_reduce(0, t2i, S[t2i, torch.arange(130)], 'amax')
    own = torch.zeros(40, 130, dtype=torch.bool); own[t2i, torch.arange(130)] = True
    ref_i2t = 1 + ((S >= best[:, None]) & ~own).sum(1)
    ref_t2i = 1 + ((S >= S[t2i, torch.arange(130)]) & ~own).sum(0)
    for cs in (1, 130, 1000, 10**7):
        i2t, t2i_r = retrieval_ranks(img, txt, t2i, chunk_size=cs)
        assert torch.equal(i2t, ref_i2t) and torch.equal(t2i_r, ref_t2i)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('dim', [8, 512])
def test_duplicate_embeddings_tie(dtype, dim):
    "A duplicate of the correct key ties with it and counts against the query, also when rounding makes the GEMM entry differ."
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        e = torch.nn.functional.normalize(torch.randn(5, dim, generator=g, dtype=dtype), dim=-1)
        img, txt = torch.cat([e, e]), torch.cat([e, e])  # image i and i+5 identical, same for captions
        i2t, t2i = retrieval_ranks(img, txt, torch.arange(10))
        assert i2t.tolist() == [2] * 10 and t2i.tolist() == [2] * 10, seed


def test_shre_chunks_are_independent():
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(30, 4, generator=g), torch.randn(60, 4, generator=g)
    t2i = torch.arange(60) // 2
    r = chunked_median_rank(img, txt, t2i, chunk=10)
    per = [retrieval_metrics(img[a:a + 10], txt[2 * a:2 * a + 20], t2i[2 * a:2 * a + 20] - a, ks=1) for a in (0, 10, 20)]
    assert r['n_chunks'] == 3
    assert r['i2t_medr'] == pytest.approx(np.mean([p['i2t_medr'] for p in per]))
    assert r['t2i_medr'] == pytest.approx(np.mean([p['t2i_medr'] for p in per]))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.integers(2, 6), st.integers(0, 10**6))
def test_classification_against_loop(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    emb, W = torch.randint(-2, 3, (n, 3), generator=g).float(), torch.randint(-2, 3, (c, 3), generator=g).float()
    y = torch.randint(0, c, (n,), generator=g)
    S = (emb @ W.T).tolist()
    ranks = [1 + sum(S[i][k] >= S[i][int(y[i])] for k in range(c) if k != int(y[i])) for i in range(n)]
    m = classification_metrics(emb, W, y, ks=(1, 2))
    assert m['top1'] == pytest.approx(100 * np.mean([r <= 1 for r in ranks]))
    assert m['top2'] == pytest.approx(100 * np.mean([r <= 2 for r in ranks]))
    per_class = [np.mean([ranks[i] == 1 for i in range(n) if y[i] == k]) for k in range(c) if (y == k).any()]
    assert m['mean_per_class_recall'] == pytest.approx(100 * np.mean(per_class))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10**6), st.integers(1, 3))
def test_miou_against_loop(c, seed, batches):
    g = torch.Generator().manual_seed(seed)
    preds = [torch.randint(-1, c, (2, 3, 3), generator=g) for _ in range(batches)]  # -1: a tie, no class
    targets = [torch.randint(0, c, (2, 3, 3), generator=g) for _ in range(batches)]
    P, T = torch.cat(preds).flatten().tolist(), torch.cat(targets).flatten().tolist()
    ious = []
    for k in range(c):
        inter = sum(p == k and t == k for p, t in zip(P, T)); union = sum(p == k or t == k for p, t in zip(P, T))
        if union: ious.append(inter / union)
    assert miou(preds, targets, c) == pytest.approx(100 * np.mean(ious))


@pytest.mark.parametrize('bad, msg', [
    (dict(text_emb=torch.zeros(3, 5)), 'dims differ'),
    (dict(text_to_image=[0, 1, 7]), 'out of range'),
    (dict(text_to_image=[0, 0, 0]), 'without one'),
    (dict(text_to_image=[0.0, 1.0, 1.0]), 'integers'),
    (dict(image_emb=torch.tensor([[0., 1, 0, 0], [float('nan'), 0, 0, 0]])), 'image_emb has NaN or Inf in 1 of 2 rows'),
    (dict(text_emb=torch.full((3, 4), float('inf'))), 'text_emb has NaN or Inf in 3 of 3 rows'),
    (dict(text_emb=torch.tensor([[0., 0, 0, -float('inf')], [0, 0, 0, 0], [0, 0, 0, 0]])), 'text_emb has NaN or Inf in 1 of 3 rows'),
    (dict(ks=(1, 3)), 'more than the 2 candidates'),
    (dict(ks=0), 'positive'),
    (dict(ks=(1.5,)), 'positive'),
])
def test_bad_input(bad, msg):
    args = dict(image_emb=torch.zeros(2, 4), text_emb=torch.zeros(3, 4), text_to_image=[0, 1, 1], ks=1) | bad
    with pytest.raises(ValueError, match=msg): retrieval_metrics(**args)


def test_bad_types():
    with pytest.raises(TypeError, match='torch tensor or numpy array'): retrieval_metrics([[0., 1]], torch.zeros(1, 2), [0], ks=1)


def test_numpy_and_int_ks_accepted():
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(6, 4, generator=g), torch.randn(12, 4, generator=g); t2i = torch.arange(12) // 2
    ref = retrieval_metrics(img, txt, t2i, ks=(5,))
    assert retrieval_metrics(img.numpy(), txt.numpy(), t2i.numpy(), ks=5) == ref


COLLAPSED = {'all equal': lambda n, d: torch.ones(n, d), 'all zero': lambda n, d: torch.zeros(n, d),
             'one direction': lambda n, d: F.normalize(torch.ones(n, d) + 1e-9 * torch.arange(n)[:, None], dim=-1)}


@pytest.mark.parametrize('kind', list(COLLAPSED))
def test_collapsed_model_is_no_better_than_chance(kind):
    "Every metric ranks a collapsed model at or below chance (the old strict rule gave it 100 %)."
    N, per, C = 40, 5, 8; make = COLLAPSED[kind]; img, txt = make(N, 16), make(N * per, 16)
    m = retrieval_metrics(img, txt, torch.arange(N * per) // per, ks=(1, 10))
    assert m['i2t_R@1'] == 0 and m['t2i_R@1'] == 0 and m['t2i_R@10'] == 0
    assert m['t2i_medr'] == N and m['i2t_medr'] == N * per - per + 1
    assert chunked_median_rank(img, txt, torch.arange(N * per) // per, chunk=20)['t2i_medr'] == 20
    y = torch.arange(N) % C
    zs = classification_metrics(img, make(C, 16), y)
    assert zs['top1'] == 0 and zs['mean_per_class_recall'] == 0 <= 100 / C
    assert accuracy(torch.zeros(N, C), y) == 0


class _Seg(torch.nn.Module):
    def __init__(self, tokens): super().__init__(); self.tokens = tokens
    def encode_image_tokens(self, images): return self.tokens.expand(len(images), -1, -1)


@pytest.mark.parametrize('kind', list(COLLAPSED))
def test_collapsed_segmentation_is_no_better_than_background(kind):
    make = COLLAPSED[kind]; target = torch.zeros(2, 8, 8, dtype=torch.long); target[:, :4, :4] = 1; target[:, 4:, 4:] = 2
    pred = zero_shot_segmentation(_Seg(make(16, 6)), torch.zeros(2, 3, 8, 8), make(3, 6))
    assert miou(pred, target, 3) <= background_miou(target, 3)


def test_nan_segmentation_tokens_refused():
    with pytest.raises(ValueError, match='patch tokens has NaN or Inf'):
        zero_shot_segmentation(_Seg(torch.full((16, 6), float('nan'))), torch.zeros(1, 3, 8, 8), torch.eye(3, 6))
