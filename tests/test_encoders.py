"Offline behaviour of vlkd.encoders' pretrained loading: needs a clean environment (empty cache, HF_HUB_OFFLINE set before import)."
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    'timm': ("vit_encoder('vit_tiny_patch16_224.augreg_in21k', pretrained=True)", 'vit_tiny_patch16_224.augreg_in21k'),
    'transformers': ("bert_encoder('bert-base-uncased', pretrained=True)", 'bert-base-uncased'),
    'open_clip': ("open_clip_encoder('ViT-B-32', pretrained='openai')", 'ViT-B-32 (openai)'),
}

@pytest.mark.parametrize('lib', sorted(CASES))
def test_pretrained_offline_names_checkpoint_and_local_alternative(lib, tmp_path):
    call, checkpoint = CASES[lib]
    code = (f"from vlkd.encoders import *\n"
            f"try:\n    {call}\nexcept PretrainedUnavailable as e:\n    print('ERROR:', e)\nelse:\n    print('LOADED')")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf'),
           'XDG_CACHE_HOME': str(tmp_path / 'cache'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'ERROR:' in out, out
    assert repr(checkpoint) in out, out
    assert 'weights=' in out, out

def test_minilm_loads_with_an_empty_cache_offline(tmp_path):
    code = ("from vlkd.encoders import minilm\nimport torch\nm, tok = minilm()\n"
            "with torch.no_grad(): print(m(**tok(['hello world'])).cls.shape)")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'torch.Size([1, 384])' in r.stdout
