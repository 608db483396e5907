"""Profile: where one sampling decode step of SmolLM2-135M spends its time.

Companion to `bench/sampling.py` (which compares lmsi with transformers).
For R = B questions x m samples rows, on the real model, GSM8K 8-shot
prompts, a 256-step generated-token cache:

  * `loop/step`: `sampling._decode` run for all 256 steps with no stop and
    no EOS, divided by 256 (compile and prefill excluded): what one step of
    the real loop costs;
  * `model.decode`: the decoder's decode step alone (all 30 layers + head);
  * `dense matmuls`: the same step's weight matmuls alone (q, k, v, o,
    gate, up, down per layer, the tied LM head), random weights of the
    same shapes, and their GFLOP/s;
  * `choose` (top-k 40 + Gumbel over 40) and `log_softmax` over 49152;
  * the 1024^3 f32 matmul peak of this CPU, measured in the same run.

    python bench/decode_profile.py [--rows=32,96]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import sampling as bench_sampling  # pylint: disable=wrong-import-position


def _best(fn, *args, repeat: int = 5) -> float:
  """Best wall time of `fn(*args)` (blocked), after one warm-up call."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


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


def profile(rows_list: list[int], steps: int = 256) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lmsi import batching  # pylint: disable=g-import-not-at-top
  from lmsi import convert  # pylint: disable=g-import-not-at-top
  from lmsi import decoder as decoder_lib  # pylint: disable=g-import-not-at-top
  from lmsi import layers  # pylint: disable=g-import-not-at-top
  from lmsi import gguf_import  # pylint: disable=g-import-not-at-top
  from lmsi import exemplars  # pylint: disable=g-import-not-at-top
  from lmsi import prompts  # pylint: disable=g-import-not-at-top
  from lmsi import sampling  # pylint: disable=g-import-not-at-top
  from lmsi import vocab as vocab_lib  # pylint: disable=g-import-not-at-top

  gguf = convert.smollm2_gguf()
  imported = gguf_import.import_gguf(gguf)
  cfg, params = imported.config, jax.device_put(imported.params)
  vocab = vocab_lib.load(gguf)
  m = 32
  texts = bench_sampling._prompts(max(rows_list) // m)  # pylint: disable=protected-access
  block = vocab.encode(prompts.render(prompts.Format.COT_FEWSHOT, '',
                                      exemplars.get('gsm8k')))
  encoded = [vocab.encode(t) for t in texts]
  prefix = sampling.prefix_for(cfg, params,
                               sampling.common_prefix(encoded + [block]))
  rest = [e[len(prefix.tokens):] for e in encoded]
  tokens, valid = batching.pad_batch(
      rest, batching.bucket(max(len(e) for e in rest)), vocab.pad_id)
  nxt, hit = sampling.stop_tables(vocab.token_bytes(), (), cfg.vocab_size)
  dense, layers, head, dense_flops = _dense_fn(cfg)
  model = decoder_lib.Decoder(cfg)
  peak = bench_sampling._matmul_gflops()  # pylint: disable=protected-access
  out = []
  for rows in rows_list:
    b = rows // m
    last, prompt_kv = sampling._prefill(  # pylint: disable=protected-access
        cfg, params, tokens[:b], valid[:b], prefix.kv)
    keys = np.zeros((b, m, 2), np.uint32)

    def loop(n, last=last, prompt_kv=prompt_kv, b=b, keys=keys):
      return sampling._decode(  # pylint: disable=protected-access
          cfg, m, n, 0.7, 40, 1.0, -1, params, last, prompt_kv, valid[:b],
          keys, nxt, hit, prefix.kv)

    # All 256 steps (no stop, no EOS): the real loop's cost per step.
    step_s = _best(lambda: loop(steps), repeat=1) / steps

    gen_kv = tuple(layers.empty_gen_cache(cfg, b, m, steps)
                   for _ in range(cfg.num_layers))
    token = jnp.ones((b, m), jnp.int32)
    start = jnp.sum(valid[:b], axis=-1)[:, None] + len(prefix.tokens)
    decode = jax.jit(lambda p, t, kv: model.apply(
        {'params': p}, t, start + 100, prompt_kv, valid[:b], kv, 100,
        prefix.kv, method=decoder_lib.Decoder.decode))
    model_s = _best(decode, params, token, gen_kv)
    x = jnp.ones((rows, cfg.embed_dim), jnp.float32)
    dense_s = _best(dense, x, layers, head)
    logits = jax.random.normal(jax.random.PRNGKey(1), (rows, cfg.vocab_size))
    rkeys = jax.random.split(jax.random.PRNGKey(2), rows)
    choose = jax.jit(lambda l, k: sampling._choose(l, k, 0.7, 40, 1.0))  # pylint: disable=protected-access
    choose_s = _best(choose, logits, rkeys)
    softmax_s = _best(jax.jit(jax.nn.log_softmax), logits)
    out.append({'rows': rows, 'step_s': step_s, 'model_s': model_s,
                'dense_s': dense_s,
                'dense_gflops': dense_flops * rows / dense_s / 1e9,
                'choose_s': choose_s, 'softmax_s': softmax_s,
                'peak_gflops': peak,
                'prompt_tokens': int(tokens.shape[1]),
                'prefix_tokens': len(prefix.tokens)})
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--rows', default='32,96')
  args = parser.parse_args()
  rows = [int(r) for r in args.rows.split(',')]
  res = profile(rows)
  r0 = res[0]
  print(f'SmolLM2-135M f32 decode step, m=32, prompt {r0["prefix_tokens"]} '
        f'shared + {r0["prompt_tokens"]} padded question tokens, 256-step '
        f'cache; matmul peak {r0["peak_gflops"]:.0f} GFLOP/s (1024^3)')
  print(f'{"rows":>5} {"loop/step ms":>13} {"tok/s":>7} {"model.decode ms":>16}'
        f' {"dense ms":>9} {"dense GFLOP/s":>14} {"choose ms":>10}'
        f' {"log_softmax ms":>15}')
  for r in res:
    print(f'{r["rows"]:>5} {1e3 * r["step_s"]:>13.1f} '
          f'{r["rows"] / r["step_s"]:>7.0f} {1e3 * r["model_s"]:>16.1f} '
          f'{1e3 * r["dense_s"]:>9.1f} {r["dense_gflops"]:>14.1f} '
          f'{1e3 * r["choose_s"]:>10.1f} {1e3 * r["softmax_s"]:>15.1f}')


if __name__ == '__main__':
  main()
