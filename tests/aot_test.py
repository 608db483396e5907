"""AOT compilation (lmsi.capacity.aot) and what big models need: remat, scan,
gradient accumulation and bf16, on the tiny model and 8 fake CPU devices."""

import dataclasses
import importlib.util
import os
import subprocess
import sys

import gin
from gin import config_parser
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from launch import tpus
from lmsi.capacity import aot
from lmsi.model import decoder
from lmsi.capacity import estimates as roofline
from lmsi.trainer import step as train_step
from tests.conftest import REPO

_DELEGATE = gin.config.ParserDelegate(skip_unknown=True)


def _macros(path):
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    return {s.selector: s.value
            for s in config_parser.ConfigParser(f, _DELEGATE)
            if isinstance(s, config_parser.BindingStatement) and not s.scope
            and not s.arg_name}


def _batch(cfg, rows=8, length=16, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, cfg.vocab_size, (rows, length)).astype(np.int32)
  valid = np.ones_like(tokens, bool)
  valid[::3, length // 2:] = False  # some right padding
  weights = (valid & (np.arange(length) >= 4)).astype(np.float32)
  return dict(tokens=tokens, valid=valid, labels=np.roll(tokens, -1, 1),
              weights=weights)


@pytest.mark.parametrize('name', ['v4-32', 'v5e-256', 'v5litepod-16',
                                  'v5p-128', 'v6e-64', 'v6e-8'])
def test_slice_names_match_launch(name):
  chip, chips, topology = aot.parse_slice(name)
  want = tpus.parse(name)
  assert (chip.generation, chips, topology) == (
      want.generation, want.chips, want.topology)


# Published parameter counts (each model's config.json / model card; the
# Llama 3.1/3.2 and Qwen rows: the Hub's safetensors metadata of the repo
# the gin file names, e.g. Qwen/Qwen3-8B: 8,190,735,360 BF16 parameters).
PUBLISHED_PARAMS = {
    'smollm2_135m': 134_515_008, 'smollm2_360m': 361_821_120,
    'smollm2_1_7b': 1_711_376_384, 'llama3_2_1b': 1_235_814_400,
    'llama3_8b': 8_030_261_248, 'gemma_2b_shapes': 2_506_172_416,
    'llama3_1_8b': 8_030_261_248, 'llama3_2_3b': 3_212_749_824,
    'qwen2_5_7b': 7_615_616_512, 'qwen2_5_math_7b': 7_615_616_512,
    'qwen3_8b': 8_190_735_360,
    # Gemma: the Hub's safetensors metadata (gemma-2-9b) and keras_hub's
    # gemma3 presets; keras's 4B/12B/27B text backbones keep 262,144
    # embedding rows, the Hub checkpoints 262,208 (64 x width more).
    'gemma2_9b': 9_241_705_984, 'gemma3_270m': 268_098_176,
    'gemma3_1b': 999_885_952, 'gemma3_4b': 3_880_099_328 + 64 * 2560,
    'gemma3_12b': 11_765_788_416 + 64 * 3840,
    'gemma3_27b': 27_009_002_240 + 64 * 5376}


@pytest.mark.parametrize('name', sorted(PUBLISHED_PARAMS))
def test_model_files_have_the_published_sizes(name):
  from lmsi.runtime import gin_flags  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_flags.parse([f'--gin_file=gin/models/{name}.gin'])
    cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
  finally:
    gin.clear_config()
  shapes = jax.eval_shape(lambda: decoder.init_params(cfg, 0)[0])
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  assert count == PUBLISHED_PARAMS[name]


def test_defaults_are_the_run_files():
  sample, train = _macros('gin/runs/sample.gin'), _macros(
      'gin/runs/finetune.gin')
  s, t = aot.SampleShape(), aot.TrainShape()
  assert (s.num_samples, s.max_decode_steps, s.questions) == (
      sample['NUM_SAMPLES'], sample['MAX_DECODE_STEPS'],
      sample['BATCH_QUESTIONS'])
  assert (t.batch_size, t.optimizer) == (train['BATCH_SIZE'],
                                         train['OPTIMIZER'])
  assert t.length == sum(train['TASK_FEATURE_LENGTHS'].values())


def test_sample_and_train_compile_on_fake_mesh(tiny_cfg):
  if jax.device_count() != 8:
    pytest.skip('needs the 8 fake devices of conftest.py')
  tgt = aot.target('v5e-8', fake_cpu=True)
  mesh = aot.mesh_for(tgt, model_axis=2)
  shape = aot.SampleShape(questions=8, num_slots=16, prefix_len=24,
                          prompt_len=32, max_decode_steps=32)
  prefill, chunk = aot.compile_sample(tiny_cfg, mesh, shape)
  (step,) = aot.compile_train(tiny_cfg, mesh, aot.TrainShape(
      batch_size=8, length=64))
  for p in (prefill, chunk, step):
    assert p.total_bytes > 0 and p.flops > 0 and p.compile_s > 0, p
  assert chunk.alias_bytes > 0  # the slot state is donated
  assert step.alias_bytes > 0  # params and optimizer state are donated
  # No loops in the plain step: compiled FLOPs ~ 3x the analytic forward.
  analytic = 3 * roofline.model_flops(tiny_cfg, 8 * 64, 64) / 8
  assert 0.8 < step.flops / analytic < 1.6, (step.flops, analytic)
  text = aot.describe(step, tgt.chip)
  assert 'train_step: per chip argument' in text and '(fits)' in text


def _loss_and_grads(cfg, params, batch):
  return jax.jit(jax.value_and_grad(
      lambda p: train_step.loss_fn(cfg, p, batch)))(params)


_SLOW = pytest.mark.slow


@pytest.mark.parametrize('policy, scan', [
    ('full', True),
    pytest.param('full', False, marks=_SLOW),
    pytest.param('dots', False, marks=_SLOW),
    pytest.param('dots_no_batch', True, marks=_SLOW),
    pytest.param('none', True, marks=_SLOW)])
def test_remat_and_scan_match_plain(tiny_cfg, policy, scan):
  params, _ = decoder.init_params(tiny_cfg, seed=1)
  batch = _batch(tiny_cfg)
  cfg = dataclasses.replace(tiny_cfg, remat_policy=policy, scan_layers=scan)
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda p: train_step.loss_fn(cfg, p, batch)))(params))
  assert ('checkpoint' in jaxpr or 'remat' in jaxpr) == (policy != 'none')
  assert ('scan' in jaxpr) == scan
  loss0, grads0 = _loss_and_grads(tiny_cfg, params, batch)
  loss, grads = _loss_and_grads(cfg, params, batch)
  # Same arithmetic in another order at most: float32 tolerance 1e-6.
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      grads, grads0)


