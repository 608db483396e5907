"""Answer match modes against lm-evaluation-harness's own gsm8k_cot output.

tests/testdata/answer_match_golden.jsonl holds realistic GSM8K CoT outputs,
each with lm-eval's filtered response and exact_match verdict per filter as
lm-eval 0.4.13 itself produced them (docs/answers.md says how) and the
paper rule's answer. Every row must be reproduced exactly, and the agreement
table in docs/answers.md must be the one these rows give.
"""

import json
import os

import pytest

from lmsi.voting import match as answer_match
from lmsi.evaluation import evaluator as evaluate
from lmsi.data import prompts
from lmsi.sampling import generation as sampling
from lmsi.sampling import batched as stage

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GOLDEN = os.path.join(_REPO, 'tests', 'testdata', 'answer_match_golden.jsonl')
_DOC = os.path.join(_REPO, 'docs', 'answers.md')
_LM_EVAL = (answer_match.LM_EVAL_STRICT, answer_match.LM_EVAL_FLEXIBLE)


def _rows():
  with open(_GOLDEN, encoding='utf-8') as f:
    return [json.loads(line) for line in f]


ROWS = _rows()


def agreement_table(rows) -> str:
  """Markdown: accuracy per mode, % of rows where two modes' verdicts agree."""
  modes = answer_match.MODES
  lines = ['| mode | accuracy | ' + ' | '.join(f'vs {m}' for m in modes) + ' |',
           '|---|---:|' + '---:|' * len(modes)]
  for a in modes:
    acc = 100.0 * sum(r[a]['correct'] for r in rows) / len(rows)
    agree = [100.0 * sum(r[a]['correct'] == r[b]['correct'] for r in rows)
             / len(rows) for b in modes]
    lines.append(f'| {a} | {acc:.1f}% | '
                 + ' | '.join(f'{x:.1f}%' for x in agree) + ' |')
  return '\n'.join(lines)


def test_golden_set_size_and_known_cases():
  assert len(ROWS) >= 100
  assert len({r['id'] for r in ROWS}) == len(ROWS)
  texts = {r['text']: r for r in ROWS}
  so = texts['Tom has 2 bags with 2 apples each, so 2 x 2 = 4. So, the '
             'answer is 4.']
  assert so['paper']['correct'] and not so['lm_eval_strict']['correct']
  half = next(r for r in ROWS if 'So the answer is 1/2 x 2 = 2 cups' in
              r['text'])
  assert half['paper']['extracted'] == '0.5'  # the fraction, not "1"
  assert half['lm_eval_strict']['extracted'] == '2'


@pytest.mark.parametrize('row', ROWS, ids=[r['id'] for r in ROWS])
def test_row_reproduces_lm_eval(row):
  for mode in _LM_EVAL:
    want = row[mode]
    filtered = answer_match.lm_eval_filter(row['text'], mode)
    assert filtered == want['extracted'], mode
    assert answer_match.lm_eval_exact_match(filtered, row['gold']) is want[
        'correct'], mode
    key = answer_match.extract(row['text'], mode)
    assert answer_match.is_correct(key, row['gold'], mode) is want['correct']
    assert (key is None) == (filtered == answer_match.LM_EVAL_FALLBACK)


@pytest.mark.parametrize('row', ROWS, ids=[r['id'] for r in ROWS])
def test_row_paper_rule(row):
  key = answer_match.extract(row['text'], answer_match.PAPER)
  assert key == row['paper']['extracted']
  assert answer_match.is_correct(key, row['gold'], 'paper') is row['paper'][
      'correct']


def test_agreement_table_matches_docs():
  table = agreement_table(ROWS)
  print(f'\n{len(ROWS)} golden outputs\n{table}')
  with open(_DOC, encoding='utf-8') as f:
    assert table in f.read(), 'docs/answers.md: stale agreement table'
  verdicts = {m: [r[m]['correct'] for r in ROWS] for m in answer_match.MODES}
  # The modes really differ on these outputs: none is a relabelling of another.
  for a in answer_match.MODES:
    for b in answer_match.MODES:
      if a != b:
        assert verdicts[a] != verdicts[b]


