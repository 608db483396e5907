"""Fine-tuning on a SeqIO mixture, T5X-style (LMSI stage 6).

t5x is not on PyPI, so this is our trainer. It keeps the contract of t5x's
`configs/runs/finetune.gin`: macros MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, MODEL_DIR, INITIAL_CHECKPOINT_PATH;
`--gin_file` / `--gin.X=...` flags; auto-resume from the latest checkpoint in
MODEL_DIR. Loss is on target tokens only. Metrics go to
`MODEL_DIR/metrics.jsonl` and TensorBoard event files in `MODEL_DIR/tb`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from lmsi import checkpoints
from lmsi import decoder as decoder_lib
from lmsi import files
from lmsi import inputs as inputs_lib
from lmsi import manifests
from lmsi import progress as progress_lib
from lmsi import records
from lmsi import sharding


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plateau:
  """Stop when the mean metric of the last `patience` evals is no more than
  `min_delta` above the mean of the `patience` evals before them.

  Window means, not single evals, so one lucky eval on a small held-out set
  cannot end training early. The base model of the demo is trained "until
  its held-out accuracy has plateaued" so that it stands in for a converged
  pretrained LM.
  """

  eval_period: int
  patience: int
  min_delta: float = 0.0
  min_steps: int = 0  # early evals are noise: never stop before this


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSettings:
  """One training budget (paper: 10k steps, Adafactor, 5e-5, batch 32)."""

  steps: int = 10_000
  batch_size: int = 32
  learning_rate: float = 5e-5
  optimizer: str = 'adafactor'
  warmup_steps: int = 0
  schedule: str = 'constant'  # or 'cosine' (see make_optimizer)
  weight_decay: float = 0.0
  checkpoint_period: int = 0  # 0: only at the end (a kill restarts the fit)


@dataclasses.dataclass(frozen=True)
class TrainResult:
  step: int
  loss: float
  stopped_early: bool
  evals: list[dict]


SCHEDULES = ('constant', 'cosine')


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0,
                   warmup_steps: int = 0, schedule: str = 'constant',
                   total_steps: int = 0) -> optax.GradientTransformation:
  """'adafactor' (paper) or 'adamw' (clipped); lr 'constant' after the
  linear warmup (paper) or 'cosine': decay to zero at `total_steps`."""
  if schedule not in SCHEDULES:
    raise ValueError(f'unknown schedule {schedule!r}; use one of {SCHEDULES}')
  lr = learning_rate
  if schedule == 'cosine':
    if total_steps <= warmup_steps:
      raise ValueError(f'cosine schedule needs train_steps ({total_steps}) '
                       f'> warmup_steps ({warmup_steps})')
    lr = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(warmup_steps, 1), total_steps, end_value=0.0)
  elif warmup_steps:
    lr = optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps),
         optax.constant_schedule(learning_rate)], [warmup_steps])
  if name == 'adafactor':
    return optax.adafactor(learning_rate=lr)
  if name == 'adamw':
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(lr, weight_decay=weight_decay))
  raise ValueError(f"unknown optimizer {name!r}; use 'adafactor' or 'adamw'")


def loss_fn(cfg: decoder_lib.DecoderConfig, params, batch):
  """Mean cross-entropy over target tokens."""
  logits = decoder_lib.Decoder(cfg).apply(
      {'params': params}, batch['tokens'], batch['valid'])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
  return jnp.sum(ce * batch['weights']) / jnp.maximum(
      jnp.sum(batch['weights']), 1.0)


def _rewrite_metrics(path: str, upto_step: int) -> None:
  """Drops metric lines past the restored step (a resumed run rewrites them)."""
  if not files.exists(path):
    return
  with files.open(path) as f:
    keep = [l for l in f if l.strip() and json.loads(l)['step'] <= upto_step]
  records.write_text_atomic(path, ''.join(keep))


def train(
    *,
    model_config: decoder_lib.DecoderConfig,
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    train_steps: int,
    model_dir: str,
    initial_checkpoint_path: str | None = None,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    optimizer: str = 'adafactor',
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    schedule: str = 'constant',
    seed: int = 0,
    checkpoint_period: int = 1000,
    log_period: int = 50,
    plateau: Plateau | None = None,
    eval_fn: Callable[[Any], float] | None = None,
    mesh_shape: tuple[int, int] = (-1, 1),
) -> TrainResult:
  """Trains until `train_steps` (or a plateau); resumes from MODEL_DIR.

  Args:
    model_config: the decoder.
    mixture_or_task_name: a registered SeqIO task or mixture with
      `inputs`/`targets` features and a `train` split.
    task_feature_lengths: {'inputs': N, 'targets': M}; rows are inputs ++
      targets, at most N + M tokens.
    train_steps: total steps (absolute, as in T5X).
    model_dir: checkpoints, metrics.jsonl and tb/ go here; the latest
      checkpoint here is resumed.
    initial_checkpoint_path: params to start from when MODEL_DIR has none;
      None starts from random init (seeded).
    batch_size, learning_rate, optimizer, weight_decay, warmup_steps,
      schedule: the optimisation (paper: 32, 5e-5, Adafactor, constant);
      see `make_optimizer`.
    seed: init and data order.
    checkpoint_period: steps between checkpoints (also saved at the end).
    log_period: steps between metric lines.
    plateau: optional early stop on `eval_fn(params)` (higher is better).
    eval_fn: called every `plateau.eval_period` steps.
    mesh_shape: ('data', 'model') mesh; -1 takes the remaining devices.

  Returns:
    A `TrainResult`.

  Raises:
    FloatingPointError: if the loss or the parameters become NaN/Inf; no
      checkpoint of them is written, so the last good one is kept.
    OSError: naming MODEL_DIR if it is full or not writable (raised at the
      start, when `train_manifest.json` is written).
  """
  files.makedirs(model_dir)
  done_path = os.path.join(model_dir, 'train_done.json')
  if files.exists(done_path):  # finished (maybe stopped early) before
    with files.open(done_path) as f:
      done = json.load(f)
    if done['train_steps'] == train_steps:
      print(f'train: {model_dir} finished at step {done["step"]}, skipping')
      return TrainResult(step=done['step'], loss=done['loss'],
                         stopped_early=done['stopped_early'],
                         evals=done['evals'])
  _write_manifest(
      model_dir, initial_checkpoint_path,
      mixture_or_task_name=mixture_or_task_name,
      mixing_rates=inputs_lib.mixing_rates(mixture_or_task_name),
      task_feature_lengths=dict(task_feature_lengths),
      train_steps=train_steps, batch_size=batch_size,
      learning_rate=learning_rate, optimizer=optimizer,
      weight_decay=weight_decay, warmup_steps=warmup_steps,
      schedule=schedule, seed=seed,
      checkpoint_period=checkpoint_period,
      plateau=dataclasses.asdict(plateau) if plateau else None,
      model_config=dataclasses.asdict(model_config))
  mesh = sharding.create_mesh(*mesh_shape)
  if batch_size % mesh.shape[sharding.DATA]:
    raise ValueError(f'batch_size={batch_size} is not a multiple of the '
                     f"mesh's data axis ({mesh.shape[sharding.DATA]})")
  rules = sharding.logical_axis_rules(for_sampling=False)
  specs = decoder_lib.logical_param_specs(model_config)
  param_sh = sharding.shardings_for(specs, mesh, rules)
  tx = make_optimizer(optimizer, learning_rate, weight_decay, warmup_steps,
                      schedule, train_steps)
  mngr = checkpoints.manager(model_dir)
  metrics_path = os.path.join(model_dir, 'metrics.jsonl')
  evals_path = os.path.join(model_dir, 'evals.json')

  init_params, _ = decoder_lib.init_params(model_config, seed)
  abstract_params = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      init_params, param_sh)
  with mesh, nn.logical_axis_rules(rules):
    init_opt = jax.jit(tx.init)(jax.device_put(init_params, param_sh))
  def abstract(x):
    sh = x.sharding if isinstance(x.sharding, jax.sharding.NamedSharding) \
        else sharding.replicated(mesh)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)

  abstract_state = {
      'opt_state': jax.tree_util.tree_map(abstract, init_opt),
      'step': jax.ShapeDtypeStruct((), jnp.int32,
                                   sharding=sharding.replicated(mesh))}
  evals: list[dict] = []
  latest = mngr.latest_step()
  if latest is not None:
    params, state = checkpoints.restore(mngr, latest, abstract_params,
                                        abstract_state)
    opt_state, step = state['opt_state'], int(state['step'])
    _rewrite_metrics(metrics_path, step)
    if files.exists(evals_path):
      with files.open(evals_path) as f:
        evals = [e for e in json.load(f) if e['step'] <= step]
    print(f'train: resumed {model_dir} at step {step}')
  else:
    if initial_checkpoint_path:
      params = checkpoints.load_params(initial_checkpoint_path,
                                       abstract_params)
    else:
      params = jax.device_put(init_params, param_sh)
    opt_state, step = init_opt, 0

  @jax.jit
  def train_step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(model_config, p, batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  batches = inputs_lib.training_batches(
      mixture_or_task_name, task_feature_lengths, batch_size, seed=seed,
      start_step=step)
  batch_sh = sharding.batch_sharding(mesh, 2)
  name = os.path.join(*os.path.normpath(model_dir).split(os.sep)[-2:])
  prog = progress_lib.Progress(f'train {name}',
                               train_steps, 'steps', start=step)
  tb = _summary_writer(model_dir)
  loss_val, t_log, stopped = float('nan'), time.monotonic(), False
  with mesh, nn.logical_axis_rules(rules):
    while step < train_steps:
      batch = jax.device_put(next(batches), batch_sh)
      params, opt_state, loss = train_step(params, opt_state, batch)
      step += 1
      prog.update(1, f'loss {float(loss):.3f}' if step % log_period == 0
                  else '')
      if step % log_period == 0 or step == train_steps:
        loss_val = float(loss)
        if not math.isfinite(loss_val):
          raise _not_finite(f'loss is {loss_val}', step, model_dir, mngr)
        now = time.monotonic()
        line = {'step': step, 'loss': loss_val,
                'steps_per_s': log_period / max(now - t_log, 1e-9)}
        t_log = now
        _append_line(metrics_path, json.dumps(line))
        tb.scalar('loss', loss_val, step)
      at_eval = plateau is not None and step % plateau.eval_period == 0
      if at_eval or step % checkpoint_period == 0 or step == train_steps:
        # Never evaluate or checkpoint NaN/Inf weights (cheap next to a save).
        if not bool(jax.device_get(_all_finite(params))):
          raise _not_finite('parameters are not finite', step, model_dir,
                            mngr)
      if at_eval:
        metric = float(eval_fn(params))
        evals.append({'step': step, 'metric': metric})
        records.write_json(evals_path, evals)
        tb.scalar('eval_metric', metric, step)
        print(f'train: step {step} eval {metric:.4f}')
        stopped = _plateaued(evals, plateau)
      if at_eval or step % checkpoint_period == 0 or step == train_steps \
          or stopped:
        checkpoints.save(mngr, step, params,
                         {'opt_state': opt_state, 'step': jnp.int32(step)})
      if stopped:
        print(f'train: held-out metric plateaued at step {step}')
        break
  tb.close()
  records.write_json(done_path, {
      'train_steps': train_steps, 'step': step, 'loss': loss_val,
      'stopped_early': stopped, 'evals': evals})
  return TrainResult(step=step, loss=loss_val, stopped_early=stopped,
                     evals=evals)


def train_with(settings: TrainSettings, **kwargs: Any) -> TrainResult:
  """`train` with the budget of `settings`; kwargs are train's others."""
  return train(train_steps=settings.steps, batch_size=settings.batch_size,
               learning_rate=settings.learning_rate,
               optimizer=settings.optimizer,
               warmup_steps=settings.warmup_steps, schedule=settings.schedule,
               weight_decay=settings.weight_decay,
               checkpoint_period=settings.checkpoint_period or settings.steps,
               **kwargs)


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree_util.tree_leaves(tree)]))


