"""The whole study at toy scale: every arm, metrics.json's shape, resume."""

import dataclasses
import json
import os

import pytest

from lmsi.demo import arithmetic
from lmsi.checkpoints import artifact
from lmsi.model import decoder
from lmsi.evaluation import evaluator as evaluate
from lmsi.self_inputs import exemplar_gen
from lmsi.data import exemplars as exemplars_lib
from lmsi.studies import demo as pipeline
from lmsi.self_inputs import questions as question_gen
from lmsi.data import records
from lmsi.sampling import generation as sampling
from lmsi.trainer import trainer as train
import tasks.arithmetic  # noqa: F401  # the arithmetic task builder
import tasks.selfgen  # noqa: F401  # the selfgen one (lmsi.data.taskspec)
from tests.conftest import EASY
from tests.conftest import REPO


def _run(cfg, out, **kw):
  ev = evaluate.EvalConfig(ks=(1, 4, 8), sampling=sampling.SamplingConfig(
      num_samples=4, max_decode_steps=24))
  fast = train.TrainSettings(steps=2, batch_size=8, learning_rate=1e-3,
                                optimizer='adamw')
  return pipeline.run_pipeline(
      output_dir=str(out), model_config=cfg, seed=0,
      data=arithmetic.DataConfig(
          split_sizes={'seed': 16, 'seed_dev': 4, 'unlabeled': 4, 'test': 4},
          seed_difficulty=arithmetic.Difficulty(**EASY),
          hard_difficulty=arithmetic.Difficulty(**EASY)),
      task_feature_lengths={'inputs': 128, 'targets': 32},
      base_train=train.TrainSettings(steps=4, batch_size=8,
                                        learning_rate=1e-3,
                                        optimizer='adamw'),
      base_plateau=train.Plateau(eval_period=2, patience=1),
      finetune=fast,
      sampling_config=sampling.SamplingConfig(num_samples=4,
                                              max_decode_steps=24),
      eval_before=ev, eval_after=kw.pop('eval_after', ev), **kw)


def test_pipeline_writes_every_arm_and_resumes(tiny_cfg, tmp_path):
  metrics = _run(tiny_cfg, tmp_path)
  with open(tmp_path / 'metrics.json') as f:
    assert json.load(f) == metrics
  assert [r['round'] for r in metrics['rounds']] == [0, 1]
  for arm in (*metrics['rounds'], metrics['control'], metrics['no_vote']):
    # Only the maj@k that were sampled (m = 4): no maj@8.
    assert set(arm['accuracy']) == {'direct', 'greedy_cot', 'maj@1', 'maj@4'}
    assert sum(b['n'] for b in arm['calibration']) == 4
  for name in ('report.md', 'accuracy.png', 'maj_at_k.png',
               'calibration.png', 'manifest.json',
               'timings.json', 'r1/selfgen/selfgen.jsonl',
               'r1/selfgen/selfgen.jsonl.COMPLETED',
               'no_vote/selfgen/aggregate_manifest.json'):
    assert os.path.exists(tmp_path / name), name
  before = (tmp_path / 'metrics.json').read_bytes()
  selfgen = (tmp_path / 'r1/selfgen/selfgen.jsonl').read_bytes()
  again = _run(tiny_cfg, tmp_path)  # every stage is complete: all skipped
  assert again == metrics
  assert (tmp_path / 'metrics.json').read_bytes() == before
  assert (tmp_path / 'r1/selfgen/selfgen.jsonl').read_bytes() == selfgen


