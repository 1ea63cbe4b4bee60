"""Interrupting `vlkd.train.fit` and resuming from its checkpoint is bit-identical to a straight run."""
import random
from dataclasses import asdict, replace
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from vlkd.train import TrainConfig, fit, ema_teacher, load_checkpoint
from vlkd.utils import set_seed

STEPS = 40


def net():  # dropout uses the torch RNG, BatchNorm has buffers the EMA teacher copies
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


X = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
DATA = torch.utils.data.TensorDataset(X, (X @ torch.ones(4, 3)).tanh())


def noisy_collate(items):  # random augmentation drawing from all three generators
    x, y = torch.utils.data.default_collate(items)
    return x + 0.05 * torch.randn_like(x) + 0.05 * np.random.randn() + 0.05 * random.random(), y


def validate(model):
    return dict(val_mse=F.mse_loss(model(X), DATA.tensors[1]), val_first=model(X[:1]).sum())


def train(cfg, seed_before=0, batches=DATA):
    "Build student and EMA teacher after seeding with `seed_before` (a new process has other RNG states), then fit."
    set_seed(seed_before)
    student = net(); teacher = ema_teacher(student)
    def step(model, batch):
        x, y = batch
        with torch.no_grad(): target = teacher(x)
        out = model(x)
        return F.mse_loss(out, y) + 0.1 * F.mse_loss(out, target), dict(teacher_gap=F.mse_loss(out, target))
    h = fit(student, step, batches, cfg, ema=teacher, validate=validate, collate=noisy_collate)
    return student, teacher, h


def base_cfg(**kw):
    return TrainConfig(steps=STEPS, batch_size=16, lr=3e-3, grad_clip=0.5, ema_schedule='cosine',
                       ema_momentum=0.9, eval_every=7, progress=False, **kw)


def assert_identical(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa: assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope='module')
def straight():
    return train(base_cfg())


@pytest.mark.parametrize('n', [STEPS // 2, 17])
def test_resume_is_bit_identical(straight, tmp_path, n):
    "N steps, stop, then resume in a fresh model with disturbed RNGs: weights, teacher and history equal the straight run."
    cfg = base_cfg(ckpt_path=str(tmp_path / 'ck.pt'), ckpt_every=5)
    train(replace(cfg, stop_after=n))
    assert load_checkpoint(cfg.ckpt_path, net())['step'] == n
    student, teacher, h = train(cfg, seed_before=123)
    assert_identical(student, straight[0]); assert_identical(teacher, straight[1])
    assert h == straight[2] and len(h.loss) == STEPS and h.val_steps == straight[2].val_steps


def test_many_interruptions(straight, tmp_path):
    "Stopping every 6 steps until done gives the same run."
    cfg = base_cfg(ckpt_path=str(tmp_path / 'ck.pt'), stop_after=6)
    for i in range(STEPS // 6 + 1): student, teacher, h = train(cfg, seed_before=i)
    assert_identical(student, straight[0]); assert_identical(teacher, straight[1]); assert h == straight[2]


def test_resume_with_step_function_batches_and_bf16(tmp_path):
    "The same with batches given as a function of the step, under bf16 autocast."
    def batches(step):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=g)
        return x, (x @ torch.ones(4, 3)).tanh()
    cfg = replace(base_cfg(), bf16=True)
    s1, t1, h1 = train(cfg, batches=batches)
    cfg = replace(cfg, ckpt_path=str(tmp_path / 'ck.pt'))
    train(replace(cfg, stop_after=11), batches=batches)
    s2, t2, h2 = train(cfg, seed_before=5, batches=batches)
    assert_identical(s2, s1); assert_identical(t2, t1); assert h2 == h1


def test_checkpoint_is_plain_tensors(tmp_path):
    "The checkpoint loads with weights_only=True and holds every part of the state."
    cfg = base_cfg(ckpt_path=str(tmp_path / 'ck.pt'), stop_after=3)
    train(cfg)
    ck = torch.load(cfg.ckpt_path, weights_only=True)
    assert {'step', 'model', 'optimizer', 'ema', 'history', 'config', 'rng', 'version'} <= ck.keys()
    assert ck['step'] == 3 and len(ck['history']['loss']) == 3 and ck['config'] == asdict(cfg)
    assert {'python', 'numpy', 'torch', 'cuda'} <= ck['rng'][0].keys()
    assert not (tmp_path / 'ck.pt.tmp').exists()


def test_finished_run_is_not_retrained(straight, tmp_path):
    "fit on a finished checkpoint only loads it."
    cfg = base_cfg(ckpt_path=str(tmp_path / 'ck.pt'))
    train(cfg)
    student, teacher, h = train(cfg, seed_before=9)
    assert_identical(student, straight[0]); assert h == straight[2]


def test_bad_checkpoints(tmp_path):
    "A changed config or a corrupt file stops with an error naming the file."
    cfg = base_cfg(ckpt_path=str(tmp_path / 'ck.pt'), stop_after=2)
    train(cfg)
    with pytest.raises(ValueError, match=r"ck\.pt.*\['lr'\]"): train(replace(cfg, lr=1.0))
    (tmp_path / 'ck.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=r"ck\.pt"): train(cfg)


def _mix(*xs):  # the documented seed hash, rewritten in plain Python integers
    h, m = 0x9E3779B97F4A7C15, 2**64 - 1
    for x in xs:
        h = ((h ^ (x % 2**64)) * 0xBF58476D1CE4E5B9) & m
        h = ((h ^ (h >> 31)) * 0x94D049BB133111EB) & m
    return h ^ (h >> 29)


def test_dataset_order_is_the_documented_rule_across_resume(tmp_path):
    "fit on a Dataset visits epoch e in torch.randperm(n) order under seed mix(seed, e) mod 2**63, also when resumed mid-epoch."
    n, bs, steps, seed = 10, 4, 7, 3  # 2 batches per epoch (2 items dropped), 3.5 epochs
    data = torch.utils.data.TensorDataset(torch.arange(n).float()[:, None])
    def run(cfg, seen):
        set_seed(0); model = nn.Linear(1, 1)
        fit(model, lambda m, b: (seen.append(b[0][:, 0].long().tolist()), m(b[0]).pow(2).mean())[1], data, cfg)
    cfg = TrainConfig(steps=steps, batch_size=bs, seed=seed, progress=False, ckpt_path=str(tmp_path / 'ck.pt'))
    seen = []
    run(replace(cfg, stop_after=3), seen); run(cfg, seen)
    perms = [torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, e) % 2**63)).tolist() for e in range(4)]
    assert seen == [perms[s // 2][(s % 2) * bs:(s % 2 + 1) * bs] for s in range(steps)]
    other = []
    run(replace(cfg, seed=seed + 1, ckpt_path=None), other)
    assert other[:2] != seen[2:4]  # seed + 1's first epoch is not this seed's second
