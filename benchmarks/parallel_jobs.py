"""Two one-thread worker processes against one two-thread process: training throughput of chapter 06's models.

Usage: .venv/bin/python benchmarks/parallel_jobs.py [--models 4] [--steps 300] [--teacher-steps 100] [--kinds cnn8 cnn16/8 cnn32-teacher] [--save]

For each kind, the same `--models` independent trainings (seeds 0, 1, ...) run twice in this run:
  serial    one after the other in this process, with 2 torch threads (what `reproduce` did before `parallel_jobs`)
  parallel  `vlkd.train.parallel_jobs(jobs, workers=2, threads=1)`: two spawned processes of one thread each
and the table gives both wall times and their ratio (serial / parallel: > 1 means the workers train more per second).
Starting the two processes (spawn, import vlkd, render the world split) is measured apart, as a pool that trains one
step per worker (`startup_s`); `ratio` leaves it out (a long run pays it once), `ratio_with_startup` does not.
Kinds: `cnn8` and `cnn16/8` are 06's Table 1/3 and Table 2 students (`train_student` on random teacher logits, bf16,
the chapter's config but `--steps` steps); `cnn32-teacher` is its widest CE teacher's training (`train_classifier`,
the `make_teacher` recipe, `--teacher-steps` steps). Untrained inputs: a step's cost does not depend on the weights.
`--save` writes figures/99_parallel_jobs_benchmark.{md,json}.
"""
import argparse, sys, time
import torch

KINDS = ('cnn8', 'cnn16/8', 'cnn32-teacher')


def train_one(kind: str, seed: int, steps: int) -> float:
    "Train one model of `kind` for `steps` steps (06's full config otherwise); returns its seconds."
    import vlkd.capgap as cg
    from vlkd.evaluate import ClassifierConfig, train_classifier
    cfg = cg.CapGapConfig(progress=False, student_steps=steps); tr = cg.world_data(cfg, 'train'); t0 = time.perf_counter()
    if kind.endswith('-teacher'):
        arch = kind.removesuffix('-teacher'); torch.manual_seed(seed)
        train_classifier(cg.student(arch, len(tr.class_names)), tr.images, tr.labels, ClassifierConfig(train=cg._step_config(cfg, len(tr), steps, seed), flip=True))
    else:
        cg.train_student(kind, cfg, seed, torch.randn(2, len(tr), len(tr.class_names), generator=torch.Generator().manual_seed(seed)))
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', type=int, default=4); p.add_argument('--steps', type=int, default=300); p.add_argument('--teacher-steps', type=int, default=100)
    p.add_argument('--kinds', nargs='*', default=list(KINDS), choices=KINDS); p.add_argument('--save', action='store_true')
    a = p.parse_args(argv)
    from vlkd.train import parallel_jobs
    from vlkd.utils import markdown_table, save_table
    rows = []
    for kind in a.kinds:
        steps = a.teacher_steps if kind.endswith('-teacher') else a.steps
        torch.set_num_threads(2); train_one(kind, 99, 5)  # warm-up: the world split rendered, kernels built
        t0 = time.perf_counter(); [train_one(kind, s, steps) for s in range(a.models)]; serial = time.perf_counter() - t0
        t0 = time.perf_counter(); parallel_jobs([(train_one, (kind, 99, 1), {})] * 2, workers=2, threads=1, progress=False); start = time.perf_counter() - t0
        t0 = time.perf_counter(); parallel_jobs([(train_one, (kind, s, steps), {}) for s in range(a.models)], workers=2, threads=1, progress=False)
        par = time.perf_counter() - t0
        rows.append(dict(kind=kind, models=a.models, steps=steps, serial_2threads_s=round(serial, 1), two_1thread_workers_s=round(par, 1),
                         startup_s=round(start, 1), ratio=round(serial / max(par - start, 1e-9), 2), ratio_with_startup=round(serial / par, 2)))
        print(rows[-1], flush=True)
    print(markdown_table(rows))
    if a.save: print('wrote', save_table(rows, '99_parallel_jobs_benchmark', meta=dict(argv=sys.argv[1:], threads_serial=2, workers=2, threads_per_worker=1)))


if __name__ == '__main__': main()