def test_rounds_ablations_and_students(tiny_cfg, tmp_path):
  """Round 2 starts from round 1's model; an ablation's data has only its
  formats; a student is pretrained and distilled from round 1's data; the
  manifest lists what departs from the paper."""
  student = pipeline.Student(
      model_config=dataclasses.replace(tiny_cfg, num_layers=1),
      base_train=train.TrainSettings(steps=2, batch_size=8,
                                     learning_rate=1e-3, optimizer='adamw'))
  swept = evaluate.EvalConfig(
      ks=(1, 4), temperature_sweep=(0.7, 1.2), sampling=sampling.SamplingConfig(
          num_samples=4, max_decode_steps=24))
  metrics = _run(tiny_cfg, tmp_path, num_rounds=2, finetune_from='previous',
                 run_control=False, run_no_vote=False, eval_after=swept,
                 ablations={'cot_only': pipeline.Ablation(
                     formats=('cot_zeroshot', 'cot_fewshot')),
                            'scpo': pipeline.Ablation(
                                learner='preference', margin=0.25,
                                preference=train.PreferenceConfig(beta=0.2))},
                 students={'small': student})
  assert [r['round'] for r in metrics['rounds']] == [0, 1, 2]
  assert 'control' not in metrics and 'no_vote' not in metrics
  with open(tmp_path / 'r2/model/train_manifest.json') as f:
    assert f.read().count(str(tmp_path / 'r1/model')) >= 1
  with open(tmp_path / 'r1/model/train_manifest.json') as f:
    assert str(tmp_path / 'r1/model') not in f.read()
  # (The toy model's paths rarely parse; aggregate_test checks the rows.)
  with open(tmp_path / 'arms/cot_only/selfgen/aggregate_manifest.json') as f:
    assert json.load(f)['choices']['formats'] == ['cot_fewshot',
                                                  'cot_zeroshot']
  with open(tmp_path / 'arms/cot_only/selfgen/selfgen.jsonl') as f:
    assert {json.loads(line)['format'] for line in f} <= {
        'cot_fewshot', 'cot_zeroshot'}
  assert set(metrics['arms']) == {'cot_only', 'scpo'}
  # ScPO's pairs come from round 1's samples (no second sampling pass).
  with open(tmp_path / 'arms/scpo/selfgen/aggregate_manifest.json') as f:
    scpo = json.load(f)
  assert scpo['choices']['learner'] == 'preference'
  assert scpo['samples_dir'] == str(tmp_path / 'r1' / 'samples')
  assert not (tmp_path / 'arms/scpo/samples').exists()
  if scpo['counts']['pairs']:
    with open(tmp_path / 'arms/scpo/model/train_manifest.json') as f:
      assert json.load(f)['preference'] == {'beta': 0.2, 'alpha': 1.0}
  else:
    assert metrics['arms']['scpo']['skipped'] == 'no pair passed the margin'
  assert set(metrics['students']['small']) == {'before', 'after'}
  assert (tmp_path / 'students/small/base/checkpoints').is_dir()
  with open(tmp_path / 'manifest.json') as f:
    manifest = json.load(f)
  assert manifest['choices']['finetune_from'] == 'previous'
  assert manifest['ablations']['cot_only']['formats'] == [
      'cot_fewshot', 'cot_zeroshot']
  assert manifest['ablations']['scpo']['learner'] == 'preference'
  assert manifest['ablations']['scpo']['preference'] == {'beta': 0.2,
                                                         'alpha': 1.0}
  dev = manifest['deviations_from_paper']
  assert dev['num_samples'] == {'paper': 32, 'here': 4, 'where': '§3'}
  assert 'formats' not in dev and 'top_k' not in dev
  report = (tmp_path / 'report.md').read_text()
  assert 'LMSI r2' in report
  # The sweep reaches metrics.json and report.md (the rows after LMSI).
  assert set(metrics['rounds'][2]['sweep']) == {'0.7', '1.2'}
  assert metrics['rounds'][2]['sweep_best']['k'] == 4
  assert '| LMSI r2 | 0.7 (main' in report


