"""Where does a training step's time go? Each chapter's dominant step at its full config, against a same-run GEMM.

Usage: .venv/bin/python benchmarks/train_step.py [--threads 2] [--clock wall] [--retries 2] [--steps 10] [--only clip silc] [--tiny]
       [--save] [--contiguous] [--bf16] [--adamw {loop,foreach,fused}] [--compile] [--batch-scale 2]
       [--compare contiguous+loop contiguous loop compact_vocab bf16 batch2x threads1 compile ...] [--profile]

Every step is built from the chapter's public functions with its full config (`--tiny`: the `.tiny()` presets, a
smoke run) and random, untrained weights; the batches are real: each world split is rendered once (a few hundred
images, `WorldTensors`, under a second) and each step draws its batch with the chapter's own batch function.
Teachers that the chapters train first (and cache) are used untrained here, and teacher logits come from an untrained
teacher: the cost of a step does not depend on the weights.
  clip           01c: `contrastive_step` of `make_two_tower(ClipConfig())`, `contrastive_batches`
  featkd         02: `distil_step` (teacher forward inside, augmented `image_batches`) of `make_student(teacher, 6)`
  featkd-teacher 02: the CE step of the 12-block image teacher (`image_teacher`'s training)
  shre           03: the student step of `train_shre` (arm 'both') on teacher logits, `shre_batches`
  shre-teacher   03: the CE step of `train_teacher` (flipped `labelled_batches`, the `train_classifier` recipe)
  ema_text       04: the step of `train_arm(method='ema', task='retrieval')`: `ema_text_loss` + EMA update
  silc           05: `silc_step` of the full arm '+ self-dist (SiLC-C)' + EMA update, `silc_batches`
  capgap         06: `distill_step` of the Table 1/3 CNN student (cfg.arch) from stored teacher logits (`train_student`)
  capgap-t2      06: the same for Table 2's reduced student (cfg.table2_arch / cfg.reduced)
  capgap-teacher 06: the CE step of the widest CE teacher (`make_teacher` -> `train_classifier`)
The loop replicates `vlkd.train.fit` step for step: learning-rate schedule, batch(step), forward (under bf16 autocast
with --bf16, like TrainConfig.bf16), zero_grad + backward, `clip_grad_norm_` (fit always computes the norm) + AdamW,
EMA update (`ema_update` with the config's momentum schedule), and reading the logged scalars.

Timing: the phases are stamped with the clock around each one in the same step (CPU ops run synchronously, so a
phase's time is its own work; more faithful than the autograd profiler, whose per-op records inflate small ops).
Teacher forwards inside a loss function (featkd, ema_text, silc) are timed by a proxy around the teacher's call and
moved from `fwd` to `ema/teacher`. `data` is the chapter's batch function (indexing, augmentation, tokenising);
`bwd` includes zero_grad; `opt` is clip_grad_norm_ + AdamW.step; `other` = total - the rest (lr schedule, logged
scalars, timers). The shares are those of the median phases. `--clock wall` (default) times wall seconds; on a loaded
machine two threads stall at every parallel region while the other is preempted, so `--clock cpu` (process CPU time,
all threads) with `--threads 1` measures the work alone. `cores busy` = CPU time / wall time of a step: about the
thread count when the step had the cores to itself; lower means the machine was shared (distrust that row's ms).
`min ms` is the fastest timed step, the least disturbed one. `--retries N` re-measures a step kind (up to N times)
while its cores busy is below 0.9 x threads and keeps the least disturbed attempt.
FLOPs: one extra step of a separately built copy under torch.utils.flop_counter.FlopCounterMode (forward + backward:
matmuls, convolutions and attention, with CPU flash attention registered here; elementwise work is not counted).
`of_peak` = achieved FLOP/s / peak, the peak being the best of several 2048^3 fp32 GEMMs measured in this run with the
same thread count and clock (before and after the steps). The aten op count (a TorchDispatchMode over one step) times
the measured cost of one tiny op from Python gives `dispatch %`, a rough bound on the per-op overhead's share.
With the full configs `reproduce steps` counts the steps of exactly this kind in `make reproduce` and `est. min` turns
them into minutes at this run's ms/step (training only: no evaluation, no other kinds of steps).

`--compare V ...` builds the base and each variant from the same seed, runs them interleaved (one step of each in
turn) on the same batches, and reports the time ratio, of_peak, and the numerics against the base: the relative
difference of the first step's loss and gradient norm (same weights, same batch: what the variant itself changes) and
the largest relative loss difference over the run (rounding differences grow chaotically with training, so a drift of
a few % in a fast-moving run, e.g. capgap at lr 1e-2, does not by itself mean the variant is less accurate):
  loop / foreach    AdamW's per-tensor loop (torch's CPU default; what fit used before) / foreach instead of the fused kernel fit uses
  fused             the fused kernel (the base already)
  bf16              bfloat16 autocast of the forward (TrainConfig.bf16)
  contiguous        batches in the default NCHW memory format instead of channels-last (fit before); `contiguous+loop` is fit before both
  compile           torch.compile of the encoders in place (student, EMA and frozen teachers); compile time is in `warm-up s`
  batch2x           twice the batch (read `per-sample x base`: a different training recipe)
  compact_vocab     the BERT towers keep only the rows of the token ids the run's batches use (the world's captions use
                    ~50 of the 30522 BERT ids) and the batches are remapped: the same outputs and gradients, so the
                    same losses; only the weight decay of never-used rows is skipped
  threads1          this variant's steps on one thread (against the base's --threads; use --clock wall)
'+' combines them, e.g. fused+compact_vocab.
The machine may be shared: read ratios (of_peak, x base), not absolute times; run it twice.
"""
import argparse, contextlib, math, os, statistics, sys, time, warnings
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable
os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', '/tmp/vlkd-inductor-cache')
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from vlkd import clip, featkd, shre, ema_text, silc, capgap
from vlkd.evaluate import predict, embed_images, labelled_batches
from vlkd.data import normalize


