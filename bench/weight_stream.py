"""Profile: the decode step's weight matmuls with weights streamed from DRAM.

A decode step multiplies N slot rows by every weight once. SmolLM2-135M's
f32 weights (538 MB) do not fit in cache, so at few rows a step is bound by
how fast weights stream from memory, not by FLOPs. This times the 30 MLP
blocks of SmolLM2-135M (gate, up, down; distinct random weights, 318 MB in
f32) on N rows in the formats a CPU sampler could keep them in:

  * f32 weights (lmsi's default);
  * bf16 weights upcast to f32 inside the jitted step;
  * bf16 weights and bf16 activations, f32 accumulation;
  * int8 weights with a per-column f32 scale, upcast inside the step.

For each: milliseconds, GB/s of weight bytes streamed, and GFLOP/s. Fewer
bytes only pay if XLA:CPU fuses the upcast into the matmul; where it
materialises the f32 copy, the step reads and writes more, not less.

    python bench/weight_stream.py [--rows=16,32,64]
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position

LAYERS = 30
EMBED, MLP = 576, 1536  # SmolLM2-135M


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--rows', default='16,32,64')
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def weights(i):
    keys = jax.random.split(jax.random.PRNGKey(i), 3)
    return (jax.random.normal(keys[0], (EMBED, MLP)) * 0.02,
            jax.random.normal(keys[1], (EMBED, MLP)) * 0.02,
            jax.random.normal(keys[2], (MLP, EMBED)) * 0.02)

  f32 = [weights(i) for i in range(LAYERS)]
  bf16 = jax.tree_util.tree_map(lambda w: w.astype(jnp.bfloat16), f32)

  def quantize(w):
    scale = jnp.abs(w).max(axis=0) / 127.0
    return jnp.round(w / scale).astype(jnp.int8), scale

  int8 = [tuple(quantize(w) for w in layer) for layer in f32]

  def mlp(x, layers, dot):
    for gate, up, down in layers:
      h = jax.nn.silu(dot(x, gate)) * dot(x, up)
      x = x + dot(h, down)
    return x

  f32_dot = lambda x, w: x @ w
  upcast = lambda x, w: x @ w.astype(jnp.float32)
  bf16_dot = lambda x, w: jnp.dot(x.astype(jnp.bfloat16), w,
                                  preferred_element_type=jnp.float32)
  int8_dot = lambda x, w: (x @ w[0].astype(jnp.float32)) * w[1]
  arms = [('f32 weights', f32, f32_dot, 4),
          ('bf16 weights, upcast to f32', bf16, upcast, 2),
          ('bf16 weights and activations', bf16, bf16_dot, 2),
          ('int8 weights + f32 scale, upcast', int8, int8_dot, 1)]
  params = LAYERS * 3 * EMBED * MLP
  print(f'SmolLM2-135M MLP blocks: {LAYERS} x (gate, up, down), '
        f'{params / 1e6:.0f}M weights, distinct per layer (streamed from '
        'DRAM)')
  print(f'{"rows":>4}  {"format":34s} {"ms":>7} {"GB/s":>6} {"GFLOP/s":>8}'
        f'  {"vs f32":>6}')
  for rows in [int(r) for r in args.rows.split(',')]:
    x = jax.random.normal(jax.random.PRNGKey(99), (rows, EMBED))
    base = None
    for name, layers, dot, nbytes in arms:
      fn = jax.jit(lambda x, layers, dot=dot: mlp(x, layers, dot))
      seconds = common.best(fn, x, layers, repeat=6)
      base = base or seconds
      print(f'{rows:4d}  {name:34s} {seconds * 1e3:7.1f} '
            f'{params * nbytes / seconds / 1e9:6.1f} '
            f'{2 * rows * params / seconds / 1e9:8.1f}  '
            f'{base / seconds:5.2f}x', flush=True)


if __name__ == '__main__':
  main()
