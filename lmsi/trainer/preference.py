"""The preference learner (ScPO): a vote-weighted DPO loss plus NLL.

Self-Consistency Preference Optimization (Prasad et al., arXiv 2411.04109)
trains on the pairs `lmsi.voting.preference` builds from the vote:

    L = w(x) * ( -log sigmoid(beta * [(log pi(y+) - log ref(y+))
                                      - (log pi(y-) - log ref(y-))])
                 + alpha * -log pi(y+) / |y+| )

averaged over pairs, w(x) = (V(y+) - V(y-)) / k, `ref` the round's starting
model (INITIAL_CHECKPOINT_PATH), log pi(y) summed over y's tokens (EOS
included) given the prompt. The reference's log-probabilities are computed
once per round, in one pass before the first step, and stored in
MODEL_DIR/reference_logprobs.json with the digests of the pairs and of the
reference parameters: no second model is resident while training, and a
resumed run reuses them only if the pairs are the same.

Pairs come in as a registered SeqIO task (`tasks.selfgen.register_pairs`
over `lmsi.aggregate`'s pairs.jsonl): `inputs`, `chosen`, `rejected`
tokenized, `weight` and `id` as text. Batches are [2B, L] rows, chosen
rows first; which pairs form the batch of step s depends only on (pairs,
seed, s), so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsi.checkpoints import store as checkpoints
from lmsi.data import inputs as inputs_lib
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import fileio
from lmsi.trainer import step as step_lib

REFERENCE_FILE = 'reference_logprobs.json'


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferenceConfig:
  """ScPO's loss. [open] beta and alpha: tuned on seed_dev (the paper
  reports beta per dataset; alpha weights the chosen path's NLL)."""

  beta: float = 0.1
  alpha: float = 1.0

  def __post_init__(self):
    if self.beta <= 0 or self.alpha < 0:
      raise ValueError(f'PreferenceConfig: beta must be > 0 and alpha >= 0, '
                       f'got beta={self.beta}, alpha={self.alpha}')


@dataclasses.dataclass(frozen=True)
class TokenPairs:
  """A round's pairs, tokenized and trimmed to the feature lengths."""

  ids: list[str]
  inputs: list[np.ndarray]
  chosen: list[np.ndarray]
  rejected: list[np.ndarray]
  weights: np.ndarray  # float32 [N]

  def __len__(self) -> int:
    return len(self.ids)

  def digest(self) -> str:
    """sha256 over every pair's id, tokens and weight."""
    h = hashlib.sha256()
    for i in range(len(self)):
      h.update(self.ids[i].encode('utf-8') + b'\0')
      for row in (self.inputs[i], self.chosen[i], self.rejected[i]):
        h.update(np.asarray(row, np.int32).tobytes() + b'|')
      h.update(np.float32(self.weights[i]).tobytes())
    return h.hexdigest()


def load_pairs(task_name: str, task_feature_lengths: Mapping[str, int]
               ) -> TokenPairs:
  """The `train` split of a registered pairs task, trimmed to
  {'inputs': N, 'targets': M} (chosen and rejected get M each).

  Raises:
    ValueError: naming the task if it holds no pairs or lacks a feature.
  """
  rows = inputs_lib.load_split(task_name, 'train')
  if not rows:
    raise ValueError(f'{task_name}: no preference pairs to train on (every '
                     'question had one answer or a margin below the '
                     'threshold)')
  need = {'id', 'inputs', 'chosen', 'rejected', 'weight'}
  if need - set(rows[0]):
    raise ValueError(f'{task_name}: a pairs task needs features '
                     f'{sorted(need)}, got {sorted(rows[0])}')
  n, m = task_feature_lengths['inputs'], task_feature_lengths['targets']
  return TokenPairs(
      ids=[r['id'] for r in rows],
      inputs=[np.asarray(r['inputs'][:n], np.int32) for r in rows],
      chosen=[np.asarray(r['chosen'][:m], np.int32) for r in rows],
      rejected=[np.asarray(r['rejected'][:m], np.int32) for r in rows],
      weights=np.asarray([float(r['weight']) for r in rows], np.float32))


