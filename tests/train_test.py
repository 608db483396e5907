"""Trainer: resume equals an uninterrupted run; plateau rule; T5X macros."""

import json
import os

import jax
import numpy as np
import pytest

from lmsi import train
from tests.conftest import write_arith_data


def test_plateau_rule():
  rule = train.Plateau(eval_period=10, patience=2, min_delta=0.01,
                       min_steps=30)
  ev = lambda *m: [{'step': 10 * (i + 1), 'metric': x} for i, x in
                   enumerate(m)]
  assert not train._plateaued(ev(0.1, 0.2, 0.3), rule)  # too few evals
  assert not train._plateaued(ev(0.1, 0.2, 0.3, 0.4), rule)  # rising
  assert train._plateaued(ev(0.5, 0.5, 0.5, 0.505), rule)
  assert not train._plateaued(ev(0.5, 0.5, 0.5, 0.53), rule)  # mean +0.015
  # One lucky eval does not end training: means 0.55 -> 0.6.
  assert not train._plateaued(ev(0.4, 0.7, 0.6, 0.6), rule)
  early = train.Plateau(eval_period=10, patience=2, min_steps=50)
  assert not train._plateaued(ev(0.5, 0.5, 0.5, 0.5), early)  # before min


@pytest.fixture(scope='module')
def seed_mixture(tmp_path_factory):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  data = tmp_path_factory.mktemp('data')
  write_arith_data(data, {'seed': 40, 'seed_dev': 4, 'unlabeled': 4,
                          'test': 4})
  arith_tasks.register(str(data))
  return arith_tasks.SEED_MIXTURE


def _train(cfg, mixture, model_dir, steps):
  return train.train(model_config=cfg, mixture_or_task_name=mixture,
                     task_feature_lengths={'inputs': 128, 'targets': 32},
                     train_steps=steps, model_dir=str(model_dir),
                     batch_size=8, learning_rate=1e-3, optimizer='adamw',
                     log_period=1, checkpoint_period=2)


def test_resume_equals_uninterrupted(tiny_cfg, seed_mixture, tmp_path):
  _train(tiny_cfg, seed_mixture, tmp_path / 'straight', 4)
  _train(tiny_cfg, seed_mixture, tmp_path / 'resumed', 2)
  os.remove(tmp_path / 'resumed' / 'train_done.json')  # as if killed
  result = _train(tiny_cfg, seed_mixture, tmp_path / 'resumed', 4)
  assert result.step == 4
  a = train.restore_params(tiny_cfg, str(tmp_path / 'straight'))
  b = train.restore_params(tiny_cfg, str(tmp_path / 'resumed'))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  lines = [json.loads(l) for l in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  straight = [json.loads(l) for l in
              open(tmp_path / 'straight' / 'metrics.jsonl')]
  assert [l['step'] for l in lines] == [1, 2, 3, 4]
  assert [l['loss'] for l in lines] == [l['loss'] for l in straight]


def test_bad_optimizer_and_missing_checkpoint(tiny_cfg, tmp_path):
  with pytest.raises(ValueError, match="unknown optimizer 'sgdx'"):
    train.make_optimizer('sgdx', 1e-3)
  with pytest.raises(FileNotFoundError, match='no finished orbax checkpoint'):
    train.restore_params(tiny_cfg, str(tmp_path))


def test_checkpoint_shape_mismatch_is_named(tiny_cfg, tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from lmsi import checkpoints  # pylint: disable=g-import-not-at-top
  from lmsi import decoder  # pylint: disable=g-import-not-at-top
  params, _ = decoder.init_params(tiny_cfg)
  checkpoints.save_params(str(tmp_path), params)
  restored = train.restore_params(tiny_cfg, str(tmp_path))
  np.testing.assert_array_equal(restored['embedding'], params['embedding'])
  wider = dataclasses.replace(tiny_cfg, mlp_dim=tiny_cfg.mlp_dim * 2)
  with pytest.raises(ValueError, match='does not match the model config'):
    train.restore_params(wider, str(tmp_path))


def test_cosine_schedule_decays_to_zero():
  """The base's schedule: linear warmup to the peak, cosine to zero. Adam's
  step is about lr in size, so the update sizes trace the schedule."""
  params = {'w': np.ones(3, np.float32)}
  tx = train.make_optimizer('adamw', 1e-2, warmup_steps=4,
                            schedule='cosine', total_steps=40)
  state = tx.init(params)
  sizes = []
  for _ in range(40):
    update, state = tx.update({'w': np.ones(3, np.float32)}, state, params)
    sizes.append(float(np.abs(update['w']).max()))
  assert sizes[0] < 1e-6  # step 0 of the warmup: lr 0
  assert max(sizes) == pytest.approx(1e-2, rel=0.05)
  assert int(np.argmax(sizes)) == 4
  assert sizes[-1] < 1e-4 and sizes[-1] < sizes[-2] < sizes[20]
  constant = train.make_optimizer('adamw', 1e-2)
  state = constant.init(params)
  for _ in range(40):
    update, state = constant.update({'w': np.ones(3, np.float32)}, state,
                                    params)
  assert float(np.abs(update['w']).max()) == pytest.approx(1e-2, rel=0.05)
  with pytest.raises(ValueError, match='schedule'):
    train.make_optimizer('adamw', 1e-3, schedule='linear')
  with pytest.raises(ValueError, match='warmup_steps'):
    train.make_optimizer('adamw', 1e-3, warmup_steps=10, schedule='cosine',
                         total_steps=5)
