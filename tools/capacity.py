"""The capacity table of docs/capacity.md: model x TPU slice x stage, AOT.

For each row, compiles the real sampling (prefill + decode chunk) or train
step for the slice's libtpu topology (`lmsi.capacity.aot`), and prints a
markdown row: per-chip memory vs HBM, compiled FLOPs, compile time and the
roofline estimate of one LMSI round on GSM8K (`roofline.Round`). Rows are also
appended as JSON lines to --out, to read while a long run goes on.

  PYTHONPATH=<dir with libtpu 0.0.42.*> TPU_SKIP_MDS_QUERY=1 \\
    ALLOW_MULTIPLE_LIBTPU_LOAD=true TPU_WORKER_HOSTNAMES=localhost \\
    JAX_PLATFORMS=cpu .venv/bin/python tools/capacity.py [--only=smollm2]
"""

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # pylint: disable=wrong-import-position

if __name__ == '__main__':  # before jax loads: libtpu is the TPU compiler
  common.require('tools/capacity.py', modules=('libtpu',))

import gin  # pylint: disable=g-import-not-at-top,wrong-import-position

from lmsi.capacity import aot  # pylint: disable=g-import-not-at-top
from lmsi.runtime import gin_flags
from lmsi.capacity import estimates as roofline

BF16 = dict(param_dtype='bfloat16', dtype='bfloat16')
SCAN_REMAT = dict(remat_policy='full', scan_layers=True)
# (model file, slice, stage, model axis, config overrides, sample slots[,
# optimizer])
ROWS = (
    ('smollm2_135m', 'v5e-16', 'train', 1, {}, 0),
    ('smollm2_135m', 'v5e-16', 'sample', 1, BF16, 512),
    ('smollm2_360m', 'v5e-16', 'train', 1, {}, 0),
    ('smollm2_360m', 'v5e-16', 'sample', 1, BF16, 512),
    ('smollm2_1_7b', 'v5e-16', 'train', 1, {}, 0),
    ('smollm2_1_7b', 'v5e-16', 'sample', 4, BF16, 512),
    ('llama3_2_1b', 'v5e-16', 'train', 1, {}, 0),
    ('llama3_2_1b', 'v5e-16', 'sample', 4, BF16, 512),
    ('llama3_8b', 'v5e-256', 'train', 8, {}, 0),
    ('llama3_8b', 'v5e-256', 'sample', 8, BF16, 2048),
    ('smollm2_1_7b', 'v5e-16', 'train', 1, dict(remat_policy='full'), 0),
    ('llama3_8b', 'v5e-256', 'train', 8,
     dict(remat_policy='full', scan_layers=True), 0),
    # Like for like: remat held fixed, layers unrolled vs scanned (above).
    ('llama3_8b', 'v5e-256', 'train', 8, dict(remat_policy='full'), 0),
    ('llama3_8b', 'v5p-128', 'train', 2, SCAN_REMAT, 0),
    ('llama3_8b', 'v5p-128', 'sample', 2, BF16, 2048),
    ('llama3_8b', 'v6e-64', 'train', 4, SCAN_REMAT, 0),
    ('llama3_8b', 'v6e-64', 'sample', 4, BF16, 2048),
    ('llama3_8b', 'v4-32', 'train', 2, SCAN_REMAT, 0),
    ('llama3_8b', 'v4-32', 'sample', 2, BF16, 1024),
    ('gemma_2b_shapes', 'v5e-16', 'train', 4, dict(remat_policy='full'), 0),
    ('gemma_2b_shapes', 'v5e-16', 'sample', 1, BF16, 512),
    # Optimizer state sharded like the params: Adafactor's factored
    # statistics, and AdamW's mu and nu (2x the params).
    ('llama3_8b', 'v5e-256', 'train', 8, SCAN_REMAT, 0, 'adamw'),
    # The families researchers bring (docs/models.md).
    ('llama3_1_8b', 'v5e-256', 'sample', 8, BF16, 2048),
    ('llama3_1_8b', 'v5e-256', 'train', 8, SCAN_REMAT, 0),
    ('llama3_1_8b', 'v5p-128', 'sample', 2, BF16, 2048),
    ('llama3_1_8b', 'v5p-128', 'train', 2, SCAN_REMAT, 0),
    ('qwen3_8b', 'v5e-256', 'sample', 8, BF16, 2048),
    ('qwen3_8b', 'v5e-256', 'train', 8, SCAN_REMAT, 0),
    ('qwen3_8b', 'v5p-128', 'sample', 2, BF16, 2048),
    ('qwen3_8b', 'v5p-128', 'train', 2, SCAN_REMAT, 0),
    # Gemma's 262k vocabulary: the loss's logits whole, or 128 positions at
    # a time (logits_chunk).
    ('gemma3_1b', 'v5e-16', 'train', 1, SCAN_REMAT, 0),
    ('gemma3_1b', 'v5e-16', 'train', 1, dict(SCAN_REMAT, logits_chunk=128), 0),
    ('gemma3_4b', 'v5e-16', 'train', 4, SCAN_REMAT, 0),
    ('gemma3_4b', 'v5e-16', 'train', 4, dict(SCAN_REMAT, logits_chunk=128), 0),
    ('gemma3_4b', 'v5e-16', 'sample', 4, BF16, 512),
    # Gemma 3 at pod scale (issue 39): 12B sampling and training on v5e-256
    # and v5p-128, 27B training on v5p-256; vocabulary-sharded logits.
    ('gemma3_12b', 'v5e-256', 'sample', 8, BF16, 2048),
    ('gemma3_12b', 'v5e-256', 'train', 8, dict(SCAN_REMAT, logits_chunk=128),
     0),
    ('gemma3_12b', 'v5p-128', 'sample', 2, BF16, 2048),
    ('gemma3_12b', 'v5p-128', 'train', 2, dict(SCAN_REMAT, logits_chunk=128),
     0),
    ('gemma3_27b', 'v5p-256', 'train', 8, dict(SCAN_REMAT, logits_chunk=128),
     0),
)


