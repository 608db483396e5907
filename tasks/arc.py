"""ARC-Challenge and ARC-Easy as SeqIO tasks: science exams (LMSI stage 1).

`register(data_dir=None, source='files')` registers, for each subset
(`challenge`, `easy`):
  * `lmsi_arc_<subset>_v1`: splits train, validation (the release's "Dev"
    file) and test; features `id` (the official id), `question` (stem and
    options, "stem (a) ... (b) ...", paper App. A) and `answer` (the
    correct option's letter, "A"-"E"); accuracy metric.
  * `lmsi_arc_<subset>_pool_v1`: the train questions without gold (paper
    App. A: ARC-c train is the unlabeled pool).

Quirks of the release: some questions label their options 1-5 instead of
A-E (TFDS maps them to letters; so do we), and questions have 3 to 5
options, so nothing here assumes four.

Sources: 'files' reads `<data_dir>/arc/ARC-<Subset>/ARC-<Subset>-{Train,Dev,
Test}.jsonl` (the ARC-V1-Feb2018-2 folder renamed `arc`); 'tfds' reads the
`ai2_arc/ARC-Challenge` and `ai2_arc/ARC-Easy` builders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lmsi.data import answers as answers_lib
from lmsi.data import prompts
from tasks import releases

SUBSETS = {'challenge': 'ARC-Challenge', 'easy': 'ARC-Easy'}
SPLIT_FILES = {'train': 'Train', 'validation': 'Dev', 'test': 'Test'}
LAYOUT = ('<data_dir>/arc/ARC-Challenge/ARC-Challenge-{Train,Dev,Test}.jsonl '
          'and <data_dir>/arc/ARC-Easy/ARC-Easy-{Train,Dev,Test}.jsonl')
_LETTERS = 'ABCDE'
_NUMERIC = dict(zip('12345', _LETTERS))  # TFDS maps labels 1-5 the same way


def task_name(subset: str) -> str:
  return f'lmsi_arc_{subset}_v1'


def pool_name(subset: str) -> str:
  return releases.pool_name(task_name(subset))


def _row(example_id: str, stem: str, texts: Sequence[str],
         labels: Sequence[str], answer_key: str) -> releases.Row:
  """One row; labels "1".."5" count as "A".."E"."""
  labels = [_NUMERIC.get(label, label) for label in labels]
  if labels != list(_LETTERS[:len(labels)]):
    raise ValueError(f"field 'question.choices': labels {labels} are not "
                     f'A, B, C... in order')
  key = _NUMERIC.get(answer_key, answer_key)
  if key not in labels:
    raise ValueError(f"field 'answerKey': {answer_key!r} is not one of the "
                     f'labels {labels}')
  return {'id': example_id, 'question': prompts.choice_question(stem, texts),
          'answer': key}


def _parse_file_row(_: str, raw: dict) -> releases.Row:
  choices = releases.field(raw, 'question.choices', list)
  for i, choice in enumerate(choices):
    for key in ('text', 'label'):
      if not isinstance(choice, dict) or not isinstance(choice.get(key), str):
        raise ValueError(f"field 'question.choices[{i}].{key}' must be a "
                         f'string, got {choice!r}')
  return _row(releases.field(raw, 'id'), releases.field(raw, 'question.stem'),
              [c['text'] for c in choices], [c['label'] for c in choices],
              releases.field(raw, 'answerKey'))


def _convert_tfds(_: str, ex: dict) -> releases.Row:
  """A decoded `ai2_arc` example: ClassLabel ints for labels and key."""
  return _row(releases.text(ex['id']), releases.text(ex['question']),
              [releases.text(t) for t in ex['choices']['text']],
              [_LETTERS[int(i)] for i in ex['choices']['label']],
              _LETTERS[int(ex['answerKey'])])


def register(data_dir: str | None = None, source: str = 'files',
             tfds_data_dir: str | None = None) -> list[str]:
  """Registers both subsets' tasks and pools; returns the task names.

  Arguments as in `releases.release_splits`, which names a missing file.
  """
  names = []
  for subset, folder in SUBSETS.items():
    splits = releases.release_splits(
        source, data_dir=data_dir, tfds_data_dir=tfds_data_dir,
        layout=LAYOUT, files={s: os.path.join('arc', folder,
                                              f'{folder}-{f}.jsonl')
                              for s, f in SPLIT_FILES.items()},
        tfds_builder=f'ai2_arc/{folder}', parse=_parse_file_row,
        convert=_convert_tfds)
    spec = releases.Spec(dataset=f'arc_{subset}',
                         family=answers_lib.Family.LETTER, exemplars='arc')
    releases.add_benchmark(task_name(subset), splits, spec,
                           pool_split='train')
    names.append(task_name(subset))
  return names
