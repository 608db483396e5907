"""Profile: where sampling's decode loop spends its time (SmolLM2-135M).

Companion to `bench/sampling.py` (which compares lmsi with its peers). On
the real model and GSM8K 8-shot prompts (exemplar block shared):

  1. The real workload through `sampling.generate` (m = 32, T = 0.7,
     top-k 40, <= 256 steps, stop at a blank line), timed warm: generated
     tokens/s, and the share of useful row-steps, i.e. tokens generated /
     slot-steps run (`lmsi.sampling.scheduler` continuous batching), next to
     what the old fixed loop ran (every row until the longest of all paths
     stops), and the decode time by slot count and generated-cache bucket (the
     drain: the last, longest paths decode on few slots).
  2. One step of N slots, per generated-cache length L (the bucket the
     loop attends over): `loop/step` (`kernels.decode_chunk`, CHUNK steps,
     divided), `model.decode` alone, its dense weight matmuls alone (random
     weights of the same shapes, and their GFLOP/s), and its attention alone
     (scores, softmax and values over the prefix, the question prompt and L
     generated tokens, all layers): attention's share of a step.
  3. `choose` (top-k 40 + Gumbel over 40) and `log_softmax` over 49152;
     the 1024^3 f32 matmul peak of this CPU, measured in the same run; the
     slot cache bytes (sized by slots, never by m) next to the prefill's
     prompt cache for m = 1 and m = 32.

    python bench/decode_profile.py [--rows=32,64] [--lengths=64,256]
        [--questions=2]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position


def _dense_fn(cfg):
  """The step's weight matmuls in order, on [R, D] activations."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  d, h, hk, dh, f = (cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads,
                     cfg.head_dim, cfg.mlp_dim)
  shapes = [(d, h * dh), (d, hk * dh), (d, hk * dh), (h * dh, d), (d, f),
            (d, f), (f, d)]
  key = jax.random.PRNGKey(0)
  layers = [[jax.random.normal(key, s, jnp.float32) * 0.02 for s in shapes]
            for _ in range(cfg.num_layers)]
  head = jax.random.normal(key, (d, cfg.vocab_size), jnp.float32) * 0.02

  @jax.jit
  def dense(x, layers, head):
    for wq, wk, wv, wo, wg, wu, wd in layers:
      q, k, v = x @ wq, x @ wk, x @ wv
      x = x + (q + jnp.pad(k + v, ((0, 0), (0, q.shape[1] - k.shape[1])))) @ wo
      x = x + (jax.nn.silu(x @ wg) * (x @ wu)) @ wd
    return x @ head

  flops = 2 * (cfg.num_layers * sum(a * b for a, b in shapes)
               + d * cfg.vocab_size)
  return dense, layers, head, flops


def _attention_fn(cfg, prefix_kv):
  """Attention alone, all layers: what `layers.Attention.decode` reads."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lmsi.model import layers  # pylint: disable=g-import-not-at-top
  r = cfg.num_heads // cfg.num_kv_heads

  @jax.jit
  def attend(q, cache, valid):
    out = 0.0
    for (k, v), (pk, pv) in zip(cache, layers.decode_prefix(prefix_kv)):
      qg = q.reshape(q.shape[0], cfg.num_kv_heads, r, cfg.head_dim)
      s = jnp.einsum('ngrk,ngkl->ngrl', qg, k)
      parts = [layers.per_kv_head(qg, pk),
               jnp.where(valid[:, None, None], s, layers.NEG_INF)]
      probs = layers.softmax_parts(parts, jnp.float32)
      out += (jnp.einsum('ngrl,nglk->ngrk', probs[1], v)
              + layers.per_kv_head(probs[0], pv))
    return out
  return attend


@contextlib.contextmanager
def _chunk_clock():
  """Times each `kernels.decode_chunk` call (blocked) by (slots, generated-cache
  bucket): where the workload's seconds go as its live paths drain."""
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import kernels  # pylint: disable=g-import-not-at-top
  chunk = kernels.decode_chunk
  times = collections.defaultdict(lambda: [0, 0.0])

  def timed(cfg, sampler, pad, params, state, *args):
    t0 = time.perf_counter()
    result = jax.block_until_ready(
        chunk(cfg, sampler, pad, params, state, *args))
    cache = result[0].cache[0][0]
    key = (cache.shape[0], cache.shape[3] - pad)
    times[key][0] += 1
    times[key][1] += time.perf_counter() - t0
    return result

  kernels.decode_chunk = timed
  try:
    yield times
  finally:
    kernels.decode_chunk = chunk


