"""The trainer's state: fresh (random or INITIAL_CHECKPOINT_PATH) or resumed.

A resumed run continues from the latest checkpoint in MODEL_DIR: params,
optimizer state and step, plus the metric lines and held-out evals written up
to that step (later ones are dropped, as the resumed run rewrites them).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import linen as nn
from jax.sharding import PartitionSpec

from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import fileio
from lmsi.model import sharding

METRICS_FILE = 'metrics.jsonl'  # one JSON line per logged step
EVALS_FILE = 'evals.json'  # the held-out evals so far


@dataclasses.dataclass(frozen=True)
class TrainState:
  """Where training stands: the arrays, the step and the evals so far."""

  params: Any
  opt_state: Any
  step: int  # steps done: 0 fresh, else the restored checkpoint's
  evals: list[dict]  # [{'step': s, 'metric': m}, ...] up to `step`
  resumed: bool = False  # restored from a checkpoint in MODEL_DIR


def optimizer_state_specs(tx: optax.GradientTransformation, params: Any,
                          param_specs: Any) -> Any:
  """Logical PartitionSpecs of `tx`'s state: each leaf follows its
  parameter's axes.

  optax states mirror the params tree (Adam's mu and nu, Adafactor's v_row,
  v_col and v), so a state leaf belongs to the parameter whose path ends
  its own. A leaf of the parameter's shape takes its spec; a leaf with one
  dimension fewer (Adafactor's factored row / column statistics) takes the
  spec without that dimension, when only one dimension fits; anything else
  (step counts, Adafactor's (1,) placeholders) is replicated. Without this,
  `jit(tx.init)` left the factored statistics replicated on every chip.

  Args:
    tx: the optimizer.
    params: the params (arrays or ShapeDtypeStructs).
    param_specs: their logical PartitionSpecs (`decoder.logical_param_specs`).

  Returns:
    A pytree of PartitionSpecs matching `jax.eval_shape(tx.init, params)`.
  """
  names = lambda path: tuple(k.key for k in path
                             if isinstance(k, jax.tree_util.DictKey))
  owners = {}
  for (path, leaf), spec in zip(
      jax.tree_util.tree_flatten_with_path(params)[0],
      jax.tree_util.tree_leaves(
          param_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))):
    axes = tuple(spec) + (None,) * (len(leaf.shape) - len(spec))
    owners[names(path)] = (tuple(leaf.shape), axes)

  def spec_for(path, leaf) -> PartitionSpec:
    keys = names(path)
    owner = next((owners[keys[i:]] for i in range(len(keys))
                  if keys[i:] in owners), None)
    if owner is None:
      return PartitionSpec()
    shape, axes = owner
    if tuple(leaf.shape) == shape:
      return PartitionSpec(*axes)
    fits = {axes[:i] + axes[i + 1:] for i in range(len(shape))
            if shape[:i] + shape[i + 1:] == tuple(leaf.shape)}
    return PartitionSpec(*fits.pop()) if len(fits) == 1 else PartitionSpec()

  return jax.tree_util.tree_map_with_path(spec_for,
                                          jax.eval_shape(tx.init, params))


def init_optimizer(tx: optax.GradientTransformation, params: Any,
                   param_specs: Any, mesh: jax.sharding.Mesh,
                   rules: Any) -> Any:
  """`tx.init(params)` with every state leaf sharded like its parameter
  (`optimizer_state_specs`) on `mesh`."""
  specs = optimizer_state_specs(tx, params, param_specs)
  shapes = jax.eval_shape(tx.init, params)
  out = sharding.shardings_for(specs, mesh, rules, shapes=shapes)
  with mesh, nn.logical_axis_rules(rules):
    return jax.jit(tx.init, out_shardings=out)(params)


def init_or_restore(*, model_config: decoder_lib.DecoderConfig,
                    tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh,
                    rules: Any,
                    mngr: ocp.CheckpointManager,
                    model_dir: str,
                    initial_checkpoint_path: str | None = None,
                    seed: int = 0) -> TrainState:
  """The state to train from, sharded over `mesh` by the logical `rules`.

  The latest checkpoint of `mngr` (MODEL_DIR's) if there is one; else params
  from `initial_checkpoint_path` or a seeded random init, a fresh optimizer
  state and step 0.

  Raises:
    FileNotFoundError: if `initial_checkpoint_path` holds no checkpoint.
    ValueError: naming the checkpoint if it does not match `model_config`
      or is corrupt.
  """
  specs = decoder_lib.logical_param_specs(model_config)
  param_sh = sharding.shardings_for(specs, mesh, rules)
  init_params, _ = decoder_lib.init_params(model_config, seed)
  abstract_params = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      init_params, param_sh)
  init_opt = init_optimizer(tx, jax.device_put(init_params, param_sh),
                            specs, mesh, rules)

  latest = mngr.latest_step()
  if latest is None:
    if initial_checkpoint_path:
      params = checkpoints.load_params(initial_checkpoint_path,
                                       abstract_params)
    else:
      params = jax.device_put(init_params, param_sh)
    return TrainState(params=params, opt_state=init_opt, step=0, evals=[])

  def abstract(x):
    sh = x.sharding if isinstance(x.sharding, jax.sharding.NamedSharding) \
        else sharding.replicated(mesh)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)

  abstract_state = {
      'opt_state': jax.tree_util.tree_map(abstract, init_opt),
      'step': jax.ShapeDtypeStruct((), jnp.int32,
                                   sharding=sharding.replicated(mesh))}
  params, state = checkpoints.restore(mngr, latest, abstract_params,
                                      abstract_state)
  step = int(state['step'])
  _rewrite_metrics(os.path.join(model_dir, METRICS_FILE), step)
  evals_path = os.path.join(model_dir, EVALS_FILE)
  evals = []
  if epath.Path(evals_path).exists():
    with epath.Path(evals_path).open() as f:
      evals = [e for e in json.load(f) if e['step'] <= step]
  logging.info('train: resumed %s at step %d', model_dir, step)
  return TrainState(params=params, opt_state=state['opt_state'], step=step,
                    evals=evals, resumed=True)


def _rewrite_metrics(path: str, upto_step: int) -> None:
  """Drops metric lines past the restored step (a resumed run rewrites them)."""
  if not epath.Path(path).exists():
    return
  with epath.Path(path).open() as f:
    keep = [l for l in f if l.strip() and json.loads(l)['step'] <= upto_step]
  fileio.write_text_atomic(path, ''.join(keep))
