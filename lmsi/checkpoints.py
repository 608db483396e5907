"""Orbax checkpoints of decoder parameters and trainer state.

Layout (T5X-like): `MODEL_DIR/checkpoints/<step>/{params,state}`. `params`
alone is what sampling, evaluation and `INITIAL_CHECKPOINT_PATH` read; `state`
holds the optimizer state and step for resuming. No pickle: orbax only.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

ITEMS = ('params', 'state')


def manager(model_dir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(model_dir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True),
      item_names=ITEMS)


def save(mngr: ocp.CheckpointManager, step: int, params: Any,
         state: Any) -> None:
  mngr.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      state=ocp.args.StandardSave(state)), force=True)
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, step: int, abstract_params: Any,
            abstract_state: Any) -> tuple[Any, Any]:
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params),
      state=ocp.args.StandardRestore(abstract_state)))
  return out['params'], out['state']


def params_path(path: str) -> str:
  """Resolves a model dir, a checkpoints dir or a step dir to its params.

  Raises:
    FileNotFoundError: if no finished checkpoint is found under `path`.
  """
  path = os.path.abspath(path)
  for cand in (path, os.path.join(path, 'checkpoints')):
    if os.path.isdir(os.path.join(cand, 'params')):
      return os.path.join(cand, 'params')
    if os.path.isdir(cand):
      steps = sorted(int(d) for d in os.listdir(cand) if d.isdigit())
      if steps:
        return os.path.join(cand, str(steps[-1]), 'params')
  raise FileNotFoundError(f'no finished orbax checkpoint under {path!r} '
                          '(expected <dir>/checkpoints/<step>/params)')


def load_params(path: str, abstract_params: Any) -> Any:
  """Restores params from a model/step dir, checked against the config.

  Raises:
    ValueError: if the stored shapes do not match `abstract_params`.
  """
  ppath = params_path(path)
  ckptr = ocp.StandardCheckpointer()
  stored = ckptr.metadata(ppath)
  stored_tree = getattr(stored, 'item_metadata', stored)
  stored_tree = getattr(stored_tree, 'tree', stored_tree)
  want = jax.tree_util.tree_map(lambda x: tuple(x.shape), abstract_params)
  try:
    got = jax.tree_util.tree_map(lambda x: tuple(x.shape), dict(stored_tree))
  except (TypeError, AttributeError):
    got = None
  if got is not None and got != want:
    raise ValueError(f'checkpoint {ppath} does not match the model config: '
                     f'stored shapes {got} vs config shapes {want}')
  # Restore onto this process's first device unless the caller placed the
  # target: the stored shardings name the saving run's devices, which a
  # different topology (another host count, a pod) does not have.
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(
          x, 'sharding', None) or local), abstract_params)
  return ckptr.restore(ppath, target)


def save_params(path: str, params: Any) -> None:
  """Saves params alone (e.g. converted weights) as `path/checkpoints/0`."""
  mngr = manager(path)
  save(mngr, 0, params, {'step': 0})