def _workload(cfg, params, vocab, prefix, texts) -> dict:
  """The real loop on the bench's workload: tokens/s, useful row-steps."""
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  config = sampling.SamplingConfig(
      num_samples=32, temperature=0.7, top_k=40, max_decode_steps=256,
      stop_strings=(common.STOP,), seed=0)
  ids = [f'gsm8k-test-{i}' for i in range(len(texts))]
  run = lambda: sampling.generate(cfg, params, vocab, texts, ids, config,
                                  prefix=prefix)
  t0 = time.perf_counter()
  run()  # compiles
  cold = time.perf_counter() - t0
  t0 = time.perf_counter()
  with _chunk_clock() as chunks:
    gen = run()
  seconds = time.perf_counter() - t0
  useful = int(gen.lengths.sum())
  return {'paths': int(gen.lengths.size), 'tokens': useful,
          'seconds': seconds, 'compile_seconds': cold - seconds,
          'chunks': chunks,
          'row_steps': gen.row_steps, 'live_steps': gen.live_steps,
          'fixed_row_steps': int(gen.lengths.size * gen.lengths.max()),
          'mean_length': float(gen.lengths.mean()),
          'max_length': int(gen.lengths.max())}


def profile(rows_list: list[int], lengths: list[int],
            questions: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import batching  # pylint: disable=g-import-not-at-top
  from lmsi.model import (  # pylint: disable=g-import-not-at-top
      decoder as decoder_lib)
  from lmsi.data import exemplars  # pylint: disable=g-import-not-at-top
  from lmsi.interop import gguf_import  # pylint: disable=g-import-not-at-top
  from lmsi.model import layers  # pylint: disable=g-import-not-at-top
  from lmsi.data import prompts  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  from lmsi.sampling import kernels  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import stops  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import draw  # pylint: disable=g-import-not-at-top
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)

  gguf = common.smollm2_gguf()
  imported = gguf_import.import_gguf(gguf)
  cfg, params = imported.config, jax.device_put(imported.params)
  vocab = vocab_lib.load(gguf)
  texts = common.prompts(questions)
  block = vocab.encode(prompts.render(prompts.Format.COT_FEWSHOT, '',
                                      exemplars.get('gsm8k')))
  encoded = [vocab.encode(t) for t in texts]
  prefix = sampling.prefix_for(cfg, params,
                               sampling.common_prefix(encoded + [block]))
  out = {'workload': _workload(cfg, params, vocab, prefix, texts)}
  rest = [e[len(prefix.tokens):] for e in encoded]
  tokens, valid = batching.pad_batch(
      rest, batching.bucket(max(len(e) for e in rest)), vocab.pad_id)
  pad = tokens.shape[1]
  last, prompt_kv = kernels.prefill(
      cfg, params, tokens[:1], valid[:1], prefix.kv)
  nxt, hit = stops.stop_tables(vocab.token_bytes(), (), cfg.vocab_size)
  sampler = kernels.Sampler(temperature=0.7, top_k=40, top_p=1.0, eos_ids=(),
                            max_steps=10**6)
  dense, dense_w, head, dense_flops = _dense_fn(cfg)
  attend = _attention_fn(cfg, prefix.kv)
  model = decoder_lib.Decoder(cfg)
  out['peak_gflops'] = common.matmul_gflops()
  out['prompt_tokens'], out['prefix_tokens'] = pad, len(prefix.tokens)
  steps = []
  for rows in rows_list:
    x = jnp.ones((rows, cfg.embed_dim), jnp.float32)
    dense_s = common.best(dense, x, dense_w, head)
    for length in lengths:
      state = kernels.init_state(cfg, rows, pad + length, 0)
      state = kernels.refill(
          state, np.arange(rows, dtype=np.int32), np.zeros(rows, np.int32),
          np.zeros((rows, 2), np.uint32), prompt_kv,
          valid[:1].sum(-1).astype(np.int32), last,
          np.zeros((1, 0), np.int32))
      # Half-way along the bucket: positions do not change the cost.
      half = jnp.full((rows,), length // 2, jnp.int32)
      state = state.replace(step=half)
      chunk = lambda s: kernels.decode_chunk(
          cfg, sampler, pad, params, s, layers.decode_prefix(prefix.kv), nxt,
          hit)
      state = chunk(state)[0]  # compiles
      best = float('inf')
      for _ in range(3):
        state = state.replace(step=half)
        t0 = time.perf_counter()
        state, toks, _ = chunk(state)
        jax.block_until_ready(toks)
        best = min(best, time.perf_counter() - t0)
      cache = state.cache
      key_valid = jnp.ones((rows, pad + length), bool)
      write = jnp.full((rows,), pad + length // 2, jnp.int32)
      decode = jax.jit(lambda p, t, c: model.apply(
          {'params': p}, t, write + 900, c, write, key_valid,
          layers.decode_prefix(prefix.kv),
          method=decoder_lib.Decoder.decode), donate_argnums=(2,))
      token = jnp.ones((rows,), jnp.int32)
      model_s = float('inf')
      for _ in range(4):  # the first call compiles; the cache is donated
        t0 = time.perf_counter()
        _, cache = jax.block_until_ready(decode(params, token, cache))
        model_s = min(model_s, time.perf_counter() - t0)
      q = jnp.ones((rows, cfg.num_heads * cfg.head_dim), jnp.float32)
      attend_s = common.best(attend, q, cache, key_valid)
      steps.append({
          'rows': rows, 'length': length, 'step_s': best / kernels.CHUNK,
          'model_s': model_s, 'dense_s': dense_s, 'attend_s': attend_s,
          'dense_gflops': dense_flops * rows / dense_s / 1e9,
          'cache_mib': sum(a.nbytes for kv in cache for a in kv) / 2**20})
      del state, cache
  out['steps'] = steps
  logits = jax.random.normal(jax.random.PRNGKey(1), (64, cfg.vocab_size))
  rkeys = jax.random.split(jax.random.PRNGKey(2), 64)
  choose = jax.jit(lambda l, k: draw.choose(l, k, 0.7, 40, 1.0))
  out['choose_s'] = common.best(choose, logits, rkeys)
  out['softmax_s'] = common.best(jax.jit(jax.nn.log_softmax), logits)
  out['prompt_cache_mib'] = {
      m: sum(a.nbytes for kv in prompt_kv for a in kv) / 2**20
      for m in (1, 32)}  # [B, P] per question: the same for any m
  per_token = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 4
  out['slot_cache_mib_per_slot'] = {
      n: per_token * (pad + n) / 2**20 for n in (64, 128, 256)}
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--rows', default='32,64')
  parser.add_argument('--lengths', default='64,256')
  parser.add_argument('--questions', type=int, default=2)
  args = parser.parse_args()
  common.require('bench/decode_profile.py', data=('gsm8k/test.jsonl',),
                 gguf=True)
  res = profile([int(r) for r in args.rows.split(',')],
                [int(n) for n in args.lengths.split(',')], args.questions)
  from lmsi.sampling import kernels  # pylint: disable=g-import-not-at-top
  w = res['workload']
  print(f'SmolLM2-135M f32, {args.questions} GSM8K test questions x m=32 '
        f'(T=0.7, top-k 40, <= 256 steps, stop at a blank line), prompt '
        f'{res["prefix_tokens"]} shared + {res["prompt_tokens"]} padded '
        f'question tokens; matmul peak {res["peak_gflops"]:.0f} GFLOP/s '
        f'(1024^3)')
  print(f'workload: {w["paths"]} paths, {w["tokens"]} tokens (mean '
        f'{w["mean_length"]:.0f}, max {w["max_length"]}) in '
        f'{w["seconds"]:.1f} s = {w["tokens"] / w["seconds"]:.1f} tokens/s '
        f'(compile {w["compile_seconds"]:.0f} s, not counted)')
  print(f'useful row-steps: {100 * w["live_steps"] / w["row_steps"]:.1f}% '
        f'({w["live_steps"]} live / {w["row_steps"]} slot-steps), '
        f'{w["tokens"] / w["live_steps"]:.2f} tokens a live step (drafts); '
        f'the fixed loop (all rows until the longest stops) would run '
        f'{w["fixed_row_steps"]} for {w["tokens"]} tokens: '
        f'{100 * w["tokens"] / w["fixed_row_steps"]:.1f}% useful')
  print('where the workload\'s decode time goes, by slots and generated-'
        'cache bucket:')
  total = sum(s for _, s in w['chunks'].values())
  for (rows, gen_l), (count, secs) in sorted(
      w['chunks'].items(), key=lambda kv: (-kv[0][0], kv[0][1])):
    print(f'  {rows:3d} slots, gen L {gen_l:3d}: {count:3d} chunks, '
          f'{secs:5.1f} s ({100 * secs / total:4.1f}%), '
          f'{1e3 * secs / count / kernels.CHUNK:6.1f} ms/step')
  print(f'{"rows":>5} {"gen L":>6} {"loop/step ms":>13} {"tok/s":>7} '
        f'{"model.decode ms":>16} {"dense ms":>9} {"dense GFLOP/s":>14} '
        f'{"attention ms":>13} {"attn share":>11} {"cache MiB":>10}')
  for r in res['steps']:
    print(f'{r["rows"]:>5} {r["length"]:>6} {1e3 * r["step_s"]:>13.1f} '
          f'{r["rows"] / r["step_s"]:>7.0f} {1e3 * r["model_s"]:>16.1f} '
          f'{1e3 * r["dense_s"]:>9.1f} {r["dense_gflops"]:>14.1f} '
          f'{1e3 * r["attend_s"]:>13.1f} '
          f'{100 * r["attend_s"] / r["model_s"]:>10.0f}% '
          f'{r["cache_mib"]:>10.0f}')
  print(f'choose (64 rows) {1e3 * res["choose_s"]:.1f} ms, log_softmax '
        f'{1e3 * res["softmax_s"]:.1f} ms')
  print('prefill prompt cache per question: ' + ', '.join(
      f'm={m}: {v:.2f} MiB' for m, v in res['prompt_cache_mib'].items()) +
        '; slot cache per slot: ' + ', '.join(
            f'L={n}: {v:.2f} MiB' for n, v in
            res['slot_cache_mib_per_slot'].items()))


if __name__ == '__main__':
  main()
