"""Vote over sampled paths and write self-generated data (stage 4-5).

Paper §3: the majority answer ỹ of a question's m paths is its pseudo-label
and EVERY path reaching ỹ is kept (no threshold, cap or de-duplication by
default; those are knobs). Each kept path becomes four training examples,
one per `prompts.Format`. Gold answers are never read here: a
`SelfGenExample` has no gold field.

`no_vote=True` is the ablation: one random parseable path per question,
no majority filter. `learner='preference'` (ScPO, `lmsi.voting.preference`)
writes `pairs.jsonl` instead: per question a most-voted and a least-voted
path, weighted by their vote margin, from the same samples and vote.

`python -m lmsi.aggregate --gin_file=gin/runs/aggregate.gin --gin.TASK=...`
runs `aggregate_task` over what `lmsi.sample`'s binary wrote.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging
from etils import epath

from lmsi.data import answers as answers_lib
from lmsi.data import inputs
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.data import shards
from lmsi.data import taskspec
from lmsi.voting import majority as voting
from lmsi.voting import preference as preference_lib

LEARNERS = ('sft', 'preference')
SELFGEN_FILE = 'selfgen.jsonl'
PAIRS_FILE = 'pairs.jsonl'


def select_paths(
    paths: Sequence[records.SampledPath], *, no_vote: bool = False,
    seed: int = 0, min_vote_share: float = 0.0,
    max_paths_per_question: int | None = None, dedup: bool = False,
) -> tuple[list[tuple[records.SampledPath, str, float]], dict]:
  """Chooses the training paths.

  Returns:
    ([(path, label, vote share)], counts for the manifest).
  """
  by_id = collections.defaultdict(list)
  for p in paths:
    by_id[p.id].append(p)
  kept, counts = [], collections.Counter()
  for qid in sorted(by_id):
    group = sorted(by_id[qid], key=lambda p: p.sample)
    vote = voting.majority_vote([p.answer for p in group])
    counts['questions'] += 1
    counts['samples'] += len(group)
    counts['unparseable'] += len(group) - vote.num_valid
    counts['ties'] += int(vote.tied)
    if no_vote:
      valid = [p for p in group if p.answer is not None]
      if valid:
        pick = random.Random(f'{seed}/{qid}').choice(valid)
        kept.append((pick, pick.answer, vote.share))
      continue
    if vote.answer is None or vote.share < min_vote_share:
      continue
    chosen, seen = [], set()
    for p in group:
      if p.answer != vote.answer or (dedup and p.text in seen):
        continue
      seen.add(p.text)
      chosen.append(p)
    kept.extend((p, vote.answer, vote.share)
                for p in chosen[:max_paths_per_question])
    counts['questions_kept'] += 1
  counts['paths_kept'] = len(kept)
  return kept, dict(counts)


_ANSWER_SENTENCE = re.compile(
    re.escape(answers_lib.ANSWER_PREFIX) + r'[^\n]*?\.(?=\s|$)')


def trim_after_answer(text: str) -> str:
  """Drops whatever a path says after its "The answer is X." sentence."""
  m = _ANSWER_SENTENCE.search(text)
  return text[: m.end()] if m else text


def parse_formats(names: Sequence[str]) -> tuple[prompts.Format, ...]:
  """The training formats named in `names` (the format ablation, paper
  Table 6), in `prompts.Format` order.

  Raises:
    ValueError: for an empty list or a name that is not a format.
  """
  names = (names,) if isinstance(names, str) else tuple(names)
  unknown = sorted(set(names) - set(prompts.FORMAT_NAMES))
  if unknown or not names:
    raise ValueError(f'formats: {list(names)} must be a non-empty subset of '
                     f'{list(prompts.FORMAT_NAMES)} (unknown: {unknown})')
  return tuple(f for f in prompts.Format if f.value in names)


def to_examples(kept, questions: Mapping[str, records.Question],
                exemplars: Sequence[prompts.Exemplar],
                answer_family: str = 'number',
                formats: Sequence[str] = prompts.FORMAT_NAMES,
                ) -> list[records.SelfGenExample]:
  """Each kept path in the chosen formats (paper §3.2, Table 2: all four).

  Direct targets write the label as the prompts do ("(b)", "yes").
  """
  chosen = parse_formats(formats)
  out = []
  for path, label, share in kept:
    reasoning = trim_after_answer(path.text)
    answer = answers_lib.answer_text(label, answer_family)
    for fmt in chosen:
      out.append(records.SelfGenExample(
          task=path.task, id=path.id, sample=path.sample, format=fmt.value,
          inputs=prompts.render(fmt, questions[path.id].question, exemplars),
          targets=prompts.target(fmt, reasoning, answer),
          vote_share=round(share, 4)))
  return out


def to_pairs(pairs: Sequence[preference_lib.Pair],
             questions: Mapping[str, records.Question],
             exemplars: Sequence[prompts.Exemplar]
             ) -> list[records.PreferencePair]:
  """Each pair as a record: the few-shot CoT prompt its paths were sampled
  from, and both paths trimmed after their answer sentence as CoT targets
  (as `to_examples` writes them)."""
  fmt = prompts.Format.COT_FEWSHOT
  cot = lambda path: prompts.target(fmt, trim_after_answer(path.text), '')
  return [records.PreferencePair(
      task=p.chosen.task, id=p.chosen.id,
      inputs=prompts.render(fmt, questions[p.chosen.id].question, exemplars),
      chosen=cot(p.chosen), rejected=cot(p.rejected),
      chosen_sample=p.chosen.sample, rejected_sample=p.rejected.sample,
      votes_chosen=p.votes_chosen, votes_rejected=p.votes_rejected,
      samples=p.samples, weight=round(p.weight, 6)) for p in pairs]


def aggregate(
    *,
    samples_dir: str,
    questions: Sequence[records.Question],
    output_dir: str,
    exemplars: Sequence[prompts.Exemplar],
    no_vote: bool = False,
    seed: int = 0,
    min_vote_share: float = 0.0,
    max_paths_per_question: int | None = None,
    dedup: bool = False,
    answer_family: str = 'number',
    formats: Sequence[str] = prompts.FORMAT_NAMES,
    manifest_extra: Mapping[str, Any] | None = None,
    learner: str = 'sft',
    margin: float = 0.0,
) -> str:
  """Votes and writes `output_dir/selfgen.jsonl` (+ marker, manifest), or
  with `learner='preference'` `output_dir/pairs.jsonl` (pairs whose vote
  margin is at least `margin`).

  `answer_family` only sets how direct targets write the label; `formats`
  which of the four formats become training data (paper: all four);
  `manifest_extra` adds entries (task, pool origin) to the manifest.

  Returns:
    The path of the self-generated file.
  """
  if learner not in LEARNERS:
    raise ValueError(f'learner={learner!r}: expected one of {LEARNERS}')
  path = os.path.join(output_dir, SELFGEN_FILE if learner == 'sft'
                      else PAIRS_FILE)
  if fileio.is_complete(path):
    logging.info('aggregate: %s is complete, skipping', path)
    return path
  if learner == 'preference':
    return _aggregate_pairs(
        path, samples_dir=samples_dir, questions=questions,
        exemplars=exemplars, seed=seed, margin=margin,
        manifest_extra=manifest_extra)
  kept, counts = select_paths(
      shards.read_samples(samples_dir), no_vote=no_vote, seed=seed,
      min_vote_share=min_vote_share,
      max_paths_per_question=max_paths_per_question, dedup=dedup)
  by_id = {q.id: q for q in questions}
  _check_questions(samples_dir, {p.id for p, _, _ in kept}, by_id)
  chosen = [f.value for f in parse_formats(formats)]
  examples = to_examples(kept, by_id, exemplars, answer_family, chosen)
  counts['examples'] = len(examples)
  sampling = _sampling_settings(samples_dir)
  manifest = manifests.stage_manifest(
      shards.shard_paths(samples_dir),
      **(manifest_extra or {}),
      samples_dir=os.path.abspath(samples_dir),
      sampling=sampling,
      counts=counts,
      choices={
          'no_vote': no_vote, 'min_vote_share': min_vote_share,
          'max_paths_per_question': max_paths_per_question, 'dedup': dedup,
          'tie_rule': 'answer appearing first (lowest sample index) wins',
          'unparseable': 'cast no vote but count in the vote share',
          'top_k': sampling.get('top_k') if sampling else None,
          'formats': chosen,
          'mixing_rates': 'equal per format task (tasks.selfgen); '
                          'the rates used are in train_manifest.json',
      })
  fileio.write_json(os.path.join(output_dir, 'aggregate_manifest.json'),
                     manifest)
  fileio.write_jsonl(path, examples)
  return path


def _check_questions(samples_dir: str, ids: set[str],
                     questions: Mapping[str, records.Question]) -> None:
  """Raises unless every sampled question id is one of the split's."""
  missing = sorted(ids - set(questions))
  if missing:
    raise ValueError(f'{samples_dir}: samples for {len(missing)} questions '
                     f'not in the task split, e.g. {missing[:3]}')


