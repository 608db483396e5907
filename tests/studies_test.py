"""One study driver: the arms of lmsi.studies.common, each on the tiny model
through the demo's RunContext, their order and skips through a recording
context, and the results schema (metrics.json) as dataclasses."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from lmsi.demo import arithmetic
from lmsi.evaluation import evaluator
from lmsi.sampling import generation as sampling
from lmsi.studies import common
from lmsi.studies import demo
from lmsi.studies import results
from lmsi.trainer import trainer
import tasks.arithmetic  # noqa: F401  # the arithmetic task builder
import tasks.selfgen  # noqa: F401  # the selfgen one
from tests.conftest import EASY

FAST = trainer.TrainSettings(steps=2, batch_size=8, learning_rate=1e-3,
                             optimizer='adamw')
EVAL = evaluator.EvalConfig(ks=(1, 4), sampling=sampling.SamplingConfig(
    num_samples=4, max_decode_steps=24))


@pytest.fixture(scope='module')
def ctx(tiny_cfg, tmp_path_factory):
  """A DemoContext on the tiny model, its base pretrained (4 steps)."""
  out = str(tmp_path_factory.mktemp('study'))
  settings = demo.DemoSettings(
      model_config=tiny_cfg, seed=0, finetune=FAST,
      sampling_config=sampling.SamplingConfig(num_samples=4,
                                              max_decode_steps=24),
      eval_before=EVAL, eval_after=EVAL,
      task_feature_lengths={'inputs': 128, 'targets': 32},
      formats=('cot_fewshot', 'direct_fewshot', 'cot_zeroshot',
               'direct_zeroshot'),
      min_vote_share=0.0, mix_seed_data=True, sample_shards=1,
      base_plateau=trainer.Plateau(eval_period=2, patience=1))
  data = arithmetic.DataConfig(
      split_sizes={'seed': 16, 'seed_dev': 4, 'unlabeled': 4, 'test': 4},
      seed_difficulty=arithmetic.Difficulty(**EASY),
      hard_difficulty=arithmetic.Difficulty(**EASY))
  context = demo.DemoContext(out, settings, data, common.Model(''))
  context.base = context.pretrain(context.path('base'), tiny_cfg,
                                  dataclasses.replace(FAST, steps=4), 0)
  return context


def _is_result(by_task, questions=4):
  (task, result), = by_task.items()
  assert task == demo.TASK and isinstance(result, results.ArmResult)
  assert set(result.accuracy) == {'direct', 'greedy_cot', 'maj@1', 'maj@4'}
  assert result.num_questions == questions and result.skipped is None
  return result


def test_base_arm_evaluates_the_base(ctx):
  result = _is_result(common.base_arm(ctx))
  assert result.styles and 'kept' not in result.styles  # trained on nothing
  assert os.path.exists(ctx.path('base', 'eval', 'eval.json'))


def test_lmsi_rounds_sample_with_the_previous_model(ctx):
  rounds, first = common.lmsi_rounds(ctx, 2, 'base')
  assert len(rounds) == 2
  for r, by_task in enumerate(rounds, 1):
    assert 'kept' in _is_result(by_task).styles
    assert os.path.isdir(ctx.path(f'r{r}', 'model', 'checkpoints'))
  assert first.files == {'arith': ctx.path('r1', 'selfgen', 'selfgen.jsonl')}
  # Round 2 sampled with round 1's model: its paths differ from round 1's.
  r1, r2 = (open(ctx.path(f'r{r}', 'samples', 'samples-00000-of-00001.jsonl'))
            .read() for r in (1, 2))
  assert r1 != r2


def test_control_arm_fine_tunes_on_the_seed_split(ctx):
  _is_result(common.control_arm(ctx))
  assert os.path.isdir(ctx.path('control', 'model', 'checkpoints'))


def test_no_vote_arm_reuses_round_1_samples(ctx):
  common.lmsi_rounds(ctx, 1, 'base')  # r1/samples (done by now: skipped)
  rows = common.round1_arm(ctx, 'no_vote', '_novote', no_vote=True)
  assert 'kept' in _is_result(rows['no_vote']).styles
  assert not os.path.exists(ctx.path('no_vote', 'samples'))


def test_ablation_arm_trains_on_its_formats(ctx):
  common.lmsi_rounds(ctx, 1, 'base')
  ablation = common.Ablation(formats=('cot_fewshot',))
  rows = common.round1_arm(ctx, 'arms/cot_only', '_cot_only',
                           ablation=ablation)
  assert list(rows) == ['cot_only']
  _is_result(rows['cot_only'])
  with open(ctx.path('arms/cot_only', 'selfgen',
                     'aggregate_manifest.json')) as f:
    assert json.load(f)['choices']['formats'] == ['cot_fewshot']
  with open(ctx.path('r1', 'selfgen', 'aggregate_manifest.json')) as f:
    assert len(json.load(f)['choices']['formats']) == 4  # the study's


def test_student_arm_distills_round_1(ctx, tiny_cfg):
  _, first = common.lmsi_rounds(ctx, 1, 'base')
  small = dataclasses.replace(tiny_cfg, num_layers=1)
  rows = common.student_arm(ctx, 'small', common.Student(
      model_config=small, base_train=dataclasses.replace(FAST, steps=4)),
                            first)
  assert set(rows) == {'before', 'after'}
  for by_task in rows.values():
    _is_result(by_task)


class Recorder(common.RunContext):
  """A context that runs nothing: it records the arms' calls."""

  def __init__(self, empty=()):
    self.output_dir, self.eval_tasks = 'out', ('t',)
    self.base = common.Model('out/base')
    self.eval_before = self.eval_after = None
    self.calls, self.empty = [], set(empty)

  def evaluate(self, arm, model, config, *, kept=None, exemplars=None):
    self.calls.append(('eval', arm, model.checkpoint, kept is not None))
    return {'t': results.ArmResult(accuracy={'greedy_cot': 0.5})}

  def self_generate(self, arm, model, *, no_vote, samples_dir, formats=None,
                    questions=None, exemplars=None, learner='sft',
                    margin=0.0):
    self.calls.append(('self-generate', arm, model.checkpoint, no_vote,
                       os.path.relpath(samples_dir, 'out')) + (
                           (learner, margin) if learner != 'sft' else ()))
    return common.SelfGenerated({'t': f'{arm}/selfgen.jsonl'},
                                learner=learner)

  def fit(self, arm, data, *, round_, suffix, init, config=None,
          settings=None):
    self.calls.append(('fit', arm, init.checkpoint) + (
        (data.learner, data.preference, settings)
        if data.learner != 'sft' else ()))
    return None if arm in self.empty else common.Model(f'out/{arm}/model')

  def train_control(self):
    self.calls.append(('fit', 'control', self.base.checkpoint))
    return None if 'control' in self.empty else common.Model(
        'out/control/model')