def test_accuracy_over_golden_set():
  texts, golds = [r['text'] for r in ROWS], [r['gold'] for r in ROWS]
  for mode in answer_match.MODES:
    want = sum(r[mode]['correct'] for r in ROWS) / len(ROWS)
    assert answer_match.accuracy(texts, golds, mode) == pytest.approx(want)


def test_lm_eval_keys_and_scoring():
  flexible = answer_match.LM_EVAL_FLEXIBLE
  # One vote key for "18." and "$18": what lm-eval's exact_match compares.
  assert answer_match.extract('so 18.', flexible) == '18'
  assert answer_match.extract('costs $18', flexible) == '18'
  assert answer_match.extract('no digits', flexible) is None
  assert answer_match.extract('The answer is 3.50.', 'lm_eval_strict') == '3.50'
  assert not answer_match.is_correct('3.50', '3.5', 'lm_eval_strict')
  assert answer_match.is_correct('18', 'She makes 9 * 2 = 18.\n#### 18',
                                 flexible)
  assert not answer_match.is_correct(None, '18', flexible)
  assert not answer_match.is_correct('18', None, flexible)
  assert answer_match.lm_eval_normalize('$1,200.') == '1200'
  assert answer_match.lm_eval_target(' x #### 72 ') == '72'
  assert answer_match.accuracy([], [], flexible) == 0.0


@pytest.mark.parametrize('modes,family,match', [
    ((), None, 'answer_match is empty'),
    (('paper', 'lm_eval'), None, "mode 'lm_eval' is unknown; expected one of"),
    (('paper', 'paper'), None, 'names a mode twice'),
    (('paper', 'lm_eval_strict'), 'letter',
     "'lm_eval_strict' .* the 'letter' answer family supports only 'paper'"),
    (('lm_eval_flexible',), 'nli', "the 'nli' answer family"),
])
def test_validate_modes_errors(modes, family, match):
  with pytest.raises(ValueError, match=match):
    answer_match.validate_modes(modes, family)


def test_validate_modes_accepts():
  assert answer_match.validate_modes('lm_eval_strict') == ('lm_eval_strict',)
  assert answer_match.validate_modes(['paper'], 'letter') == ('paper',)
  assert answer_match.validate_modes(answer_match.MODES, 'number') == (
      answer_match.MODES)
  with pytest.raises(ValueError, match='is not an lm-eval mode'):
    answer_match.lm_eval_filter('The answer is 4.', 'paper')
  with pytest.raises(ValueError, match="the 'yesno' answer family"):
    answer_match.extract('The answer is yes.', 'lm_eval_strict', 'yesno')
  with pytest.raises(ValueError, match='2 generations but 1 gold'):
    answer_match.accuracy(['a', 'b'], ['1'], 'paper')


def test_eval_config_validates_and_normalises():
  assert evaluate.EvalConfig().answer_match == ('paper',)
  assert evaluate.EvalConfig(
      answer_match='lm_eval_flexible').answer_match == ('lm_eval_flexible',)
  with pytest.raises(ValueError, match="'strict' is unknown"):
    evaluate.EvalConfig(answer_match=('strict',))


_GREEDY = {  # question -> (direct, greedy CoT) generations
    'q1': ('18', 'So, the answer is 18.'),
    'q2': ('The answer is $5', 'The answer is 5. Then 7 more.'),
    'q3': ('12.0', 'The answer is 1/2 x 2 = 2 cups.'),
}


