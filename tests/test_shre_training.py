"vlkd.shre: the timm teacher fails clearly offline, a short SHRe run beats an untrained student's median rank, and a tiny reproduce (sweep on the validation split, ablation) writes only to its out_dir."
import json, os, subprocess, sys
from pathlib import Path
import torch
from vlkd.clip import WorldTensors
from vlkd.evaluate import predict, load_verdicts
from vlkd.shre import SHReConfig, TeacherConfig, train_teacher, train_shre, make_student, evaluate_shre, reproduce
from vlkd.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent

def test_timm_teacher_offline_names_checkpoint(tmp_path):
    code = ("from vlkd.shre import timm_teacher\nfrom vlkd.encoders import PretrainedUnavailable\n"
            "try:\n    timm_teacher('resnet18.a1_in1k')\nexcept PretrainedUnavailable as e:\n    print('ERROR:', e)\nelse:\n    print('LOADED')")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf'), 'XDG_CACHE_HOME': str(tmp_path / 'cache'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'ERROR:' in r.stdout and "'resnet18.a1_in1k'" in r.stdout, r.stdout

def test_short_run_lowers_loss_and_beats_random_median_rank(tmp_path):
    torch.set_num_threads(1)
    tcfg = TeacherConfig.tiny(n_train=1024, train=TrainConfig.tiny(steps=80, batch_size=64, lr=2e-3, progress=False))
    cfg = SHReConfig.tiny(teacher=tcfg, train=TrainConfig.tiny(steps=120, batch_size=64, lr=2e-3, progress=False), n_test=200, chunk=100)
    data, test = WorldTensors(tcfg.world, 'train', tcfg.n_train), WorldTensors(tcfg.world, 'test', cfg.n_test)
    teacher = train_teacher(tcfg, data, folder=tmp_path)
    logits = predict(teacher, data.images)
    student = train_shre(cfg, data, logits, 'both', seed=0)
    h = student.history.loss
    assert sum(h[-10:]) < sum(h[:10]), (h[:10], h[-10:])
    trained = evaluate_shre(student, test, cfg.chunk)
    random = evaluate_shre(make_student(cfg, logits.shape[1], seed=0), test, cfg.chunk)
    for k in ('i2t_medr_1k', 't2i_medr_1k'): assert trained[k] < random[k], (k, trained, random)
    assert all(p.grad is None for p in teacher.parameters())

def test_tiny_reproduce_writes_verdicts_only_to_out_dir(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cache, figures = tmp_path / 'cache', ROOT / 'figures'
    monkeypatch.setenv('VLKD_CACHE', str(cache))  # a tiny run must not fill the teacher cache
    before = {p: p.stat().st_mtime for p in figures.glob('*')}
    paths = reproduce(out_dir=tmp_path / 'out', tiny=True)
    assert sorted(p.name for p in paths) == ['03_shre_alignment.png', '03_shre_curves.png', '03_shre_interactive.png', '03_shre_pairs.npz',
                                            '03_shre_retrieval.md', '03_shre_sweep.md', '03_shre_sweep.png', '03_shre_verdicts.json']
    assert all(p.parent == tmp_path / 'out' and p.exists() for p in paths)
    rows = load_verdicts('03_shre', tmp_path / 'out')  # checked: every verdict is the one its CI and gates give
    assert len(rows) == 10 and {tuple(r['arms']) for r in rows} == {('both', 'kl'), ('both', 'rank'), ('both', 'untrained')}
    assert all(r['gates'][0]['threshold'] == 90.0 for r in rows)
    meta = json.loads((tmp_path / 'out' / '03_shre_retrieval.json').read_text())['meta']
    assert meta['smoke_run'] and len(meta['runs']) == 4 and meta['teacher_top1'] == rows[0]['gates'][0]['value']
    sweep = json.loads((tmp_path / 'out' / '03_shre_sweep.json').read_text())
    assert [r['rank_weight'] for r in sweep['rows']] == [0.0, 1.0, 992.0] and sweep['meta']['split'] == 'val'  # Eq. 31 at B = 32: 32·31
    assert meta['rank_weight'] in (1.0, 992.0)
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())
    assert before == {p: p.stat().st_mtime for p in figures.glob('*')}, 'a tiny run wrote into figures/'