def _sig(x: float, digits: int = 3) -> float:
    "`x` to `digits` significant digits (a ratio of a loaded machine never rounds to 0)."
    return float(f'{x:.{digits}g}')
from vlkd.encoders import vit_encoder, ViTEncoder, HFTextEncoder, ConvEncoder
from vlkd.losses import DINOLoss
from vlkd.retrieval import ImageClassifier
from vlkd.train import TrainConfig, lr_schedule, momentum_schedule, ema_update, ema_teacher, batch_indices, to_device
from vlkd.utils import set_seed

warnings.filterwarnings('ignore', message='SiLC teacher collapsed')  # untrained teachers are uniform: expected here
PHASES = ('data', 'fwd', 'bwd', 'opt', 'ema/teacher', 'other')
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}
clock = CLOCKS['wall']  # what every phase, step and the GEMM peak are timed with (--clock)


# ---------------------------------------------------------------- CPU flash attention in the FLOP counter
def _register_cpu_attention():
    "FlopCounterMode knows CUDA's fused attention kernels; count the CPU ones (SDPA's default on CPU) the same way."
    aten = torch.ops.aten
    fwd, bwd = getattr(aten, '_scaled_dot_product_flash_attention_for_cpu', None), getattr(aten, '_scaled_dot_product_flash_attention_for_cpu_backward', None)
    if fwd is not None and fwd not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(fwd)(lambda query, key, value, *a, out_shape=None, **k: flop_counter.sdpa_flop_count(query, key, value))
    if bwd is not None and bwd not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(bwd)(lambda grad_out, query, key, value, *a, out_shape=None, **k: flop_counter.sdpa_backward_flop_count(grad_out, query, key, value))

_register_cpu_attention()


# ---------------------------------------------------------------- one step, as the chapters build it
@dataclass
class Setup:
    "Everything one training step needs: what `fit` would receive."
    model: nn.Module  # the trained module
    loss: Callable  # loss(model, batch) -> loss or (loss, logs)
    batches: Callable  # batches(step) -> batch dict
    train: TrainConfig  # lr, AdamW, clipping, EMA momentum
    config: str  # a short description for the table
    ema: nn.Module | None = None  # EMA teacher updated after every step
    timers: list = field(default_factory=list)  # Timed proxies: their calls are teacher time
    frozen: list = field(default_factory=list)  # frozen teachers (compiled with the student under --compile)


class Timed:
    "A proxy that charges calls of `obj` (or of its `methods`) to `seconds`; everything else is passed through."
    def __init__(self, obj, methods=()): self._obj, self._methods, self.seconds = obj, methods, 0.0
    def _run(self, f, *a, **k):
        t = clock()
        try: return f(*a, **k)
        finally: self.seconds += clock() - t
    def __call__(self, *a, **k): return self._run(self._obj, *a, **k)
    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        return partial(self._run, attr) if name in self._methods else attr


_WORLDS = {}

def _world(world, split, n):
    "A rendered split, memoised (several steps share a world)."
    key = (repr(world), split, n)
    if key not in _WORLDS: _WORLDS[key] = clip.WorldTensors(world, split, n)
    return _WORLDS[key]

def _n(tiny, batch): return max(2 * batch, 64 if tiny else 512)  # rendered images: enough for two batches
def _scale(tc: TrainConfig, o) -> TrainConfig: return replace(tc, batch_size=tc.batch_size * o.batch_scale)
def _vit_desc(depth, width, patch, px): return f'ViT {depth}x{width} p{patch} {px}px'
def _cnn_desc(widths, px): return f'CNN {"-".join(map(str, widths))} {px}px'


def clip_step(tiny, o):
    cfg = clip.ClipConfig.tiny() if tiny else clip.ClipConfig(); cfg = replace(cfg, train=_scale(cfg.train, o))
    data = _world(cfg.world, 'train', _n(tiny, cfg.train.batch_size))
    return Setup(clip.make_two_tower(cfg), lambda m, b: clip.contrastive_step(m, b, cfg.loss),
                 clip.contrastive_batches(data, cfg.train.batch_size, cfg.train.seed), cfg.train,
                 f'{_cnn_desc(cfg.conv_widths, cfg.world.img_size) if cfg.image_arch == "cnn" else _vit_desc(cfg.image_depth, cfg.image_width, cfg.patch_size, cfg.world.img_size)}'
                 f' + BERT {cfg.text_depth}x{cfg.text_width}, {cfg.loss}')


def _featkd_vit(cfg, depth):
    set_seed(0)
    return vit_encoder('tiny', img_size=cfg.world.img_size, patch_size=cfg.patch_size, depth=depth, width=cfg.width, heads=cfg.heads)