def test_unknown_remat_policy_is_named():
  with pytest.raises(ValueError, match="remat_policy='some'"):
    decoder.DecoderConfig(remat_policy='some')


def test_grad_accumulation_equals_one_big_batch(tiny_cfg):
  params, _ = decoder.init_params(tiny_cfg, seed=2)
  batch = _batch(tiny_cfg, rows=8)
  # SGD with lr 1: the update is minus the gradient, so new params compare
  # the gradients themselves.
  tx = optax.sgd(1.0)
  outs = []
  for k in (1, 4):
    step = train_step.make_train_step(tiny_cfg, tx, grad_accum_steps=k)
    p = jax.tree_util.tree_map(jnp.array, params)  # donated below
    outs.append(step(p, tx.init(p), batch))
  (p1, _, loss1), (p4, _, loss4) = outs
  np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      p4, p1)
  with pytest.raises(ValueError, match='grad_accum_steps=3'):
    train_step.make_train_step(tiny_cfg, tx, 3)(params, tx.init(params),
                                                batch)


def _train_losses(cfg, steps=50):
  params, _ = decoder.init_params(cfg, seed=3)
  tx = optax.adamw(3e-3)
  step = train_step.make_train_step(cfg, tx)
  opt, losses = tx.init(params), []
  for i in range(steps):
    params, opt, loss = step(params, opt, _batch(cfg, seed=i % 5))
    losses.append(float(loss))
  return np.asarray(losses)


