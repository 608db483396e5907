"""Trainer: resume equals an uninterrupted run; plateau rule; T5X macros.

Also its pieces alone: init/restore (train_state), the donated step
(train_step) and the loop with its metric writer (train_loop).
"""

import glob
import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder
from lmsi.runtime import fileio
from lmsi.model import sharding
from lmsi.trainer import trainer as train
from lmsi.trainer import loop as train_loop
from lmsi.trainer import state as train_state
from lmsi.trainer import step as train_step
from tests.conftest import write_arith_data


def test_plateau_rule():
  rule = train.Plateau(eval_period=10, patience=2, min_delta=0.01,
                       min_steps=30)
  ev = lambda *m: [{'step': 10 * (i + 1), 'metric': x} for i, x in
                   enumerate(m)]
  assert not train_loop.plateaued(ev(0.1, 0.2, 0.3), rule)  # too few evals
  assert not train_loop.plateaued(ev(0.1, 0.2, 0.3, 0.4), rule)  # rising
  assert train_loop.plateaued(ev(0.5, 0.5, 0.5, 0.505), rule)
  assert not train_loop.plateaued(ev(0.5, 0.5, 0.5, 0.53), rule)  # mean +0.015
  # One lucky eval does not end training: means 0.55 -> 0.6.
  assert not train_loop.plateaued(ev(0.4, 0.7, 0.6, 0.6), rule)
  early = train.Plateau(eval_period=10, patience=2, min_steps=50)
  assert not train_loop.plateaued(ev(0.5, 0.5, 0.5, 0.5), early)  # before min


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
  a = checkpoints.restore_params(tiny_cfg, str(tmp_path / 'straight'))
  b = checkpoints.restore_params(tiny_cfg, str(tmp_path / 'resumed'))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  lines = [json.loads(l) for l in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  straight = [json.loads(l) for l in
              open(tmp_path / 'straight' / 'metrics.jsonl')]
  assert [l['step'] for l in lines] == [1, 2, 3, 4]
  assert [l['loss'] for l in lines] == [l['loss'] for l in straight]
  # clu's writer put the same losses in TensorBoard event files (float32).
  tb = _tb_scalars(tmp_path / 'straight' / 'tb')
  assert [s for s, _ in tb['loss']] == [1, 2, 3, 4]
  np.testing.assert_allclose([v for _, v in tb['loss']],
                             [l['loss'] for l in straight], rtol=1e-6)
  assert 'steps_per_sec' in tb  # clu's ReportProgress


def _tb_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} of the TensorBoard event files in logdir."""
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  assert glob.glob(os.path.join(logdir, 'events.out.tfevents.*')), logdir
  acc = event_accumulator.EventAccumulator(str(logdir))
  acc.Reload()
  return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in acc.Tensors(tag)] for tag in acc.Tags()['tensors']}


def test_bad_optimizer_and_missing_checkpoint(tiny_cfg, tmp_path):
  with pytest.raises(ValueError, match="unknown optimizer 'sgdx'"):
    train_step.make_optimizer('sgdx', 1e-3)
  with pytest.raises(FileNotFoundError, match='no finished orbax checkpoint'):
    checkpoints.restore_params(tiny_cfg, str(tmp_path))


def test_save_params_round_trip(tiny_cfg, tmp_path):
  # (A shape mismatch on restore: errors_test.test_checkpoint_shape_mismatch.)
  from lmsi.checkpoints import (  # pylint: disable=g-import-not-at-top
      store as checkpoints)
  from lmsi.model import decoder  # pylint: disable=g-import-not-at-top
  params, _ = decoder.init_params(tiny_cfg)
  checkpoints.save_params(str(tmp_path), params)
  restored = checkpoints.restore_params(tiny_cfg, str(tmp_path))
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)


def test_cosine_schedule_decays_to_zero():
  """The base's schedule: linear warmup to the peak, cosine to zero. Adam's
  step is about lr in size, so the update sizes trace the schedule."""
  params = {'w': np.ones(3, np.float32)}
  tx = train_step.make_optimizer('adamw', 1e-2, warmup_steps=4,
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
  constant = train_step.make_optimizer('adamw', 1e-2)
  state = constant.init(params)
  for _ in range(40):
    update, state = constant.update({'w': np.ones(3, np.float32)}, state,
                                    params)
  assert float(np.abs(update['w']).max()) == pytest.approx(1e-2, rel=0.05)
  with pytest.raises(ValueError, match='schedule'):
    train_step.make_optimizer('adamw', 1e-3, schedule='linear')
  with pytest.raises(ValueError, match='warmup_steps'):
    train_step.make_optimizer('adamw', 1e-3, warmup_steps=10, schedule='cosine',
                         total_steps=5)


def _state_setup(cfg, model_dir, initial=None):
  mesh = sharding.create_mesh(-1, 1)
  rules = sharding.logical_axis_rules(for_sampling=False)
  tx = train_step.make_optimizer('adamw', 1e-3)
  mngr = checkpoints.manager(str(model_dir))
  return train_state.init_or_restore(
      model_config=cfg, tx=tx, mesh=mesh, rules=rules, mngr=mngr,
      model_dir=str(model_dir),
      initial_checkpoint_path=str(initial) if initial else None, seed=3)


def test_init_or_restore_fresh_initial_and_resumed(tiny_cfg, tmp_path):
  init, _ = decoder.init_params(tiny_cfg, 3)
  fresh = _state_setup(tiny_cfg, tmp_path / 'fresh')
  assert (fresh.step, fresh.evals, fresh.resumed) == (0, [], False)
  np.testing.assert_array_equal(fresh.params['embedding'], init['embedding'])
  # INITIAL_CHECKPOINT_PATH: its params, a fresh optimizer state, step 0.
  shifted = jax.tree_util.tree_map(lambda x: x + 1, init)
  checkpoints.save_params(str(tmp_path / 'init'), shifted)
  started = _state_setup(tiny_cfg, tmp_path / 'started', tmp_path / 'init')
  assert (started.step, started.resumed) == (0, False)
  np.testing.assert_array_equal(started.params['embedding'],
                                shifted['embedding'])
  # A checkpoint in MODEL_DIR wins; metrics and evals past it are dropped.
  model_dir = tmp_path / 'resumed'
  checkpoints.save(checkpoints.manager(str(model_dir)), 3, shifted,
                   {'opt_state': fresh.opt_state, 'step': jnp.int32(3)})
  fileio.write_text_atomic(str(model_dir / 'metrics.jsonl'), ''.join(
      json.dumps({'step': s, 'loss': 1.0}) + '\n' for s in range(1, 6)))
  fileio.write_json(str(model_dir / 'evals.json'),
                     [{'step': 2, 'metric': 0.1}, {'step': 4, 'metric': 0.2}])
  resumed = _state_setup(tiny_cfg, model_dir, tmp_path / 'init')
  assert (resumed.step, resumed.resumed) == (3, True)
  assert resumed.evals == [{'step': 2, 'metric': 0.1}]
  np.testing.assert_array_equal(resumed.params['embedding'],
                                shifted['embedding'])
  kept = [json.loads(l)['step'] for l in open(model_dir / 'metrics.jsonl')]
  assert kept == [1, 2, 3]


def test_train_step_donates_state_and_keeps_the_loss(tiny_cfg):
  params, _ = decoder.init_params(tiny_cfg, 0)
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, tiny_cfg.vocab_size, (2, 12)).astype(np.int32)
  weights = np.zeros((2, 12), np.float32)
  weights[:, 5:11] = 1.0
  batch = {'tokens': tokens, 'valid': tokens != 0, 'weights': weights,
           'labels': np.concatenate([tokens[:, 1:], tokens[:, :1] * 0], 1)}
  tx = train_step.make_optimizer('adamw', 1e-2)
  want_loss = float(train_step.loss_fn(tiny_cfg, params, batch))
  step = train_step.make_train_step(tiny_cfg, tx)
  copy = lambda t: jax.tree_util.tree_map(jnp.array, t)
  p, o = copy(params), tx.init(params)
  donated = jax.tree_util.tree_leaves((p, o))
  p, o, loss = step(p, o, batch)
  assert float(loss) == pytest.approx(want_loss, rel=1e-6)
  assert all(x.is_deleted() for x in donated)  # the buffers were reused
  _, _, loss2 = step(p, o, batch)
  assert float(loss2) < float(loss)  # the update went the right way


def _toy_loop(tmp_path, losses, *, train_steps, plateau=None, metric=0.5):
  """train_loop.run on a 3-weight toy with a recording writer."""
  writer = mock.create_autospec(_metric_writer_class(), instance=True)
  losses = jnp.asarray(losses, jnp.float32)
  def toy_step(params, opt_state, batch):  # opt_state counts the steps
    n = opt_state['n']
    return {'w': params['w'] - 0.1 * batch}, {'n': n + 1}, losses[n]
  state = train_state.TrainState(
      params={'w': jnp.ones(3)}, opt_state={'n': jnp.int32(0)}, step=0,
      evals=[])
  out = train_loop.run(
      state, train_step=toy_step,
      batches=iter(np.ones(3, np.float32) for _ in range(train_steps)),
      batch_sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]),
      train_steps=train_steps, model_dir=str(tmp_path),
      mngr=checkpoints.manager(str(tmp_path)), writer=writer,
      checkpoint_period=2, log_period=2, plateau=plateau,
      eval_fn=lambda params: metric)
  return out, writer


def _metric_writer_class():
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.MetricWriter


def test_loop_writes_metrics_evals_and_checkpoints(tmp_path):
  plateau = train.Plateau(eval_period=2, patience=1)
  out, writer = _toy_loop(tmp_path, [4.0, 3.0, 2.0, 1.0, 0.5, 0.25],
                          train_steps=6, plateau=plateau)
  # Equal evals at steps 2 and 4: plateaued, so it stops before step 6.
  assert (out.state.step, out.loss, out.stopped_early) == (4, 1.0, True)
  assert out.state.evals == [{'step': 2, 'metric': 0.5},
                             {'step': 4, 'metric': 0.5}]
  np.testing.assert_allclose(out.state.params['w'], [0.6] * 3, rtol=1e-6)
  calls = [c.args for c in writer.write_scalars.call_args_list]
  assert (2, {'loss': 3.0}) in calls and (4, {'loss': 1.0}) in calls
  assert (2, {'eval_metric': 0.5}) in calls
  assert [s for s, d in calls if 'steps_per_sec' in d] == [2, 4]
  writer.flush.assert_called()
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [(l['step'], l['loss']) for l in lines] == [(2, 3.0), (4, 1.0)]
  assert json.load(open(tmp_path / 'evals.json')) == out.state.evals
  assert checkpoints.manager(str(tmp_path)).all_steps() == [2, 4]


def test_loop_stops_on_nan_keeping_the_last_good_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError) as e:
    _toy_loop(tmp_path, [4.0, 3.0, 2.0, float('nan'), 1.0, 1.0],
              train_steps=6)
  assert str(e.value).startswith(f'loss is nan at step 4 in {tmp_path}; ')
  assert 'the last good checkpoint, step 2, is kept' in str(e.value)
  assert checkpoints.manager(str(tmp_path)).all_steps() == [2]


@pytest.mark.parametrize('optimizer', ['adafactor', 'adamw'])
def test_optimizer_state_is_sharded_like_its_params(tiny_cfg, optimizer):
  """Every optimizer-state leaf follows its parameter's axes on a 2x4 mesh:
  Adam's mu/nu take the param's sharding, Adafactor's factored row/column
  statistics the param's without the factored dimension; only counts and
  Adafactor's (1,) placeholders stay replicated. The state bytes on one
  device are the state's bytes over the mesh size, up to those."""
  if jax.device_count() != 8:
    pytest.skip('needs the 8 fake devices of conftest.py')
  import dataclasses  # pylint: disable=g-import-not-at-top
  # heads (8), kv heads (4), mlp and vocab divisible by the model axis (4);
  # embed_dim by the data axis (2); two dims >= 128, or optax's Adafactor
  # does not factor.
  cfg = dataclasses.replace(tiny_cfg, num_heads=8, num_kv_heads=4,
                            head_dim=128, embed_dim=256, mlp_dim=512,
                            vocab_size=260)
  params, specs = decoder.init_params(cfg, 0)
  mesh = sharding.create_mesh(2, 4)
  rules = sharding.logical_axis_rules()
  placed = jax.device_put(params, sharding.shardings_for(specs, mesh, rules))
  tx = train_step.make_optimizer(optimizer, 1e-3)
  state = train_state.init_optimizer(tx, placed, specs, mesh, rules)
  want = train_state.optimizer_state_specs(tx, params, specs)
  replicated = total = per_device = expected = 0
  for leaf, spec in zip(jax.tree_util.tree_leaves(state),
                        jax.tree_util.tree_leaves(
                            want, is_leaf=lambda x: isinstance(
                                x, jax.sharding.PartitionSpec))):
    total += leaf.nbytes
    per_device += leaf.addressable_shards[0].data.nbytes
    axes = [dict(rules)[a] for a in spec if a is not None]
    expected += leaf.nbytes // int(np.prod([mesh.shape[a] for a in axes
                                            if a is not None]))
    if all(a is None for a in spec):
      replicated += leaf.nbytes
  q = params['layer_0']['attn']['q']  # [D, H, Dh]: (embed, heads, kv)
  if optimizer == 'adamw':
    mu = state[1][0].mu['layer_0']['attn']['q']
    assert mu.sharding.spec == jax.sharding.PartitionSpec(
        sharding.DATA, sharding.MODEL, None)
    assert replicated <= 8  # the step counts
  else:
    factored = state[0]
    v_row = factored.v_row['layer_0']['attn']['q']  # D (largest) dropped
    v_col = factored.v_col['layer_0']['attn']['q']  # Dh dropped
    assert v_row.shape == q.shape[1:] and v_col.shape == q.shape[:2]
    assert v_row.sharding.spec == jax.sharding.PartitionSpec(
        sharding.MODEL, None)
    assert v_col.sharding.spec == jax.sharding.PartitionSpec(
        sharding.DATA, sharding.MODEL)
    assert replicated < 0.02 * total
  # A device holds each leaf over the mesh axes of its spec (a factored
  # statistic is a vector: split over one axis, whole over the other).
  assert per_device == expected
  # AdamW: all but the norms (over 'data' only) split 8 ways.
  assert per_device < (total / 8 * 1.01 if optimizer == 'adamw'
                       else total / 4)