def featkd_step(tiny, o):
    cfg = featkd.FeatKDConfig.tiny() if tiny else featkd.FeatKDConfig(); tc = _scale(cfg.distil, o)
    data = _world(cfg.world, 'train', _n(tiny, tc.batch_size))
    teacher = _featkd_vit(cfg, cfg.depth).eval().requires_grad_(False)  # what image_teacher returns, untrained
    student, t = featkd.make_student(teacher, cfg.student_depth, 'first'), Timed(teacher)
    return Setup(student, lambda m, b: featkd.distil_step(m, t, b), featkd.image_batches(data, tc.batch_size, cfg.crop_scale, 0), tc,
                 f'{_vit_desc(cfg.depth, cfg.width, cfg.patch_size, cfg.world.img_size)} -> {cfg.student_depth} blocks', timers=[t], frozen=[teacher])

def _classify(m, b):
    logits = m(b['images'])
    return F.cross_entropy(logits, b['labels']), dict(acc=(logits.argmax(1) == b['labels']).float().mean())

def featkd_teacher_step(tiny, o):
    cfg = featkd.FeatKDConfig.tiny() if tiny else featkd.FeatKDConfig(); tc = _scale(cfg.teacher_train, o)
    data = _world(cfg.world, 'train', _n(tiny, tc.batch_size))
    model = ImageClassifier(_featkd_vit(cfg, cfg.depth), len(data.class_names))
    return Setup(model, _classify, featkd.image_batches(data, tc.batch_size, (0.8, 1.0)), tc,
                 f'{_vit_desc(cfg.depth, cfg.width, cfg.patch_size, cfg.world.img_size)}, CE')


def shre_step(tiny, o):
    cfg = shre.SHReConfig.tiny() if tiny else shre.SHReConfig(); tc = _scale(cfg.train, o)
    data = _world(cfg.teacher.world, 'train', _n(tiny, tc.batch_size))
    logits = predict(shre.make_teacher(cfg.teacher), data.images)
    model = shre.make_student(cfg, logits.shape[1], 0)
    loss = lambda m, b: shre.shre_loss(*m(b['images'], b['input_ids'], b['attention_mask']), b['teacher_logits'],
                                       cfg.margin, cfg.kd_weight, cfg.rank_weight, cfg.tau)  # arm 'both', as train_shre
    image = _cnn_desc(cfg.conv_widths, cfg.teacher.world.img_size) if cfg.image_arch == 'cnn' else f'ViT {cfg.image_depth}x{cfg.width}'
    return Setup(model, loss, shre.shre_batches(data, logits, tc.batch_size, 0), tc,
                 f'{image} + BERT {cfg.text_depth}x{cfg.width} + MLP {cfg.shared_depth}x{cfg.shared_width}')

def shre_teacher_step(tiny, o):
    cfg = (shre.SHReConfig.tiny() if tiny else shre.SHReConfig()).teacher; tc = _scale(cfg.train, o)
    data = _world(cfg.world, 'train', _n(tiny, tc.batch_size))
    return Setup(shre.make_teacher(cfg), lambda m, b: F.cross_entropy(m(b['images']), b['labels']),
                 labelled_batches(data.images, data.labels, tc.batch_size, tc.seed, flip=cfg.flip), tc,
                 f'{_cnn_desc(cfg.conv_widths, cfg.world.img_size) if cfg.arch == "cnn" else _vit_desc(cfg.depth, cfg.width, cfg.patch_size, cfg.world.img_size)}, CE')


def ema_text_step(tiny, o, task='retrieval'):
    cfg = ema_text.EmaTextConfig.tiny() if tiny else ema_text.EmaTextConfig(); cfg = replace(cfg, train=_scale(cfg.train, o))
    model = clip.make_two_tower(cfg.clip)  # the pre-trained CLIP, untrained here
    train = ema_text.render_split(cfg.world, 'train', _n(tiny, cfg.train.batch_size))
    train['image_emb'] = embed_images(model, train['images'])
    prompts = ema_text.prompt_tokens(train['class_names'], train['templates'])
    student = ema_text.TextTower(model, cfg.tune_embeddings).train(); teacher = ema_teacher(student)
    prompt_keys = (cfg.keys if cfg.keys != 'auto' else 'prompts' if task == 'classification' else 'captions') == 'prompts'
    dino = DINOLoss(prompts[0].shape[0] if prompt_keys else cfg.train.batch_size, cfg.tau_t, cfg.tau_s, cfg.center_momentum if prompt_keys else 1.0)
    s, t = float(model.logit_scale.detach()), Timed(teacher)
    return Setup(student, lambda m, b: ema_text.ema_text_loss(m, b, cfg, task, s, t, dino, False),
                 ema_text.text_batches(train, prompts, cfg, task, 0), cfg.train,
                 f'BERT {cfg.clip.text_depth}x{cfg.clip.text_width} + EMA copy, {task}', ema=teacher, timers=[t])


