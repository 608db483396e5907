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
  # The Gemma block (Gemma 2 and 3), each off by default:
  # mlp_activation: the MLP gate's, 'silu' (SwiGLU) or 'gelu_tanh' (GeGLU).
  mlp_activation: str = 'silu'
  # Input embeddings times sqrt(embed_dim), rounded to the weight dtype.
  scale_embeddings: bool = False
  # RMSNorm scales are stored as w and applied as 1 + w.
  norm_offset: bool = False
  # A second RMSNorm on the attention and the MLP outputs, before each
  # residual add (params attn_post_norm, mlp_post_norm).
  post_norms: bool = False
  # Attention logits scaled by query_pre_attn_scalar^-1/2 (None: head_dim).
  query_pre_attn_scalar: float | None = None
  # Soft caps cap * tanh(x / cap) of the attention and the final logits
  # (Gemma 2; None: off).
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  # Sliding-window attention: a local layer's token sees the keys at most
  # sliding_window - 1 positions back (0: every layer global). With
  # sliding_window_pattern = k > 0, layer i is global when (i + 1) % k == 0
  # (Gemma 2: k = 2, Gemma 3: k = 6), else local; k = 0: all local.
  sliding_window: int = 0
  sliding_window_pattern: int = 0
  # Local layers' RoPE base, plain RoPE (Gemma 3: 1e4); None: the global
  # layers' rope_theta and rope_scaling.
  rope_local_theta: float | None = None
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
  # logits_chunk: the training loss computes the LM head's logits this many
  # positions at a time, each chunk recomputed for the backward pass
  # (`lmsi.trainer.step`), so [rows, chunk, V] of them live at once instead
  # of [rows, length, V] (Gemma's 262k vocabulary); 0: all at once.
  logits_chunk: int = 0

  @property
  def local_layers(self) -> tuple[bool, ...]:
    """Per layer: a sliding-window (local) layer, else global."""
    if not self.sliding_window:
      return (False,) * self.num_layers
    k = self.sliding_window_pattern
    return tuple(not k or (i + 1) % k != 0 for i in range(self.num_layers))

  def local_rope(self) -> DecoderConfig:
    """The config whose RoPE the local layers use (`rope_local_theta`)."""
    if self.rope_local_theta is None:
      return self
    return dataclasses.replace(self, rope_theta=self.rope_local_theta,
                               rope_scaling='none', rope_local_theta=None)

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
    if self.mlp_activation not in layers.ACTIVATIONS:
      raise ValueError(f'mlp_activation={self.mlp_activation!r}; use one of '
                       f'{sorted(layers.ACTIVATIONS)}')
    if self.sliding_window < 0 or self.sliding_window_pattern < 0:
      raise ValueError(f'sliding_window={self.sliding_window}, '
                       f'sliding_window_pattern={self.sliding_window_pattern}'
                       ' must be >= 0')
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
    # Rotary cos/sin once for all layers (`layers.rotary_angles`): (global
    # layers', local layers') — the same unless rope_local_theta is set.
    return rotary_pair(positions, self.cfg)

  def _embed(self, tokens):
    c = self.cfg
    x = self.embedding.astype(c.dtype)[tokens]
    if c.scale_embeddings:  # sqrt(D) in the weights' dtype, as Gemma's
      x = x * jnp.asarray(c.embed_dim ** 0.5, c.param_dtype).astype(c.dtype)
    return x

  def _logits(self, x):
    x = self.final_norm(x)
    if self.cfg.tie_embeddings:
      w = self.embedding.astype(self.cfg.dtype).T
      if self.cfg.scale_tied_logits:
        w = w * self.cfg.embed_dim ** -0.5
    else:
      w = self.lm_head.astype(self.cfg.dtype)
    logits = (x @ w).astype(layers.acc_dtype(self.cfg.dtype))
    cap = self.cfg.final_logit_softcap
    return logits if not cap else jnp.tanh(logits / cap) * cap

  def _forward(self, tokens, valid, prefix_kv=None):
    # tokens: int [B, L], right-padded; valid: bool [B, L]; prefix_kv: per
    # layer (k, v) [E, Hkv, Dh] of a shared prefix the tokens continue.
    offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[0]
    positions = offset + jnp.cumsum(valid, axis=-1) - 1
    masks = self._masks(positions, valid, offset)
    x = nn.with_logical_constraint(self._embed(tokens), (BATCH, LENGTH, EMBED))
    angles = self._angles(positions)
    kvs = []
    for i, (block, local) in enumerate(zip(self.blocks,
                                           self.cfg.local_layers)):
      mask, prefix_mask = masks[local]
      x, kv = block(x, angles[local], mask,
                    None if prefix_kv is None else prefix_kv[i], prefix_mask)
      kvs.append(kv)
    return x, tuple(kvs)

  def _masks(self, positions, valid, offset):
    """(global layers', local layers') (mask [B, L, L], prefix mask
    [B, L, offset] or None): causal over the valid keys; a local layer's
    query also sees only the keys (and prefix entries) less than
    sliding_window positions back."""
    length = positions.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    mask = causal[None] & valid[:, None, :]  # [B, L(query), L(key)]
    window = self.cfg.sliding_window
    if not window:
      return {False: (mask, None), True: (mask, None)}
    near = positions[:, :, None] - positions[:, None, :] < window
    prefix = positions[:, :, None] - jnp.arange(offset) < window
    return {False: (mask, None), True: (mask & near, prefix)}

  def __call__(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    """Causal LM logits. tokens, valid: [B, L]. Returns float32 [B, L, V]."""
    return self.head(self.hidden(tokens, valid))

  def hidden(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    """The last layer's output [B, L, D] (`head` turns it into logits)."""
    c = self.cfg
    if self.is_initializing() or (c.remat_policy == 'none'
                                  and not c.scan_layers):
      x, _ = self._forward(tokens, valid)
    else:
      x = self._forward_remat(tokens, valid)
    return x

  def head(self, x: jax.Array) -> jax.Array:
    """Final norm, LM head and soft cap: [..., D] -> float32 [..., V],
    sharded over the vocabulary in training (VOCAB's rule)."""
    logits = self._logits(x)
    if logits.ndim == 3:
      logits = nn.with_logical_constraint(logits, (BATCH, LENGTH, VOCAB))
    return logits

  def _forward_remat(self, tokens, valid):
    # `_forward` without the KV caches, each layer a pure function of its
    # params (read from layer_i, so checkpoints and imports are unchanged)
    # under jax.checkpoint, and with scan_layers one lax.scan over them.
    # Local and global layers differ in their mask and RoPE only: each
    # layer selects its pair by a per-layer flag, a scanned input with
    # scan_layers (so any pattern and layer count scan as one loop).
    c = self.cfg
    positions = jnp.cumsum(valid, axis=-1) - 1
    masks = self._masks(positions, valid, 0)
    x = nn.with_logical_constraint(self._embed(tokens), (BATCH, LENGTH, EMBED))
    block = layers.Block(c, parent=None)
    angles = self._angles(positions)

    def layer(x, p, local):
      mask = jnp.where(local, masks[True][0], masks[False][0])
      rope = jax.tree_util.tree_map(lambda a, b: jnp.where(local, a, b),
                                    angles[True], angles[False])
      return block.apply({'params': p}, x, rope, mask)[0]

    if c.remat_policy != 'none':
      layer = jax.checkpoint(layer, policy=REMAT_POLICIES[c.remat_policy])
    params = [nn.unbox(b.variables['params']) for b in self.blocks]
    local = jnp.asarray(c.local_layers)
    if not c.scan_layers:
      for i, p in enumerate(params):
        x = layer(x, p, local[i])
      return x
    # per layer {name: [...]} -> {name: [num_layers, ...]}, each keeping its
    # logical axes (else XLA may replicate the stack on every device).
    stacked = jax.tree_util.tree_map(
        lambda spec, *ps: nn.with_logical_constraint(jnp.stack(ps),
                                                     (None, *spec)),
        _block_specs(c), *params,
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    x, _ = jax.lax.scan(lambda h, xs: (layer(h, *xs), None), x,
                        (stacked, local))
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
             prefix_kv=None, rotary_table=None, key_positions=None):
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
      rotary_table: optional `rotary_pair` of positions 0..T-1 (computed
        outside the decode loop); each step gathers its rows.
      key_positions: int [N, L], the absolute position of each cache entry;
        needed with a sliding window (a local layer's token attends to the
        entries, and shared-prefix entries, less than sliding_window
        positions back).

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
      angles = {local: tuple(t[positions] for t in table)
                for local, table in rotary_table.items()}
    valid = {False: (key_valid, None), True: (key_valid, None)}
    window = self.cfg.sliding_window
    if window:
      if key_positions is None:
        raise ValueError('decode with sliding_window needs key_positions')
      near = positions[..., None] - key_positions[:, None, :] < window
      prefix_valid = None
      if prefix_kv is not None:  # prefix entry e sits at position e
        prefix_len = prefix_kv[0][0].shape[-1]
        prefix_valid = positions[..., None] - jnp.arange(prefix_len) < window
      valid[True] = (key_valid & near, prefix_valid)
    new_kv = []
    for i, (block, kv, local) in enumerate(zip(self.blocks, cache,
                                               self.cfg.local_layers)):
      key_ok, prefix_ok = valid[local]
      x, kv = block.decode(x, angles[local], kv, write, key_ok,
                           None if prefix_kv is None else prefix_kv[i],
                           prefix_ok)
      new_kv.append(kv)
    logits = self._logits(x)
    return (logits[:, 0] if one else logits), tuple(new_kv)


def rotary_pair(positions: jax.Array, cfg: DecoderConfig) -> dict:
  """{False: global layers', True: local layers'} `layers.rotary_angles`
  of `positions` (one computation when they share their RoPE)."""
  angles = layers.rotary_angles(positions, cfg)
  local = cfg.local_rope()
  return {False: angles, True: angles if local is cfg
          else layers.rotary_angles(positions, local)}


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
