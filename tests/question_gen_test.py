"""Self-generated questions: prompts, malformed lines, duplicates, no gold,
resume (lmsi.question_gen)."""

import dataclasses
import filecmp
import json
import os

import pytest

from lmsi.demo import arithmetic
from lmsi.checkpoints import artifact
from lmsi.data import exemplars as exemplars_lib
from lmsi.self_inputs import question_filter
from lmsi.self_inputs import questions as question_gen
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.sampling import generation as sampling
from lmsi.data import taskspec
from lmsi.vocab import simple as vocab_lib
from tests.conftest import REPO
from tests.conftest import garbage_gold_copy
from tests.conftest import write_arith_data

SEEDS = [records.Question(task='t', id=f's{i}', question=q) for i, q in
         enumerate(['Ann has 14 pens. She buys 3. How many pens now?',
                    'Ben has 9 cups. He sells 5. He gets 2. How many cups now?',
                    'Dee has 3 nuts. She wins 1. How many nuts now?'])]


@pytest.fixture(scope='module')
def vocab():
  return arithmetic.vocabulary()


def _gen(*texts):
  return [question_filter.Generated(prompt=0, sample=i, text=t, logprob=-1.0)
          for i, t in enumerate(texts)]


def test_prompts_hold_seeds_in_random_order_and_end_with_q():
  cfg = question_gen.QuestionGenConfig(num_prompts=20, seeds_per_prompt=4)
  seeds = [f'Q{i} has {i} pens. How many pens now?' for i in range(10)]
  prompts = question_gen.build_prompts(seeds, cfg)
  assert len(prompts) == 20 and prompts == question_gen.build_prompts(
      seeds, cfg)
  for p in prompts:
    assert p.endswith('\n\nQ:') and p.count('Q: ') == 4
    assert all(line[3:] in seeds for line in p.split('\n\n')[:-1])
  assert len(set(prompts)) > 15  # random choice and order
  first_seed = {p.split('\n\n')[0] for p in prompts}
  assert len(first_seed) > 3
  # More prompts extend, never reshuffle, the first ones.
  more = dataclasses.replace(cfg, num_prompts=30)
  assert question_gen.build_prompts(seeds, more)[:20] == prompts
  line = dataclasses.replace(cfg, separator='\n')
  assert question_gen.build_prompts(seeds, line)[0].count('\n\n') == 0


@pytest.mark.parametrize('text, why', [
    ('', 'empty'),
    ('   ', 'empty'),
    ('The answer is 7.', 'not_a_question'),
    ('Ann has 3 pens. How many pens now? A: 3', 'not_a_question'),
    ('Ann has 3 pens. She buys 4. How many pens now', 'no_question_mark'),
    ('Ann has 3 zebras. How many zebras now?', 'unknown_words'),
    ('Ann has 3 pens.' + ' She buys 1.' * 30 + ' How many pens now?',
     'too_long'),
    ('Ann has 3 pens. She buys 4. How many pens now?', None),
])
def test_malformed_reason(vocab, text, why):
  assert question_filter.malformed_reason(text, vocab, 64) == why


def test_unknown_words_need_a_word_vocabulary():
  text = 'Ann has 3 zebras. How many zebras now?'
  assert question_filter.malformed_reason(text, vocab_lib.ByteVocab(),
                                       200) is None


def test_exact_and_near_duplicates_of_seeds_and_of_each_other(vocab):
  new = 'Eve has 8 jars. She finds 2. She loses 1. How many jars now?'
  other = 'Gus has 20 keys. He eats 9. How many keys now?'
  lines = _gen(
      ' Ann has 14 pens. She buys 3. How many pens now? ',  # seed, exact
      'Ann has 14 pens. She buys 4. How many pens now?',  # seed, near
      new,
      new + ' ',  # exact duplicate of the line before
      new.replace('loses 1', 'loses 2'),  # near duplicate
      other,
      'Ann has 3 pens',  # malformed before any duplicate check
  )
  got = question_filter.filter_candidates(
      lines, SEEDS, vocab, max_tokens=64, threshold=0.9)
  assert [(c.status, c.duplicate_of) for c in got] == [
      ('seed_duplicate', 's0'), ('seed_duplicate', 's0'), ('new', None),
      ('exact_duplicate', 'gen-00002'), ('near_duplicate', 'gen-00002'),
      ('new', None), ('malformed:no_question_mark', None)]
  assert [c.id for c in got] == [f'gen-{i:05d}' for i in range(7)]
  counts = question_filter.count(got)
  assert counts['seed_duplicates'] == 2 and counts['exact_duplicates'] == 1
  assert counts['near_duplicates'] == 1 and counts['malformed'] == 1
  # A stricter threshold keeps the one-number variants as new questions.
  strict = question_filter.filter_candidates(
      lines, SEEDS, vocab, max_tokens=64, threshold=1.0)
  assert [c.status for c in strict][:5] == [
      'seed_duplicate', 'new', 'new', 'exact_duplicate', 'new']


