"""Orbax checkpoints of decoder parameters and trainer state.

Layout (T5X-like): `MODEL_DIR/checkpoints/<step>/{params,state}`. `params`
alone is what sampling, evaluation and `INITIAL_CHECKPOINT_PATH` read; `state`
holds the optimizer state and step for resuming. No pickle: orbax only.

Every save also writes `MODEL_DIR/checkpoint_digests/<step>.json`: the
sha256 of each file of the step, which restoring verifies (a flipped byte
is refused, naming the file; checkpoints saved before digests existed are
read unverified).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from absl import logging

import jax
import numpy as np
from etils import epath
import orbax.checkpoint as ocp

from lmsi.model import decoder as decoder_lib
from lmsi.runtime import fileio

ITEMS = ('params', 'state')
DIGESTS = 'checkpoint_digests'


def _absolute(path: str) -> str:
  """An absolute local path; a URL (gs://...) as it is (orbax reads both)."""
  return path if fileio.is_remote(path) else os.path.abspath(path)


def manager(model_dir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      _absolute(os.path.join(model_dir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True),
      item_names=ITEMS)


def save(mngr: ocp.CheckpointManager, step: int, params: Any,
         state: Any) -> None:
  """Saves step `step`; earlier steps stay intact if this one fails.

  Raises:
    OSError: naming the checkpoint directory if it is full or unwritable.
  """
  with fileio.naming_write_errors(os.path.join(str(mngr.directory),
                                               str(step))):
    mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        state=ocp.args.StandardSave(state)), force=True)
    mngr.wait_until_finished()
    if jax.process_index() == 0:
      write_digests(os.path.join(str(mngr.directory), str(step)))


def params_sha256(params: Any) -> str:
  """sha256 over every parameter's path, dtype, shape and bytes (the
  export manifest's and the preference reference's digest)."""
  digest = hashlib.sha256()
  for key, leaf in sorted(
      (jax.tree_util.keystr(k), np.asarray(jax.device_get(v))) for k, v in
      jax.tree_util.tree_flatten_with_path(params)[0]):
    digest.update(f'{key} {leaf.dtype} {leaf.shape}\n'.encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _digest_file(step_dir: str) -> str:
  """MODEL_DIR/checkpoint_digests/<step>.json, of the step dir
  MODEL_DIR/checkpoints/<step>."""
  checkpoints_dir = os.path.dirname(step_dir.rstrip('/'))
  return os.path.join(os.path.dirname(checkpoints_dir), DIGESTS,
                      os.path.basename(step_dir.rstrip('/')) + '.json')


def _files(root: str) -> dict[str, str]:
  """{path relative to `root`: absolute path} of every file under `root`."""
  out = {}
  for parent, _, names in epath.Path(root).walk():
    for name in names:
      full = os.path.join(str(parent), name)
      out[os.path.relpath(full, root)] = full
  return out


def write_digests(step_dir: str) -> None:
  """Records the sha256 of every file of a saved step (and drops the
  digests of steps orbax has since deleted)."""
  digests = {rel: fileio.file_sha256(full)
             for rel, full in sorted(_files(step_dir).items())}
  path = _digest_file(step_dir)
  fileio.write_json(path, digests)
  kept = {d.name for d in epath.Path(os.path.dirname(step_dir)).iterdir()}
  for old in epath.Path(os.path.dirname(path)).iterdir():
    if old.name.endswith('.json') and old.name[:-5] not in kept:
      old.unlink()


def verify_digests(step_dir: str, under: str = '') -> None:
  """Checks the files of a saved step (those under `under`, e.g. 'params')
  against its digests; a step saved without digests is not checked.

  Raises:
    ValueError: naming the file that is missing or whose sha256 differs.
  """
  path = _digest_file(step_dir)
  if not epath.Path(path).exists():
    return
  t0 = time.monotonic()
  with epath.Path(path).open() as f:
    digests = json.load(f)
  where = os.path.join(step_dir, under) if under else step_dir
  for rel, want in digests.items():
    if under and not rel.startswith(under + os.sep):
      continue
    full = os.path.join(step_dir, rel)
    if not epath.Path(full).exists():
      problem = f'{full} is missing'
    elif fileio.file_sha256(full) != want:
      problem = f'{full}: sha256 differs from {path}'
    else:
      continue
    raise ValueError(
        f'checkpoint {where} is corrupt or truncated ({problem}); delete '
        f'{step_dir} to fall back to an earlier step, or recreate it')
  logging.info('checkpoint %s: %d files verified in %.2f s', where,
               len(digests), time.monotonic() - t0)


def _unreadable(path: str, e: Exception) -> ValueError:
  """The error for a checkpoint orbax cannot read: where, why, what to do."""
  why = (str(e).strip().splitlines() or [''])[0]
  why = why.split(' See full TensorStore details')[0][:300]
  step_dir = os.path.dirname(path) if os.path.basename(path) in ITEMS else path
  return ValueError(
      f'checkpoint {path} is corrupt or truncated ({type(e).__name__}: '
      f'{why}); delete {step_dir} to fall back to an earlier step, or '
      'recreate it')


def restore(mngr: ocp.CheckpointManager, step: int, abstract_params: Any,
            abstract_state: Any) -> tuple[Any, Any]:
  """Restores step `step` (params and trainer state).

  Raises:
    ValueError: naming the step directory if orbax cannot read it.
  """
  verify_digests(os.path.join(str(mngr.directory), str(step)))
  try:
    out = mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params),
        state=ocp.args.StandardRestore(abstract_state)))
  except Exception as e:  # pylint: disable=broad-except  # tensorstore's
    raise _unreadable(os.path.join(str(mngr.directory), str(step)),
                      e) from e
  return out['params'], out['state']


