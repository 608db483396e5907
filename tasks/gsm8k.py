"""GSM8K as SeqIO tasks: grade-school math word problems (LMSI stage 1).

`register(data_dir=None, source='files')` registers
  * `lmsi_gsm8k_v1`: splits train (7473) and test (1319); features `id`,
    `question` (verbatim), `answer` (the number after "#### ", with $ and
    thousands commas stripped: "#### 1,080" -> "1080"); accuracy metric.
  * `lmsi_gsm8k_pool_v1`: the train questions without gold, served as
    'train' (paper App. A: the whole train set is the unlabeled pool).

Sources: 'files' reads `<data_dir>/gsm8k/{train,test}.jsonl` as published in
openai/grade-school-math; 'tfds' reads the `gsm8k` builder. Ids are
`gsm8k-<split>-<12 hex digits of sha256(question)>`: the builder drops line
numbers and reorders examples, so a line index would not be stable.

`rationale(solution)` writes an official solution in the paper's CoT style
(calculator annotations "<<48/2=24>>" removed, "The answer is N." last); the
GSM8K exemplars in `lmsi.data.exemplars` are such rationales of train questions.
"""

from __future__ import annotations

import os
import re

from lmsi.data import answers as answers_lib
from tasks import releases

TASK = 'lmsi_gsm8k_v1'
POOL = 'lmsi_gsm8k_pool_v1'
SPLITS = ('train', 'test')
TFDS_NAME = 'gsm8k'
LAYOUT = '<data_dir>/gsm8k/{train,test}.jsonl (openai/grade-school-math)'
SPEC = releases.Spec(dataset='gsm8k', family=answers_lib.Family.NUMBER,
                     exemplars='gsm8k')
_CALC = re.compile(r'<<[^>]*>>')
_FINAL = '#### '


def final_answer(solution: str) -> str:
  """The normalised number of a solution's last "#### N" line.

  Raises:
    ValueError: if there is no "#### " line or N is not a number.
  """
  if _FINAL not in solution:
    raise ValueError(f'field \'answer\' has no "{_FINAL}" line')
  return releases.gold(solution.rsplit(_FINAL, 1)[1].strip(),
                       answers_lib.Family.NUMBER)


def rationale(solution: str) -> str:
  """An official solution as one CoT paragraph ending "The answer is N."."""
  body = solution.rsplit(_FINAL, 1)[0]
  steps = []
  for line in body.splitlines():
    step = ' '.join(_CALC.sub('', line).split())
    if step:
      steps.append(step if step[-1] in '.!?' else step + '.')
  steps.append(f'{answers_lib.ANSWER_PREFIX} {final_answer(solution)}.')
  return ' '.join(steps)


def _row(split: str, question: str, solution: str) -> releases.Row:
  return {'id': releases.content_id(f'gsm8k-{split}', question),
          'question': question, 'answer': final_answer(solution)}


def _parse_file_row(split: str, raw: dict) -> releases.Row:
  return _row(split, releases.field(raw, 'question'),
              releases.field(raw, 'answer'))


def _convert_tfds(split: str, ex: dict) -> releases.Row:
  return _row(split, releases.text(ex['question']), releases.text(ex['answer']))


def register(data_dir: str | None = None, source: str = 'files',
             tfds_data_dir: str | None = None) -> str:
  """Registers `lmsi_gsm8k_v1` and its pool; returns the task name.

  Arguments as in `releases.release_splits`, which names a missing file.
  """
  splits = releases.release_splits(
      source, data_dir=data_dir, tfds_data_dir=tfds_data_dir, layout=LAYOUT,
      files={s: os.path.join('gsm8k', f'{s}.jsonl') for s in SPLITS},
      tfds_builder=TFDS_NAME, parse=_parse_file_row, convert=_convert_tfds)
  releases.add_benchmark(TASK, splits, SPEC, pool_split='train')
  return TASK
