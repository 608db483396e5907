"""Fine-tuning on a SeqIO mixture, T5X-style (LMSI stage 6).

t5x is not on PyPI, so this is our trainer. It keeps the contract of t5x's
`configs/runs/finetune.gin`: macros MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, MODEL_DIR, INITIAL_CHECKPOINT_PATH;
`--gin_file` / `--gin.X=...` flags; auto-resume from the latest checkpoint in
MODEL_DIR. Loss is on target tokens only. Metrics go to
`MODEL_DIR/metrics.jsonl` and TensorBoard event files in `MODEL_DIR/tb`
(clu's metric writer; on gs:// too).

The pieces: `train_step` (optimizer, loss, the jitted step), `train_state`
(init or resume), `train_loop` (the loop); `train` wires them up. The
learner is the paper's `sft` (cross-entropy on the mixture's targets) or
`preference` (ScPO's loss on a pairs task, `lmsi.trainer.preference`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from absl import logging
from etils import epath
import jax
from flax import linen as nn

from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.data import inputs as inputs_lib
from lmsi.runtime import manifests
from lmsi.runtime import fileio
from lmsi.runtime import preemption
from lmsi.model import sharding
from lmsi.trainer import loop as train_loop
from lmsi.trainer import preference as preference_lib
from lmsi.trainer import state as train_state
from lmsi.trainer import step as train_step

if TYPE_CHECKING:
  from clu import metric_writers

# Re-exported: gin files bind `train.Plateau`, callers name train.Plateau.
Plateau = train_loop.Plateau
PreferenceConfig = preference_lib.PreferenceConfig
LEARNERS = ('sft', 'preference')


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSettings:
  """One training budget (paper: 10k steps, Adafactor, 5e-5, batch 32)."""

  steps: int = 10_000
  batch_size: int = 32
  learning_rate: float = 5e-5
  optimizer: str = 'adafactor'
  warmup_steps: int = 0
  schedule: str = 'constant'  # or 'cosine' (train_step.make_optimizer)
  weight_decay: float = 0.0
  checkpoint_period: int = 0  # 0: only at the end (a kill restarts the fit)


@dataclasses.dataclass(frozen=True)
class TrainResult:
  step: int
  loss: float
  stopped_early: bool
  evals: list[dict]


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
    grad_accum_steps: int = 1,
    learner: str = 'sft',
    preference: PreferenceConfig | None = None,
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
      see `train_step.make_optimizer`.
    seed: init and data order.
    checkpoint_period: steps between checkpoints (also saved at the end).
    log_period: steps between metric lines.
    plateau: optional early stop on `eval_fn(params)` (higher is better).
    eval_fn: called every `plateau.eval_period` steps.
    mesh_shape: ('data', 'model') mesh; -1 takes the remaining devices.
    grad_accum_steps: each step's batch runs as this many micro-batches
      whose gradients are averaged (same update, less activation memory).
    learner: 'sft' (the paper) or 'preference' (ScPO: the task is a pairs
      task, `batch_size` counts pairs; the reference is the initial
      params, scored once into MODEL_DIR/reference_logprobs.json).
    preference: the preference loss's beta and alpha (default
      `PreferenceConfig()`).

  Returns:
    A `TrainResult`.

  Raises:
    FloatingPointError: if the loss or the parameters become NaN/Inf; no
      checkpoint of them is written, so the last good one is kept.
    OSError: naming MODEL_DIR if it is full or not writable (raised at the
      start, when `train_manifest.json` is written).
    preemption.Preempted: (exit code 75) after a SIGTERM, once the step in
      flight is checkpointed; rerunning resumes there.
  """
  if learner not in LEARNERS:
    raise ValueError(f'learner={learner!r}: expected one of {LEARNERS}')
  if learner == 'preference' and grad_accum_steps != 1:
    raise ValueError('the preference learner does not accumulate gradients '
                     f'(grad_accum_steps={grad_accum_steps})')
  preference = preference or PreferenceConfig()
  fileio.makedirs(model_dir)
  done = _finished(model_dir, train_steps)
  if done is not None:
    return done
  _write_manifest(
      model_dir, initial_checkpoint_path,
      mixture_or_task_name=mixture_or_task_name,
      mixing_rates=inputs_lib.mixing_rates(mixture_or_task_name),
      task_feature_lengths=dict(task_feature_lengths),
      train_steps=train_steps, batch_size=batch_size,
      learning_rate=learning_rate, optimizer=optimizer,
      weight_decay=weight_decay, warmup_steps=warmup_steps,
      schedule=schedule, seed=seed, grad_accum_steps=grad_accum_steps,
      checkpoint_period=checkpoint_period,
      plateau=dataclasses.asdict(plateau) if plateau else None,
      model_config=dataclasses.asdict(model_config), learner=learner,
      preference=(dataclasses.asdict(preference)
                  if learner == 'preference' else None))
  mesh = sharding.create_mesh(*mesh_shape)
  if batch_size % mesh.shape[sharding.DATA]:
    raise ValueError(f'batch_size={batch_size} is not a multiple of the '
                     f"mesh's data axis ({mesh.shape[sharding.DATA]})")
  rules = sharding.logical_axis_rules(for_sampling=False)
  tx = train_step.make_optimizer(optimizer, learning_rate, weight_decay,
                                 warmup_steps, schedule, train_steps)
  mngr = checkpoints.manager(model_dir)
  state = train_state.init_or_restore(
      model_config=model_config, tx=tx, mesh=mesh, rules=rules, mngr=mngr,
      model_dir=model_dir, initial_checkpoint_path=initial_checkpoint_path,
      seed=seed)
  batch_sharding = sharding.batch_sharding(mesh, 2)
  if learner == 'preference':
    batches, step_fn = _preference_setup(
        model_config, preference, tx, state, mesh=mesh, rules=rules,
        task=mixture_or_task_name, lengths=task_feature_lengths,
        batch_size=batch_size, seed=seed, model_dir=model_dir,
        batch_sharding=batch_sharding)
  else:
    batches = inputs_lib.training_batches(
        mixture_or_task_name, task_feature_lengths, batch_size, seed=seed,
        start_step=state.step)
    step_fn = train_step.make_train_step(model_config, tx, grad_accum_steps)
  writer = summary_writer(model_dir)
  try:
    with mesh, nn.logical_axis_rules(rules), preemption.Watch() as watch:
      out = train_loop.run(
          state, train_step=step_fn,
          batches=batches, batch_sharding=batch_sharding,
          train_steps=train_steps, model_dir=model_dir, mngr=mngr,
          writer=writer, checkpoint_period=checkpoint_period,
          log_period=log_period, plateau=plateau, eval_fn=eval_fn,
          preemption=watch)
  finally:
    writer.close()
  result = TrainResult(step=out.state.step, loss=out.loss,
                       stopped_early=out.stopped_early, evals=out.state.evals)
  fileio.write_json(_done_path(model_dir), {
      'train_steps': train_steps, 'step': result.step, 'loss': result.loss,
      'stopped_early': result.stopped_early, 'evals': result.evals})
  return result


