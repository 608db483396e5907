"""The optimisation of the trainer: optimizer, loss and the jitted step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lmsi import decoder as decoder_lib

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
  logits = decoder_lib.Decoder(cfg).apply(
      {'params': params}, batch['tokens'], batch['valid'])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
  return jnp.sum(ce * batch['weights']) / jnp.maximum(
      jnp.sum(batch['weights']), 1.0)


def make_train_step(model_config: decoder_lib.DecoderConfig,
                    tx: optax.GradientTransformation) -> StepFn:
  """The jitted step `(params, opt_state, batch) -> (params, opt_state, loss)`.

  `params` and `opt_state` are donated: their buffers are reused for the
  outputs, so the caller must drop its references to the inputs.
  """
  def train_step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(model_config, p, batch))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1))