def silc_step(tiny, o, arm='+ self-dist (SiLC-C)'):
    cfg = silc.arm_config(silc.SiLCConfig.tiny() if tiny else silc.SiLCConfig(), arm, 0); cfg = replace(cfg, train=_scale(cfg.train, o))
    data = _world(cfg.world, 'train', _n(tiny, cfg.train.batch_size))
    student = silc.make_silc_model(cfg); teacher = ema_teacher(student); t = Timed(teacher, ('project',))
    return Setup(student, partial(silc.silc_step, teacher=t, cfg=cfg), silc.silc_batches(data, cfg), cfg.train,
                 f'{_cnn_desc(cfg.conv_widths, cfg.global_size) if getattr(cfg, "image_arch", "vit") == "cnn" else _vit_desc(cfg.image_depth, cfg.image_width, cfg.patch_size, cfg.global_size) + (" conv stem" if cfg.conv_stem else "")}, '
                 f'{cfg.n_global}+{cfg.n_local} views + BERT {cfg.text_depth}x{cfg.text_width}', ema=teacher, timers=[t])


def _capgap(tiny, o):
    cfg = capgap.CapGapConfig.tiny() if tiny else capgap.CapGapConfig(); cfg = replace(cfg, batch_size=cfg.batch_size * o.batch_scale)
    return cfg, capgap.world_data(cfg, 'train')

def _capgap_setup(cfg, data, model, steps, logits, desc, arch):
    "`train_classifier`'s step as the chapter runs it: `_step_config` (one-cycle; channels-last where it pays), flipped labelled batches, `distill_step`."
    tc = replace(capgap._step_config(cfg, len(data), steps, 0), channels_last=capgap.channels_last_pays(arch))
    flipped = labelled_batches(data.images, data.labels, tc.batch_size, tc.seed, flip=True)
    def batch(step):
        b = flipped(step)
        return b if logits is None else b | dict(teacher_logits=logits[torch.tensor(batch_indices(len(data), tc.batch_size, step, tc.seed))])
    return Setup(model, lambda m, b: capgap.distill_step(m, b, alpha=cfg.alpha, beta=cfg.beta, tau=cfg.tau), batch, tc, desc)

def capgap_student_step(tiny, o, table=1):
    "Table 1/3 student (cfg.arch) or Table 2's reduced student, distilled from stored logits of an untrained CE teacher."
    cfg, data = _capgap(tiny, o); C = len(data.class_names)
    arch, steps = (cfg.arch, cfg.student_steps) if table == 1 else (f'{cfg.table2_arch}/{cfg.reduced}', cfg.table2_steps)
    set_seed(0); logits = predict(capgap.student(cfg.teachers[0], C), data.images)  # an untrained teacher's logits
    set_seed(0); model = capgap.student(arch, C)
    return _capgap_setup(cfg, data, model, steps, logits, f'{arch} {_cnn_desc(capgap._cnn_widths(arch), cfg.world.img_size)}, KD', arch)

def capgap_teacher_step(tiny, o):
    "The CE step of the widest CE teacher (cfg.teachers[-1])."
    cfg, data = _capgap(tiny, o); name = cfg.teachers[-1]
    set_seed(0); model = capgap.student(name, len(data.class_names))
    return _capgap_setup(cfg, data, model, cfg.teacher_steps, None, f'{name} {_cnn_desc(capgap._cnn_widths(name), cfg.world.img_size)}, CE', name)


STEPS = {'clip': clip_step, 'featkd': featkd_step, 'featkd-teacher': featkd_teacher_step, 'shre': shre_step,
         'shre-teacher': shre_teacher_step, 'ema_text': ema_text_step, 'silc': silc_step, 'capgap': capgap_student_step,
         'capgap-t2': partial(capgap_student_step, table=2), 'capgap-teacher': capgap_teacher_step}


def reproduce_steps(name: str) -> int:
    "How many steps of exactly this kind `make reproduce` runs (full configs), to turn ms/step into minutes."
    cc, fk, sh, et, sc, cg = clip.ClipConfig(), featkd.FeatKDConfig(), shre.SHReConfig(), ema_text.EmaTextConfig(), silc.SiLCConfig(), capgap.CapGapConfig()
    table1 = len(cg.seeds) * (3 + len(cg.teachers))  # students of the teachers none, *ce, clip-raw, clip-ft
    table3 = len(cg.seeds) * len(cg.lowshot_k) * (2 + len(cg.lowshot_teachers))  # none, *lowshot_teachers, clip-ft for each k
    return {'clip': cc.train.steps,
            'featkd': fk.distil.steps * len(fk.inits) * len(fk.seeds), 'featkd-teacher': fk.teacher_train.steps,
            'shre': sh.train.steps * len(sh.arms) * len(sh.seeds), 'shre-teacher': sh.teacher.train.steps,
            'ema_text': et.train.steps * len(et.seeds) * (len(et.noise_levels) + 1),  # the 'ema' method, both tasks, every noise level
            'silc': sc.train.steps * (2 * len(silc.AblationConfig().seeds) + 1),  # arms with local views: SiLC-C and SiLC-S per seed, cosine λ once
            'capgap': cg.student_steps * table1 + cg.lowshot_student_steps * table3, 'capgap-t2': cg.table2_steps * table1,
            'capgap-teacher': cg.teacher_steps}[name]  # the widest CE teacher, trained once (extra teacher seeds go to the finetuned CLIP's closest CE teacher)


