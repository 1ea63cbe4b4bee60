"""Scenarios for tests/test_train_distributed.py: each builds a model and trains it with `vlkd.train.fit`.

Run one process in the test itself, and two with
`python -m torch.distributed.run --standalone --nproc_per_node=2 tests/_ddp_train.py OUT_DIR`,
which writes each scenario's final weights and history (rank 0) to OUT_DIR.
"""
import faulthandler, json, os, sys
from pathlib import Path
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from vlkd.train import TrainConfig, fit, ema_teacher
from vlkd.utils import gather_features, set_seed

B = 8  # global batch


def regression_batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(B, 5, generator=g)
    return x, x[:, :2].sin() + 0.1 * torch.randn(B, 2, generator=g)


def mse_step(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def mlp():
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))


class TwoTower(nn.Module):
    "A toy image/text pair of towers with a CLIP loss on gathered features."
    def __init__(self):
        super().__init__()
        self.image, self.text = nn.Linear(5, 4), nn.Linear(6, 4)

    def encode(self, x, t):
        return F.normalize(self.image(x), dim=-1), F.normalize(self.text(t), dim=-1)


def pair_batch(step):
    g = torch.Generator().manual_seed(2000 + step)
    x = torch.randn(B, 5, generator=g)
    return dict(x=x, t=torch.cat([x, torch.randn(B, 1, generator=g)], 1) + 0.3 * torch.randn(B, 6, generator=g))


def clip_step(model, batch):
    img, txt = gather_features(*model.encode(batch['x'], batch['t']))  # global batch on every rank
    logits = 10 * img @ txt.T
    labels = torch.arange(len(img))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def run(name, out=None):
    "Train scenario `name`; returns (model state_dict, History)."
    set_seed(0)
    cfg = TrainConfig(steps=12, batch_size=B, lr=1e-2, grad_clip=1.0, progress=False)
    if name in ('mean_fn', 'resume'):
        model = mlp(); teacher = ema_teacher(model)
        if name == 'resume':  # interrupted after 5 steps, then resumed, all under torch.distributed
            cfg.ckpt_path = str(Path(out) / 'resume.pt'); cfg.stop_after = 5
            fit(model, mse_step, regression_batch, cfg, ema=teacher)
            cfg.stop_after = None
        h = fit(model, mse_step, regression_batch, cfg, ema=teacher)
    elif name == 'mean_ds':
        ds = torch.utils.data.TensorDataset(*regression_batch(-1)[0].repeat(5, 1).split(3, 1))
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        h = fit(model, mse_step, ds, cfg)
    elif name in ('gathered', 'gathered_unscaled'):
        model = TwoTower()
        h = fit(model, clip_step, pair_batch, cfg, gathered_loss=name == 'gathered')
    else:
        raise ValueError(name)
    return model.state_dict(), h


SCENARIOS = ['mean_fn', 'mean_ds', 'gathered', 'gathered_unscaled', 'resume']

if __name__ == '__main__':
    faulthandler.enable()  # a native abort prints the Python stack of every thread
    out = Path(sys.argv[1])
    dist.init_process_group('gloo')
    for name in SCENARIOS:
        sd, h = run(name, out)
        if dist.get_rank() == 0:
            torch.save(sd, out / f'{name}.pt')
            h.save(out / f'{name}.json')
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)  # skip C++ static destructors: gloo's threads can abort a normal interpreter exit
