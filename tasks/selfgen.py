"""SeqIO tasks over self-generated examples (LMSI stage 5).

`register(selfgen_path, dataset, round_)` registers one task per format,
`lmsi_selfgen_<dataset>_r<round>_<format>`, over the file `lmsi.aggregate`
writes (or any file of `records.SelfGenExample`s), and the mixture
`lmsi_selfgen_r<round>` (equal rates, [open] in the paper). `extra_tasks`
adds e.g. the labeled seed tasks to the mixture. Importing this module also
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