def _not_finite(what: str, step: int, model_dir: str,
                mngr) -> FloatingPointError:
  latest = mngr.latest_step()
  kept = (f'the last good checkpoint, step {latest}, is kept'
          if latest is not None else 'no checkpoint was written')
  return FloatingPointError(
      f'{what} at step {step} in {model_dir}; stopped without saving: '
      f'{kept} (lower LEARNING_RATE or add warmup, then rerun)')


def _write_manifest(model_dir: str, initial_checkpoint_path: str | None,
                    **fields: Any) -> None:
  """Writes `train_manifest.json` (also checks MODEL_DIR is writable)."""
  init = None
  if initial_checkpoint_path:
    try:
      init = checkpoints.params_path(initial_checkpoint_path)
    except FileNotFoundError:
      pass  # a resumed run no longer needs it; a fresh one fails on load
  records.write_json(os.path.join(model_dir, 'train_manifest.json'),
                     manifests.stage_manifest(
                         [init] if init else [],
                         initial_checkpoint=initial_checkpoint_path,
                         **fields))


def _plateaued(evals: list[dict], plateau: Plateau) -> bool:
  k = plateau.patience
  if len(evals) < 2 * k or evals[-1]['step'] < plateau.min_steps:
    return False
  mean = lambda es: sum(e['metric'] for e in es) / len(es)
  return mean(evals[-k:]) <= mean(evals[-2 * k:-k]) + plateau.min_delta