def test_generated_questions_and_self_exemplars(tmp_path):
  """An arm whose pool the demo base writes from 10 unlabeled seeds (after
  a warm-up) and whose exemplars are its own zero-shot answers: its rows,
  files and manifest, and no hand-written exemplar in its prompts."""
  base_dir = os.path.join(REPO, 'assets', 'demo_base')
  meta = artifact.verify(base_dir)['manifest']
  data = arithmetic.DataConfig(
      split_sizes={**meta['split_sizes'], 'unlabeled': 12, 'test': 4},
      seed_difficulty=arithmetic.Difficulty(**meta['seed_difficulty']),
      hard_difficulty=arithmetic.Difficulty(**meta['hard_difficulty']),
      style_weights=[tuple(w) for w in meta['style_weights']],
      num_exemplars=meta['num_exemplars'])
  s = sampling.SamplingConfig(num_samples=4, max_decode_steps=56)
  fast = train.TrainSettings(steps=2, batch_size=8, learning_rate=1e-3,
                             optimizer='adamw')
  arm = pipeline.Ablation(
      questions='generated', exemplars='self',
      question_gen=question_gen.QuestionGenConfig(
          num_prompts=4, samples_per_prompt=2, include_seeds=True,
          min_vote_share=0.0, answer_sampling=s),
      question_warmup=fast, num_warmup_examples=16,
      exemplar_gen=exemplar_gen.ExemplarGenConfig(
          num_questions=8, num_exemplars=2, source='vote', sampling=s))
  ev = evaluate.EvalConfig(ks=(1, 4), sampling=s)
  metrics = pipeline.run_pipeline(
      output_dir=str(tmp_path), model_config=decoder.DecoderConfig(
          **artifact.verify(base_dir)['model_config']),
      base_artifact=base_dir, seed=1, data=data,
      task_feature_lengths=meta['task_feature_lengths'], finetune=fast,
      sampling_config=s, eval_before=ev, eval_after=ev, run_control=False,
      # The arm only: test_rounds_ablations_and_students runs the rounds.
      run_no_vote=False, ablations={'selfgen': arm}, num_rounds=0)
  assert list(metrics['arms']) == ['selfgen base', 'selfgen']
  arm_dir = tmp_path / 'arms' / 'selfgen'
  assert (arm_dir / 'warmup/model/checkpoints').is_dir()
  warm = list(records.read_jsonl(str(arm_dir / 'warmup/examples.jsonl'),
                                 records.SelfGenExample))
  assert len(warm) == 16 and {w.id[:5] for w in warm} == {'seed-'}
  pool = {q.id for q in records.read_jsonl(
      str(arm_dir / 'questions/questions.jsonl'), records.Question)}
  unlabeled = {f'unlabeled-{i:05d}' for i in range(10)}
  assert pool - unlabeled <= {f'gen-{i:05d}' for i in range(8)}
  assert pool & unlabeled, 'the base answers some seeds confidently'
  own = exemplar_gen.read_exemplars(str(arm_dir / 'exemplars'))
  hand = exemplars_lib.get('arithmetic', 2)
  assert len(own) == 2 and not {e.question for e in own} & {
      e.question for e in hand}
  fewshot = [ex for ex in records.read_jsonl(
      str(arm_dir / 'selfgen/selfgen.jsonl'), records.SelfGenExample)
             if ex.format == 'cot_fewshot']
  assert {ex.id for ex in fewshot} <= pool
  for ex in fewshot:
    assert all(e.question in ex.inputs for e in own)
    assert not any(e.question in ex.inputs for e in hand)
  with open(tmp_path / 'manifest.json') as f:
    chosen = json.load(f)['ablations']['selfgen']
  assert chosen['questions'] == 'generated' and chosen['exemplars'] == 'self'
  assert chosen['question_gen']['seed'] == 1
  assert chosen['question_gen']['answer_sampling']['seed'] == 1
  assert chosen['exemplar_gen']['seed'] == 1
  assert chosen['question_warmup']['steps'] == 2
  assert 'selfgen base' in (tmp_path / 'report.md').read_text()


@pytest.mark.parametrize('kw, match', [
    ({'finetune_from': 'last'}, 'finetune_from'),
    ({'formats': ('cot', 'direct_fewshot')}, 'unknown'),
    ({'ablations': {'a b': pipeline.Ablation()}}, 'arm name'),
])
def test_bad_choices_fail_before_any_work(tiny_cfg, tmp_path, kw, match):
  with pytest.raises(ValueError, match=match):
    _run(tiny_cfg, tmp_path, **kw)
  assert not (tmp_path / 'base').exists()


def test_unknown_question_or_exemplar_source_is_named():
  with pytest.raises(ValueError, match="questions='pool'"):
    pipeline.Ablation(questions='pool')
  with pytest.raises(ValueError, match="exemplars='own'"):
    pipeline.Ablation(exemplars='own')