# ---------------------------------------------------------------- options (a variant is a set of them)
@dataclass(frozen=True)
class Options:
    channels_last: bool = True  # 4-D batch tensors in channels-last memory, as `fit` does (TrainConfig.channels_last)
    bf16: bool = False  # forward under torch.autocast(bfloat16), like TrainConfig.bf16
    adamw: str = 'fused'  # 'fused' (what fit uses, TrainConfig.fused_adamw), 'loop' (torch's CPU default; fit before) or 'foreach'
    compile: bool = False  # torch.compile the encoders (student and frozen/EMA teacher) in place
    batch_scale: int = 1  # multiply the config's batch size
    compact_vocab: bool = False  # text towers embed only the token ids the run's batches use (same outputs, see below)
    threads: int = 0  # torch threads for this variant's steps; 0: the run's --threads


VARIANTS = {'channels_last': dict(channels_last=True), 'contiguous': dict(channels_last=False), 'bf16': dict(bf16=True),
            'foreach': dict(adamw='foreach'), 'fused': dict(adamw='fused'), 'loop': dict(adamw='loop'), 'compile': dict(compile=True),
            'batch2x': dict(batch_scale=2), 'compact_vocab': dict(compact_vocab=True), 'threads1': dict(threads=1)}

def variant(base: Options, name: str) -> Options:
    "`base` with the changes of a variant name; '+' combines them, e.g. 'fused+bf16'."
    over = {}
    for part in name.split('+'):
        if part not in VARIANTS: raise ValueError(f"unknown variant {part!r}; choose from {list(VARIANTS)}")
        over |= VARIANTS[part]
    return replace(base, **over)


TEXT_STEPS = {'clip', 'shre', 'ema_text', 'silc'}

def for_step(name: str, variants: dict) -> dict:
    "The variants as they apply to step `name` (compact_vocab needs a text tower), without repeats."
    adapt = lambda o: replace(o, compact_vocab=o.compact_vocab and name in TEXT_STEPS)
    out = {'base': adapt(variants['base'])}
    for v, o in variants.items():
        if adapt(o) not in out.values(): out[v] = adapt(o)
    return out


def _backbones(root: nn.Module) -> list:
    "The encoders to compile: vlkd's ViT, BERT and CNN encoders, outermost only."
    kinds = (ViTEncoder, HFTextEncoder, ConvEncoder)
    if isinstance(root, kinds): return [root]
    return [m for c in root.children() for m in _backbones(c)]

def _channels_last(batches):
    "Every 4-D batch tensor channels-last, exactly as `fit` moves a batch (`to_device(..., channels_last=True)`)."
    return lambda step: to_device(batches(step), 'cpu', channels_last=True)

HORIZON = 64  # steps a run draws batches for (main sets it); compact_vocab collects the token ids of these batches
_ID_KEYS = ('input_ids', 'ids', 'prompt_ids')

def compact_vocab(s: Setup):
    "Give every BERT-style tower a token table of only the ids the run's batches use, and remap the batches' ids to it."
    encs = [e for m in (s.model, s.ema, *s.frozen) if m is not None for e in m.modules() if isinstance(e, HFTextEncoder)]
    if not encs: return
    used = torch.unique(torch.cat([b[k].flatten() for b in map(s.batches, range(HORIZON)) for k in _ID_KEYS if k in b]))
    lut = torch.full((encs[0].model.embeddings.word_embeddings.num_embeddings,), -1, dtype=torch.long)
    lut[used] = torch.arange(len(used))
    for e in encs:
        old = e.model.embeddings.word_embeddings
        pad = None if old.padding_idx is None or lut[old.padding_idx] < 0 else int(lut[old.padding_idx])
        new = nn.Embedding(len(used), old.embedding_dim, padding_idx=pad)
        with torch.no_grad(): new.weight.copy_(old.weight[used])
        e.model.embeddings.word_embeddings = new.requires_grad_(old.weight.requires_grad)
    batches = s.batches
    def batch(step):
        b = batches(step)
        for k in _ID_KEYS:
            if k in b:
                b[k] = lut[b[k]]
                if (b[k] < 0).any(): raise ValueError(f'compact_vocab: step {step} uses a token id outside the first {HORIZON} batches')
        return b
    s.batches = batch


def build(name: str, opts: Options, tiny: bool):
    "(Setup, AdamW optimizer) of step `name` under `opts`; seeded, so two builds start from the same weights."
    set_seed(0); s = STEPS[name](tiny, opts)
    if opts.compact_vocab: compact_vocab(s)
    if opts.channels_last and s.train.channels_last: s.batches = _channels_last(s.batches)  # the batches only, as fit; not where the chapter turns it off
    if opts.compile:
        for m in (s.model, s.ema, *s.frozen):
            for b in ([] if m is None else _backbones(m)): b.compile()
    params = [p for p in s.model.parameters() if p.requires_grad]
    kw = {'loop': dict(foreach=False), 'foreach': dict(foreach=True), 'fused': dict(fused=True)}[opts.adamw]
    opt = torch.optim.AdamW(params, lr=s.train.lr, betas=s.train.betas, eps=s.train.eps, weight_decay=s.train.weight_decay, **kw)
    for g in opt.param_groups: g.setdefault('initial_lr', g['lr'])
    if s.ema is not None: s.ema.requires_grad_(False)
    s.model.train()
    return s, opt


