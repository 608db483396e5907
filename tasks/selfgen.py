"""SeqIO tasks over self-generated examples (LMSI stage 5).

`register(selfgen_path, dataset, round_)` registers one task per format,
`lmsi_selfgen_<dataset>_r<round>_<format>`, over the file `lmsi.aggregate`
writes (or any file of `records.SelfGenExample`s), and the mixture
`lmsi_selfgen_r<round>` (equal rates, [open] in the paper). `extra_tasks`
adds e.g. the labeled seed tasks to the mixture. `register_pairs` registers
`lmsi_pairs_<dataset>_r<round>` over a preference learner's pairs.jsonl
(`inputs`, `chosen`, `rejected` tokenized; `id`, `weight` as text). Importing
this module also
adds the 'selfgen' `lmsi.data.taskspec.Builder`, through which `lmsi.pipeline`
registers these tasks.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from absl import logging

from lmsi.data import prompts
from lmsi.data import records
from lmsi.data import taskspec
from lmsi.vocab import simple as vocab_lib
from tasks import sources


def task_name(dataset: str, round_: int, fmt: prompts.Format | str) -> str:
  return f'lmsi_selfgen_{dataset}_r{round_}_{getattr(fmt, "value", fmt)}'


def mixture_name(round_: int, suffix: str = '') -> str:
  return f'lmsi_selfgen_r{round_}{suffix}'


def pairs_task_name(dataset: str, round_: int, suffix: str = '') -> str:
  return f'lmsi_pairs_{dataset}_r{round_}{suffix}'


def register_pairs(pairs_path: str, dataset: str, round_: int, *,
                   vocabulary: str = 'bytes', suffix: str = '') -> str:
  """Registers the pairs task over `lmsi.aggregate`'s pairs.jsonl (learner
  'preference'); returns its name.

  Raises:
    ValueError: naming the file if it holds no pairs.
  """
  rows = [{'id': p.id, 'inputs': p.inputs, 'chosen': p.chosen,
           'rejected': p.rejected, 'weight': repr(p.weight)}
          for p in records.read_jsonl(pairs_path, records.PreferencePair)]
  if not rows:
    raise ValueError(f'{pairs_path} holds no preference pairs: nothing to '
                     'train on (every question had one answer, or a vote '
                     'margin below the threshold)')
  name = pairs_task_name(dataset, round_, suffix)
  sources.add_task(
      name, sources.rows_source({'train': lambda: rows},
                                ('id', 'inputs', 'chosen', 'rejected',
                                 'weight')),
      tokenize=True, vocab=vocab_lib.load(vocabulary),
      targets=('chosen', 'rejected'))
  return name


def register(selfgen_path: str, dataset: str, round_: int, *,
             vocabulary: str = 'bytes', extra_tasks: Sequence[str] = (),
             suffix: str = '') -> str:
  """Registers the per-format tasks and the mixture; returns its name.

  Args:
    selfgen_path: the `selfgen.jsonl` that `lmsi.aggregate` wrote.
    dataset, round_: name parts.
    vocabulary: 'bytes' or a `WordVocab` JSON file (`lmsi.vocab.load`).
    extra_tasks: more tasks for the mixture (e.g. labeled seed tasks).
    suffix: appended to task and mixture names (e.g. an ablation's).
  """
  vocab = vocab_lib.load(vocabulary)
  # Read the file once; each format's task serves its share from memory.
  by_format = collections.defaultdict(list)
  for ex in records.read_jsonl(selfgen_path, records.SelfGenExample):
    by_format[ex.format].append({'inputs': ex.inputs, 'targets': ex.targets})

  names = []
  # The four formats in their order, then any other the file holds (e.g.
  # lmsi.question_gen's warm-up examples).
  others = sorted(set(by_format) - set(prompts.FORMAT_NAMES))
  for fmt in [*prompts.FORMAT_NAMES, *others]:
    rows = by_format[fmt]
    if not rows:  # an empty task would end the mixture
      logging.warning('selfgen: no %s examples in %s', fmt, selfgen_path)
      continue
    name = task_name(dataset, round_, fmt) + suffix
    sources.add_task(
        name, sources.rows_source({'train': lambda rows=rows: rows},
                                  ('inputs', 'targets')),
        tokenize=True, vocab=vocab)
    names.append(name)
  if not names and not extra_tasks:
    raise ValueError(f'{selfgen_path} holds no self-generated examples: '
                     'nothing to fine-tune on (did any sampled path parse?)')
  mixture = mixture_name(round_, suffix)
  sources.add_mixture(mixture, names + list(extra_tasks))
  return mixture


taskspec.add_builder(taskspec.SELFGEN, taskspec.Builder(register=register))
taskspec.add_builder(taskspec.PAIRS, taskspec.Builder(register=register_pairs))
