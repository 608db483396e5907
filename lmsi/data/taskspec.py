"""What the stages know about tasks, filled in by `tasks/` when imported.

lmsi never imports `tasks/`; task modules write into the registries here:

  * `SPECS`: a benchmark (or pool) task's answer family and exemplar set
    (`tasks.releases.add_benchmark` records them). `task_settings` reads
    them for the sampling, aggregation, evaluation and probe stages, which
    read a task's questions (`load_questions`, `load_task`) here too.
  * `BUILDERS`: how a binary registers a task kind it builds at run time:
    'arithmetic' (the embedded task over the splits `lmsi.demo.arithmetic`
    writes; `tasks.arithmetic`) and 'selfgen' (tasks over a selfgen.jsonl;
    `tasks.selfgen`). A gin file that needs one says `import tasks.<kind>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from lmsi.data import answers as answers_lib
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import records

ARITHMETIC = 'arithmetic'
SELFGEN = 'selfgen'
PAIRS = 'pairs'  # tasks.selfgen.register_pairs: a preference learner's pairs


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
  """What stages 3-7 need to know about a registered benchmark task."""

  dataset: str  # e.g. 'anli_r2'
  family: answers_lib.Family
  exemplars: str  # an `lmsi.data.exemplars` set
  pool_of: tuple[str, str] | None = None  # (task, split) a pool draws from
  note: str = ''  # e.g. why a pool is not the train split


SPECS: dict[str, Spec] = {}


def spec(task_name: str) -> Spec:
  """The `Spec` of a registered benchmark or pool task."""
  if task_name not in SPECS:
    raise KeyError(f'{task_name!r} is not a registered benchmark task; '
                   f'known: {sorted(SPECS)}')
  return SPECS[task_name]


def task_settings(
    task_name: str, *, exemplars: str | None = None,
    num_exemplars: int | None = None, answer_family: str | None = None,
) -> tuple[answers_lib.Family, tuple[prompts.Exemplar, ...], dict[str, Any]]:
  """A task's answer family and exemplars, and what a manifest records.

  Benchmark tasks (`SPECS`) know theirs; `exemplars` and `answer_family`
  override them and are required for any other task.

  Returns:
    (family, exemplars, manifest entries incl. where a pool comes from).
  """
  task_spec = SPECS.get(task_name)
  if task_spec is None and (exemplars is None or answer_family is None):
    raise ValueError(f'{task_name!r} is not a benchmark task: set EXEMPLARS '
                     'and ANSWER_FAMILY')
  family = answers_lib.Family(answer_family or task_spec.family)
  name = exemplars or task_spec.exemplars
  notes = {'task': task_name, 'answer_family': family.value,
           'exemplars': name, 'num_exemplars': num_exemplars}
  if task_spec is not None and task_spec.pool_of:
    notes['pool_of'] = {'task': task_spec.pool_of[0],
                        'split': task_spec.pool_of[1]}
    notes['pool_note'] = task_spec.note
  return family, exemplars_lib.get(name, num_exemplars), notes


def load_questions(task_name: str, split: str,
                   max_questions: int | None = None) -> list[records.Question]:
  """A split's questions with the gold answer dropped at the door."""
  rows = inputs.load_split(task_name, split)[:max_questions]
  return [records.Question(task=task_name, id=r['id'], question=r['question'])
          for r in rows]


def load_task(
    task_name: str, split: str, *, exemplars: str | None = None,
    num_exemplars: int | None = None, answer_family: str | None = None,
    max_questions: int | None = None,
) -> tuple[answers_lib.Family, tuple[prompts.Exemplar, ...], dict[str, Any],
           list[dict[str, str]]]:
  """A task's settings (`task_settings`) and the first
  `max_questions` labeled examples of `split`: (family, exemplars, manifest
  notes, examples)."""
  family, exemplar_set, notes = task_settings(
      task_name, exemplars=exemplars, num_exemplars=num_exemplars,
      answer_family=answer_family)
  examples = inputs.load_split(task_name, split)[:max_questions]
  return family, exemplar_set, notes, examples


@dataclasses.dataclass(frozen=True, kw_only=True)
class Builder:
  """A task kind's registration function and its fixed SeqIO names."""

  register: Callable[..., Any]  # arguments as the kind's `register`
  task: str = ''  # its task, if the kind has a fixed one
  mixture: str = ''  # its training mixture, if fixed


BUILDERS: dict[str, Builder] = {}


def add_builder(kind: str, builder: Builder) -> None:
  """Records (or replaces) how the task kind `kind` is registered."""
  BUILDERS[kind] = builder


def arithmetic_defaults(task_name: str, exemplars: str | None,
                        answer_family: str | None
                        ) -> tuple[str | None, str | None]:
  """(exemplars, answer_family): the arithmetic task's ('arithmetic',
  'number') where not given; other tasks' as given."""
  arith = BUILDERS.get(ARITHMETIC)
  if arith is not None and task_name == arith.task:
    return exemplars or 'arithmetic', answer_family or 'number'
  return exemplars, answer_family


def builder(kind: str) -> Builder:
  """The `Builder` of `kind`, which `tasks.<kind>` adds when imported.

  Raises:
    LookupError: naming the module to import.
  """
  if kind not in BUILDERS:
    raise LookupError(
        f'no {kind!r} task builder is registered: import tasks.{kind} or add '
        f'`import tasks.{kind}` to your gin file (registered: '
        f'{sorted(BUILDERS)})')
  return BUILDERS[kind]