def pair_batch(pairs: TokenPairs, index: np.ndarray, length: int,
               reference: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
  """Rows [2B, L] of the pairs at `index`: chosen rows, then rejected rows
  (`inputs_lib.decoder_only_batch`), with `pair_weight` [2B, 1] and, given
  the [N, 2] reference log-probs, `ref` [2B, 1]."""
  index = np.asarray(index)
  prompts = [pairs.inputs[i] for i in index]
  batch = inputs_lib.decoder_only_batch(
      prompts * 2, [pairs.chosen[i] for i in index] +
      [pairs.rejected[i] for i in index], length)
  weight = pairs.weights[index]
  batch['pair_weight'] = np.concatenate([weight, weight])[:, None]
  if reference is not None:
    batch['ref'] = np.concatenate(
        [reference[index, 0], reference[index, 1]])[:, None].astype(
            np.float32)
  return batch


def batches(pairs: TokenPairs, reference: np.ndarray, length: int,
            batch_size: int, *, seed: int, start_step: int = 0
            ) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of `batch_size` pairs: epoch e is a permutation keyed
  by (seed, e); step s takes pairs s * B .. (s + 1) * B - 1 of the epochs
  laid end to end, so resuming at `start_step` skips nothing by reading."""
  n = len(pairs)
  orders: dict[int, np.ndarray] = {}

  def at(position: int) -> int:
    epoch = position // n
    if epoch not in orders:
      orders.clear()  # keep one or two epochs
      orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
    return int(orders[epoch][position % n])

  step = start_step
  while True:
    index = np.asarray([at(step * batch_size + j) for j in range(batch_size)])
    yield pair_batch(pairs, index, length, reference)
    step += 1


def sequence_logprobs(cfg: decoder_lib.DecoderConfig, params: Any,
                      batch: Mapping[str, jax.Array]) -> jax.Array:
  """float32 [rows]: log p(target tokens | prompt) of each row."""
  return -step_lib.row_nll(cfg, params, batch).astype(jnp.float32)


def loss_fn(cfg: decoder_lib.DecoderConfig, config: PreferenceConfig,
            params: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
  """The ScPO loss of a [2B, L] batch (module docstring)."""
  logp = sequence_logprobs(cfg, params, batch)
  b = logp.shape[0] // 2
  ref = batch['ref'][:, 0]
  w = batch['pair_weight'][:b, 0]
  margin = (logp[:b] - ref[:b]) - (logp[b:] - ref[b:])
  dpo = -jax.nn.log_sigmoid(config.beta * margin)
  chosen_tokens = jnp.maximum(jnp.sum(batch['weights'][:b], axis=-1), 1.0)
  nll = -logp[:b] / chosen_tokens
  return jnp.mean(w * (dpo + config.alpha * nll))


def make_step(cfg: decoder_lib.DecoderConfig,
              tx: optax.GradientTransformation,
              config: PreferenceConfig) -> step_lib.StepFn:
  """The jitted step `(params, opt_state, batch) -> (params, opt_state,
  loss)` of the preference loss; params and opt_state are donated."""

  def train_step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(cfg, config, p, batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1))


def reference_logprobs(cfg: decoder_lib.DecoderConfig, params: Any,
                       pairs: TokenPairs, length: int, batch_size: int,
                       batch_sharding: jax.sharding.Sharding) -> np.ndarray:
  """float32 [N, 2]: log ref(chosen), log ref(rejected) of every pair, in
  one pass of `batch_size` pairs at a time (the last batch padded with
  pair 0, whose repeats are dropped)."""
  score = jax.jit(lambda p, b: sequence_logprobs(cfg, p, b))
  n = len(pairs)
  out = np.zeros((n, 2), np.float32)
  for start in range(0, n, batch_size):
    index = np.arange(start, start + batch_size)
    real = index < n
    batch = pair_batch(pairs, np.where(real, index, 0), length)
    del batch['pair_weight']
    logp = np.asarray(score(params, jax.device_put(batch, batch_sharding)))
    b = batch_size
    out[index[real], 0] = logp[:b][real]
    out[index[real], 1] = logp[b:][real]
  return out


def stored_reference(model_dir: str, pairs: TokenPairs, *,
                     reference_params: Any | None,
                     compute: Any) -> tuple[np.ndarray, dict[str, Any]]:
  """The round's reference log-probs: read back from MODEL_DIR if they were
  computed for these pairs, else `compute()`d (only possible with the
  reference parameters at hand, i.e. before the first step) and stored.

  Returns:
    ([N, 2] log-probs, {'pairs_sha256', 'reference_sha256'}).

  Raises:
    ValueError: naming the file if it was computed for other pairs, or if
      it is missing once training has started (the reference is gone).
  """
  path = os.path.join(model_dir, REFERENCE_FILE)
  digest = pairs.digest()
  if epath.Path(path).exists():  # written atomically: whole or absent
    with epath.Path(path).open() as f:
      stored = json.load(f)
    if stored['pairs_sha256'] != digest:
      raise ValueError(
          f'{path}: computed for other pairs (sha256 '
          f'{stored["pairs_sha256"][:12]}, these are {digest[:12]}); a '
          'MODEL_DIR trains on one round\'s pairs: use a new MODEL_DIR')
    logging.info('preference: reference log-probs read from %s', path)
    return (np.asarray(stored['logprobs'], np.float32).reshape(-1, 2),
            {k: stored[k] for k in ('pairs_sha256', 'reference_sha256')})
  if reference_params is None:
    raise ValueError(f'{path} is missing but {model_dir} has already '
                     'trained: the reference log-probs cannot be recomputed '
                     'from a trained model; use a new MODEL_DIR')
  logprobs = compute()
  facts = {'pairs_sha256': digest, 'reference_sha256':
               checkpoints.params_sha256(reference_params)}
  fileio.write_json(path, {**facts, 'pairs': len(pairs),
                           'logprobs': logprobs.reshape(-1).tolist()})
  return logprobs, facts
