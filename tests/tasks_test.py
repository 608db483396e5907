"""SeqIO registrations: the arithmetic task, its formats, self-gen mixtures."""

import json

import numpy as np
import pytest

from lmsi.demo import arithmetic
from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.vocab import simple as vocab_lib
from tests.conftest import write_arith_data


def test_generator_is_deterministic_and_consistent():
  d = arithmetic.Difficulty(min_steps=3, max_steps=4, max_start=20,
                            max_operand=9, max_total=20)
  a = arithmetic.make_problem('test', 7, d)
  assert a == arithmetic.make_problem('test', 7, d)
  assert a != arithmetic.make_problem('unlabeled', 7, d)
  for i in range(200):
    p = arithmetic.make_problem('test', i, d)
    assert p.cot.endswith(f'The answer is {p.answer}.')
    steps = p.cot.split('. ')[:-1]
    assert 3 <= len(steps) <= 4
    total = int(p.question.split(' has ')[1].split()[0])
    for step in steps:  # the chain of thought is correct arithmetic
      lhs, rhs = step.rstrip('.').split(' = ')
      x, op, y = lhs.split()
      assert int(x) == total
      total = int(x) + int(y) if op == '+' else int(x) - int(y)
      assert int(rhs) == total and 0 < total <= 20
    assert str(total) == p.answer


def test_task_splits_and_formats(tmp_path):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  paths = write_arith_data(tmp_path)
  arith_tasks.register(str(tmp_path))
  test = inputs.load_split(arith_tasks.TASK, 'test')
  rows = [json.loads(l) for l in open(paths['test'])]
  assert [(r['id'], r['question'], r['answer']) for r in rows] == [
      (t['id'], t['question'], t['answer']) for t in test]
  vocab = arith_tasks.vocabulary(str(tmp_path))
  assert isinstance(vocab, vocab_lib.WordVocab)
  batch = next(inputs.training_batches(
      arith_tasks.seed_task_name(prompts.Format.COT_ZEROSHOT),
      {'inputs': 128, 'targets': 32}, 2, seed=0))
  row = batch['tokens'][0][batch['valid'][0]]
  text = vocab.decode(row[:-1])
  assert text.startswith('Q: ') and "A: Let's think step by step. " in text
  assert row[-1] == vocab.eos_id
  target = vocab.decode(row[batch['weights'][0][:len(row)] > 0][1:])
  assert 'The answer is' in target


def test_bad_data_names_file_and_line(tmp_path):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  write_arith_data(tmp_path)
  with open(tmp_path / 'test.jsonl', 'a') as f:
    f.write('{"id": "x", "question": 3, "answer": "1", "cot": "c"}\n')
  arith_tasks.register(str(tmp_path))
  with pytest.raises(ValueError, match=r"test.jsonl:9: field 'question'"):
    inputs.load_split(arith_tasks.TASK, 'test')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    arith_tasks.register(str(tmp_path / 'nope'))
  with pytest.raises(ValueError, match='unknown SeqIO task'):
    inputs.load_split('lmsi_arith_v2', 'test')


def test_selfgen_mixture_reads_the_file(tmp_path):
  import tasks.selfgen as selfgen_tasks  # pylint: disable=g-import-not-at-top
  exs = [records.SelfGenExample(task='t', id=f'q{i}', sample=0,
                                format=f.value, inputs=f'Q: {i}\nA:',
                                targets=' The answer is 1.', vote_share=1.0)
         for i in range(3) for f in prompts.Format]
  path = str(tmp_path / 'selfgen.jsonl')
  fileio.write_jsonl(path, exs)
  name = selfgen_tasks.register(path, 'toy', 1)
  assert name == 'lmsi_selfgen_r1'
  batch = next(inputs.training_batches(name, {'inputs': 16, 'targets': 24},
                                       4, seed=0))
  v = vocab_lib.ByteVocab()
  for row, w in zip(batch['tokens'], batch['weights']):
    labels = row[1:][w[:-1] > 0]
    assert v.decode(labels) == ' The answer is 1.'
  assert np.all(batch['weights'].sum(1) == len(' The answer is 1.') + 1)


def test_multitask_selfgen_mixture(tmp_path):
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  files = {}
  for dataset, target in (('gsm8k', ' The answer is 7.'),
                          ('arc_challenge', ' The answer is (b).')):
    files[dataset] = str(tmp_path / dataset / 'selfgen.jsonl')
    fileio.write_jsonl(files[dataset], [records.SelfGenExample(
        task=dataset, id='q0', sample=0, format=f.value, inputs='Q: x\nA:',
        targets=target, vote_share=1.0) for f in prompts.Format])
  name = mixtures.register_selfgen(files, 1)
  assert name == 'lmsi_selfgen_multitask_r1'
  assert len(seqio.get_mixture_or_task(name).tasks) == 8
  batch = next(inputs.training_batches(name, {'inputs': 16, 'targets': 24},
                                       8, seed=0))
  assert batch['tokens'].shape[0] == 8
