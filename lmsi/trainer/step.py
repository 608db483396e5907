"""The optimisation of the trainer: optimizer, loss and the jitted step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lmsi.model import decoder as decoder_lib

SCHEDULES = ('constant', 'cosine')

# (params, opt_state, batch) -> (params, opt_state, loss).
StepFn = Callable[[Any, Any, Any], tuple[Any, Any, jax.Array]]


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


def loss_fn(cfg: decoder_lib.DecoderConfig, params: Any,
            batch: dict[str, jax.Array]) -> jax.Array:
  """Mean cross-entropy over target tokens."""
  return _summed_loss(cfg, params, batch) / _num_targets(batch)


def _summed_loss(cfg, params, batch) -> jax.Array:
  return _reduce_logits(cfg, params, batch, _summed_ce,
                        jnp.zeros((), jnp.float32))


def row_nll(cfg: decoder_lib.DecoderConfig, params: Any,
            batch: dict[str, jax.Array]) -> jax.Array:
  """[B]: each row's summed cross-entropy over its weighted (target)
  tokens, i.e. -log p(targets | inputs) per row (the preference learner's
  sequence log-probabilities)."""
  return _reduce_logits(cfg, params, batch, _row_ce,
                        jnp.zeros(batch['tokens'].shape[:1], jnp.float32))


def _reduce_logits(cfg, params, batch, reduce, zero) -> jax.Array:
  """`reduce(logits, labels, weights)` of the batch's logits, summed over
  chunks: with `cfg.logits_chunk` the LM head runs that many positions at a
  time, each chunk's logits recomputed in the backward pass, so [B, chunk,
  V] is live, not [B, L, V]."""
  model = decoder_lib.Decoder(cfg)
  if not cfg.logits_chunk:
    logits = model.apply({'params': params}, batch['tokens'], batch['valid'])
    return reduce(logits, batch['labels'], batch['weights'])
  x = model.apply({'params': params}, batch['tokens'], batch['valid'],
                  method=decoder_lib.Decoder.hidden)
  length, chunk = x.shape[1], cfg.logits_chunk
  if length % chunk:
    raise ValueError(f'logits_chunk={chunk} does not divide the length '
                     f'{length}')

  @jax.checkpoint
  def chunk_reduce(p, xs):
    h, labels, weights = xs
    logits = model.apply({'params': p}, h, method=decoder_lib.Decoder.head)
    return reduce(logits, labels, weights)

  # [B, L, ...] -> [L / chunk, B, chunk, ...]
  split = lambda a: jnp.swapaxes(
      a.reshape(a.shape[0], length // chunk, chunk, *a.shape[2:]), 0, 1)
  total, _ = jax.lax.scan(
      lambda acc, xs: (acc + chunk_reduce(params, xs), None), zero,
      (split(x), split(batch['labels']), split(batch['weights'])))
  return total


def _summed_ce(logits, labels, weights) -> jax.Array:
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(ce * weights)


def _row_ce(logits, labels, weights) -> jax.Array:
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(ce * weights, axis=-1)


def _num_targets(batch) -> jax.Array:
  return jnp.maximum(jnp.sum(batch['weights']), 1.0)


def _accumulated(cfg, params, batch, steps: int):
  """(loss, grads) of `loss_fn` summed over `steps` micro-batches in a
  lax.scan: the activations of B / steps rows at a time, the same mean as
  one step over all B rows (up to float summation order). Gradients are
  summed in float32 whatever the params' dtype."""
  if batch['tokens'].shape[0] % steps:
    raise ValueError(f"batch of {batch['tokens'].shape[0]} rows does not "
                     f'split into grad_accum_steps={steps} micro-batches')

  def split(x):
    # [B, ...] -> [B/k, k, ...] -> [k, B/k, ...]: micro-batch j takes rows
    # j, j+k, ..., so each keeps the batch's spread over the data axis.
    x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  micro = jax.tree_util.tree_map(split, batch)
  grad_fn = jax.value_and_grad(lambda p, b: _summed_loss(cfg, p, b))

  def body(carry, b):
    loss, grads = grad_fn(params, b)
    return jax.tree_util.tree_map(lambda a, x: a + x.astype(jnp.float32),
                                  carry, (loss, grads)), None

  zeros = jax.tree_util.tree_map(
      lambda x: jnp.zeros(x.shape, jnp.float32),
      (jnp.zeros(()), params))
  (loss, grads), _ = jax.lax.scan(body, zeros, micro)
  n = _num_targets(batch)
  return loss / n, jax.tree_util.tree_map(lambda g, p: (g / n).astype(p.dtype),
                                          grads, params)


def make_train_step(model_config: decoder_lib.DecoderConfig,
                    tx: optax.GradientTransformation,
                    grad_accum_steps: int = 1) -> StepFn:
  """The jitted step `(params, opt_state, batch) -> (params, opt_state, loss)`.

  `params` and `opt_state` are donated: their buffers are reused for the
  outputs, so the caller must drop its references to the inputs. With
  `grad_accum_steps` k > 1 the batch (B a multiple of k) runs as k
  micro-batches of B / k rows, one optimizer update per step.
  """
  if grad_accum_steps < 1:
    raise ValueError(f'grad_accum_steps={grad_accum_steps} must be >= 1')

  def train_step(params, opt_state, batch):
    if grad_accum_steps == 1:
      loss, grads = jax.value_and_grad(
          lambda p: loss_fn(model_config, p, batch))(params)
    else:
      loss, grads = _accumulated(model_config, params, batch,
                                 grad_accum_steps)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1))
