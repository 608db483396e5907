"""Does a model have a self-consistency gap on a task?

LMSI trains on the majority-voted paths of the model's own samples, so it
can only help where voting beats greedy decoding: no gap, no gain. On N
labeled questions this runs greedy CoT and m sampled CoT paths
(`lmsi.evaluate`) and reports maj@k for k = 1, 2, 4, ... and m, the gap
over greedy in points, the calibration curve (accuracy of the majority
answer per vote-share bin) and a verdict. The model is an
`lmsi.checkpoints.artifact` directory or an orbax model dir with a gin model
config and vocabulary. Writes eval.json, predictions.jsonl, probe.json,
probe.md, probe.png and probe_manifest.json to the output directory.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from lmsi.checkpoints import artifact as artifact_lib
from lmsi.checkpoints import load
from lmsi.model import decoder as decoder_lib
from lmsi.evaluation import evaluator as evaluate
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.runtime import fileio
from lmsi.evaluation import tables
from lmsi.data import taskspec
from lmsi.vocab import base as vocab_base

DEFAULT_THRESHOLD = 3.0  # points of maj@m over greedy CoT


def ks_up_to(m: int) -> tuple[int, ...]:
  """1, 2, 4, ... (powers of two <= m), then m itself."""
  if m < 1:
    raise ValueError(f'the number of samples must be >= 1, got {m}')
  ks = [1]
  while ks[-1] * 2 <= m:
    ks.append(ks[-1] * 2)
  return tuple(ks + ([m] if ks[-1] != m else []))


MIN_QUESTIONS_GAINED = 3  # a gap of fewer questions than this is noise
BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_gap(greedy: Sequence[int], majority: Sequence[int], *,
                  resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of mean(majority - greedy), in points.

  Paired: each resample draws questions with replacement and keeps both
  methods' results on them. Deterministic for a seed.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  diff = np.asarray(majority, np.float64) - np.asarray(greedy, np.float64)
  if diff.ndim != 1 or not diff.size or len(greedy) != len(majority):
    raise ValueError(f'bootstrap_gap: need two equal, non-empty 0/1 lists '
                     f'(got {len(greedy)} and {len(majority)})')
  rng = np.random.default_rng(seed)
  means = diff[rng.integers(0, diff.size, (resamples, diff.size))].mean(-1)
  tail = 100.0 * (1.0 - level) / 2.0
  lo, hi = np.percentile(100.0 * means, [tail, 100.0 - tail])
  return round(float(lo), 4), round(float(hi), 4)


def gap(accuracy: Mapping[str, float], m: int,
        threshold: float = DEFAULT_THRESHOLD,
        num_questions: int | None = None,
        interval: tuple[float, float] | None = None) -> dict[str, Any]:
  """The gap of maj@k over greedy CoT (accuracies as fractions) and verdict.

  With `num_questions`, a gap worth fewer than `MIN_QUESTIONS_GAINED`
  questions is called too small to tell, whatever the threshold. With the
  gap's 95% `interval` (points, `bootstrap_gap`), a gap counts only if the
  interval lies above 0 as well.

  Returns:
    {gap_points (maj@m - greedy), best_k (smallest k of the best maj@k),
     best_gap_points, has_gap (gap_points >= threshold), verdict}, and
    gap_interval_points with an interval.
  """
  maj = {int(key[4:]): v for key, v in accuracy.items()
         if key.startswith('maj@')}
  if 'greedy_cot' not in accuracy or m not in maj:
    raise ValueError(f'need greedy_cot and maj@{m}, got {sorted(accuracy)}')
  points = lambda k: round(100.0 * (maj[k] - accuracy['greedy_cot']), 6)
  best_k = max(sorted(maj), key=lambda k: maj[k])
  has_gap = points(m) >= threshold
  text = f'maj@{m} - greedy = {points(m):.1f} points'
  verdict = (f'{text}: LMSI has room to help' if has_gap else
             f'no gap ({text}): LMSI will not help this model on this task')
  if num_questions:
    gained = round(points(m) * num_questions / 100.0)
    if has_gap and gained < MIN_QUESTIONS_GAINED:
      has_gap = False
      verdict = (f'{text}, only {gained} of {num_questions} questions: too '
                 'few to tell; probe more questions (MAX_QUESTIONS)')
  extra = {}
  if interval is not None:
    extra['gap_interval_points'] = list(interval)
    span = f'95% interval [{interval[0]:+.1f}, {interval[1]:+.1f}]'
    verdict = verdict.replace(text, f'{text}, {span}', 1)
    if has_gap and interval[0] <= 0:
      has_gap = False
      verdict = (f'{text}, {span} reaches 0: not shown; probe more '
                 'questions (MAX_QUESTIONS)')
  return {'gap_points': points(m), 'best_k': best_k,
          'best_gap_points': points(best_k), 'has_gap': has_gap,
          'verdict': verdict, **extra}


def format_markdown(result: Mapping[str, Any]) -> str:
  """probe.md: settings, accuracy table, calibration table and verdict."""
  pct = lambda v: f'{100.0 * v:.1f}'
  rows = [['direct', pct(result['direct']), '']] if 'direct' in result else []
  rows.append(['greedy_cot', pct(result['greedy']), ''])
  rows += [[f'maj@{k}', pct(result[f'maj@{k}']),
            f'{100.0 * (result[f"maj@{k}"] - result["greedy"]):+.1f}']
           for k in result['ks']]
  return '\n'.join([
      f'# Self-consistency probe: {result["task"]} ({result["split"]})', '',
      f'N = {result["n"]} questions, m = {result["m"]} sampled paths '
      f'(T {result["temperature"]}, top-k {result["top_k"]}), '
      f'{result["seconds"]:.1f} s.', '',
      tables.markdown_table(
          ['method', 'accuracy (%)', 'vs greedy (points)'], rows),
      '', f'Calibration: majority answer of the {result["m"]} paths', '',
      tables.calibration_markdown(result.get('calibration', [])), '',
      f'**{result["verdict"]}** (threshold {result["threshold_points"]:g} '
      f'points; best: maj@{result["best_k"]}, '
      f'{result["best_gap_points"]:+.1f})', ''])


def write_plot(result: Mapping[str, Any], path: str) -> str:
  """probe.png: maj@k vs k (greedy as a line) | calibration with counts."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
  ks = result['ks']
  left.plot(ks, [100.0 * result[f'maj@{k}'] for k in ks], marker='o',
            label='maj@k')
  left.axhline(100.0 * result['greedy'], color='gray', linestyle='--',
               label='greedy CoT')
  left.set_xscale('log', base=2)
  left.set_xticks(ks, [str(k) for k in ks])
  left.set(xlabel='k (sampled paths voted)', ylabel='accuracy (%)',
           title=f'{result["task"]} ({result["split"]}), N={result["n"]}')
  left.legend()
  bins = result['calibration']
  mids = [(b['vote_share_lo'] + b['vote_share_hi']) / 2 for b in bins]
  accs = [100.0 * (b['accuracy'] or 0.0) for b in bins]
  right.bar(mids, accs, alpha=0.6, width=[
      0.9 * (b['vote_share_hi'] - b['vote_share_lo']) for b in bins])
  right.plot([0, 1], [0, 100], color='gray', linestyle=':')
  for x, y, b in zip(mids, accs, bins):
    right.annotate(f'n={b["n"]}', (x, y), ha='center', va='bottom')
  right.set(xlim=(0, 1), ylim=(0, 105), xlabel='majority vote share',
            ylabel='accuracy of majority answer (%)', title='calibration')
  fig.tight_layout()
  fileio.write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=100),
                       binary=True)
  plt.close(fig)
  return path