def _aggregate_pairs(path: str, *, samples_dir: str,
                     questions: Sequence[records.Question],
                     exemplars: Sequence[prompts.Exemplar], seed: int,
                     margin: float,
                     manifest_extra: Mapping[str, Any] | None) -> str:
  """`aggregate`'s preference branch: pairs.jsonl and its manifest."""
  pairs, counts = preference_lib.select_pairs(
      shards.read_samples(samples_dir), margin=margin, seed=seed)
  by_id = {q.id: q for q in questions}
  _check_questions(samples_dir, {p.chosen.id for p in pairs}, by_id)
  sampling = _sampling_settings(samples_dir)
  manifest = manifests.stage_manifest(
      shards.shard_paths(samples_dir), **(manifest_extra or {}),
      samples_dir=os.path.abspath(samples_dir), sampling=sampling,
      counts=counts,
      choices={
          'learner': 'preference', 'margin': margin, 'seed': seed,
          'weight': '(votes_chosen - votes_rejected) / samples',
          'chosen': 'a path of the majority answer (ties: the answer seen '
                    'first), picked at random keyed by (seed, question id)',
          'rejected': 'a path of the least-voted answer (ties and paths '
                      'picked at random, keyed likewise)',
          'unparseable': 'cast no vote, never paired, count in samples',
          'inputs': prompts.Format.COT_FEWSHOT.value,
          'targets': 'path text trimmed after "The answer is X."',
      })
  fileio.write_json(os.path.join(os.path.dirname(path),
                                 'aggregate_manifest.json'), manifest)
  fileio.write_jsonl(path, to_pairs(pairs, by_id, exemplars))
  return path