def model_config(name: str):
  gin.clear_config()
  gin_flags.parse([f'--gin_file=gin/models/{name}.gin'])
  cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
  gin.clear_config()
  return cfg


def run_row(name, slice_name, stage, model_axis, over, num_slots,
            optimizer='adafactor') -> dict:
  cfg = dataclasses.replace(model_config(name), **over)
  tgt = aot.target(slice_name)
  mesh = aot.mesh_for(tgt, model_axis)
  rnd = roofline.Round()
  if stage == 'sample':
    shape = aot.SampleShape(num_slots=num_slots)
    programs = aot.compile_sample(cfg, mesh, shape)
    times = roofline.sample_seconds(cfg, programs, shape, tgt, 0.5, rnd)
    hours = times['round_sample_s'] / 3600
  else:
    shape = aot.TrainShape(optimizer=optimizer)
    programs = aot.compile_train(cfg, mesh, shape)
    times = roofline.train_seconds(cfg, shape, tgt, 0.4, rnd)
    hours = times['round_train_s'] / 3600
  worst = max(programs, key=lambda p: p.total_bytes)
  return dict(model=name, slice=slice_name, stage=stage,
              mesh=dict(mesh.shape), overrides=over, slots=num_slots,
              optimizer=optimizer if stage == 'train' else None,
              argument_bytes=[p.argument_bytes for p in programs],
              gib=worst.total_bytes / aot.GiB,
              hbm_gib=tgt.chip.hbm_bytes / aot.GiB,
              fits=worst.total_bytes <= tgt.chip.hbm_bytes,
              flops=[p.flops for p in programs],
              compile_s=sum(p.compile_s for p in programs),
              round_hours=hours, **times)


def markdown(r: dict) -> str:
  over = ', '.join(f'{k}={v}' for k, v in r['overrides'].items()) or 'f32'
  if r.get('optimizer') and r['optimizer'] != 'adafactor':
    over += f", {r['optimizer']}"
  return (f"| {r['model']} | {r['slice']} | {r['stage']} | "
          f"{r['mesh']['data']}x{r['mesh']['model']} | {over} | "
          f"{r['gib']:.2f} / {r['hbm_gib']:.0f} | "
          f"{'yes' if r['fits'] else 'NO'} | "
          f"{' + '.join(f'{f:.2e}' for f in r['flops'])} | "
          f"{r['compile_s']:.0f} | {r['round_hours']:.2f} |")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--only', default='', help='substring of the model name')
  ap.add_argument('--slices', default='',
                  help='comma-separated slices to keep (default: all)')
  ap.add_argument('--out', default='/tmp/capacity.jsonl')
  ap.add_argument('--rows', default='',
                  help='comma-separated row indices into ROWS (default: all)')
  args = ap.parse_args()
  print('| model | slice | stage | mesh | dtype/remat | GiB/chip vs HBM | '
        'fits | FLOPs/chip | compile s | round h |')
  keep = {int(i) for i in args.rows.split(',') if i}
  for index, row in enumerate(ROWS):
    if keep and index not in keep:
      continue
    if args.only not in row[0] or (
        args.slices and row[1] not in args.slices.split(',')):
      continue
    try:
      r = run_row(*row)
    except Exception as e:  # pylint: disable=broad-except
      r = dict(model=row[0], slice=row[1], stage=row[2], error=str(e)[:300])
      print(f'| {row[0]} | {row[1]} | {row[2]} | error: {r["error"]} |',
            flush=True)
    else:
      print(markdown(r), flush=True)
    with open(args.out, 'a', encoding='utf-8') as f:
      f.write(json.dumps(r) + '\n')


if __name__ == '__main__':
  main()
