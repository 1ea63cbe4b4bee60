"Real-data loaders on a tiny on-disk fixture (Karpathy JSON round trip, corrupt and missing files), and DataLoader use."
import json, re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlkd.data import (CaptionWorld, ImageFolderData, KarpathyCaptions, WorldConfig, batches, collate, load_image)


def _png(path: Path, colour, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, colour).save(path)


@pytest.fixture
def karpathy(tmp_path):
    "A COCO-style Karpathy split JSON (with `filepath`) over 4 images; one image file is corrupt."
    entries = []
    for j, split in enumerate(['train', 'restval', 'val', 'test']):
        _png(tmp_path / 'imgs' / 'val2014' / f'COCO_{j}.jpg', (60 * j, 20, 200 - 40 * j))
        entries.append(dict(filepath='val2014', filename=f'COCO_{j}.jpg', imgid=j, split=split, cocoid=100 + j,
                            sentids=list(range(5 * j, 5 * j + 5)),
                            sentences=[dict(raw=f'Image {j}, caption {k}.', tokens=['image', str(j)], imgid=j, sentid=5 * j + k)
                                       for k in range(5)]))
    entries.append(dict(filepath='val2014', filename='COCO_bad.jpg', split='val', sentences=[dict(raw='broken')]))
    (tmp_path / 'imgs' / 'val2014' / 'COCO_bad.jpg').write_bytes(b'\xff\xd8\xff garbage')
    path = tmp_path / 'dataset_coco.json'
    path.write_text(json.dumps(dict(dataset='coco', images=entries)))
    return path, tmp_path / 'imgs'


def test_karpathy_round_trip(karpathy):
    path, root = karpathy
    raw = json.loads(path.read_text())['images']
    for split, keep in [('train', ('train', 'restval')), ('test', ('test',))]:
        ds = KarpathyCaptions(path, root, split, size=8)
        want = [e for e in raw if e['split'] in keep]
        assert len(ds) == len(want)
        assert ds.captions == [s['raw'] for e in want for s in e['sentences']]
        assert ds.text_to_image == [i for i, e in enumerate(want) for _ in e['sentences']]
        for i, e in enumerate(want):
            item = ds[i]
            assert item['captions'] == [s['raw'] for s in e['sentences']] and item['index'] == i
            assert item['image'].shape == (3, 8, 8)
            ref = torch.tensor(np.asarray(Image.open(root / e['filepath'] / e['filename']).convert('RGB')), dtype=torch.float32)
            assert torch.allclose(item['image'][:, 4, 4] * 255, ref[8, 10], atol=2)  # flat colour survives resize + crop
    assert len(KarpathyCaptions(path, root, None)) == 5


def test_karpathy_flickr_layout(tmp_path):
    "Flickr30k's file has no `filepath`: images sit directly under the image root."
    _png(tmp_path / 'flickr30k-images' / '1.jpg', (5, 5, 5))
    (tmp_path / 'f.json').write_text(json.dumps({'images': [dict(filename='1.jpg', split='test', sentences=[dict(raw='a dog')])]}))
    ds = KarpathyCaptions(tmp_path / 'f.json', tmp_path / 'flickr30k-images', 'test')
    assert ds[0]['captions'] == ['a dog'] and ds.text_to_image == [0]


def test_karpathy_errors(karpathy, tmp_path):
    path, root = karpathy
    ds = KarpathyCaptions(path, root, 'val')
    with pytest.raises(ValueError, match='COCO_bad.jpg'): ds[1]  # corrupt image: named when read
    (root / 'val2014' / 'COCO_3.jpg').unlink()
    with pytest.raises(FileNotFoundError, match='COCO_3.jpg'): KarpathyCaptions(path, root, 'test')  # missing: named at construction
    with pytest.raises(FileNotFoundError, match='nothere.json'): KarpathyCaptions(tmp_path / 'nothere.json', root)
    (tmp_path / 'broken.json').write_text('{"images": [')
    with pytest.raises(ValueError, match='broken.json'): KarpathyCaptions(tmp_path / 'broken.json', root)
    (tmp_path / 'other.json').write_text(json.dumps({'annotations': []}))
    with pytest.raises(ValueError, match="'images' list"): KarpathyCaptions(tmp_path / 'other.json', root)
    with pytest.raises(ValueError, match="no images in split 'dev'"): KarpathyCaptions(path, root, 'dev')
    (tmp_path / 'nofile.json').write_text(json.dumps({'images': [dict(split='test', sentences=[dict(raw='x')])]}))
    with pytest.raises(ValueError, match='filename'): KarpathyCaptions(tmp_path / 'nofile.json', root)


def test_image_folder(tmp_path):
    for c, col in [('n01', (255, 0, 0)), ('n02', (0, 255, 0)), ('n03', (0, 0, 255))]:
        for j in range(2): _png(tmp_path / 'root' / c / f'{j}.JPEG', col, (30 + j, 24))
    ds = ImageFolderData(tmp_path / 'root', size=12, class_names=['red', 'green', 'blue'])
    assert (len(ds), ds.num_classes, ds.class_names, ds.folders) == (6, 3, ['red', 'green', 'blue'], ['n01', 'n02', 'n03'])
    b = collate([ds[i] for i in range(6)])
    assert b['images'].shape == (6, 3, 12, 12) and b['labels'].tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.allclose(b['images'][:, :, 6, 6].argmax(1), b['labels'])
    (tmp_path / 'root' / 'n02' / '1.JPEG').write_bytes(b'truncated')
    with pytest.raises(ValueError, match='1.JPEG'): ds[3]
    with pytest.raises(FileNotFoundError, match='nowhere'): ImageFolderData(tmp_path / 'nowhere')
    (tmp_path / 'empty' / 'a').mkdir(parents=True)
    with pytest.raises(ValueError, match='no images'): ImageFolderData(tmp_path / 'empty')
    with pytest.raises(ValueError, match='class_names'): ImageFolderData(tmp_path / 'root', class_names=['x'])