def _sampling_settings(samples_dir: str) -> dict[str, Any] | None:
  """The sampling config from `sample_manifest.json`, if sampling wrote one."""
  path = os.path.join(samples_dir, 'sample_manifest.json')
  if not epath.Path(path).exists():
    return None
  with epath.Path(path).open() as f:
    return json.load(f).get('sampling')


def aggregate_task(
    *,
    samples_dir: str,
    task_name: str,
    split: str,
    output_dir: str,
    exemplars: str | None = None,
    num_exemplars: int | None = None,
    answer_family: str | None = None,
    no_vote: bool = False,
    seed: int = 0,
    min_vote_share: float = 0.0,
    max_paths_per_question: int | None = None,
    dedup: bool = False,
    formats: Sequence[str] = prompts.FORMAT_NAMES,
    learner: str = 'sft',
    margin: float = 0.0,
) -> list[str]:
  """Aggregates what `lmsi.sample.sample_task` wrote for a task or mixture.

  A mixture's member task `t` reads `samples_dir/t` and writes
  `output_dir/t/selfgen.jsonl`, as `sample_task` lays them out.

  Returns:
    The self-generated files, one per task.
  """
  paths = []
  for name in inputs.member_tasks(task_name):
    sub = '' if name == task_name else name
    family, exemplar_set, notes = taskspec.task_settings(
        name, exemplars=exemplars, num_exemplars=num_exemplars,
        answer_family=answer_family)
    paths.append(aggregate(
        samples_dir=os.path.join(samples_dir, sub),
        questions=taskspec.load_questions(name, split),
        output_dir=os.path.join(output_dir, sub), exemplars=exemplar_set,
        no_vote=no_vote, seed=seed, min_vote_share=min_vote_share,
        max_paths_per_question=max_paths_per_question, dedup=dedup,
        answer_family=family.value, formats=formats,
        manifest_extra={**notes, 'split': split}, learner=learner,
        margin=margin))
  return paths
