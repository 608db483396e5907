"""The whole study at toy scale: every arm, metrics.json's shape, resume."""

import json
import os

from lmsi import arithmetic
from lmsi import evaluate
from lmsi import pipeline
from lmsi import sampling
from lmsi import train
import tasks.arithmetic  # noqa: F401  # the arithmetic task builder
import tasks.selfgen  # noqa: F401  # the selfgen one (lmsi.taskspec)
from tests.conftest import EASY


def _run(cfg, out):
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
      eval_before=ev, eval_after=ev)


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
