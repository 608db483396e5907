"""Self-generated exemplars: parsing a zero-shot path, picking the most
confident, direct exemplars without reasoning, no gold, resume
(lmsi.self_inputs.exemplar_gen)."""

import dataclasses
import filecmp
import json
import os

import pytest

from lmsi.checkpoints import artifact
from lmsi.self_inputs import exemplar_gen
from lmsi.data import prompts
from lmsi.data import records
from lmsi.sampling import generation as sampling
from lmsi.data import taskspec
from lmsi.vocab import simple as vocab_lib
from tests.conftest import REPO
from tests.conftest import garbage_gold_copy
from tests.conftest import write_arith_data


def test_exemplar_of_cuts_after_the_answer_and_writes_it_as_prompts_do():
  ex = exemplar_gen.exemplar_of(
      'Kim has 4 mugs. She buys 3. How many mugs now?',
      ' So 4 + 3 = 7. the answer is 7.0. Q: more text', 'number')
  assert ex == prompts.Exemplar(
      question='Kim has 4 mugs. She buys 3. How many mugs now?',
      reasoning='So 4 + 3 = 7. The answer is 7.', answer='7')
  assert exemplar_gen.has_reasoning(ex)
  jump = exemplar_gen.exemplar_of('q?', ' The answer is 12.', 'number')
  assert jump.reasoning == 'The answer is 12.'
  assert not exemplar_gen.has_reasoning(jump)
  assert exemplar_gen.exemplar_of('q?', ' 4 + 3 = 7.', 'number') is None
  q = prompts.choice_question('Which is a metal?', ['wood', 'iron'])
  letter = exemplar_gen.exemplar_of(q, ' Iron is a metal. The answer is (B).',
                                    'letter')
  assert (letter.answer, letter.reasoning) == (
      '(b)', 'Iron is a metal. The answer is (b).')


def _cand(cid, conf, usable=True):
  return exemplar_gen.Candidate(id=cid, question='q', text='t', answer='1',
                                confidence=conf if usable else None,
                                usable=usable)


def test_select_takes_the_most_confident_usable_ties_in_order():
  cands = [_cand('a', 0.5), _cand('b', 0.9), _cand('c', None, usable=False),
           _cand('d', 0.9), _cand('e', 0.7), _cand('f', -0.1)]
  assert [c.id for c in exemplar_gen.select(cands, 3)] == ['b', 'd', 'e']
  assert [c.id for c in exemplar_gen.select(cands, 9)] == [
      'b', 'd', 'e', 'a', 'f']


def test_direct_exemplars_are_the_generated_ones_without_reasoning():
  made = (exemplar_gen.exemplar_of('Ann has 2 pens. She buys 1. How many?',
                                   ' So 2 + 1 = 3. The answer is 3.', 'number'),
          exemplar_gen.exemplar_of('Ben has 5 cups. He sells 4. How many?',
                                   ' First 5 - 4 = 1. The answer is 1.',
                                   'number'))
  direct = prompts.render(prompts.Format.DIRECT_FEWSHOT, 'x?', made)
  cot = prompts.render(prompts.Format.COT_FEWSHOT, 'x?', made)
  assert 'So 2 + 1' not in direct and 'First 5' not in direct
  assert 'A: The answer is 3.\n\n' in direct and 'A: The answer is 1.' in direct
  assert 'A: So 2 + 1 = 3. The answer is 3.\n\n' in cot


def test_bad_config_is_named():
  with pytest.raises(ValueError, match='confidence must be one of'):
    exemplar_gen.ExemplarGenConfig(confidence='maybe')
  with pytest.raises(ValueError, match='vote needs'):
    exemplar_gen.ExemplarGenConfig(source='vote', confidence='logprob')
  with pytest.raises(ValueError, match='num_exemplars'):
    exemplar_gen.ExemplarGenConfig(num_questions=2, num_exemplars=3)


@pytest.fixture(scope='module')
def demo_base():
  return artifact.load(os.path.join(REPO, 'assets', 'demo_base'))