def probe(*, model_config: decoder_lib.DecoderConfig, params: Any,
          examples: Sequence[Mapping[str, str]],
          exemplars: Sequence[prompts.Exemplar],
          vocab: vocab_base.Vocabulary,
          config: evaluate.EvalConfig, answer_family: str = 'number',
          task: str = '', split: str = '',
          threshold: float = DEFAULT_THRESHOLD,
          output_dir: str | None = None,
          started: float | None = None) -> dict[str, Any]:
  """Greedy CoT vs maj@k (k = `ks_up_to(config.num_samples)`) on `examples`.

  `config.ks` is replaced and greedy CoT and self-consistency always run
  ('direct' only if in `config.methods`). Accuracies are fractions, gaps
  points; `seconds` counts from `started` (default: now). With
  `output_dir`, also writes eval.json, predictions.jsonl and probe.*; a
  finished eval.json there is reused, as `evaluate` does.
  """
  started = time.time() if started is None else started
  if not examples:
    raise ValueError(f'no labeled questions to probe ({task} {split})')
  m = config.num_samples
  config = dataclasses.replace(config, ks=ks_up_to(m), methods=tuple(
      x for x in evaluate.METHODS if x != 'direct' or x in config.methods))
  out = evaluate.evaluate(
      model_config=model_config, params=params, examples=examples,
      exemplars=exemplars, config=config, vocab=vocab,
      answer_family=answer_family, output_dir=output_dir,
      desc=f'probe {task}')
  acc = out['accuracy']
  correct = out.get('correct', {})
  interval = (bootstrap_gap(correct['greedy_cot'], correct[f'maj@{m}'])
              if f'maj@{m}' in correct else None)
  missing = [f'maj@{k}' for k in config.ks if f'maj@{k}' not in acc]
  if missing or out['num_questions'] != len(examples):
    raise ValueError(f'{output_dir}/eval.json is from another run (it lacks '
                     f'{missing} or has {out["num_questions"]} questions); '
                     'use a fresh output directory')
  result = {'task': task, 'split': split, 'n': len(examples), 'm': m,
            'ks': list(config.ks), 'greedy': acc['greedy_cot'],
            **{f'maj@{k}': acc[f'maj@{k}'] for k in config.ks},
            **({'direct': acc['direct']} if 'direct' in acc else {}),
            **gap(acc, m, threshold, len(examples), interval),
            'threshold_points': threshold,
            'calibration': out['calibration'],
            'temperature': config.sampling.temperature,
            'top_k': config.sampling.top_k,
            'max_decode_steps': config.sampling.max_decode_steps,
            'seed': config.sampling.seed,
            'seconds': round(time.time() - started, 2)}
  if output_dir:
    write_plot(result, os.path.join(output_dir, 'probe.png'))
    fileio.write_text_atomic(os.path.join(output_dir, 'probe.md'),
                              format_markdown(result) + '\n![probe.png]'
                              '(probe.png)\n')
    fileio.write_json(os.path.join(output_dir, 'probe.json'), result)
  return result


