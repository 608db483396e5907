"""The learners table of docs/learners.md from `gin/experiments/learners.gin`
runs: accuracy per arm over seeds, and each arm's budget.

    python tools/learners_table.py runs/learners_s0 runs/learners_s1 ...

Accuracy: greedy CoT, direct and maj@16 on the demo's test split, mean and
[min, max] over the runs. Budget (first run): sampled paths the arm's data
came from, gradient steps, rows a step (a preference pair is two rows), the
expected trained tokens (rows x the mean tokens of a row of its data, each
row trimmed to TASK_FEATURE_LENGTHS; SFT's four format tasks at equal
rates) and wall time (fit + self-generation; sampling counted once, in
LMSI's row, since ScPO and no-vote reuse its samples).
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from bench import common
from lmsi.data import records
from lmsi.vocab import simple as vocab_lib

ARMS = (('base', None), ('LMSI r1 (sft)', 'r1'), ('ScPO (preference)',
                                                   'arms/scpo'),
        ('control (labeled seed split)', 'control'), ('no-vote', 'no_vote'))
METRICS = ('greedy_cot', 'direct', 'maj@16')


def _json(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def arm_accuracy(metrics: dict, arm: str | None, name: str) -> dict | None:
  if name == 'base':
    return metrics['rounds'][0]['accuracy']
  if arm == 'r1':
    return metrics['rounds'][1]['accuracy']
  if arm.startswith('arms/'):
    return metrics['arms'][arm[5:]].get('accuracy')
  return (metrics.get(arm) or {}).get('accuracy')


def _row_tokens(vocab, inputs: str, target: str, lengths: dict) -> int:
  return (min(len(vocab.encode(inputs)), lengths['inputs']) +
          min(len(vocab.encode(target)) + 1, lengths['targets']))


def mean_row_tokens(run: str, arm: str, vocab, lengths: dict) -> float | None:
  """The mean tokens of one training row of the arm's data."""
  selfgen = os.path.join(run, arm, 'selfgen')
  pairs = os.path.join(selfgen, 'pairs.jsonl')
  if os.path.exists(pairs):
    rows = [t for p in records.read_jsonl(pairs, records.PreferencePair)
            for t in (_row_tokens(vocab, p.inputs, p.chosen, lengths),
                      _row_tokens(vocab, p.inputs, p.rejected, lengths))]
    return statistics.fmean(rows) if rows else None
  path = os.path.join(selfgen, 'selfgen.jsonl')
  if not os.path.exists(path):
    return None
  by_format: dict[str, list[int]] = {}
  for ex in records.read_jsonl(path, records.SelfGenExample):
    by_format.setdefault(ex.format, []).append(
        _row_tokens(vocab, ex.inputs, ex.targets, lengths))
  return statistics.fmean(statistics.fmean(v) for v in by_format.values())


def budget(run: str, arm: str | None) -> dict:
  if arm is None:
    return {}
  manifest = _json(os.path.join(run, arm, 'model', 'train_manifest.json'))
  timings = _json(os.path.join(run, 'timings.json'))
  rows = manifest['batch_size'] * (
      2 if manifest.get('learner') == 'preference' else 1)
  lengths = manifest['task_feature_lengths']
  vocab = vocab_lib.load(os.path.join(run, 'data', 'vocab.json'))
  per_row = mean_row_tokens(run, arm, vocab, lengths)
  samples = os.path.join(run, 'r1', 'samples',
                         'samples-00000-of-00001.jsonl.COMPLETED')
  paths = (_json(samples)['records'] if arm != 'control' else 0)
  seconds = sum(v for k, v in timings.items()
                if k in (f'train {arm}/model', f'self-generate {arm}'))
  return {'paths': paths, 'steps': manifest['train_steps'], 'rows': rows,
          'tokens': per_row and per_row * rows * manifest['train_steps'],
          'seconds': seconds}


def main(argv):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('runs', nargs='+')
  args = ap.parse_args(argv)
  common.require('tools/learners_table.py', paths=[
      os.path.join(r, 'metrics.json') for r in args.runs])
  metrics = [_json(os.path.join(r, 'metrics.json')) for r in args.runs]
  print(f'Accuracy (%) on the demo test split, {len(args.runs)} seeds: '
        'mean [min, max]\n')
  print('| arm | ' + ' | '.join(METRICS) + ' |')
  print('| --- |' + ' ---: |' * len(METRICS))
  for name, arm in ARMS:
    cells = []
    for key in METRICS:
      got = [100 * a[key] for m in metrics
             if (a := arm_accuracy(m, arm, name)) and key in a]
      cells.append(f'{statistics.fmean(got):.1f} [{min(got):.1f}, '
                   f'{max(got):.1f}]' if got else '-')
    print(f'| {name} | ' + ' | '.join(cells) + ' |')
  print(f'\nBudget ({args.runs[0]}):\n')
  print('| arm | sampled paths | gradient steps | rows a step | expected '
        'trained tokens | wall s |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  for name, arm in ARMS[1:]:
    b = budget(args.runs[0], arm)
    tokens = f'{b["tokens"]:,.0f}' if b['tokens'] else 'n/a (seed mixture)'
    print(f'| {name} | {b["paths"]:,} | {b["steps"]} | {b["rows"]} | '
          f'{tokens} | {b["seconds"]:.0f} |')


if __name__ == '__main__':
  main(sys.argv[1:])