def test_warmup_examples_continue_a_list_of_questions():
  cfg = question_gen.QuestionGenConfig(num_seed_questions=3,
                                       seeds_per_prompt=2)
  qs = [records.Question(task='t', id=f'q{i}', question=f'Q{i} has {i} pens?')
        for i in range(6)]
  got = question_gen.warmup_examples(qs, cfg, 20)
  assert got == question_gen.warmup_examples(qs, cfg, 30)[:20]
  by_id = {q.id: q.question for q in qs}
  for ex in got:
    shown = [line[3:] for line in ex.inputs.split('\n\n')[:-1]]
    assert len(shown) == 2 and ex.inputs.endswith('\n\nQ:')
    assert ex.targets == ' ' + by_id[ex.id] and by_id[ex.id] not in shown
    assert set(shown) <= set(by_id.values())
    assert ex.format == question_gen.WARMUP_FORMAT
  # The prompt is the one generation continues.
  assert got[0].inputs[:3] == 'Q: ' and len({e.inputs for e in got}) > 10
  with pytest.raises(ValueError, match='more than seeds_per_prompt=2'):
    question_gen.warmup_examples(qs[:2], cfg, 1)


def test_bad_config_is_named():
  with pytest.raises(ValueError, match='seeds_per_prompt'):
    question_gen.QuestionGenConfig(num_seed_questions=3, seeds_per_prompt=4)
  with pytest.raises(ValueError, match='near_duplicate_threshold'):
    question_gen.QuestionGenConfig(near_duplicate_threshold=0.0)


@pytest.fixture(scope='module')
def demo_base():
  return artifact.load(os.path.join(REPO, 'assets', 'demo_base'))


def _seed_questions(data_dir):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  arith_tasks.register(str(data_dir))
  return taskspec.load_questions(arith_tasks.TASK, 'seed', 10)


def _pool(base, seeds, out):
  # The demo base never learned to write questions (its loss is on targets
  # only), so its lines are mostly malformed; include_seeds answers the
  # seeds too, so the pool is not empty.
  cfg = question_gen.QuestionGenConfig(
      num_prompts=4, samples_per_prompt=4, max_question_tokens=40,
      include_seeds=True, min_vote_share=0.5,
      answer_sampling=sampling.SamplingConfig(num_samples=4,
                                              max_decode_steps=56))
  return question_gen.generate_pool(
      model_config=base.model_config, params=base.params,
      vocab=vocab_lib.load(base.vocab_path), seed_questions=seeds,
      exemplars=exemplars_lib.get('arithmetic'), config=cfg,
      output_dir=str(out), task='lmsi_arith_selfq_v1')


def test_garbage_gold_leaves_the_pool_byte_identical_and_it_resumes(
    demo_base, tmp_path):
  write_arith_data(tmp_path / 'clean', sizes={
      'seed': 12, 'seed_dev': 2, 'unlabeled': 2, 'test': 2})
  garbage_gold_copy(tmp_path / 'clean', tmp_path / 'garbage', 'seed')
  a = _pool(demo_base, _seed_questions(tmp_path / 'clean'), tmp_path / 'a')
  b = _pool(demo_base, _seed_questions(tmp_path / 'garbage'), tmp_path / 'b')
  assert a, 'the demo base answers its easy seed questions confidently'
  assert a == b
  for name in ('questions.jsonl', 'candidates.jsonl', 'generated.jsonl',
               'answers/samples-00000-of-00001.jsonl'):
    assert filecmp.cmp(tmp_path / 'a' / name, tmp_path / 'b' / name,
                       shallow=False), name
  for name in ('questions.jsonl', 'candidates.jsonl',
               'question_gen_manifest.json'):
    assert 'GARBAGE' not in open(tmp_path / 'b' / name,
                                 encoding='utf-8').read()
  manifest = json.load(open(tmp_path / 'a' / 'question_gen_manifest.json'))
  counts = manifest['counts']
  assert counts['generated'] == 16 and counts['pool'] == len(a)
  assert counts['answered'] + counts['malformed'] + counts[
      'seed_duplicates'] + counts['exact_duplicates'] + counts[
          'near_duplicates'] == counts['generated']
  assert manifest['config']['min_vote_share'] == 0.5
  assert [s['id'] for s in manifest['seeds']] == [
      f'seed-{i:05d}' for i in range(10)]
  # Resume: a finished dir is read back without the model (params=None
  # would fail in any sampling call); an unfinished one resumes from its
  # finished files and writes the same bytes.
  base = dataclasses.replace(demo_base, params=None)
  assert _pool(base, [], tmp_path / 'a') == a
  before = open(tmp_path / 'a' / 'questions.jsonl', 'rb').read()
  os.remove(tmp_path / 'a' / ('questions.jsonl' + fileio.MARKER))
  assert _pool(base, _seed_questions(tmp_path / 'clean'),
               tmp_path / 'a') == a
  assert open(tmp_path / 'a' / 'questions.jsonl', 'rb').read() == before


def test_too_few_seeds_is_an_error(demo_base, tmp_path):
  with pytest.raises(ValueError, match='num_seed_questions=10'):
    _pool(demo_base, SEEDS, tmp_path)
