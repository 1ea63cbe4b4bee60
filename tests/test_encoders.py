"Offline behaviour of vlkd.encoders' pretrained loading: needs a clean environment (empty cache, HF_HUB_OFFLINE set before import)."
import os, subprocess, sys
from pathlib import Path
import pytest
from vlkd.encoders import vit_encoder, bert_encoder, open_clip_model, open_clip_encoder, checkpoint_file

ROOT = Path(__file__).resolve().parent.parent

CASES = {  # call, the checkpoint the error must name, the local alternative it must show
    'timm': ("vit_encoder('vit_tiny_patch16_224.augreg_in21k', pretrained=True)", 'vit_tiny_patch16_224.augreg_in21k', 'weights='),
    'transformers': ("bert_encoder('bert-base-uncased', pretrained=True)", 'bert-base-uncased', 'weights='),
    'open_clip': ("open_clip_encoder('ViT-B-32', pretrained='openai')", 'ViT-B-32 (openai)', 'pretrained='),
    'open_clip_model': ("open_clip_model('ViT-B-32', pretrained='openai')", 'ViT-B-32 (openai)', "pretrained='path/to/"),
}

@pytest.mark.parametrize('lib', sorted(CASES))
def test_pretrained_offline_names_checkpoint_and_local_alternative(lib, tmp_path):
    call, checkpoint, hint = CASES[lib]
    code = (f"from vlkd.encoders import *\n"
            f"try:\n    {call}\nexcept PretrainedUnavailable as e:\n    print('ERROR:', e)\nelse:\n    print('LOADED')")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf'),
           'XDG_CACHE_HOME': str(tmp_path / 'cache'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'ERROR:' in out, out
    assert repr(checkpoint) in out, out
    assert hint in out, out

def test_minilm_loads_with_an_empty_cache_offline(tmp_path):
    code = ("from vlkd.encoders import minilm\nimport torch\nm, tok = minilm()\n"
            "with torch.no_grad(): print(m(**tok(['hello world'])).cls.shape)")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_HOME': str(tmp_path / 'hf'), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'torch.Size([1, 384])' in r.stdout


NOT_CHECKPOINTS = {  # file name -> bytes: things that are not weights
    'notes.txt': b'not weights\n', 'random.safetensors': os.urandom(256), 'random.pth': os.urandom(256), 'empty.pt': b'',
}
LOADERS = {
    'vit_encoder': lambda f: vit_encoder(depth=1, weights=f),
    'open_clip_model': lambda f: open_clip_model('tiny', pretrained=f),
    'open_clip_encoder': lambda f: open_clip_encoder('ViT-B-32', weights=f),  # fails before building ViT-B-32
    'checkpoint_file': checkpoint_file,
}

@pytest.mark.parametrize('loader', sorted(LOADERS))
@pytest.mark.parametrize('name', sorted(NOT_CHECKPOINTS))
def test_local_file_that_is_not_a_checkpoint_is_a_value_error_naming_it(loader, name, tmp_path):
    f = tmp_path / name; f.write_bytes(NOT_CHECKPOINTS[name])
    with pytest.raises(ValueError, match=f'{f} is not a checkpoint'): LOADERS[loader](str(f))

def test_bert_folder_with_a_bad_weight_file_is_a_value_error_naming_it(tmp_path):
    bert_encoder(depth=1).model.save_pretrained(tmp_path)
    (tmp_path / 'model.safetensors').write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match=f'{tmp_path / "model.safetensors"} is not a checkpoint'): bert_encoder(weights=tmp_path)
