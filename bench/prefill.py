"""Prefill cost of sampling m paths: one prompt prefill shared by m samples.

Prints, for m in (1, 4, 32), the prompt rows the sampler prefills and the
XLA-counted FLOPs of that prefill, next to the FLOPs a sampler that copies
each prompt m times (T5X-style) would spend on the same prompts.

  .venv/bin/python bench/prefill.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from lmsi import decoder, exemplars, prompts, sampling, vocab as vocab_lib


PREFILL = sampling._prefill  # the jitted prefill, before the spy wraps it


def prefill_flops(cfg, params, tokens, valid) -> float:
  compiled = PREFILL.lower(cfg, params, tokens, valid, None).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost['flops'])


def main():
  cfg = decoder.DecoderConfig(vocab_size=576, embed_dim=64, num_layers=2,
                              num_heads=4, num_kv_heads=2, head_dim=16,
                              mlp_dim=192)
  params, _ = decoder.init_params(cfg)
  vocab = vocab_lib.ByteVocab()
  questions = [f'Ann has {i} pens. She buys 3. How many pens now?'
               for i in range(8)]
  texts = [prompts.render('cot_fewshot', q, exemplars.ARITHMETIC)
           for q in questions]
  rows = []
  calls = []
  real = sampling._prefill

  def spy(c, p, t, v, prefix_kv):
    calls.append(t.shape)
    return real(c, p, t, v, prefix_kv)

  sampling._prefill = spy
  for m in (1, 4, 32):
    calls.clear()
    sampling.generate(cfg, params, vocab, texts, questions,
                      sampling.SamplingConfig(num_samples=m,
                                              max_decode_steps=4))
    (b, p), = calls
    tokens = np.zeros((b, p), np.int32)
    flops = prefill_flops(cfg, params, tokens, tokens > -1)
    naive = prefill_flops(cfg, params, np.zeros((b * m, p), np.int32),
                          np.ones((b * m, p), bool))
    rows.append((m, len(calls), b, flops, naive))
  sampling._prefill = real
  print(f'{"m":>3} {"prefill calls":>13} {"rows":>5} {"prefill GFLOP":>14} '
        f'{"m-copies GFLOP":>15} {"ratio":>6}')
  for m, n, b, f, naive in rows:
    print(f'{m:>3} {n:>13} {b:>5} {f / 1e9:>14.3f} {naive / 1e9:>15.3f} '
          f'{naive / f:>6.1f}')
  print(f'devices: {jax.devices()}')


if __name__ == '__main__':
  main()
