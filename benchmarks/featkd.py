"""Step-time breakdown of one feature-distillation step (vlkd.featkd.distil_step + AdamW).

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/featkd.py [--repeats 15] [--text]

The image case is the chapter's full configuration (FeatKDConfig(): a 12-block width-64 ViT teacher,
its first 6 blocks as the student, 32x32 images, batch 64); with --text also MiniLM-L6 -> 3 layers on
packed 32-token sequences, batch 16 (TextKDConfig()). One step is split with perf_counter into
  teacher   forward under torch.inference_mode (its 12 hidden states from that one pass)
  targets   data2vec_targets of the teacher's states + the student's, and the MSE (forward only)
  student   forward, and backward of the whole loss (student targets included)
  optimizer AdamW step and zero_grad
and each part's median over `repeats` steps (after 5 warm-up steps of every variant) is printed with its share of the
step. The clock is the process's CPU time (time.process_time, all threads), not wall time: on a
shared machine wall time is dominated by preemption, while CPU time measures the work each part
does (with one thread it equals the wall time of a free core). The default is one thread: with two,
an OpenMP worker that spin-waits after the model passes is charged to the short sections that follow
(measured here: the targets' share reads about 7 % with 2 threads and about 5 % with 1, for the same code). The target is targets / step <= 5 %. As references measured in the same run, the step is also
timed with the targets built on the stacked (L, B, T, D) tensor (the earlier form), with torch.var_mean,
and by a naive per-sample, per-layer Python loop (F.instance_norm on each (1, D, T) slice); the ratio
of each reference's target time to data2vec_targets' is printed.
The machine may be shared: the ratios are more stable than the absolute times.
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F
from vlkd.losses import data2vec_targets
from vlkd.featkd import FeatKDConfig, TextKDConfig, _vit, make_student


def var_mean_targets(hidden_states, eps=1e-5):
    "Eq. 34-38 vectorised with torch.var_mean over the token axis (an earlier form of data2vec_targets)."
    h = torch.stack(list(hidden_states)).float()
    var, mu = torch.var_mean(h, dim=2, correction=0, keepdim=True)
    h = ((h - mu) / torch.sqrt(var + eps)).mean(0)
    return F.layer_norm(h, h.shape[-1:], eps=eps)


def stacked_targets(hidden_states, eps=1e-5):
    "Eq. 34-38 on the stacked (L, B, T, D) tensor (the previous form of data2vec_targets, before the layer loop)."
    h = torch.stack(list(hidden_states)).float()
    h = h - h.mean(2, keepdim=True)
    h = (h * torch.rsqrt(h.square().mean(2, keepdim=True) + eps)).mean(0)
    return F.layer_norm(h, h.shape[-1:], eps=eps)


def naive_targets(hidden_states, eps=1e-5):
    "Eq. 34-38 with Python loops over layers and samples (the non-vectorised reference)."
    B = hidden_states[0].shape[0]; out = []
    for b in range(B):
        layers = [F.instance_norm(h[b].T[None], eps=eps)[0].T for h in hidden_states]  # (T, D) per layer
        avg = sum(layers) / len(layers)
        out.append(F.layer_norm(avg, avg.shape[-1:], eps=eps))
    return torch.stack(out)


def one_step(student, teacher, x, opt, targets=data2vec_targets, clock=time.process_time):
    t = [clock()]
    with torch.inference_mode(): th = teacher(*x).hidden_states
    t.append(clock())
    with torch.inference_mode(): y = targets(th)
    y = y.clone(); t.append(clock())
    sh = student(*x).hidden_states; t.append(clock())
    loss = F.mse_loss(targets(sh), y); t.append(clock())
    loss.backward(); t.append(clock())
    opt.step(); opt.zero_grad(set_to_none=True); t.append(clock())
    d = [b - a for a, b in zip(t, t[1:])]
    return dict(teacher=d[0], targets=d[1] + d[3], student=d[2] + d[4], optimizer=d[5])


def bench(name, teacher, student, x, repeats):
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    variants = {'vectorised': data2vec_targets, 'stacked form': stacked_targets, 'var_mean form': var_mean_targets, 'naive': naive_targets}
    for f in variants.values():  # warm up every variant's allocations
        for _ in range(5): one_step(student, teacher, x, opt, f)
    runs = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved, so all see the same machine load
        for k, f in variants.items(): runs[k].append(one_step(student, teacher, x, opt, f))
    print(f"\n== {name}")
    med = {k: {p: statistics.median(r[p] for r in v) for p in v[0]} for k, v in runs.items()}
    m = med['vectorised']; step = sum(m.values()); passes = m['teacher'] + m['student']
    for p, v in m.items(): print(f"  {p:<10} {1e3 * v:8.2f} ms CPU  {100 * v / step:5.1f} %")
    print(f"  {'step':<10} {1e3 * step:8.2f} ms CPU")
    print(f"  outside the two model passes: targets+loss {100 * m['targets'] / step:.1f} % of the step "
          f"(optimizer {100 * m['optimizer'] / step:.1f} %); model passes {100 * passes / step:.1f} %  [target: targets <= 5 %]")
    for ref in ('stacked form', 'var_mean form', 'naive'):
        print(f"  targets with {ref}: {1e3 * med[ref]['targets']:.2f} ms CPU -> data2vec_targets is {med[ref]['targets'] / m['targets']:.1f}x faster")
    return {'case': name.split(':')[0], 'teacher ms': round(1e3 * m['teacher'], 1), 'student ms': round(1e3 * m['student'], 1),
            'targets+loss ms': round(1e3 * m['targets'], 1), 'optimizer ms': round(1e3 * m['optimizer'], 1), 'step ms': round(1e3 * step, 1),
            'targets share %': round(100 * m['targets'] / step, 1),
            'stacked targets x': round(med['stacked form']['targets'] / m['targets'], 1), 'naive targets x': round(med['naive']['targets'] / m['targets'], 1)}


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--repeats', type=int, default=15); ap.add_argument('--text', action='store_true')
    ap.add_argument('--threads', type=int, default=1, help='torch threads (default 1: see the module docstring)')
    ap.add_argument('--save', action='store_true', help='write figures/02_featkd_benchmark.md/.json (image and text)')
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cfg = FeatKDConfig()
    teacher = _vit(cfg, cfg.depth).eval().requires_grad_(False)
    student = make_student(teacher, cfg.student_depth, 'first')
    x = (torch.randn(cfg.distil.batch_size, 3, cfg.world.img_size, cfg.world.img_size),)
    rows = []
    if a.save: a.text = True
    rows.append(bench(f"image: ViT {cfg.depth} blocks -> {cfg.student_depth}, width {cfg.width}, batch {x[0].shape[0]}, 17 tokens",
          teacher, student, x, a.repeats))
    if a.text:
        from vlkd.encoders import minilm
        tcfg = TextKDConfig(); teacher, _ = minilm(); teacher.requires_grad_(False)
        student = make_student(teacher, tcfg.student_depth, 'first')
        student.model.embeddings.word_embeddings.weight.requires_grad_(False)
        ids = torch.randint(1000, 20000, (tcfg.train.batch_size, tcfg.length))
        rows.append(bench(f"text: MiniLM-L6 -> {tcfg.student_depth} layers, batch {tcfg.train.batch_size} x {tcfg.length} tokens",
              teacher, student, (ids, None), max(5, a.repeats // 3)))
    if a.save:
        from vlkd.utils import save_table
        print('wrote', save_table(rows, '02_featkd_benchmark', meta=dict(clock='process CPU time', threads=torch.get_num_threads(), repeats=a.repeats)))


if __name__ == '__main__':
    main()