def test_run_arms_order_models_and_inits():
  ctx = Recorder()
  study = common.run_arms(ctx, common.Arms(num_rounds=2,
                                           finetune_from='previous'))['t']
  assert ctx.calls == [
      ('eval', 'base', 'out/base', False),
      ('self-generate', 'r1', 'out/base', False, 'r1/samples'),
      ('fit', 'r1', 'out/base'),
      ('eval', 'r1', 'out/r1/model', True),
      ('self-generate', 'r2', 'out/r1/model', False, 'r2/samples'),
      ('fit', 'r2', 'out/r1/model'),  # finetune_from='previous'
      ('eval', 'r2', 'out/r2/model', True),
      ('fit', 'control', 'out/base'),
      ('eval', 'control', 'out/control/model', False),
      ('self-generate', 'no_vote', 'out/base', True, 'r1/samples'),
      ('fit', 'no_vote', 'out/base'),
      ('eval', 'no_vote', 'out/no_vote/model', True)]
  assert [r.round for r in study.rounds] == [0, 1, 2]


def test_the_preference_arm_votes_round_1s_samples_into_pairs():
  """An Ablation with learner='preference' (ScPO) reuses round 1's samples,
  asks for pairs with its margin and fits with its loss and budget."""
  ctx = Recorder()
  pref = trainer.PreferenceConfig(beta=0.3)
  half = trainer.TrainSettings(steps=150, batch_size=8)
  common.run_arms(ctx, common.Arms(
      run_control=False, run_no_vote=False, ablations={
          'scpo': common.Ablation(learner='preference', margin=0.25,
                                  preference=pref, finetune=half)}))
  assert ctx.calls[-3:] == [
      ('self-generate', 'arms/scpo', 'out/base', False, 'r1/samples',
       'preference', 0.25),
      ('fit', 'arms/scpo', 'out/base', 'preference', pref, half),
      ('eval', 'arms/scpo', 'out/arms/scpo/model', True)]
  manifest = common.Ablation(learner='preference', margin=0.25,
                             preference=pref, finetune=half).manifest()
  assert manifest['learner'] == 'preference' and manifest['margin'] == 0.25
  assert manifest['preference'] == {'beta': 0.3, 'alpha': 1.0}
  assert manifest['finetune']['batch_size'] == 8
  with pytest.raises(ValueError, match='learner'):
    common.Ablation(learner='dpo')


def test_an_arm_without_training_data_is_skipped():
  ctx = Recorder(empty={'r1', 'control', 'no_vote'})
  study = common.run_arms(ctx, common.Arms(num_rounds=3))['t']
  assert [r.skipped for r in study.rounds] == [None, 'the vote kept no path']
  assert study.control.skipped == 'no gold examples'
  assert study.no_vote.skipped == 'no parseable path'
  assert not any(c[0] == 'self-generate' and c[1] == 'r2' for c in ctx.calls)


def test_arms_refuse_a_bad_name_or_finetune_from():
  with pytest.raises(ValueError, match='finetune_from'):
    common.Arms(finetune_from='latest')
  with pytest.raises(ValueError, match='letters, digits'):
    common.Arms(ablations={'a/b': common.Ablation()})


def test_results_round_trip_metrics_json():
  arm = {'accuracy': {'greedy_cot': 0.5, 'maj@4': 0.75}, 'num_questions': 4,
         'calibration': [{'vote_share_lo': 0.0, 'vote_share_hi': 1.0, 'n': 4,
                          'accuracy': None}],
         'temperature': 0.7, 'sweep': {'0.7': {'maj@4': 0.75}},
         'sweep_best': None, 'styles': {'greedy': {}}, 'round': 0}
  metrics = {'rounds': [arm, dict(arm, round=1)],
             'control': {'accuracy': {}, 'num_questions': 0,
                         'skipped': 'no gold examples'},
             'arms': {'x base': {'accuracy': {'direct': 0.25}}},
             'students': {'s': {'before': {'accuracy': {}},
                                'after': {'accuracy': {'direct': 1.0}}}}}
  study = results.StudyResult.from_json(metrics)
  assert study.to_json() == metrics  # sweep_best None kept, absent omitted
  assert study.rounds[1].round == 1 and study.no_vote is None
  # eval.json's extra keys (per-mode details) are not part of the schema.
  assert results.ArmResult.from_json(
      {'accuracy': {}, 'answer_match': 'paper', 'methods': ['x']}).to_json(
      ) == {'accuracy': {}, 'answer_match': 'paper'}
