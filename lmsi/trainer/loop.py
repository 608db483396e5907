"""The training loop: steps, metrics, NaN checks, evals, plateau, checkpoints.

Metrics go to `MODEL_DIR/metrics.jsonl` and to a `clu` metric writer (the
trainer's writes TensorBoard summaries); `clu.periodic_actions.ReportProgress`
adds steps/sec to it, and a `tqdm` bar shows steps, rate, ETA and loss.
Checkpoints are saved every `checkpoint_period` steps, at each eval and at
the end, never of NaN/Inf parameters, and at the step in flight when a
SIGTERM preempts the run (`lmsi.runtime.preemption`: then `Preempted`,
exit 75).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import tqdm

from lmsi.checkpoints import store as checkpoints
from lmsi.runtime import fileio
from lmsi.runtime import preemption as preemption_lib
from lmsi.trainer import state as state_lib
from lmsi.trainer import step as step_lib

if TYPE_CHECKING:
  from clu import metric_writers


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


@dataclasses.dataclass(frozen=True)
class LoopResult:
  state: state_lib.TrainState  # the last step's (its inputs were donated)
  loss: float  # the last logged loss (NaN if none was logged)
  stopped_early: bool  # by the plateau rule


def plateaued(evals: list[dict], plateau: Plateau) -> bool:
  """Whether `evals` (oldest first) meet the `plateau` stopping rule."""
  k = plateau.patience
  if len(evals) < 2 * k or evals[-1]['step'] < plateau.min_steps:
    return False
  mean = lambda es: sum(e['metric'] for e in es) / len(es)
  return mean(evals[-k:]) <= mean(evals[-2 * k:-k]) + plateau.min_delta


def run(state: state_lib.TrainState, *,
        train_step: step_lib.StepFn,
        batches: Iterator[Any],
        batch_sharding: jax.sharding.Sharding,
        train_steps: int,
        model_dir: str,
        mngr: ocp.CheckpointManager,
        writer: metric_writers.MetricWriter,
        checkpoint_period: int,
        log_period: int = 50,
        plateau: Plateau | None = None,
        eval_fn: Callable[[Any], float] | None = None,
        preemption: preemption_lib.Watch | None = None) -> LoopResult:
  """Steps `state` to `train_steps` (or a plateau), logging and saving.

  Args:
    state: where to start; its arrays are donated to `train_step`.
    train_step: see `train_step.make_train_step`.
    batches: host batches from step `state.step` on.
    batch_sharding: where each batch goes.
    train_steps: the last step (absolute).
    model_dir: metrics.jsonl and evals.json go here.
    mngr: the checkpoints of MODEL_DIR.
    writer: gets 'loss', 'eval_metric' and ReportProgress's scalars.
    checkpoint_period: steps between checkpoints (also saved at the end).
    log_period: steps between metric lines.
    plateau: optional early stop on `eval_fn(params)` (higher is better).
    eval_fn: called every `plateau.eval_period` steps.
    preemption: asked after every step; once it says stop, the step just
      done is checkpointed (and logged) and `Preempted` is raised.

  Returns:
    A `LoopResult`; the writer is flushed, not closed.

  Raises:
    preemption_lib.Preempted: after saving, when preempted.
    FloatingPointError: if the loss or the parameters become NaN/Inf; no
      checkpoint of them is written, so the last good one is kept.
  """
  # clu's periodic actions import tensorflow: not at import time.
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  metrics_path = os.path.join(model_dir, state_lib.METRICS_FILE)
  evals_path = os.path.join(model_dir, state_lib.EVALS_FILE)
  name = os.path.join(*os.path.normpath(model_dir).split(os.sep)[-2:])
  # A progress line every 10 s at most (a log, not a flood, when piped).
  bar = tqdm.tqdm(total=train_steps, initial=state.step, desc=f'train {name}',
                  unit='steps', file=sys.stderr, mininterval=10.0)
  report = periodic_actions.ReportProgress(
      num_train_steps=train_steps, writer=writer, every_steps=log_period,
      every_secs=None)
  params, opt_state, step = state.params, state.opt_state, state.step
  evals = list(state.evals)
  del state  # its arrays are donated by the first step
  loss_val, t_log, stopped = float('nan'), time.monotonic(), False
  with bar:
    while step < train_steps:
      batch = jax.device_put(next(batches), batch_sharding)
      params, opt_state, loss = train_step(params, opt_state, batch)
      step += 1
      report(step)
      if step % log_period == 0 or step == train_steps:
        loss_val = float(loss)
        bar.set_postfix_str(f'loss {loss_val:.3f}', refresh=False)
        if not math.isfinite(loss_val):
          raise _not_finite(f'loss is {loss_val}', step, model_dir, mngr)
        now = time.monotonic()
        line = {'step': step, 'loss': loss_val,
                'steps_per_s': log_period / max(now - t_log, 1e-9)}
        t_log = now
        _append_line(metrics_path, json.dumps(line))
        writer.write_scalars(step, {'loss': loss_val})
      bar.update(1)
      at_eval = plateau is not None and step % plateau.eval_period == 0
      at_save = step % checkpoint_period == 0 or step == train_steps
      preempted = preemption is not None and preemption.should_stop(step)
      if (at_eval or at_save or preempted) and not bool(
          jax.device_get(_all_finite(params))):
        # Never evaluate or checkpoint NaN/Inf weights (cheap next to a save).
        raise _not_finite('parameters are not finite', step, model_dir, mngr)
      if at_eval:
        metric = float(eval_fn(params))
        evals.append({'step': step, 'metric': metric})
        fileio.write_json(evals_path, evals)
        writer.write_scalars(step, {'eval_metric': metric})
        logging.info('train: step %d eval %.4f', step, metric)
        stopped = plateaued(evals, plateau)
      t_save = time.monotonic()
      if at_eval or at_save or stopped or preempted:
        checkpoints.save(mngr, step, params,
                         {'opt_state': opt_state, 'step': jnp.int32(step)})
      if preempted:
        writer.flush()
        err = preemption_lib.Preempted(step, model_dir)
        logging.warning('train: %s (the save took %.2f s)', err,
                        time.monotonic() - t_save)
        raise err
      if stopped:
        logging.info('train: held-out metric plateaued at step %d', step)
        break
  writer.flush()
  return LoopResult(
      state=state_lib.TrainState(params=params, opt_state=opt_state,
                                 step=step, evals=evals),
      loss=loss_val, stopped_early=stopped)


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree_util.tree_leaves(tree)]))


def _not_finite(what: str, step: int, model_dir: str,
                mngr: ocp.CheckpointManager) -> FloatingPointError:
  latest = mngr.latest_step()
  kept = (f'the last good checkpoint, step {latest}, is kept'
          if latest is not None else 'no checkpoint was written')
  return FloatingPointError(
      f'{what} at step {step} in {model_dir}; stopped without saving: '
      f'{kept} (lower LEARNING_RATE or add warmup, then rerun)')


def _append_line(path: str, line: str) -> None:
  """Appends a line; on GCS (no appends) rewrites the small file instead."""
  if not fileio.is_remote(path):
    with epath.Path(path).open('a') as f:
      f.write(line + '\n')
    return
  old = ''
  if epath.Path(path).exists():
    with epath.Path(path).open() as f:
      old = f.read()
  fileio.write_text_atomic(path, old + line + '\n')