class OpCounter(TorchDispatchMode):
    "Counts aten operator calls (forward, backward and optimizer ops all pass through the dispatcher)."
    def __init__(self): super().__init__(); self.n = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def run_step(s: Setup, opt, step: int, opts: Options, modes=None) -> tuple[dict, float, float]:
    "One step of `fit`'s loop: (seconds per phase + 'cpu', 'wall', 'gnorm'; total seconds; loss). `modes`: phase -> context factory (counting)."
    pc, tc, params = clock, s.train, [p for g in opt.param_groups for p in g['params']]
    ctx = (lambda ph: modes.get(ph, contextlib.nullcontext)()) if modes else (lambda ph: contextlib.nullcontext())
    for t in s.timers: t.seconds = 0.0
    threads = torch.get_num_threads()
    if opts.threads: torch.set_num_threads(opts.threads)
    c0, w0, t0 = time.process_time(), time.perf_counter(), pc()
    f = lr_schedule(step, tc.steps, tc.warmup_frac, tc.min_lr_frac)
    for g in opt.param_groups: g['lr'] = g['initial_lr'] * f
    t1 = pc()
    with ctx('data'): b = s.batches(step)
    t2 = pc()
    with ctx('fwd'), torch.autocast('cpu', dtype=torch.bfloat16, enabled=opts.bf16): out = s.loss(s.model, b)
    loss, logs = out if isinstance(out, tuple) else (out, {})
    t3 = pc()
    with ctx('bwd'): opt.zero_grad(set_to_none=True); loss.backward()
    t4 = pc()
    with ctx('opt'): gnorm = nn.utils.clip_grad_norm_(params, math.inf if tc.grad_clip is None else tc.grad_clip); opt.step()
    t5 = pc()
    if s.ema is not None:
        with ctx('ema'): ema_update(s.ema, s.model, momentum_schedule(tc.ema_schedule, tc.ema_momentum, step, tc.steps), tc.ema_buffers)
    t6 = pc()
    value = float(loss.detach()); [float(v) for v in logs.values()]
    t7, w7, c7 = pc(), time.perf_counter(), time.process_time()
    torch.set_num_threads(threads)
    teach = sum(t.seconds for t in s.timers)
    parts = dict(data=t2 - t1, fwd=t3 - t2 - teach, bwd=t4 - t3, opt=t5 - t4, **{'ema/teacher': t6 - t5 + teach})
    parts['other'] = (t7 - t0) - sum(parts.values())
    parts['cpu'], parts['wall'] = c7 - c0, w7 - w0  # process CPU time of the step (all threads) and its wall time
    parts['gnorm'] = float(gnorm)  # gradient norm before clipping: compares the backward of two variants
    return parts, t7 - t0, value


def count_step(name: str, opts: Options, tiny: bool) -> dict:
    "FLOPs (forward + backward) and aten ops per phase of one step, on a fresh build (the timed models are not touched)."
    s, opt = build(name, opts, tiny)
    run_step(s, opt, 0, opts)  # lazy initialisations (optimizer state) out of the way
    flops, ops = flop_counter.FlopCounterMode(display=False), {ph: OpCounter() for ph in ('data', 'fwd', 'bwd', 'opt', 'ema')}
    @contextlib.contextmanager
    def both(ph):
        with ops[ph], (flops if ph in ('fwd', 'bwd') else contextlib.nullcontext()): yield
    run_step(s, opt, 1, opts, {ph: partial(both, ph) for ph in ops})
    return dict(flops=flops.get_total_flops(), ops={ph: c.n for ph, c in ops.items()})


def gemm_peak(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    "Best FLOP/s of an n x n @ n x n GEMM over `repeats`, on the current threads (the reference every of_peak divides by)."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype); a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best

def _timed(f):
    t = clock(); f(); return clock() - t

def op_cost(n: int = 20000) -> float:
    "Seconds per call of a tiny in-place aten op from Python: the per-op overhead floor."
    x = torch.zeros(4)
    for _ in range(1000): x.add_(1)
    t = clock()
    for _ in range(n): x.add_(1)
    return (clock() - t) / n


# ---------------------------------------------------------------- measurement
def measure(name: str, variants: dict, tiny: bool, warmup: int, steps: int) -> dict:
    "Build every variant, warm up, then run them interleaved: per variant the step times, phases and losses."
    built, res = {}, {}
    for v, opts in variants.items():
        t = time.perf_counter(); built[v] = build(name, opts, tiny)
        res[v] = dict(opts=opts, times=[], parts=[], losses=[], setup=built[v][0])
        for i in range(warmup + (3 if opts.compile else 0)):
            parts, _, loss = run_step(*built[v], i, opts); res[v]['losses'].append(loss)
            if i == 0: res[v]['gnorm0'] = parts['gnorm']
        res[v]['warmup_s'] = time.perf_counter() - t
    for i in range(warmup, warmup + steps):
        for v, (s, opt) in built.items():
            k = i + (3 if res[v]['opts'].compile else 0)
            parts, total, loss = run_step(s, opt, k, res[v]['opts'])
            res[v]['times'].append(total); res[v]['parts'].append(parts); res[v]['losses'].append(loss)
    for v, r in res.items():
        r['ms'], r['min_ms'] = 1e3 * statistics.median(r['times']), 1e3 * min(r['times'])
        r['busy'] = statistics.median(p['cpu'] / p['wall'] for p in r['parts'])
        med = {ph: statistics.median(p[ph] for p in r['parts']) for ph in PHASES}
        tot = sum(med.values())
        r['share'] = {ph: 100 * med[ph] / tot for ph in PHASES}  # shares of the median phases (they sum to 100)
        r['count'] = count_step(name, r['opts'], tiny) if v == 'base' or not r['opts'].compile else None
    return res


