"""Llama-family decoder-only transformer in Flax (the model of every stage).

RMSNorm, rotary position embeddings (plain, or scaled 'linear' / 'llama3'),
SwiGLU MLP, grouped-query attention (optionally with Qwen2's q/k/v biases or
Qwen3's per-head q/k RMSNorm) and optionally tied embeddings, configured by
one frozen `DecoderConfig`. Every
parameter and activation carries logical axis names from `lmsi.model.sharding`;
the mesh mapping lives only there.

Three entry points share the same weights:
  * `__call__`: full causal forward pass (training, reference decoding).
  * `prefill`: forward pass over prompts that also returns their KV cache.
  * `decode`: one token for each of N slots (`lmsi.sampling.kernels`). A slot's
    cache holds its question's prompt and its own generated tokens; the
    exemplar prefix is one shared cache, so the cache is sized by the slot
    count, never by the number of samples m.

Prefill and decode also take an optional `prefix_kv` per layer ([E, Hkv, Dh]
for prefill, `layers.decode_prefix`'s layout for decode):
the cache of a prefix every prompt of the batch continues (the few-shot
exemplar block), computed once and never copied per question or sample.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lmsi.model import layers
from lmsi.model.sharding import (BATCH, CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH,
                           EMBED, KV, LENGTH, VOCAB)

# jax.checkpoint policies by name. 'dots' saves every matmul output (less
# recompute, more memory), 'dots_no_batch' only the weight matmuls (not the
# attention scores), 'full' nothing but each layer's input.
REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderConfig:
  """Shape and numerics of a decoder (one gin block per model size)."""

  vocab_size: int = 259
  embed_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  mlp_dim: int = 192
  rope_theta: float = 10000.0
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  attention_bias: bool = False  # Qwen2-style q/k/v biases.
  # RoPE scaling (`layers.ROPE_SCALINGS`): 'none' (plain RoPE), 'linear'
  # (every frequency / rope_factor) or 'llama3' (Llama 3.1/3.2: low
  # frequencies / rope_factor, the band between original / low_freq_factor
  # and original / high_freq_factor wavelengths interpolated).
  rope_scaling: str = 'none'
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0  # 'llama3' only
  rope_high_freq_factor: float = 4.0  # 'llama3' only
  rope_original_max_position: int = 8192  # 'llama3' only
  # RMSNorm of each query and key head over head_dim before RoPE (Qwen3;
  # Gemma 3): params attn/q_norm and attn/k_norm, [head_dim] each.
  qk_norm: bool = False
  # Tied logits are x @ E^T / sqrt(D) when True (the tiny models' choice, so
  # a unit-variance embedding gives unit-scale logits); imported Llama-family
  # checkpoints use the plain x @ E^T.
  scale_tied_logits: bool = True
  dtype: str = 'float32'  # activations
  param_dtype: str = 'float32'
  # Training memory and compile time; `__call__` only (prefill and decode
  # never differentiate) and the parameter tree stays `layer_i`:
  # remat_policy: a `REMAT_POLICIES` key, what each layer keeps for the
  # backward pass ('none': everything; 'full': only its input).
  remat_policy: str = 'none'
  # scan_layers: one `lax.scan` over the layers' params, stacked on the fly,
  # so compile time does not grow with depth.
  scan_layers: bool = False

  def __post_init__(self):
    if self.rope_scaling not in layers.ROPE_SCALINGS:
      raise ValueError(f'rope_scaling={self.rope_scaling!r}; use one of '
                       f'{list(layers.ROPE_SCALINGS)}')
    if self.rope_scaling != 'none' and self.rope_factor <= 0:
      raise ValueError(f'rope_factor={self.rope_factor} must be > 0')
    if (self.rope_scaling == 'llama3'
        and self.rope_high_freq_factor <= self.rope_low_freq_factor):
      raise ValueError(
          f'rope_high_freq_factor={self.rope_high_freq_factor} must exceed '
          f'rope_low_freq_factor={self.rope_low_freq_factor}')
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f'remat_policy={self.remat_policy!r}; use one of '
                       f'{sorted(REMAT_POLICIES)}')
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f'num_heads={self.num_heads} is not a multiple of '
          f'num_kv_heads={self.num_kv_heads}'
      )


class Decoder(nn.Module):
  """The decoder. See the module docstring for its three entry points."""

  cfg: DecoderConfig

  def setup(self):
    c = self.cfg
    self.embedding = layers.param(self, 'embedding',
                                  (c.vocab_size, c.embed_dim), (VOCAB, EMBED),
                                  nn.initializers.normal(1.0), c.param_dtype)
    self.blocks = [layers.Block(c, name=f'layer_{i}')
                   for i in range(c.num_layers)]
    self.final_norm = layers.RMSNorm(c)
    if not c.tie_embeddings:
      self.lm_head = layers.param(self, 'lm_head',
                                  (c.embed_dim, c.vocab_size), (EMBED, VOCAB),
                                  layers.kernel_init(1), c.param_dtype)

  def _angles(self, positions):
    # Rotary cos/sin once for all layers (`layers.rotary_angles`).
    return layers.rotary_angles(positions, self.cfg)

  def _embed(self, tokens):
    return self.embedding.astype(self.cfg.dtype)[tokens]

  def _logits(self, x):
    x = self.final_norm(x)
    if self.cfg.tie_embeddings:
      w = self.embedding.astype(self.cfg.dtype).T
      if self.cfg.scale_tied_logits:
        w = w * self.cfg.embed_dim ** -0.5
    else:
      w = self.lm_head.astype(self.cfg.dtype)
    return (x @ w).astype(layers.acc_dtype(self.cfg.dtype))

  def _forward(self, tokens, valid, prefix_kv=None):
    # tokens: int [B, L], right-padded; valid: bool [B, L]; prefix_kv: per
    # layer (k, v) [E, Hkv, Dh] of a shared prefix the tokens continue.
    offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[0]
    positions = offset + jnp.cumsum(valid, axis=-1) - 1
    length = tokens.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    mask = causal[None] & valid[:, None, :]  # [B, L(query), L(key)]
    x = nn.with_logical_constraint(self._embed(tokens), (BATCH, LENGTH, EMBED))
    angles = self._angles(positions)
    kvs = []
    for i, block in enumerate(self.blocks):
      x, kv = block(x, angles, mask,
                    None if prefix_kv is None else prefix_kv[i])
      kvs.append(kv)
    return x, tuple(kvs)

  def __call__(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    """Causal LM logits. tokens, valid: [B, L]. Returns float32 [B, L, V]."""
    c = self.cfg
    if self.is_initializing() or (c.remat_policy == 'none'
                                  and not c.scan_layers):
      x, _ = self._forward(tokens, valid)
    else:
      x = self._forward_remat(tokens, valid)
    return self._logits(x)

  def _forward_remat(self, tokens, valid):
    # `_forward` without the KV caches, each layer a pure function of its
    # params (read from layer_i, so checkpoints and imports are unchanged)
    # under jax.checkpoint, and with scan_layers one lax.scan over them.
    c = self.cfg
    positions = jnp.cumsum(valid, axis=-1) - 1
    length = tokens.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    mask = causal[None] & valid[:, None, :]  # [B, L(query), L(key)]
    x = nn.with_logical_constraint(self._embed(tokens), (BATCH, LENGTH, EMBED))
    block = layers.Block(c, parent=None)
    angles = self._angles(positions)

    def layer(x, p):
      return block.apply({'params': p}, x, angles, mask)[0]

    if c.remat_policy != 'none':
      layer = jax.checkpoint(layer, policy=REMAT_POLICIES[c.remat_policy])
    params = [nn.unbox(b.variables['params']) for b in self.blocks]
    if not c.scan_layers:
      for p in params:
        x = layer(x, p)
      return x
    # per layer {name: [...]} -> {name: [num_layers, ...]}, each keeping its
    # logical axes (else XLA may replicate the stack on every device).
    stacked = jax.tree_util.tree_map(
        lambda spec, *ps: nn.with_logical_constraint(jnp.stack(ps),
                                                     (None, *spec)),
        _block_specs(c), *params,
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    x, _ = jax.lax.scan(lambda h, p: (layer(h, p), None), x, stacked)
    return x

  def prefill(self, tokens: jax.Array, valid: jax.Array, prefix_kv=None):
    """Runs the prompts once.

    Args:
      tokens: int [B, P] prompts, right-padded.
      valid: bool [B, P].
      prefix_kv: optional per-layer (k, v) [E, Hkv, Dh] of a prefix that
        every prompt continues (prefilled once with B = 1 and squeezed).

    Returns:
      (float32 [B, V] logits at each prompt's last token,
       per-layer (k, v) caches, each [B, P, Hkv, Dh]).
    """
    x, kvs = self._forward(tokens, valid, prefix_kv)
    last = jnp.sum(valid, axis=-1) - 1  # [B]
    x_last = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    kvs = tuple(
        tuple(nn.with_logical_constraint(t, (CACHE_BATCH, CACHE_LENGTH,
                                             CACHE_HEADS, KV)) for t in kv)
        for kv in kvs)
    return self._logits(x_last), kvs

  def decode(self, tokens, positions, cache, write, key_valid,
             prefix_kv=None, rotary_table=None):
    """One decoding step for N slots (paths), each with its own cache.

    Each slot feeds its newest token, or T tokens (the newest, then drafted
    ones that `lmsi.sampling.kernels` verifies): int [N] or [N, T], and
    `positions`, `write` and `key_valid` with the same leading axes.

    Args:
      tokens: int [N] (or [N, T]) newest token(s) of each slot.
      positions: int [N] (or [N, T]) their absolute positions.
      cache: per-layer (k [N, Hkv, Dh, L], v [N, Hkv, L, Dh]): a slot's
        question prompt (copied from `prefill`), then its generated tokens.
      write: int [N] (or [N, T]), index in L where each new k/v goes.
      key_valid: bool [N, L] (or [N, T, L]), the entries each token attends
        to (its own and the new ones before it included).
      prefix_kv: optional per-layer (k, v) shared by all slots, in
        `layers.decode_prefix`'s layout.
      rotary_table: optional `layers.rotary_angles` of positions 0..T-1
        (computed outside the decode loop); each step gathers its rows.

    Returns:
      (float32 [N, V] (or [N, T, V]) next-token logits, updated cache).
    """
    one = tokens.ndim == 1
    if one:
      tokens, positions, write, key_valid = (
          tokens[:, None], positions[:, None], write[:, None],
          key_valid[:, None])
    x = self._embed(tokens)  # [N, T, D]
    if rotary_table is None:
      angles = self._angles(positions)
    else:  # [T', 1, Dh/2] -> [N, T, 1, Dh/2]
      angles = tuple(t[positions] for t in rotary_table)
    new_kv = []
    for i, (block, kv) in enumerate(zip(self.blocks, cache)):
      x, kv = block.decode(x, angles, kv, write, key_valid,
                           None if prefix_kv is None else prefix_kv[i])
      new_kv.append(kv)
    logits = self._logits(x)
    return (logits[:, 0] if one else logits), tuple(new_kv)


def _block_specs(cfg: DecoderConfig):
  # A layer's logical PartitionSpecs, from an abstract init of one Block
  # (parent=None: it may be called inside another module's method).
  x = jnp.zeros((1, 1, cfg.embed_dim), jnp.dtype(cfg.dtype))
  angles = layers.rotary_angles(jnp.zeros((1, 1), jnp.int32), cfg)
  boxed = jax.eval_shape(lambda: layers.Block(cfg, parent=None).init(
      jax.random.PRNGKey(0), x, angles, jnp.ones((1, 1, 1), bool)))
  return nn.get_partition_spec(boxed['params'])


def init_params(cfg: DecoderConfig, seed: int = 0) -> tuple[Any, Any]:
  """Initialises parameters.

  Returns:
    (params pytree of arrays, matching pytree of logical PartitionSpecs).
  """
  model = Decoder(cfg)
  tokens = jnp.zeros((1, 8), jnp.int32)
  boxed = model.init(jax.random.PRNGKey(seed), tokens, tokens > -1)['params']
  return nn.unbox(boxed), nn.get_partition_spec(boxed)


def logical_param_specs(cfg: DecoderConfig):
  """Logical PartitionSpecs of the params, without allocating them."""
  model = Decoder(cfg)
  tokens = jnp.zeros((1, 8), jnp.int32)
  boxed = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), tokens, tokens > -1))
  return nn.get_partition_spec(boxed['params'])


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def with_dtype(cfg: DecoderConfig, params: Any, param_dtype: str,
               dtype: str | None = None) -> tuple[DecoderConfig, Any]:
  """The model with parameters stored in `param_dtype`, computing in `dtype`.

  Sampling may keep parameters in 'bfloat16' (half the memory and weight
  bandwidth of float32) while training keeps float32. `dtype` (default: the
  config's, float32) sets the activations; norms, softmax and logits always
  run in at least float32.
  """
  dtype = dtype or cfg.dtype
  if param_dtype == cfg.param_dtype and dtype == cfg.dtype:
    return cfg, params
  cast = jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, jnp.dtype(param_dtype)), params)
  return dataclasses.replace(cfg, dtype=dtype, param_dtype=param_dtype), cast
