"""Stages 3-5: no gold label reaches the self-generated data."""

import dataclasses
import filecmp
import os
import shutil

import pytest

from lmsi.voting import aggregation as aggregate
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import prompts
from lmsi.data import records
from lmsi.sampling import shard as sample_lib
from lmsi.sampling import generation as sampling
from lmsi.data import taskspec
from tests.conftest import garbage_gold_copy


def _self_generate(data_dir, out_dir, cfg, params, learner='sft'):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  arith_tasks.register(str(data_dir))
  questions = taskspec.load_questions(arith_tasks.TASK, 'unlabeled')
  exemplars = exemplars_lib.get('arithmetic')
  sample_lib.sample(
      model_config=cfg, params=params, questions=questions,
      output_dir=str(out_dir / 'samples'), exemplars=exemplars,
      vocab=arith_tasks.vocabulary(str(data_dir)),
      sampling_config=sampling.SamplingConfig(num_samples=8,
                                              max_decode_steps=64))
  return aggregate.aggregate(samples_dir=str(out_dir / 'samples'),
                             questions=questions,
                             output_dir=str(out_dir / 'selfgen'),
                             exemplars=exemplars, learner=learner)


@pytest.mark.parametrize('learner', ['sft', 'preference'])
def test_garbage_gold_leaves_selfgen_byte_identical(trained_tiny, tiny_cfg,
                                                    tmp_path, learner):
  """Every gold label of the unlabeled split replaced: the self-generated
  mixture (sft) and the preference pairs (ScPO) are byte-identical."""
  root, params = trained_tiny
  clean = tmp_path / 'clean'
  shutil.copytree(root / 'data', clean)
  garbage = tmp_path / 'garbage'
  garbage_gold_copy(root / 'data', garbage, 'unlabeled')
  a = _self_generate(clean, tmp_path / 'out_clean', tiny_cfg, params, learner)
  b = _self_generate(garbage, tmp_path / 'out_garbage', tiny_cfg, params,
                     learner)
  kind = (records.SelfGenExample if learner == 'sft'
          else records.PreferencePair)
  examples = list(records.read_jsonl(a, kind))
  assert examples, 'the trained model should produce parseable paths'
  assert filecmp.cmp(a, b, shallow=False)
  assert filecmp.cmp(os.path.join(tmp_path, 'out_clean/samples',
                                  'samples-00000-of-00001.jsonl'),
                     os.path.join(tmp_path, 'out_garbage/samples',
                                  'samples-00000-of-00001.jsonl'),
                     shallow=False)
  assert 'GARBAGE' not in open(b, encoding='utf-8').read()


def _path(qid, sample, answer, text=None):
  return records.SampledPath(task='t', id=qid, sample=sample,
                             text=text or f'x. The answer is {answer}.',
                             answer=answer, logprob=-1.0)


def test_keeps_every_majority_path_and_counts():
  paths = [_path('q1', 0, '5'), _path('q1', 1, '7'), _path('q1', 2, '5'),
           _path('q1', 3, None, 'gibberish'),
           _path('q2', 0, None, 'x'), _path('q2', 1, None, 'y')]
  kept, counts = aggregate.select_paths(paths)
  assert [(p.id, p.sample, label) for p, label, _ in kept] == [
      ('q1', 0, '5'), ('q1', 2, '5')]
  assert kept[0][2] == 0.5  # 2 of m=4 votes
  assert counts == {'questions': 2, 'samples': 6, 'unparseable': 3,
                    'ties': 0, 'questions_kept': 1, 'paths_kept': 2}


def test_knobs_threshold_cap_dedup_and_no_vote():
  paths = [_path('q', i, '5', 'same. The answer is 5.') for i in range(3)]
  paths += [_path('q', 3, '6')]
  kept, _ = aggregate.select_paths(paths, dedup=True)
  assert len(kept) == 1
  kept, _ = aggregate.select_paths(paths, max_paths_per_question=2)
  assert len(kept) == 2
  kept, _ = aggregate.select_paths(paths, min_vote_share=0.8)
  assert not kept
  kept, _ = aggregate.select_paths(paths, no_vote=True, seed=0)
  assert len(kept) == 1
  picks = {aggregate.select_paths(paths, no_vote=True, seed=s)[0][0][0].sample
           for s in range(20)}
  assert 3 in picks  # the minority path can be picked without a vote


def test_four_formats_and_trimmed_targets():
  q = records.Question(task='t', id='q', question='Ann has 2 pens.')
  kept = [(_path('q', 0, '5', ' 2 + 3 = 5. The answer is 5. Q: junk'), '5',
           1.0)]
  ex = aggregate.to_examples(kept, {'q': q}, exemplars_lib.get(
      'arithmetic'))
  by_fmt = {e.format: e for e in ex}
  assert sorted(by_fmt) == sorted(f.value for f in prompts.Format)
  assert by_fmt['cot_fewshot'].targets == ' 2 + 3 = 5. The answer is 5.'
  assert by_fmt['direct_zeroshot'].targets == ' The answer is 5.'
  assert by_fmt['direct_zeroshot'].inputs == 'Q: Ann has 2 pens.\nA:'
  assert by_fmt['cot_zeroshot'].inputs.endswith(
      "A: Let's think step by step.")
  assert by_fmt['cot_fewshot'].inputs.startswith('Q: Kim has 4 mugs.')
  fields = {f.name for f in dataclasses.fields(records.SelfGenExample)}
  assert not fields & {'gold', 'answer', 'label'}


def test_format_ablation_keeps_only_the_chosen_formats():
  q = records.Question(task='t', id='q', question='Ann has 2 pens.')
  kept = [(_path('q', 0, '5'), '5', 1.0)]
  exemplars = exemplars_lib.get('arithmetic')
  ex = aggregate.to_examples(kept, {'q': q}, exemplars,
                             formats=('direct_zeroshot', 'cot_fewshot'))
  assert [e.format for e in ex] == ['cot_fewshot', 'direct_zeroshot']
  for bad in ((), ('cot',), 'cot_fewshot_only'):
    with pytest.raises(ValueError, match='non-empty subset'):
      aggregate.parse_formats(bad)
  assert aggregate.parse_formats('cot_fewshot') == (prompts.Format.COT_FEWSHOT,)
