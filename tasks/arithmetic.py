"""SeqIO tasks of the embedded arithmetic word-problem benchmark.

`register(data_dir)` registers, over the JSONL files `lmsi.demo.arithmetic`
writes:
  * `lmsi_arith_v1`: splits seed, seed_dev, unlabeled, test; features id,
    question, answer (normalised gold; read only by evaluation).
  * `lmsi_arith_seed_<format>_v1` and mixture `lmsi_arith_seed_v1`: the
    labeled seed split in the paper's four formats with gold reasoning, used
    to train the base model and the control arm.
Importing this module also adds the 'arithmetic' `lmsi.data.taskspec.Builder`,
through which `lmsi.demo.base` and `lmsi.pipeline` register these tasks.
"""

from __future__ import annotations

import os

from lmsi.demo import arithmetic
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import prompts
from lmsi.runtime import fileio
from lmsi.data import taskspec
from lmsi.vocab import simple as vocab_lib
from tasks import sources

TASK = 'lmsi_arith_v1'
SEED_MIXTURE = 'lmsi_arith_seed_v1'
SPLITS = ('seed', 'seed_dev', 'unlabeled', 'test')


def _read(path: str) -> list[dict]:
  rows = []
  for n, row in enumerate(fileio.read_jsonl_dicts(path), 1):
    for field in ('id', 'question', 'answer', 'cot'):
      if not isinstance(row.get(field), str):
        raise ValueError(f'{path}:{n}: field {field!r} must be a string, '
                         f'got {row.get(field)!r}')
    rows.append(row)
  return rows


def seed_task_name(fmt: prompts.Format) -> str:
  return f'lmsi_arith_seed_{fmt.value}_v1'


def vocabulary(data_dir: str):
  """The data dir's `vocab.json` (WordVocab), else bytes."""
  path = os.path.join(data_dir, arithmetic.VOCAB_FILE)
  return vocab_lib.load(path if os.path.exists(path) else 'bytes')


def register(data_dir: str, num_exemplars: int | None = None) -> None:
  """Registers the tasks over `data_dir/{split}.jsonl` (+ `vocab.json`)."""
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f'arithmetic data directory {data_dir!r} does not '
                            'exist (run the data stage first)')
  path = lambda split: os.path.join(data_dir, f'{split}.jsonl')
  sources.add_task(
      TASK,
      sources.rows_source({s: (lambda s=s: _read(path(s))) for s in SPLITS},
                          ('id', 'question', 'answer')),
      tokenize=False)
  exemplars = exemplars_lib.get('arithmetic', num_exemplars)
  vocab = vocabulary(data_dir)

  def formatted(fmt):
    return lambda: [
        {'inputs': prompts.render(fmt, r['question'], exemplars),
         'targets': prompts.target(fmt, r['cot'], r['answer'])}
        for r in _read(path('seed'))]

  for fmt in prompts.Format:
    sources.add_task(
        seed_task_name(fmt),
        sources.rows_source({'train': formatted(fmt)}, ('inputs', 'targets')),
        tokenize=True, vocab=vocab)
  sources.add_mixture(SEED_MIXTURE, [seed_task_name(f) for f in prompts.Format])


taskspec.add_builder(taskspec.ARITHMETIC, taskspec.Builder(
    register=register, task=TASK, mixture=SEED_MIXTURE))