def _append_line(path: str, line: str) -> None:
  """Appends a line; on GCS (no appends) rewrites the small file instead."""
  if not files.is_remote(path):
    with files.open(path, 'a') as f:
      f.write(line + '\n')
    return
  old = ''
  if files.exists(path):
    with files.open(path) as f:
      old = f.read()
  records.write_text_atomic(path, old + line + '\n')


class _summary_writer:  # pylint: disable=invalid-name
  """TensorBoard event files (tensorboardX; needs no TensorFlow).

  For a `gs://` MODEL_DIR the events go to a local `./tb/<run>` folder
  (tensorboardX would need google-cloud-storage); metrics.jsonl is still
  written next to the checkpoints.
  """

  def __init__(self, model_dir: str):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    where = os.path.join(model_dir, 'tb')
    if files.is_remote(model_dir):
      where = os.path.join('tb', model_dir.split('://', 1)[1])
    self._writer = tensorboardX.SummaryWriter(where)

  def scalar(self, name: str, value: float, step: int) -> None:
    self._writer.add_scalar(name, value, step)

  def close(self) -> None:
    self._writer.close()


def restore_params(model_config: decoder_lib.DecoderConfig, path: str) -> Any:
  """Loads params for `model_config` from a model dir or step dir."""
  abstract = jax.eval_shape(
      lambda: decoder_lib.init_params(model_config, 0)[0])
  return checkpoints.load_params(path, abstract)


if __name__ == '__main__':
  from lmsi import gin_flags  # pylint: disable=g-import-not-at-top
  gin_flags.main('lmsi.train', 'train', output_dir_arg='model_dir')