def _preference_setup(model_config, preference, tx, state, *, mesh, rules,
                      task, lengths, batch_size, seed, model_dir,
                      batch_sharding):
  """(batches, step) of the preference learner; scores the reference (the
  initial params) once, before the first step."""
  pairs = preference_lib.load_pairs(task, lengths)
  length = sum(lengths.values())
  with mesh, nn.logical_axis_rules(rules):
    reference, facts = preference_lib.stored_reference(
        model_dir, pairs,
        reference_params=state.params if state.step == 0 else None,
        compute=lambda: preference_lib.reference_logprobs(
            model_config, state.params, pairs, length, batch_size,
            batch_sharding))
  logging.info('preference: %d pairs, reference %s', len(pairs),
               facts['reference_sha256'][:12])
  batches = preference_lib.batches(pairs, reference, length, batch_size,
                                   seed=seed, start_step=state.step)
  return batches, preference_lib.make_step(model_config, tx, preference)


def train_with(settings: TrainSettings, **kwargs: Any) -> TrainResult:
  """`train` with the budget of `settings`; kwargs are train's others."""
  return train(train_steps=settings.steps, batch_size=settings.batch_size,
               learning_rate=settings.learning_rate,
               optimizer=settings.optimizer,
               warmup_steps=settings.warmup_steps, schedule=settings.schedule,
               weight_decay=settings.weight_decay,
               checkpoint_period=settings.checkpoint_period or settings.steps,
               **kwargs)


def summary_writer(model_dir: str) -> metric_writers.MetricWriter:
  """clu's default writer: TensorBoard summaries in MODEL_DIR/tb (gs:// too)
  from the first process, logging only from the others."""
  # clu's writers import tensorflow: not at import time.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(
      os.path.join(model_dir, 'tb'), just_logging=jax.process_index() > 0)


def _done_path(model_dir: str) -> str:
  return os.path.join(model_dir, 'train_done.json')


def _finished(model_dir: str, train_steps: int) -> TrainResult | None:
  """The result of a run to `train_steps` that finished (maybe stopped
  early) in MODEL_DIR before, or None."""
  if not epath.Path(_done_path(model_dir)).exists():
    return None
  with epath.Path(_done_path(model_dir)).open() as f:
    done = json.load(f)
  if done['train_steps'] != train_steps:
    return None
  logging.info('train: %s finished at step %d, skipping', model_dir,
               done['step'])
  return TrainResult(step=done['step'], loss=done['loss'],
                     stopped_early=done['stopped_early'], evals=done['evals'])


def _write_manifest(model_dir: str, initial_checkpoint_path: str | None,
                    **fields: Any) -> None:
  """Writes `train_manifest.json` (also checks MODEL_DIR is writable)."""
  init = None
  if initial_checkpoint_path:
    try:
      init = checkpoints.params_path(initial_checkpoint_path)
    except FileNotFoundError:
      pass  # a resumed run no longer needs it; a fresh one fails on load
  fileio.write_json(os.path.join(model_dir, 'train_manifest.json'),
                     manifests.stage_manifest(
                         [init] if init else [],
                         initial_checkpoint=initial_checkpoint_path,
                         **fields))
