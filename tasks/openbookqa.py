"""OpenBookQA as SeqIO tasks: elementary science with letter options (stage 1).

`register(data_dir=None, source='files')` registers
  * `lmsi_openbookqa_v1`: splits train (4957), validation (500), test (500);
    features `id`, `question` ("stem (a) ... (b) ... (c) ... (d) ...", paper
    App. A) and `answer` (the correct letter "A"-"D"); accuracy metric.
  * `lmsi_openbookqa_pool_v1`: the train questions without gold.

Both sources read the files the TFDS builder reads, the release's
`Data/Additional/{train,dev,test}_complete.jsonl` (the `Main` questions plus
fact, crowd scores and author id). The builder drops the official id, so the
id is `obqa-<12 hex digits>` of the stem, options, fact and author id (the
stem and options alone repeat in train). The crowd scores `humanScore` and
`clarity` are strings in the release ("1.00") and floats in TFDS; they are
not features, but a row whose score is not a number is rejected.

Sources: 'files' reads `<data_dir>/openbookqa/Additional/<split>_complete
.jsonl` (OpenBookQA-V1-Sep2018/Data layout); 'tfds' the `openbookqa` builder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lmsi.data import answers as answers_lib
from lmsi.data import prompts
from tasks import releases

TASK = 'lmsi_openbookqa_v1'
POOL = 'lmsi_openbookqa_pool_v1'
SPLIT_FILES = {'train': 'train', 'validation': 'dev', 'test': 'test'}
TFDS_NAME = 'openbookqa'
LAYOUT = ('<data_dir>/openbookqa/Additional/{train,dev,test}_complete.jsonl '
          '(OpenBookQA-V1-Sep2018/Data)')
SPEC = releases.Spec(dataset='openbookqa', family=answers_lib.Family.LETTER,
                     exemplars='openbookqa')
_LETTERS = 'ABCD'


def _score(value, name: str) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    raise ValueError(f'field {name!r} must be a number, got {value!r}'
                     ) from None


def _row(stem: str, texts: Sequence[str], answer_key: str, fact: str,
         author: str) -> releases.Row:
  if len(texts) != len(_LETTERS):
    raise ValueError(f"field 'question.choices': expected 4 options, got "
                     f'{len(texts)}')
  if answer_key not in _LETTERS:
    raise ValueError(f"field 'answerKey': {answer_key!r} is not A-D")
  return {'id': releases.content_id('obqa', stem, *texts, fact, author),
          'question': prompts.choice_question(stem, texts),
          'answer': answer_key}


def _parse_file_row(_: str, raw: dict) -> releases.Row:
  choices = releases.field(raw, 'question.choices', list)
  labels = [c.get('label') if isinstance(c, dict) else None for c in choices]
  if labels != list(_LETTERS):
    raise ValueError(f"field 'question.choices': labels {labels} are not "
                     'A, B, C, D')
  texts = [releases.field(c, 'text') for c in choices]
  for name in ('humanScore', 'clarity'):
    _score(raw.get(name), name)
  return _row(releases.field(raw, 'question.stem'), texts,
              releases.field(raw, 'answerKey'), releases.field(raw, 'fact1'),
              releases.field(raw, 'turkIdAnonymized'))


def _convert_tfds(_: str, ex: dict) -> releases.Row:
  """A decoded `openbookqa` example (options by position, key a ClassLabel)."""
  q = ex['question']
  return _row(releases.text(q['stem']),
              [releases.text(q[f'choice_{l}']) for l in _LETTERS],
              _LETTERS[int(ex['answerKey'])], releases.text(ex['fact1']),
              releases.text(ex['turkIdAnonymized']))


def register(data_dir: str | None = None, source: str = 'files',
             tfds_data_dir: str | None = None) -> str:
  """Registers `lmsi_openbookqa_v1` and its pool; returns the task name.

  Arguments as in `releases.release_splits`, which names a missing file.
  """
  splits = releases.release_splits(
      source, data_dir=data_dir, tfds_data_dir=tfds_data_dir, layout=LAYOUT,
      files={s: os.path.join('openbookqa', 'Additional', f'{f}_complete.jsonl')
             for s, f in SPLIT_FILES.items()},
      tfds_builder=TFDS_NAME, parse=_parse_file_row, convert=_convert_tfds)
  releases.add_benchmark(TASK, splits, SPEC, pool_split='train')
  return TASK
