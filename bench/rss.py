"""Benchmark: where lmsi's resident memory goes while it samples (CPU).

Prints VmRSS and VmHWM (peak) from /proc/self/status after each phase of
bench/sampling.py's lmsi f32 engine: imports, GGUF import (dequantized f32
parameters), `device_put`, the shared prefix, one `sampling.generate`
(compiles included), then after glibc's `malloc_trim(0)` (memory freed but
kept by malloc) and after `jax.clear_caches()` (compiled programs). Run it
with and without glibc's settings to compare (docs/sampling.md):

    python bench/rss.py [--questions=3] [--max_new_tokens=256]
    MALLOC_ARENA_MAX=1 python bench/rss.py
    MALLOC_MMAP_THRESHOLD_=4194304 python bench/rss.py
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # pylint: disable=wrong-import-position


def report(phase: str) -> None:
  with open('/proc/self/status', encoding='utf-8') as f:
    status = dict(line.split(':', 1) for line in f if ':' in line)
  mb = lambda key: int(status[key].split()[0]) / 1024
  print(f'{phase:<28} rss {mb("VmRSS"):7.0f} MB  peak {mb("VmHWM"):7.0f} MB',
        flush=True)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--questions', type=int, default=3)
  parser.add_argument('--max_new_tokens', type=int, default=256)
  args = parser.parse_args()
  common.require('bench/rss.py', data=('gsm8k/test.jsonl',), gguf=True)
  for name in ('MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_'):
    print(f'{name} =', os.environ.get(name, "unset (glibc's default)"))
  report('start')
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  report('imports')
  cfg, params, vocab = common.model()
  report('gguf imported (f32 params)')
  params = jax.device_put(params)
  report('device_put')
  texts = common.prompts(args.questions)
  shared = common.shared_prefix(
      vocab, [vocab.encode(t) for t in texts])
  prefix = sampling.prefix_for(cfg, params, shared)
  report('prefix')
  config = sampling.SamplingConfig(
      num_samples=32, temperature=0.7, top_k=40,
      max_decode_steps=args.max_new_tokens,
      stop_strings=(common.STOP,), seed=0)
  gen = sampling.generate(cfg, params, vocab, texts,
                          [f'gsm8k-test-{i}' for i in range(len(texts))],
                          config, prefix=prefix)
  report('generate (compiles)')
  del gen
  libc = ctypes.CDLL('libc.so.6')
  libc.malloc_trim(0)
  report('malloc_trim(0)')
  jax.clear_caches()
  gc.collect()
  libc.malloc_trim(0)
  report('jax.clear_caches + trim')


if __name__ == '__main__':
  main()
