"""Adversarial NLI rounds 1-3 as SeqIO tasks (LMSI stage 1).

`register(data_dir=None, source='files', pool_split='validation')` registers,
for each round r in 1, 2, 3:
  * `lmsi_anli_r<r>_v1`: splits validation (the release's dev.jsonl) and
    test, plus train where its file exists ('files') and always with TFDS;
    features `id` (the release `uid`), `question` (the paper's template,
    App. A: 'Premise: "..." Based on this premise, can we conclude the
    hypothesis "..." is true? OPTIONS: - yes - no - it is not possible to
    tell', built from the release's `context` and `hypothesis`) and
    `answer` (the label e/n/c as entailment / neutral / contradiction);
    accuracy metric.
  * `lmsi_anli_r<r>_pool_v1`: unlabeled pool questions, served as 'train'.

The pool is the DEV split by default, not train as in the paper (App. A:
5k sampled train questions of A2/A3): the train files (R1-R3 train.jsonl,
16946 / 45460 / 100459 rows) are not in this repository's data snapshot.
The pool task's `releases.Spec.note` says so, and the sampling and
aggregation binaries copy it into their manifests. Evaluate on test, which
the pool never touches. Pass `pool_split='train'` where the train files
exist (or with TFDS) to follow the paper.

Sources: 'files' reads `<data_dir>/anli/R{1,2,3}/{dev,test[,train]}.jsonl`
(anli_v1.0 layout); 'tfds' reads the `anli/r1..r3` builders.
"""

from __future__ import annotations

import os

from lmsi.data import answers as answers_lib
from lmsi.data import prompts
from tasks import releases

ROUNDS = (1, 2, 3)
SPLIT_FILES = {'train': 'train', 'validation': 'dev', 'test': 'test'}
LAYOUT = '<data_dir>/anli/R{1,2,3}/{dev,test}.jsonl (+ train.jsonl) (anli_v1.0)'
POOL_NOTE = ('ANLI pool = the dev split (paper: 5k sampled train questions); '
             'the train files are not available in the data snapshot')
_LABELS = 'enc'  # TFDS ClassLabel order


def task_name(round_: int) -> str:
  return f'lmsi_anli_r{round_}_v1'


def pool_name(round_: int) -> str:
  return releases.pool_name(task_name(round_))


def _row(uid: str, context: str, hypothesis: str, label: str
         ) -> releases.Row:
  if label not in _LABELS:
    raise ValueError(f"field 'label': {label!r} is not one of e, n, c")
  return {'id': uid, 'question': prompts.nli_question(context, hypothesis),
          'answer': releases.gold(label, answers_lib.Family.NLI)}


def _parse_file_row(_: str, raw: dict) -> releases.Row:
  return _row(releases.field(raw, 'uid'), releases.field(raw, 'context'),
              releases.field(raw, 'hypothesis'), releases.field(raw, 'label'))


def _convert_tfds(_: str, ex: dict) -> releases.Row:
  return _row(releases.text(ex['uid']), releases.text(ex['context']),
              releases.text(ex['hypothesis']), _LABELS[int(ex['label'])])


def register(data_dir: str | None = None, source: str = 'files',
             tfds_data_dir: str | None = None,
             pool_split: str = 'validation') -> list[str]:
  """Registers the three rounds' tasks and pools; returns the task names.

  Args:
    data_dir: the benchmark data directory ('files'); default $LMSI_DATA_DIR.
    source: 'files' or 'tfds'.
    tfds_data_dir: TFDS's data_dir ('tfds'); default TFDS's own.
    pool_split: the split whose questions are the unlabeled pool.

  Raises:
    FileNotFoundError: naming the missing directory or file and the layout.
    ValueError: if `pool_split` is not a split of the task.
  """
  names = []
  for r in ROUNDS:
    splits = releases.release_splits(
        source, data_dir=data_dir, tfds_data_dir=tfds_data_dir,
        layout=LAYOUT, files={s: os.path.join('anli', f'R{r}', f'{f}.jsonl')
                              for s, f in SPLIT_FILES.items()},
        tfds_builder=f'anli/r{r}', parse=_parse_file_row,
        convert=_convert_tfds, optional=('train',))
    if pool_split not in splits:
      raise ValueError(f'ANLI R{r} has no {pool_split!r} split to pool; '
                       f'splits: {sorted(splits)}')
    spec = releases.Spec(dataset=f'anli_r{r}', family=answers_lib.Family.NLI,
                         exemplars='anli')
    releases.add_benchmark(
        task_name(r), splits, spec, pool_split=pool_split,
        pool_note=POOL_NOTE if pool_split == 'validation' else '')
    names.append(task_name(r))
  return names
