"Smoke tests of benchmarks/train_step.py: every step builds and trains in its tiny config; the table and its FLOP counts are sane."
import importlib.util, json, math
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def ts():
    spec = importlib.util.spec_from_file_location('train_step', ROOT / 'benchmarks' / 'train_step.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_cpu_attention_flops_counted(ts):
    "SDPA on CPU (flash kernel) counts 4·B·H·S²·D forward and 2.5x that backward, like the CUDA kernels."
    B, H, S, D = 2, 3, 16, 8
    q, k, v = (torch.randn(B, H, S, D, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as fc: F.scaled_dot_product_attention(q, k, v).sum().backward()
    test = 4 * B * H * S * S * D
    assert fc.get_total_flops() == test + 2.5 * test


@pytest.mark.parametrize('name', ['featkd-teacher', 'shre', 'shre-teacher', 'ema_text', 'silc', 'capgap', 'capgap-t2', 'capgap-teacher'])
def test_every_step_runs(ts, name):
    "Each step (tiny config) trains: the loss is finite and every phase's time is >= 0, the teacher time where there is one."
    s, opt = ts.build(name, ts.Options(), tiny=True)
    before = [p.detach().clone() for p in s.model.parameters() if p.requires_grad]
    parts, total, loss = ts.run_step(s, opt, 0, ts.Options())
    assert math.isfinite(loss) and total > 0 and all(parts[ph] >= 0 for ph in ts.PHASES if ph != 'other')
    assert any(not torch.equal(a, p) for a, p in zip(before, (p for p in s.model.parameters() if p.requires_grad)))  # trained
    if s.timers: assert parts['ema/teacher'] > 0


def test_table_and_comparison(ts, tmp_path):
    "A tiny run writes the table: shares sum to 100 %, FLOPs and of_peak are positive; fit's kernels before (loop AdamW, NCHW) match the base."
    rows, crows = ts.main(['--tiny', '--steps', '1', '--warmup', '1', '--only', 'clip', 'featkd', '--compare', 'loop', 'contiguous',
                           '--save', '--out', str(tmp_path)])
    assert [r['step'] for r in rows] == ['clip', 'featkd']
    for r in rows:
        assert abs(sum(r[f'{ph} %'] for ph in ts.PHASES) - 100) < 0.5 and r['GFLOP/step'] > 0 and 0 < r['of_peak'] < 2
    assert rows[1]['ema/teacher %'] > 0  # featkd's teacher forward is moved out of fwd
    saved = json.loads((tmp_path / '99_train_step_benchmark.json').read_text())
    assert saved['rows'] == rows and saved['meta']['tiny'] is True
    loop = [r for r in crows if r['variant'] == 'loop']  # the same first loss (same weights), then the same updates up to rounding
    assert len(loop) == 2 and all(float(r['loss rel. diff step 0']) == 0 and float(r['max loss rel. diff']) < 1e-4 for r in loop)
    nchw = [r for r in crows if r['variant'] == 'contiguous']  # the convolutions (CNN, ViT patchify) in another memory order: rounding only
    assert len(nchw) == 2 and all(float(r['loss rel. diff step 0']) < 1e-5 for r in nchw)


def test_tiny_save_needs_out(ts):
    with pytest.raises(SystemExit): ts.main(['--tiny', '--save'])


def test_compact_vocab_keeps_the_losses(ts):
    "The compact token table changes no output: the same losses step after step, with a table of a few dozen rows."
    runs = {}
    for o in (ts.Options(), ts.Options(compact_vocab=True)):
        s, opt = ts.build('clip', o, tiny=True)
        runs[o.compact_vocab] = [ts.run_step(s, opt, i, o)[2] for i in range(3)]
    assert s.model.text.model.embeddings.word_embeddings.num_embeddings < 200
    assert runs[True] == pytest.approx(runs[False], rel=1e-6)


def test_parallel_jobs_benchmark_runs(tmp_path, monkeypatch, capsys):
    "benchmarks/parallel_jobs.py (two models, two steps, one kind): a row with both times, the startup and the ratios."
    import sys
    monkeypatch.syspath_prepend(str(ROOT / 'benchmarks'))  # the spawned workers import the script's train_one by module name
    import parallel_jobs as pj
    pj.main(['--models', '2', '--steps', '2', '--kinds', 'cnn16/8'])
    out = capsys.readouterr().out
    row = eval(out.splitlines()[0])  # the row dict printed first
    assert row['kind'] == 'cnn16/8' and row['models'] == 2 and row['steps'] == 2
    assert row['serial_2threads_s'] > 0 and row['two_1thread_workers_s'] > 0 and row['startup_s'] > 0
    assert abs(row['ratio_with_startup'] - row['serial_2threads_s'] / row['two_1thread_workers_s']) < 0.02