def profile(name: str, opts: Options, tiny: bool, steps: int = 3, top: int = 12):
    "Print the aten ops with the most self CPU time over a few steps, and their grouping into kinds."
    s, opt = build(name, opts, tiny)
    for i in range(2): run_step(s, opt, i, opts)
    from torch.profiler import profile as prof, ProfilerActivity
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for i in range(2, 2 + steps): run_step(s, opt, i, opts)
    ev = [e for e in p.key_averages() if e.key.startswith('aten::') or 'Optimizer' in e.key]
    total = sum(e.self_cpu_time_total for e in ev)
    kinds = {}
    for e in ev: kinds[_kind(e.key)] = kinds.get(_kind(e.key), 0) + e.self_cpu_time_total
    print(f'\nprofile {name} ({steps} steps, self CPU time of aten ops, {total / 1e3 / steps:.1f} ms/step):')
    print('  ' + ', '.join(f'{k} {100 * v / total:.0f}%' for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f'  {e.key:48s} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count // steps:6d} calls/step  {e.self_cpu_time_total / max(e.count, 1):8.1f} us/call')

_KINDS = [('gemm', ('mm', 'addmm', 'bmm', 'baddbmm', 'linear', 'matmul')), ('attention', ('scaled_dot_product', 'flash_attention')),
          ('conv', ('convolution', 'conv', 'mkldnn')), ('norm', ('layer_norm', 'batch_norm', 'native_layer_norm', 'norm')),
          ('softmax', ('softmax', 'log_softmax')), ('activation', ('gelu', 'relu', 'threshold', 'hardswish', 'hardsigmoid', 'silu')),
          ('reduce', ('sum', 'mean', 'max', 'amax', 'var')), ('copy/layout', ('copy_', 'clone', 'contiguous', 'cat', 'stack', 'index', 'gather', 'scatter', 'to', '_to_copy', 'pad', 'grid_sampler', 'flip', 'where', 'embedding')),
          ('elementwise', ('add', 'mul', 'div', 'sub', 'sqrt', 'rsqrt', 'exp', 'lerp', 'addcmul', 'addcdiv', 'clamp', 'pow', 'neg', 'fill', 'zero', 'foreach', 'fused_adam'))]

def _kind(key: str) -> str:
    op = key.split('::')[-1]
    for kind, names in _KINDS:
        if any(op == n or op.startswith(n + '_') or op.startswith('_' + n) or n in op for n in names): return kind
    return 'other'


# ---------------------------------------------------------------- output
def table_row(name, r, peak, op_s, tiny):
    s, c = r['setup'], r['count']
    gflop = c['flops'] / 1e9
    achieved = gflop / (r['ms'] / 1e3)
    n_ops = sum(c['ops'].values())
    row = {'step': name, 'config': s.config, 'batch': s.train.batch_size, 'ms/step': round(r['ms'], 1), 'min ms': round(r['min_ms'], 1), 'cores busy': round(r['busy'], 2), 'GFLOP/step': round(gflop, 3),
           'GFLOP/s': round(achieved, 1), 'of_peak': _sig(achieved * 1e9 / peak),
           **{f'{ph} %': round(r['share'][ph], 1) for ph in PHASES},
           'aten ops': n_ops, 'dispatch %': round(min(100.0, 100 * n_ops * op_s / (r['ms'] / 1e3)), 1)}
    if not tiny:
        n = reproduce_steps(name); row |= {'reproduce steps': n, 'est. min': round(n * r['ms'] / 6e4, 1)}
    return row


def compare_rows(name, res, peak):
    base, rows = res['base'], []
    flops = base['count']['flops']
    for v, r in res.items():
        f = flops * r['opts'].batch_scale if r['count'] is None else r['count']['flops']
        per_sample = r['ms'] / r['setup'].train.batch_size / (base['ms'] / base['setup'].train.batch_size)
        d0 = abs(r['losses'][0] - base['losses'][0]) / max(abs(base['losses'][0]), 1e-12)
        g0 = abs(r['gnorm0'] - base['gnorm0']) / max(abs(base['gnorm0']), 1e-12)
        dmax = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(r['losses'], base['losses']))
        rows.append({'step': name, 'variant': v, 'batch': r['setup'].train.batch_size, 'ms/step': round(r['ms'], 1),
                     'x base': round(r['ms'] / base['ms'], 3), 'per-sample x base': round(per_sample, 3),
                     'of_peak': _sig(f / (r['ms'] / 1e3) / peak), 'opt %': round(r['share']['opt'], 1),
                     'warm-up s': round(r['warmup_s'], 1),
                     'loss rel. diff step 0': '-' if v == 'base' or r['opts'].batch_scale != 1 else f'{d0:.1e}',
                     'grad-norm rel. diff step 0': '-' if v == 'base' or r['opts'].batch_scale != 1 else f'{g0:.1e}',
                     'max loss rel. diff': '-' if v == 'base' or r['opts'].batch_scale != 1 else f'{dmax:.1e}'})
    return rows


