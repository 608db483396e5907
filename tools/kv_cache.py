"""KV-cache memory of Gemma-3-shaped models: local layers windowed vs not.

lmsi keeps every position of every layer in its slot caches; a cache that
keeps only the window on Gemma's sliding-window layers would hold less.
Prints, per model shape and context, both sizes for one sequence and for
the 512 slots of a sampling call (`lmsi.capacity.estimates.kv_cache_bytes`,
bf16). The shapes are Gemma 3's published text configs (Hugging Face
google/gemma-3-*-pt config.json; 4B/12B/27B give the text_config keys that
differ from Gemma3TextConfig's defaults, and these are those values).

  .venv/bin/python tools/kv_cache.py [--context=8192] [--slots=512]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lmsi.capacity import estimates  # pylint: disable=wrong-import-position
from lmsi.model import decoder  # pylint: disable=wrong-import-position

GEMMA3 = dict(scale_embeddings=True, norm_offset=True, post_norms=True,
              qk_norm=True, mlp_activation='gelu_tanh', tie_embeddings=True,
              scale_tied_logits=False, sliding_window_pattern=6,
              rope_theta=1e6, rope_local_theta=1e4, dtype='bfloat16',
              param_dtype='bfloat16', norm_eps=1e-6)
# name -> (layers, width, heads, kv heads, head dim, MLP, vocab, window)
SHAPES = {
    'gemma-3-270m': (18, 640, 4, 1, 256, 2048, 262144, 512),
    'gemma-3-1b': (26, 1152, 4, 1, 256, 6912, 262144, 512),
    'gemma-3-4b': (34, 2560, 8, 4, 256, 10240, 262208, 1024),
    'gemma-3-12b': (48, 3840, 16, 8, 256, 15360, 262208, 1024),
    'gemma-3-27b': (62, 5376, 32, 16, 128, 21504, 262208, 1024),
}


def config(name: str) -> decoder.DecoderConfig:
  layers, width, heads, kv, head_dim, mlp, vocab, window = SHAPES[name]
  return decoder.DecoderConfig(
      num_layers=layers, embed_dim=width, num_heads=heads, num_kv_heads=kv,
      head_dim=head_dim, mlp_dim=mlp, vocab_size=vocab,
      sliding_window=window, query_pre_attn_scalar=head_dim, **GEMMA3)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--context', type=int, default=8192)
  ap.add_argument('--slots', type=int, default=512)
  args = ap.parse_args()
  gib = 2 ** 30
  print(f'| model | local / global layers | window | cache per sequence at '
        f'{args.context} tokens, all layers full (lmsi) | local layers '
        f'windowed | ratio | {args.slots} slots, full | windowed |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for name in SHAPES:
    cfg = config(name)
    full = estimates.kv_cache_bytes(cfg, args.context)
    win = estimates.kv_cache_bytes(cfg, args.context, windowed=True)
    local = sum(cfg.local_layers)
    print(f'| {name} | {local} / {cfg.num_layers - local} | '
          f'{cfg.sliding_window} | {full / 2**20:,.0f} MiB | '
          f'{win / 2**20:,.0f} MiB | {full / win:.2f}x | '
          f'{args.slots * full / gib:,.1f} GiB | '
          f'{args.slots * win / gib:,.1f} GiB |')


if __name__ == '__main__':
  main()