def params_path(path: str) -> str:
  """Resolves a model dir, a checkpoints dir or a step dir to its params.

  Raises:
    FileNotFoundError: if no finished checkpoint is found under `path`.
  """
  path = _absolute(path)
  for cand in (path, os.path.join(path, 'checkpoints')):
    if epath.Path(cand, 'params').is_dir():
      return os.path.join(cand, 'params')
    if epath.Path(cand).is_dir():
      steps = sorted(int(d.name) for d in epath.Path(cand).iterdir()
                     if d.name.isdigit())
      if steps:
        return os.path.join(cand, str(steps[-1]), 'params')
  raise FileNotFoundError(f'no finished orbax checkpoint under {path!r} '
                          '(expected <dir>/checkpoints/<step>/params)')


def load_params(path: str, abstract_params: Any) -> Any:
  """Restores params from a model/step dir, checked against the config.

  Raises:
    ValueError: if the stored shapes do not match `abstract_params`, or if
      the checkpoint is corrupt or truncated (naming it).
  """
  ppath = params_path(path)
  verify_digests(os.path.dirname(ppath), 'params')
  ckptr = ocp.StandardCheckpointer()
  try:
    stored = ckptr.metadata(ppath)
  except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore
    raise _unreadable(ppath, e) from e
  stored_tree = getattr(stored, 'item_metadata', stored)
  stored_tree = getattr(stored_tree, 'tree', stored_tree)
  want = jax.tree_util.tree_map(lambda x: tuple(x.shape), abstract_params)
  try:
    got = jax.tree_util.tree_map(lambda x: tuple(x.shape), dict(stored_tree))
  except (TypeError, AttributeError):
    got = None
  if got is not None and got != want:
    raise ValueError(f'checkpoint {ppath} does not match the model config: '
                     + _shape_diff(got, want))
  # Restore onto this process's first device unless the caller placed the
  # target: the stored shardings name the saving run's devices, which a
  # different topology (another host count, a pod) does not have.
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(
          x, 'sharding', None) or local), abstract_params)
  try:
    return ckptr.restore(ppath, target)
  except Exception as e:  # pylint: disable=broad-except  # tensorstore's
    raise _unreadable(ppath, e) from e


def restore_params(model_config: decoder_lib.DecoderConfig, path: str) -> Any:
  """Loads params for `model_config` from a model dir or step dir.

  Raises:
    FileNotFoundError: if no finished checkpoint is found under `path`.
    ValueError: if its shapes do not match `model_config`, or it is corrupt.
  """
  abstract = jax.eval_shape(
      lambda: decoder_lib.init_params(model_config, 0)[0])
  return load_params(path, abstract)


def _shape_diff(got: Any, want: Any, limit: int = 4) -> str:
  """The first `limit` differences of two {name: shape} trees, by name."""
  flat = lambda tree: {jax.tree_util.keystr(k, simple=True, separator='.'): v
                       for k, v in jax.tree_util.tree_flatten_with_path(
                           tree, is_leaf=lambda x: isinstance(x, tuple))[0]}
  got, want = flat(got), flat(want)
  diffs = [f'{k}: stored {got.get(k, "absent")}, config '
           f'{want.get(k, "absent")}' for k in sorted(set(got) | set(want))
           if got.get(k) != want.get(k)]
  more = f' (and {len(diffs) - limit} more)' if len(diffs) > limit else ''
  return '; '.join(diffs[:limit]) + more


def save_params(path: str, params: Any) -> None:
  """Saves params alone (e.g. converted weights) as `path/checkpoints/0`."""
  mngr = manager(path)
  save(mngr, 0, params, {'step': 0})