def markdown(rows):
    cols = list(rows[0])
    out = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    return '\n'.join(out + ['| ' + ' | '.join(str(r.get(c, '')) for c in cols) + ' |' for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2, help='torch threads (the machine has 2 cores); the GEMM peak uses the same')
    ap.add_argument('--clock', choices=list(CLOCKS), default='wall', help="'cpu': process CPU time (all threads) instead of wall time, for a loaded machine")
    ap.add_argument('--steps', type=int, default=10, help='timed steps per step kind (median)')
    ap.add_argument('--warmup', type=int, default=3, help='untimed steps first (compile adds 3)')
    ap.add_argument('--only', nargs='+', choices=list(STEPS), help='run only these steps')
    ap.add_argument('--tiny', action='store_true', help="the chapters' .tiny() configs: a smoke run in seconds")
    ap.add_argument('--contiguous', action='store_true', help='batches in the default (NCHW) memory format; fit uses channels-last')
    ap.add_argument('--bf16', action='store_true')
    ap.add_argument('--adamw', choices=('loop', 'foreach', 'fused'), default='fused', help="AdamW implementation ('fused' is what fit uses)")
    ap.add_argument('--compile', action='store_true', help='torch.compile the encoders (cache under $TORCHINDUCTOR_CACHE_DIR, default /tmp)')
    ap.add_argument('--batch-scale', type=int, default=1, help='multiply every batch size')
    ap.add_argument('--compact-vocab', action='store_true', help='text towers embed only the token ids used (see compact_vocab)')
    ap.add_argument('--compare', nargs='+', default=[], metavar='VARIANT', help=f"paired variants of the base ({', '.join(VARIANTS)}; '+' combines)")
    ap.add_argument('--retries', type=int, default=0, help='with --clock wall: re-measure a step up to this often while its cores busy < 0.9 x threads')
    ap.add_argument('--profile', action='store_true', help='also print the top aten ops of each step (torch.profiler)')
    ap.add_argument('--save', action='store_true', help='write figures/99_train_step_benchmark.md/.json (and _variants with --compare)')
    ap.add_argument('--out', default=None, help='folder for --save (default figures/; a --tiny run must name one)')
    a = ap.parse_args(argv)
    global HORIZON; HORIZON = a.warmup + a.steps + 8
    if a.save and a.tiny and a.out is None: ap.error('--tiny --save would overwrite the full-run table in figures/: pass --out')
    torch.set_num_threads(a.threads)
    global clock; clock = CLOCKS[a.clock]
    base = Options(not a.contiguous, a.bf16, a.adamw, a.compile, a.batch_scale, a.compact_vocab)
    variants = {'base': base} | {v: variant(base, v) for v in a.compare}
    names = a.only or list(STEPS)
    n_gemm = 512 if a.tiny else 2048  # a smoke run keeps the reference short
    peak0, op_s = gemm_peak(n_gemm), op_cost()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {a.clock} clock, {"TINY configs (smoke run)" if a.tiny else "full configs"}, '
          f'{a.steps} timed steps (median) after {a.warmup} warm-up; base {base}')
    rows, crows, t_start = [], [], time.perf_counter()
    for name in names:
        t, res = time.perf_counter(), None
        for attempt in range(1 + a.retries):  # a shared machine: re-measure a step kind whose cores were taken
            r = measure(name, for_step(name, variants), a.tiny, a.warmup, a.steps)
            if res is None or r['base']['busy'] > res['base']['busy']: res = r
            if a.clock == 'cpu' or res['base']['busy'] >= 0.9 * a.threads: break
            print(f'  {name}: cores busy {r["base"]["busy"]:.2f} < 0.9 x {a.threads} threads: measuring again', file=sys.stderr)
        rows.append(table_row(name, res['base'], peak0, op_s, a.tiny))
        if a.compare: crows += compare_rows(name, res, peak0)
        print(f'  {name}: {res["base"]["ms"]:.1f} ms/step ({time.perf_counter() - t:.0f} s)', file=sys.stderr)
        if a.profile: profile(name, base, a.tiny)
    peak1 = gemm_peak(n_gemm); peak = max(peak0, peak1)
    for r in rows: r['of_peak'] = _sig(r['GFLOP/s'] * 1e9 / peak)
    for r in crows: r['of_peak'] = _sig(r['of_peak'] * peak0 / peak)
    bf16_peak = gemm_peak(n_gemm, dtype=torch.bfloat16)
    print(f'\npeak: fp32 GEMM {n_gemm}^3 {peak / 1e9:.1f} GFLOP/s (before {peak0 / 1e9:.1f}, after {peak1 / 1e9:.1f}); '
          f'bf16 GEMM {bf16_peak / 1e9:.1f} GFLOP/s; one tiny aten op from Python {1e6 * op_s:.1f} us; total {time.perf_counter() - t_start:.0f} s\n')
    print(markdown(rows))
    if crows: print('\n' + markdown(crows))
    if a.save:
        from vlkd.utils import save_table
        meta = dict(threads=a.threads, clock=a.clock, steps=a.steps, retries=a.retries, warmup=a.warmup, tiny=a.tiny, options=str(base), torch=torch.__version__,
                    gemm_n=n_gemm, peak_gflops=round(peak / 1e9, 1), peak_bf16_gflops=round(bf16_peak / 1e9, 1), op_us=round(1e6 * op_s, 2))
        print('wrote', save_table(rows, '99_train_step_benchmark', a.out, meta=meta))
        if crows: print('wrote', save_table(crows, '99_train_step_benchmark_variants', a.out, meta=meta))
    return rows, crows


if __name__ == '__main__':
    main()