def _fake_sampling(monkeypatch):
  """evaluate() without a model: fixed greedy texts, 2 CoT samples each."""
  monkeypatch.setattr(stage, 'exemplar_prefix', lambda *a, **k: [])

  def sample_prompts(model_config, params, texts, ids, cfg, **kwargs):
    del model_config, params, texts, kwargs
    if cfg.num_samples > 1:
      return [[(_GREEDY[i][1], 0.0)] * cfg.num_samples for i in ids]
    direct = cfg.max_decode_steps == 7
    return [[(_GREEDY[i][0 if direct else 1], 0.0)] for i in ids]

  monkeypatch.setattr(stage, 'sample_prompts', sample_prompts)


def _evaluate(modes, family='number', tmp_path=None):
  examples = [{'id': 'q1', 'question': 'Q1?', 'answer': '18'},
              {'id': 'q2', 'question': 'Q2?', 'answer': '5'},
              {'id': 'q3', 'question': 'Q3?', 'answer': '2'}]
  return evaluate.evaluate(
      model_config=None, params=None, examples=examples,
      exemplars=[prompts.Exemplar(question='What is 2 + 2?',
                                  reasoning='2 + 2 = 4. The answer is 4.',
                                  answer='4')],
      config=evaluate.EvalConfig(
          ks=(1, 2), direct_decode_steps=7, answer_match=modes,
          sampling=sampling.SamplingConfig(num_samples=2)),
      vocab=None, answer_family=family,
      output_dir=tmp_path and str(tmp_path))


def test_evaluate_reports_every_mode(monkeypatch, tmp_path):
  _fake_sampling(monkeypatch)
  out = _evaluate(answer_match.MODES, tmp_path=tmp_path)
  third, two_thirds = pytest.approx(1 / 3), pytest.approx(2 / 3)
  assert out['answer_match'] == 'paper'
  assert out['accuracy']['direct'] == third
  assert out['accuracy']['greedy_cot'] == two_thirds
  assert out['accuracy_by_match'] == {
      'paper': {'direct': third, 'greedy_cot': two_thirds},
      'lm_eval_strict': {'direct': 0.0, 'greedy_cot': third},
      'lm_eval_flexible': {'direct': two_thirds, 'greedy_cot': two_thirds}}
  with open(tmp_path / 'eval.json', encoding='utf-8') as f:
    assert json.load(f)['accuracy_by_match']['lm_eval_strict'] == {
        'direct': 0.0, 'greedy_cot': pytest.approx(1 / 3)}


def test_evaluate_first_mode_drives_vote(monkeypatch, tmp_path):
  _fake_sampling(monkeypatch)
  out = _evaluate(('lm_eval_flexible', 'paper'), tmp_path=tmp_path)
  assert out['answer_match'] == 'lm_eval_flexible'
  assert list(out['accuracy_by_match']) == ['lm_eval_flexible', 'paper']
  assert out['accuracy']['direct'] == pytest.approx(2 / 3)
  assert out['accuracy']['greedy_cot'] == pytest.approx(2 / 3)
  assert out['accuracy']['maj@2'] == pytest.approx(2 / 3)
  with open(tmp_path / 'predictions.jsonl', encoding='utf-8') as f:
    majorities = [json.loads(line)['majority'] for line in f]
  assert majorities == ['18', '7', '2']


def test_evaluate_default_is_paper(monkeypatch, tmp_path):
  _fake_sampling(monkeypatch)
  out = _evaluate(('paper',), tmp_path=tmp_path)
  assert list(out['accuracy_by_match']) == ['paper']
  assert out['accuracy']['maj@2'] == pytest.approx(2 / 3)
  with open(tmp_path / 'predictions.jsonl', encoding='utf-8') as f:
    majorities = [json.loads(line)['majority'] for line in f]
  assert majorities == ['18', '5', '0.5']  # "1/2" is 0.5, never 1


def test_evaluate_rejects_lm_eval_for_letters(monkeypatch):
  _fake_sampling(monkeypatch)
  with pytest.raises(ValueError, match="the 'letter' answer family"):
    _evaluate(('paper', 'lm_eval_strict'), family='letter')
