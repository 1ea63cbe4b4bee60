"""Benchmark vlkd's clip_loss / siglip_loss against open_clip's ClipLoss / SigLipLoss.

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/losses.py [--batch 2048] [--dim 512] [--repeats 9]

What is measured, per loss, on the same random inputs in the same run:
- time: forward + backward from raw (un-normalised) features to the gradients of the features and of
  `logit_scale` (and `logit_bias`). vlkd normalises inside the loss; open_clip's losses expect
  normalised features, so its timed step includes the same `F.normalize` calls. The variants run
  interleaved (one repeat of each in turn) after a warm-up; the verdict uses the ratio of the medians,
  and the ratio of the minima (the least disturbed repeats) is printed next to it.
- memory: peak resident-set growth of one forward + backward in a fresh subprocess: the kernel's peak
  RSS (VmHWM) is reset through /proc/self/clear_refs after the inputs exist, and we report
  VmHWM - VmRSS-before. It counts everything the process touches (torch's CPU allocator returns large
  blocks to the OS), so it is the memory one step needs on top of its inputs. On CUDA it reports
  torch.cuda.max_memory_allocated growth instead.
Targets (vlkd / open_clip, see TARGETS): clip_loss time <= 0.60 and peak memory <= 1.0, siglip_loss time
<= 0.85. The machine may be shared: run it two or three times and read the ratios, not the times.
"""
import argparse, json, os, re, statistics, subprocess, sys, time
import torch
import torch.nn.functional as F
import open_clip.loss as ocl
from vlkd.losses import clip_loss, siglip_loss, contrastive_logits


def _clip_ce(I, T, s, b=None):
    "clip_loss written with two cross_entropy calls on L and L.T (the alternative form)."
    L = contrastive_logits(I, T, s)
    labels = torch.arange(len(L), device=L.device)
    return (F.cross_entropy(L, labels) + F.cross_entropy(L.T, labels)) / 2

TARGETS = {'clip': dict(time=0.60, memory=1.0), 'siglip': dict(time=0.85, memory=None)}  # max ratios vlkd / open_clip

VARIANTS = {
    'clip/vlkd': lambda I, T, s, b: clip_loss(I, T, s),
    'clip/open_clip': lambda I, T, s, b: ocl.ClipLoss()(F.normalize(I, dim=-1), F.normalize(T, dim=-1), s),
    'clip/vlkd-cross_entropy-form': _clip_ce,
    'siglip/vlkd': lambda I, T, s, b: siglip_loss(I, T, s, b),
    'siglip/open_clip': lambda I, T, s, b: ocl.SigLipLoss()(F.normalize(I, dim=-1), F.normalize(T, dim=-1), s, b),
}


def inputs(batch, dim, device):
    g = torch.Generator().manual_seed(0)
    I, T = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    leaf = lambda x: x.to(device).requires_grad_()
    return leaf(I), leaf(T), leaf(torch.tensor(10.)), leaf(torch.tensor(-10.))


def step(name, args):
    I, T, s, b = args
    for x in args: x.grad = None
    VARIANTS[name](I, T, s, b).backward()
    if I.is_cuda: torch.cuda.synchronize()


def _kb(field):
    return int(re.search(rf'{field}:\s+(\d+)', open('/proc/self/status').read()).group(1))


def peak_memory_mb(name, batch, dim, device):
    "Run in a fresh process (see --memory-of): peak memory growth of one step in MiB."
    out = subprocess.run([sys.executable, __file__, '--memory-of', name, '--batch', str(batch), '--dim', str(dim),
                          '--device', device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['mib']


def _memory_child(name, batch, dim, device):
    args = inputs(batch, dim, device)
    if device == 'cuda':
        torch.cuda.synchronize(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
        step(name, args); mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        before = _kb('VmRSS'); open('/proc/self/clear_refs', 'w').write('5')
        step(name, args); mib = (_kb('VmHWM') - before) / 1024
    print(json.dumps(dict(mib=mib)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, default=2048); p.add_argument('--dim', type=int, default=512)
    p.add_argument('--repeats', type=int, default=9); p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--memory-of', default=None, help=argparse.SUPPRESS)
    p.add_argument('--save', action='store_true', help='write figures/00_losses_benchmark.md/.json')
    a = p.parse_args()
    if a.memory_of: return _memory_child(a.memory_of, a.batch, a.dim, a.device)
    print(f'batch {a.batch}, dim {a.dim}, device {a.device}, torch threads {torch.get_num_threads()}, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}, {a.repeats} repeats (median)')
    args = inputs(a.batch, a.dim, a.device)
    ref = {n: VARIANTS[n](*args).item() for n in VARIANTS}
    print('loss values: ' + ', '.join(f'{n} {v:.6f}' for n, v in ref.items()))
    times = {n: [] for n in VARIANTS}
    for r in range(a.warmup + a.repeats):
        for n in VARIANTS:
            t0 = time.perf_counter(); step(n, args); dt = time.perf_counter() - t0
            if r >= a.warmup: times[n].append(dt)
    med = {n: statistics.median(v) for n, v in times.items()}
    mem = {n: peak_memory_mb(n, a.batch, a.dim, a.device) for n in VARIANTS}
    print(f'{"variant":32s} {"median ms":>10s} {"min ms":>8s} {"peak MiB":>9s}')
    for n in VARIANTS: print(f'{n:32s} {1e3 * med[n]:10.1f} {1e3 * min(times[n]):8.1f} {mem[n]:9.1f}')
    rows = []
    for loss in ('clip', 'siglip'):
        r_t = med[f'{loss}/vlkd'] / med[f'{loss}/open_clip']
        r_min = min(times[f'{loss}/vlkd']) / min(times[f'{loss}/open_clip'])  # least disturbed repeats: a check on a busy machine
        r_m = mem[f'{loss}/vlkd'] / mem[f'{loss}/open_clip']
        goal = TARGETS[loss]; verdict = lambda r, g: '' if g is None else f' ({"meets" if r <= g else "MISSES"} <= {g:.2f})'
        print(f'{loss}: time ratio vlkd/open_clip {r_t:.3f}{verdict(r_t, goal["time"])} (of the minima {r_min:.3f}), '
              f'peak memory ratio {r_m:.3f}{verdict(r_m, goal["memory"])}')
        rows.append({'loss': loss, 'vlkd ms': round(1e3 * med[f'{loss}/vlkd'], 1), 'open_clip ms': round(1e3 * med[f'{loss}/open_clip'], 1),
                     'time ratio': round(r_t, 3), 'time ratio of minima': round(r_min, 3), 'vlkd peak MiB': round(mem[f'{loss}/vlkd'], 1),
                     'open_clip peak MiB': round(mem[f'{loss}/open_clip'], 1), 'memory ratio': round(r_m, 3),
                     'target': ', '.join(f'{k} <= {v:.2f}' for k, v in goal.items() if v is not None)})
    if a.save:
        from vlkd.utils import save_table
        meta = dict(batch=a.batch, dim=a.dim, device=a.device, threads=torch.get_num_threads(), repeats=a.repeats)
        print('wrote', save_table(rows, '00_losses_benchmark', meta=meta))


if __name__ == '__main__':
    main()