def probe_task(*, checkpoint_path: str, task_name: str, output_dir: str,
               config: evaluate.EvalConfig, split: str = 'test',
               max_questions: int | None = 50,
               model_config: decoder_lib.DecoderConfig | None = None,
               vocabulary: str | None = None, exemplars: str | None = None,
               num_exemplars: int | None = None,
               answer_family: str | None = None,
               gap_threshold: float = DEFAULT_THRESHOLD,
               include_direct: bool = False, param_dtype: str = 'float32',
               data_dir: str | None = None) -> dict[str, Any]:
  """Binary body: probes a checkpoint on a task split; prints the tables.

  The arithmetic task defaults to exemplars 'arithmetic', family 'number';
  `data_dir` only adds that dir's `{split}.jsonl` to the manifest's inputs.
  """
  started = time.time()
  exemplars, answer_family = taskspec.arithmetic_defaults(
      task_name, exemplars, answer_family)
  loaded = load.load_model(checkpoint_path, model_config, vocabulary,
                           param_dtype)
  model_config, params, vocab = loaded.config, loaded.params, loaded.vocab
  inputs, vocab_path = list(loaded.inputs), loaded.vocabulary
  family, exemplar_set, notes, examples = taskspec.load_task(
      task_name, split, exemplars=exemplars, num_exemplars=num_exemplars,
      answer_family=answer_family, max_questions=max_questions)
  methods = evaluate.METHODS if include_direct else evaluate.METHODS[1:]
  config = dataclasses.replace(config, methods=methods,
                               ks=ks_up_to(config.num_samples))
  split_file = data_dir and os.path.join(data_dir, f'{split}.jsonl')
  fileio.write_json(
      os.path.join(output_dir, 'probe_manifest.json'),
      manifests.stage_manifest(
          inputs + ([split_file] if split_file and os.path.isfile(split_file)
                    else []), **notes,
          split=split, num_questions=len(examples),
          checkpoint=checkpoint_path,
          checkpoint_kind=('artifact' if artifact_lib.is_artifact(
              checkpoint_path) else 'orbax'),
          vocabulary=vocab_path, param_dtype=param_dtype,
          model_config=dataclasses.asdict(model_config),
          config=dataclasses.asdict(config), gap_threshold=gap_threshold,
          data_dir=data_dir))
  result = probe(model_config=model_config, params=params, examples=examples,
                 exemplars=exemplar_set, vocab=vocab, config=config,
                 answer_family=family.value, task=task_name, split=split,
                 threshold=gap_threshold, output_dir=output_dir,
                 started=started)
  print(format_markdown(result))
  logging.info('probe: wrote %s/probe.{json,md,png} in %.1f s', output_dir,
               result['seconds'])
  return result
