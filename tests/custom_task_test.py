"""docs/tasks.md "Register your own task": its code, run as written."""

import json
import os
import re
import sys
import types

import gin
import pytest

from lmsi.data import answers
from lmsi.data import exemplars
from lmsi.runtime import gin_flags
from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import taskspec
from tests.conftest import REPO


def _readme_block(lang: str) -> str:
  """The first ```lang block of docs/tasks.md's "Register your own task"."""
  with open(os.path.join(REPO, 'docs', 'tasks.md'), encoding='utf-8') as f:
    section = f.read().split('## Register your own task', 1)[1]
  blocks = re.findall(r'^```(\w*)\n(.*?)^```$', section, re.DOTALL | re.M)
  return next(body for block_lang, body in blocks if block_lang == lang)


@pytest.fixture(name='strategyqa')
def fixture_strategyqa(tmp_path):
  """`tasks/strategyqa.py` from docs/tasks.md, as `tasks.strategyqa`."""
  code = _readme_block('python')
  assert len(code.splitlines()) < 30
  module = types.ModuleType('tasks.strategyqa')
  # pylint: disable-next=exec-used
  exec(compile(code, 'docs/tasks.md:strategyqa', 'exec'), module.__dict__)
  import tasks  # pylint: disable=g-import-not-at-top
  sys.modules['tasks.strategyqa'] = module
  tasks.strategyqa = module
  root = tmp_path / 'strategyqa'
  root.mkdir()
  rows = {'train': [('q1', 'Could a llama birth twice during War in Vietnam '
                     '(1945-46)?', False),
                    ('q2', 'Is a Boeing 737 cost covered by Wonder Woman '
                     '(2017 film) box office receipts?', True)],
          'test': [('t1', 'Did Aristotle use a laptop?', False)]}
  for split, split_rows in rows.items():
    with open(root / f'{split}.jsonl', 'w', encoding='utf-8') as f:
      for qid, question, answer in split_rows:
        f.write(json.dumps({'qid': qid, 'question': question,
                            'answer': answer}) + '\n')
  yield module, str(tmp_path)
  del sys.modules['tasks.strategyqa']
  del tasks.strategyqa
  del exemplars.SETS['strategyqa']


def test_readme_task_registers_and_prompts(strategyqa):
  import seqio  # pylint: disable=g-import-not-at-top
  module, data_dir = strategyqa
  assert module.register(data_dir) == 'lmsi_strategyqa_v1'
  train = inputs.load_split('lmsi_strategyqa_v1', 'train')
  assert [(r['id'], r['answer']) for r in train] == [('q1', 'no'),
                                                    ('q2', 'yes')]
  pool = inputs.load_split('lmsi_strategyqa_pool_v1', 'train')
  assert set(pool[0]) == {'id', 'question'}
  prompt = prompts.render(prompts.Format.COT_FEWSHOT, train[0]['question'],
                          exemplars.get('strategyqa'))
  assert prompt.startswith('Q: Do hamsters provide food for any animals?\n'
                           'A: Hamsters are prey animals.')
  assert prompt.endswith(f"Q: {train[0]['question']}\nA:")
  task = seqio.get_mixture_or_task('lmsi_strategyqa_v1')
  preds = [task.postprocess_fn(t) for t in
           ('Llamas carry for 11 months. The answer is no.', 'The answer is'
            ' maybe.')]
  assert preds == ['no', None]
  assert task.metric_fns[0](['no', 'yes'], preds) == {'accuracy': 50.0}
  assert answers.answer_text('yes', 'yesno') == 'yes'


def test_readme_gin_snippet_names_the_task(strategyqa):
  _, data_dir = strategyqa
  snippet = os.path.join(data_dir, 'strategyqa.gin')
  with open(snippet, 'w', encoding='utf-8') as f:
    f.write(_readme_block(''))
  gin.clear_config()
  try:
    gin_flags.parse([
        f'--gin_file={REPO}/gin/models/decoder_tiny.gin',
        f'--gin_file={REPO}/gin/runs/sample.gin', f'--gin_file={snippet}',
        f'--gin.DATA_DIR="{data_dir}"', '--gin.OUTPUT_DIR="/tmp/o"',
        '--gin.INITIAL_CHECKPOINT_PATH="/tmp/i"'])
    name = gin_flags.resolve(
        gin.query_parameter('lmsi.sample.sample_task.task_name'))
  finally:
    gin.clear_config()
  assert name == 'lmsi_strategyqa_v1'
  family, exemplar_set, _ = taskspec.task_settings(name)
  assert family == answers.Family.YESNO and len(exemplar_set) == 1
