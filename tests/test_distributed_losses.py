"""Gathered contrastive losses on two gloo processes (CPU) equal the single-process loss on the whole batch.

Each rank holds a slice of one global batch, gathers the features with `gather_features` and computes
`clip_loss` / `siglip_loss`. The loss on every rank, the gradient of each rank's own feature rows and
the gradient of `logit_scale` / `logit_bias` must equal those of one process on the concatenated
batch: no factor of the world size sneaks in (open_clip #616, lightly #1977). `DINOLoss`'s center must
be the mean over all ranks' teacher outputs. Even and uneven per-rank batch sizes.
"""
import os, socket
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vlkd.losses import clip_loss, siglip_loss, DINOLoss, gather_features


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _global_batch(n, dim=8, k=5):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return dict(I=r(n, dim), T=r(n, dim), S=r(n, k), Tt=r(n, k))


def _leaf(x): return x.clone().requires_grad_()


def _check_contrastive(loss_fn, data, sl):
    "Compare one rank's gathered loss and gradients with the single-process ones."
    I_loc, T_loc = _leaf(data['I'][sl]), _leaf(data['T'][sl])
    extra = [_leaf(torch.tensor(v, dtype=torch.float64)) for v in loss_fn.params]
    loss = loss_fn(*gather_features(I_loc, T_loc), *extra)
    loss.backward()
    I_all, T_all = _leaf(data['I']), _leaf(data['T'])
    extra_all = [_leaf(torch.tensor(v, dtype=torch.float64)) for v in loss_fn.params]
    ref = loss_fn(I_all, T_all, *extra_all)
    ref.backward()
    close = lambda a, b, what: torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f'{loss_fn.__name__}: {what}')
    close(loss, ref, 'loss')
    close(I_loc.grad, I_all.grad[sl], 'image feature gradient')
    close(T_loc.grad, T_all.grad[sl], 'text feature gradient')
    for e, e_all in zip(extra, extra_all): close(e.grad, e_all.grad, 'scale/bias gradient')


def _clip(I, T, scale): return clip_loss(I, T, scale)
_clip.params = (7.,)
def _siglip(I, T, scale, bias): return siglip_loss(I, T, scale, bias)
_siglip.params = (7., -3.)


def _worker(rank, world, port, sizes):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        data = _global_batch(sum(sizes))
        start = sum(sizes[:rank]); sl = slice(start, start + sizes[rank])
        for fn in (_clip, _siglip): _check_contrastive(fn, data, sl)
        crit = DINOLoss(5, center_momentum=0.9).double()
        crit(_leaf(data['S'][sl]), data['Tt'][sl])
        torch.testing.assert_close(crit.center, 0.1 * data['Tt'].mean(0, keepdim=True), rtol=1e-10, atol=1e-12)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('sizes', [(4, 4), (5, 2)], ids=['even', 'uneven'])
def test_gathered_losses_equal_single_process(sizes):
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(_worker, args=(2, _free_port(), sizes), nprocs=2, join=True)