def _questions(data_dir):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  arith_tasks.register(str(data_dir))
  return taskspec.load_questions(arith_tasks.TASK, 'unlabeled')


def _generate(base, questions, out, confidence='vote_share', source='greedy'):
  # The demo base's greedy zero-shot paths have no reasoning ("The answer
  # is N."), so only the 'vote' source can require it.
  cfg = exemplar_gen.ExemplarGenConfig(
      num_questions=10, num_exemplars=2, confidence=confidence,
      source=source, require_reasoning=source == 'vote',
      sampling=sampling.SamplingConfig(num_samples=4, max_decode_steps=56))
  return exemplar_gen.generate_exemplars(
      model_config=base.model_config, params=base.params,
      vocab=vocab_lib.load(base.vocab_path), questions=questions, config=cfg,
      output_dir=str(out))


@pytest.mark.parametrize('confidence, source', [
    ('vote_share', 'greedy'), ('logprob', 'greedy'), ('vote_share', 'vote')])
def test_demo_base_exemplars_no_gold_most_confident_and_resume(
    demo_base, tmp_path, confidence, source):
  write_arith_data(tmp_path / 'clean', sizes={
      'seed': 2, 'seed_dev': 2, 'unlabeled': 12, 'test': 2})
  garbage_gold_copy(tmp_path / 'clean', tmp_path / 'garbage', 'unlabeled')
  a = _generate(demo_base, _questions(tmp_path / 'clean'), tmp_path / 'a',
                confidence, source)
  b = _generate(demo_base, _questions(tmp_path / 'garbage'), tmp_path / 'b',
                confidence, source)
  assert a == b and len(a) == 2
  for name in ('exemplars.jsonl', 'candidates.jsonl'):
    assert filecmp.cmp(tmp_path / 'a' / name, tmp_path / 'b' / name,
                       shallow=False), name
    assert 'GARBAGE' not in open(tmp_path / 'b' / name).read()
  cands = list(records.read_jsonl(str(tmp_path / 'a' / 'candidates.jsonl'),
                                  exemplar_gen.Candidate))
  assert len(cands) == 10 and sum(c.chosen for c in cands) == 2
  chosen = [c for c in cands if c.chosen]
  best = max(c.confidence for c in cands if c.usable)
  assert max(c.confidence for c in chosen) == best
  assert min(c.confidence for c in chosen) >= max(
      [c.confidence for c in cands if c.usable and not c.chosen] + [-1e9])
  if confidence == 'vote_share':
    assert all(0.0 <= c.confidence <= 1.0 for c in chosen)
  else:
    assert all(c.confidence <= 0.0 for c in chosen)  # mean log-prob
  assert {e.question for e in a} == {c.question for c in chosen}
  for e in a:
    assert e.reasoning.endswith(f'The answer is {e.answer}.')
    assert exemplar_gen.has_reasoning(e) or source == 'greedy'
  manifest = json.load(open(tmp_path / 'a' / exemplar_gen.MANIFEST_FILE))
  assert manifest['config']['confidence'] == confidence
  assert manifest['counts']['chosen'] == 2
  # Resume: read back without the model.
  none = dataclasses.replace(demo_base, params=None)
  assert _generate(none, [], tmp_path / 'a', confidence, source) == a
  assert exemplar_gen.read_exemplars(str(tmp_path / 'a')) == a


def test_too_few_usable_answers_is_an_error(demo_base, tmp_path):
  write_arith_data(tmp_path / 'd', sizes={
      'seed': 2, 'seed_dev': 2, 'unlabeled': 4, 'test': 2})
  cfg = exemplar_gen.ExemplarGenConfig(
      num_questions=4, num_exemplars=2, confidence='logprob',
      sampling=sampling.SamplingConfig(num_samples=1, max_decode_steps=2))
  with pytest.raises(ValueError, match='usable exemplars'):
    exemplar_gen.generate_exemplars(
        model_config=demo_base.model_config, params=demo_base.params,
        vocab=vocab_lib.load(demo_base.vocab_path),
        questions=_questions(tmp_path / 'd'), config=cfg,
        output_dir=str(tmp_path / 'out'))