def test_truncated_png_named(tmp_path):
    _png(tmp_path / 'ok.png', (1, 2, 3), (64, 64))
    data = (tmp_path / 'ok.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='cut.png'): load_image(tmp_path / 'cut.png')


def test_world_in_dataloader_workers():
    "The world is picklable and deterministic across DataLoader worker processes."
    ds = CaptionWorld(WorldConfig.tiny(), 'train', 16)
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    got = torch.cat([b['images'] for b in dl])
    assert torch.equal(got, torch.stack([ds[i]['image'] for i in range(16)]))


def test_batches_tokenized():
    ds = CaptionWorld(WorldConfig.tiny(), 'train', 12)
    b = next(batches(ds, 6, tokenizer='bert'))
    assert b['input_ids'].shape == b['attention_mask'].shape and b['input_ids'].shape[0] == 6
    assert b['input_ids'].dtype == torch.long and (b['attention_mask'].sum(1) > 2).all()


GOOD = dict(filepath='val2014', filename='COCO_0.jpg', split='test', sentences=[dict(raw='a cat'), dict(raw='a dog')])
MALFORMED = [  # (how the entry at index 1 is broken, the entry, what the message must name besides file and index)
    ('not a dict', ['COCO_0.jpg'], 'must be a dict'),
    ('a number', 7, 'must be a dict'),
    ('no filename', {k: v for k, v in GOOD.items() if k != 'filename'}, "'filename'"),
    ('empty filename', {**GOOD, 'filename': ''}, "'filename'"),
    ('filename not a string', {**GOOD, 'filename': 3}, "'filename'"),
    ('no split', {k: v for k, v in GOOD.items() if k != 'split'}, "'split'"),
    ('filepath not a string', {**GOOD, 'filepath': ['val2014']}, "'filepath'"),
    ('no sentences', {k: v for k, v in GOOD.items() if k != 'sentences'}, "'sentences'"),
    ('empty sentences', {**GOOD, 'sentences': []}, "'sentences'"),
    ('sentences not a list', {**GOOD, 'sentences': 'a cat'}, "'sentences'"),
    ('sentences as strings', {**GOOD, 'sentences': ['a cat', 'a dog']}, "'sentences'[0]"),
    ('second sentence a string', {**GOOD, 'sentences': [dict(raw='a cat'), 'a dog']}, "'sentences'[1]"),
    ('sentence without raw', {**GOOD, 'sentences': [dict(tokens=['a', 'cat'])]}, "'sentences'[0]"),
    ('raw not a string', {**GOOD, 'sentences': [dict(raw=None)]}, "'sentences'[0]"),
]


@pytest.mark.parametrize('what,entry,field', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_karpathy_malformed_entry(tmp_path, what, entry, field):
    "A malformed entry fails at construction, naming the file, the entry's index in it and the field."
    _png(tmp_path / 'val2014' / 'COCO_0.jpg', (1, 2, 3))
    path = tmp_path / 'capt.json'
    path.write_text(json.dumps({'images': [GOOD, entry]}))
    with pytest.raises(ValueError) as e: KarpathyCaptions(path, tmp_path, 'test')
    msg = str(e.value)
    assert str(path) in msg and 'images[1]' in msg and field in msg, msg


def test_karpathy_split_may_be_missing_without_a_split_filter(tmp_path):
    _png(tmp_path / '1.jpg', (5, 5, 5))
    (tmp_path / 'f.json').write_text(json.dumps({'images': [dict(filename='1.jpg', sentences=[dict(raw=' a dog ')])]}))
    assert KarpathyCaptions(tmp_path / 'f.json', tmp_path, None).captions == ['a dog']
    with pytest.raises(ValueError, match=r"images\[0\]: field 'split'"): KarpathyCaptions(tmp_path / 'f.json', tmp_path, 'test')


BAD_SIZES = [0, -1, -64, 16.0, 0.5, True, '16', [16]]


@pytest.mark.parametrize('size', BAD_SIZES, ids=repr)
def test_loaders_refuse_bad_size_at_construction(tmp_path, size):
    _png(tmp_path / 'root' / 'a' / '0.png', (9, 9, 9))
    _png(tmp_path / 'COCO_0.jpg', (9, 9, 9))
    (tmp_path / 'c.json').write_text(json.dumps({'images': [{**GOOD, 'filepath': ''}]}))
    for build in (lambda: ImageFolderData(tmp_path / 'root', size=size), lambda: KarpathyCaptions(tmp_path / 'c.json', tmp_path, size=size),
                  lambda: load_image(tmp_path / 'COCO_0.jpg', size)):
        with pytest.raises(ValueError, match=f'size must be a positive int or None, got {re.escape(repr(size))}'): build()


def test_loaders_accept_good_sizes_and_refuse_bad_transform(tmp_path):
    _png(tmp_path / 'root' / 'a' / '0.png', (9, 9, 9), (20, 30))
    assert ImageFolderData(tmp_path / 'root', size=np.int64(8))[0]['image'].shape == (3, 8, 8)  # numpy ints are ints
    assert ImageFolderData(tmp_path / 'root', size=None)[0]['image'].shape == (3, 30, 20)
    with pytest.raises(ValueError, match=r'root\): transform must be callable'): ImageFolderData(tmp_path / 'root', transform='normalize')
    with pytest.raises(ValueError, match=r'class_names must hold one string per class folder \(1\)'): ImageFolderData(tmp_path / 'root', class_names=[3])
