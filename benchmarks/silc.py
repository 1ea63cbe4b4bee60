"""What does a SiLC step cost compared with a CLIP step? (003 claims little overhead.)

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/silc.py [--repeats 7] [--batch 128] [--tiny]

One training step (forward, backward, AdamW step, and the EMA update where there is a teacher) of
the full `SiLCConfig` model on the same batch, built up one SiLC ingredient at a time:
  clip            one global view, CLIP loss (the reference)
  +view           a second global view, its own CLIP loss against the same captions (003 modification 1)
  +ema            + the EMA update of the teacher (student and head, Eq. 1)
  +teacher        + the teacher's no-grad forward on both global views
  silc            + the student on the local views, the head and the self-distillation loss (Eq. 2) = SiLC-C
The variants run interleaved (one repeat of each in turn) after a warm-up; we report the median
wall time and the median CPU time of the process (with OMP_NUM_THREADS=1 the CPU time is close to
the wall time of a free core, also on a shared, oversubscribed machine), the ratio to `clip` and
the increment of each ingredient. The machine may be shared: run it twice.
"""
import argparse, statistics, time
from dataclasses import replace
import torch
from vlkd.silc import SiLCConfig, make_silc_model, silc_batches, silc_step
from vlkd.clip import WorldTensors
from vlkd.train import ema_teacher, ema_update

VARIANTS = ['clip', '+view', '+ema', '+teacher', 'silc']


def make_step(variant, cfg, data):
    "A closure running one training step of `variant` on the fixed batch of step 0."
    c = replace(cfg, n_global=1 if variant == 'clip' else cfg.n_global, dist_weight=cfg.dist_weight if variant == 'silc' else 0.0)
    student = make_silc_model(c); teacher = ema_teacher(student)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    batch = silc_batches(data, c)(0)
    def step():
        loss, _ = silc_step(student, batch, teacher, c)
        if variant == '+teacher':
            with torch.no_grad(): teacher.project(torch.cat(batch['views'][:c.n_global]))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if variant not in ('clip', '+view'): ema_update(teacher, student, c.train.ema_momentum)
    return step


def tower(cfg) -> str:
    "The image tower of `cfg` in words."
    if getattr(cfg, 'image_arch', 'vit') == 'cnn': return f"CNN {'-'.join(map(str, cfg.conv_widths))}"
    return f'ViT depth {cfg.image_depth} width {cfg.image_width} patch {cfg.patch_size}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--batch', type=int, default=None, help='default: the config batch size')
    ap.add_argument('--tiny', action='store_true', help='SiLCConfig.tiny() (a smoke test)')
    ap.add_argument('--save', action='store_true', help='write figures/05_silc_benchmark.md/.json')
    a = ap.parse_args()
    cfg = SiLCConfig.tiny() if a.tiny else SiLCConfig()
    if a.batch: cfg = replace(cfg, train=replace(cfg.train, batch_size=a.batch))
    data = WorldTensors(cfg.world, 'train', max(cfg.train.batch_size, 64))
    steps = {v: make_step(v, cfg, data) for v in VARIANTS}
    for s in steps.values(): s(); s()  # warm-up
    times, cpu = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}
    for _ in range(a.repeats):
        for v, s in steps.items():
            t, c = time.perf_counter(), time.process_time(); s()
            times[v].append(time.perf_counter() - t); cpu[v].append(time.process_time() - c)
    med = {v: statistics.median(t) for v, t in times.items()}
    mc = {v: statistics.median(t) for v, t in cpu.items()}
    print(f'SiLC step vs CLIP step: batch {cfg.train.batch_size}, {cfg.n_global} global {cfg.global_size}px + {cfg.n_local} local '
          f'{cfg.local_size}px views, {tower(cfg)}, K={cfg.head_dim}, '
          f'{torch.get_num_threads()} threads, median of {a.repeats}')
    print(f"{'variant':<10}{'wall ms':>10}{'x clip':>8}{'cpu ms':>10}{'x clip':>8}{'cpu increment ms':>18}")
    prev, rows = None, []
    for v in VARIANTS:
        inc = '' if prev is None else f'{1e3 * (mc[v] - mc[prev]):+.1f}'
        print(f'{v:<10}{1e3 * med[v]:>10.1f}{med[v] / med["clip"]:>8.2f}{1e3 * mc[v]:>10.1f}{mc[v] / mc["clip"]:>8.2f}{inc:>18}'); prev = v
        rows.append({'variant': v, 'wall ms': round(1e3 * med[v], 1), 'wall x clip': round(med[v] / med['clip'], 2),
                     'cpu ms': round(1e3 * mc[v], 1), 'cpu x clip': round(mc[v] / mc['clip'], 2)})
    if a.save and not a.tiny:
        from vlkd.utils import save_table
        print('wrote', save_table(rows, '05_silc_benchmark', meta=dict(batch=cfg.train.batch_size, threads=torch.get_num_threads(), repeats=a.repeats, image_tower=tower(cfg))))
    print(f'ratio SiLC / CLIP step time: wall {med["silc"] / med["clip"]:.2f}, cpu {mc["silc"] / mc["clip"]:.2f}')


if __name__ == '__main__':
    main()
