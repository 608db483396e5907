"""Stages 3-5 on real benchmark questions through the stage binaries' gin
files: 8 GSM8K and 8 ARC-Challenge train questions, the tiny model.

Accuracy is meaningless here (the model only knows the arithmetic demo);
the run must finish and write well-formed files with no gold in them.
"""

import collections
import json
import os

import gin
import pytest

from lmsi.data import answers
from lmsi.runtime import gin_flags
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from tests.benchmarks_test import DATA
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(DATA, 'gsm8k')),
    reason=f'benchmark release files not found at {DATA} (set LMSI_DATA_DIR)')

POOLS = {'lmsi_gsm8k_pool_v1': 'number', 'lmsi_arc_challenge_pool_v1': 'letter'}


def _run(module, function, flags):
  gin.clear_config()
  try:
    return gin_flags.main(module, function, output_dir_arg='output_dir',
                          argv=flags)
  finally:
    gin.clear_config()


def _check_selfgen(path, family, pool_ids):
  examples = list(records.read_jsonl(path, records.SelfGenExample))
  by_path = collections.defaultdict(set)
  for ex in examples:
    assert ex.id in pool_ids
    by_path[(ex.id, ex.sample)].add(ex.format)
    if ex.format.startswith('direct'):
      text = ex.targets.strip()
      assert text.startswith('The answer is ') and text.endswith('.')
      assert answers.extract_answer(text, family) is not None
    assert ex.inputs.endswith(('\nA:', "\nA: Let's think step by step."))
  assert all(f == {f.value for f in prompts.Format} for f in by_path.values())
  return examples


def test_sample_and_vote_on_benchmarks(trained_tiny, tmp_path):
  root, _ = trained_tiny
  # Two exemplars keep prompts short (~700 tokens): the test stays < 60 s.
  common = [f'--gin.DATA_DIR="{DATA}"', '--gin.MAX_QUESTIONS=8',
            '--gin.NUM_EXEMPLARS=2']
  for task, family in POOLS.items():
    out = tmp_path / task
    _run('lmsi.sample', 'sample_task', [
        f'--gin_file={REPO}/gin/testing/tiny.gin',
        f'--gin_file={REPO}/gin/runs/sample.gin', *common,
        f'--gin.TASK="{task}"',
        f'--gin.INITIAL_CHECKPOINT_PATH="{root / "model"}"',
        f'--gin.VOCABULARY="{root / "data" / "vocab.json"}"',
        f'--gin.OUTPUT_DIR="{out / "samples"}"', '--gin.NUM_SAMPLES=4',
        '--gin.MAX_DECODE_STEPS=24'])
    _run('lmsi.aggregate', 'aggregate_task', [
        f'--gin_file={REPO}/gin/runs/aggregate.gin', f'--gin.DATA_DIR="{DATA}"',
        f'--gin.TASK="{task}"', f'--gin.SAMPLES_DIR="{out / "samples"}"',
        f'--gin.OUTPUT_DIR="{out / "selfgen"}"', '--gin.NUM_EXEMPLARS=2'])
    paths = list(records.read_jsonl(
        str(out / 'samples' / 'samples-00000-of-00001.jsonl'),
        records.SampledPath))
    assert len(paths) == 8 * 4 and len({p.id for p in paths}) == 8
    for p in paths:  # parsed with the task's family, or unparseable
      assert p.answer is None or answers.canonical_answer(
          p.answer, family) == p.answer
    sample_manifest = json.load(open(out / 'samples/sample_manifest.json'))
    assert sample_manifest['pool_of']['split'] == 'train'
    assert sample_manifest['answer_family'] == family
    manifest = json.load(open(out / 'selfgen/aggregate_manifest.json'))
    print(f'{task}: counts {json.dumps(manifest["counts"], sort_keys=True)}')
    assert manifest['counts']['samples'] == 32
    assert manifest['task'] == task
    examples = _check_selfgen(str(out / 'selfgen' / 'selfgen.jsonl'), family,
                              {p.id for p in paths})
    assert len(examples) == 4 * manifest['counts']['paths_kept']
    assert os.path.exists(out / 'samples' / 'config.gin')
  # The arithmetic model writes numbers: GSM8K paths parse and vote.
  gsm8k = json.load(open(tmp_path / 'lmsi_gsm8k_pool_v1/selfgen/'
                         'aggregate_manifest.json'))
  assert gsm8k['counts']['unparseable'] < 32


def test_letter_paths_become_four_formats(tmp_path):
  """ARC paths that do parse: labels written "(b)" in direct targets."""
  from lmsi.voting import (  # pylint: disable=g-import-not-at-top
      aggregation as aggregate)
  from lmsi.data import taskspec  # pylint: disable=g-import-not-at-top
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  task = mixtures.registered('lmsi_arc_challenge_pool_v1', data_dir=DATA)
  questions = taskspec.load_questions(task, 'train', 2)
  texts = ['Friction makes heat. The answer is (b).',
           'The answer is wet palms.', 'The answer is (a).', 'No idea.']
  paths = [records.SampledPath(
      task=task, id=q.id, sample=i, text=t,
      answer=answers.extract_answer(
          t, 'letter', options=prompts.options_of(q.question)),
      logprob=-1.0) for q in questions for i, t in enumerate(texts)]
  fileio.write_jsonl(str(tmp_path / 'samples/samples-00000-of-00001.jsonl'),
                      paths)
  (out,) = aggregate.aggregate_task(
      samples_dir=str(tmp_path / 'samples'), task_name=task, split='train',
      output_dir=str(tmp_path / 'selfgen'))
  examples = _check_selfgen(out, 'letter', {q.id for q in questions})
  # George: B, B (option text), A -> B; magnets: B, -, A -> tie, B first.
  direct = [e.targets for e in examples if e.format == 'direct_zeroshot']
  assert direct == [' The answer is (b).'] * 3
  assert all('(a) ' in e.inputs for e in examples)


def test_mixture_members_get_their_own_directories(tmp_path):
  """A mixture name: each member task is voted in `<dir>/<task>/`."""
  from lmsi.voting import (  # pylint: disable=g-import-not-at-top
      aggregation as aggregate)
  from lmsi.data import taskspec  # pylint: disable=g-import-not-at-top
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  from tasks import sources  # pylint: disable=g-import-not-at-top
  mixtures.register(DATA)
  sources.add_mixture('test_two_pools', list(POOLS))
  for task, family in POOLS.items():
    q = taskspec.load_questions(task, 'train', 1)[0]
    text = {'number': 'The answer is 3.', 'letter': 'The answer is (c).'}
    fileio.write_jsonl(
        str(tmp_path / 'samples' / task / 'samples-00000-of-00001.jsonl'),
        [records.SampledPath(task=task, id=q.id, sample=0,
                             text=text[family],
                             answer=answers.extract_answer(text[family],
                                                           family),
                             logprob=0.0)])
  outs = aggregate.aggregate_task(
      samples_dir=str(tmp_path / 'samples'), task_name='test_two_pools',
      split='train', output_dir=str(tmp_path / 'selfgen'))
  assert sorted(outs) == sorted(
      str(tmp_path / 'selfgen' / t / 'selfgen.jsonl') for t in POOLS)
  for out, (task, family) in zip(sorted(outs), sorted(POOLS.items())):
    examples = _check_selfgen(out, family, {e.id for e in records.read_jsonl(
        out, records.SelfGenExample)})
    assert len(examples) == 4 and examples[0].task == task