@pytest.mark.slow  # 9 s
def test_bf16_training_tracks_f32(tiny_cfg):
  f32 = _train_losses(tiny_cfg)
  bf16 = _train_losses(dataclasses.replace(tiny_cfg, dtype='bfloat16'))
  assert f32[-1] < f32[0] - 0.5  # it learns: the comparison means something
  # bf16 activations, f32 params and optimizer: within 0.05 nats at every
  # one of 50 steps (measured 2026-12-02: max gap 0.0020 nats).
  gap = np.abs(bf16 - f32).max()
  print(f'bf16 vs f32 over 50 steps: max loss gap {gap:.4f}, final '
        f'{f32[-1]:.4f} vs {bf16[-1]:.4f}')
  assert gap < 0.05, (gap, f32[[0, -1]], bf16[[0, -1]])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                    reason='libtpu not installed (pip install "jax[tpu]")')
def test_tpu_topology_compiles():
  env = dict(os.environ, TPU_SKIP_MDS_QUERY='1',
             ALLOW_MULTIPLE_LIBTPU_LOAD='true',
             TPU_WORKER_HOSTNAMES='localhost')
  out = subprocess.run(
      [sys.executable, '-m', 'lmsi.capacity.aot',
       '--gin_file=gin/testing/tiny.gin',
       '--stage=train', '--topology=v5e-8', '--batch_size=8'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
      check=True).stdout
  assert 'libtpu devices' in out and 'train_step: per chip' in out, out


def test_kv_cache_bytes_counts_the_slot_cache(tiny_cfg):
  """`estimates.kv_cache_bytes` (unwindowed) is what the sampler allocates
  per slot; windowed, a local layer keeps `sliding_window` positions."""
  from lmsi.capacity import estimates  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import kernels  # pylint: disable=g-import-not-at-top
  cfg = dataclasses.replace(tiny_cfg, num_layers=5, sliding_window=4,
                            sliding_window_pattern=3)
  assert cfg.local_layers == (True, True, False, True, True)
  state = jax.eval_shape(lambda: kernels.init_state(cfg, 1, 40, 1))
  allocated = sum(x.size * x.dtype.itemsize
                  for x in jax.tree_util.tree_leaves(state.cache))
  assert estimates.kv_cache_bytes(cfg, 40) == allocated
  per_token = 2 * cfg.num_kv_heads * cfg.head_dim * 4
  assert estimates.kv_cache_bytes(cfg, 40, windowed=True) == per_token * (
      4 * 4 + 40)


def test_logits_chunk_gives_the_full_loss_and_grads(tiny_cfg):
  """The chunked LM head (Gemma's 262k vocabulary) is the same loss and
  gradients, and a chunk that does not divide the length is named."""
  params, _ = decoder.init_params(tiny_cfg, seed=1)
  batch = _batch(tiny_cfg)
  length = batch['tokens'].shape[1]
  loss0, grads0 = _loss_and_grads(tiny_cfg, params, batch)
  cfg = dataclasses.replace(tiny_cfg, logits_chunk=length // 4)
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda p: train_step.loss_fn(cfg, p, batch)))(params))
  assert 'scan' in jaxpr and ('checkpoint' in jaxpr or 'remat' in jaxpr)
  loss, grads = _loss_and_grads(cfg, params, batch)
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      grads, grads0)
  with pytest.raises(ValueError, match='logits_chunk=7 does not divide'):
    train_step.loss_fn(dataclasses.replace(tiny_cfg, logits_chunk=7),
                       params, batch)
