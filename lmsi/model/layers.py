"""The decoder's layers: RMSNorm, rotary embeddings (with their scalings),
grouped-query attention (optional q/k biases and q/k norms)
(full, prefill, and one-token decode of N slots against their own caches
and a shared prefix cache),
the SwiGLU MLP and the pre-norm block. Every parameter carries logical axis
names from `lmsi.model.sharding`; `lmsi.model.decoder` assembles them into the
model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from lmsi.model.sharding import (BATCH, CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH,
                           EMBED, HEADS, KV, KV_HEADS, LENGTH, MLP)

NEG_INF = -1e30


def acc_dtype(dtype) -> jnp.dtype:
  """The dtype for norms, softmax and logits: at least float32."""
  return jnp.promote_types(jnp.dtype(dtype), jnp.float32)


def kernel_init(fan_in_axes: int):
  """LeCun-normal init whose fan-in is the product of the leading axes."""
  return nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal',
      in_axis=tuple(range(fan_in_axes)), out_axis=-1)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., K] @ w [K, O] -> [..., O], as one 2-D GEMM over x's rows.

  With x's leading axes kept ([B, L, D]), XLA:CPU computed the weight
  gradient (the product summed over B and L) through transposed copies of
  the output gradient: the SwiGLU block's forward and backward took 122 ms
  instead of 68 at 4 x 256 tokens, for the same numbers (bitwise in f32)
  (docs/sampling.md, 2026-12-07 third session).
  """
  out = x.reshape(-1, x.shape[-1]) @ w
  return out.reshape(*x.shape[:-1], w.shape[-1])


def param(module: nn.Module, name: str, shape, axes, init, dtype):
  return module.param(
      name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(dtype)
  )


class RMSNorm(nn.Module):
  """Root-mean-square norm over the last axis, computed in at least float32.

  `axis`: the logical name of that axis (EMBED for the blocks' norms, KV for
  the per-head q/k norms). The scale is `w`, or `1 + w` with
  `cfg.norm_offset` (Gemma).
  """

  cfg: Any  # a decoder.DecoderConfig
  axis: str = EMBED

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = param(self, 'scale', (x.shape[-1],), (self.axis,),
                   nn.initializers.ones, self.cfg.param_dtype)
    acc = acc_dtype(self.cfg.dtype)
    xa = x.astype(acc)
    xa = xa * jax.lax.rsqrt(
        jnp.mean(xa * xa, axis=-1, keepdims=True) + self.cfg.norm_eps)
    scale = scale.astype(acc)
    if self.cfg.norm_offset:  # Gemma stores w and scales by 1 + w
      scale = 1.0 + scale
    return (xa * scale).astype(self.cfg.dtype)


# RoPE scalings `DecoderConfig.rope_scaling` may name ('none': plain RoPE).
# 'linear' divides every frequency by the factor (position interpolation;
# Gemma 3's global layers); 'llama3' divides the low frequencies by it and
# interpolates the middle band (Llama 3.1 / 3.2). Both scale the inverse
# frequencies only, as transformers' `modeling_rope_utils` does.
ROPE_SCALINGS = ('none', 'linear', 'llama3')


def inverse_frequencies(cfg: Any, dtype=None) -> jax.Array:
  """RoPE's Dh/2 inverse frequencies after `cfg.rope_scaling`.

  Args:
    cfg: a decoder.DecoderConfig (head_dim, rope_theta, rope_scaling and its
      factors).
    dtype: the dtype they are computed in (default: `acc_dtype(cfg.dtype)`).
  """
  acc = acc_dtype(cfg.dtype) if dtype is None else dtype
  dim = cfg.head_dim
  inv_freq = 1.0 / (cfg.rope_theta ** (jnp.arange(0, dim, 2, dtype=acc)
                                       / dim))
  kind, factor = cfg.rope_scaling, cfg.rope_factor
  if kind == 'linear':
    return inv_freq / factor
  if kind != 'llama3':
    return inv_freq
  # Llama 3.1: wavelengths longer than original / low_freq_factor are
  # stretched by `factor`, shorter than original / high_freq_factor kept,
  # and the band between interpolated linearly in original / wavelength.
  low, high = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
  original = cfg.rope_original_max_position
  wavelen = 2 * np.pi / inv_freq
  scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
  smooth = (original / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= original / high) & (wavelen <= original / low)
  return jnp.where(medium, smoothed, scaled)


def rotary_angles(positions: jax.Array,
                  cfg: Any) -> tuple[jax.Array, jax.Array]:
  """cos and sin of the rotary angles, each [..., L, 1, Dh/2].

  Computed once per forward pass and shared by every layer. The decode loop
  goes further (`lmsi.sampling.kernels`): it computes them for every position
  once, outside the loop, and gathers each step's rows; XLA fuses a cos computed
  inside the loop into each layer's q and k (90 transcendental fusions in a
  30-layer SmolLM2 decode step), even behind an optimization barrier.

  Args:
    positions: int [..., L] absolute positions.
    cfg: a decoder.DecoderConfig: `inverse_frequencies`' fields, and the
      dtype of the q/k they rotate; angles run in at least float32 (float64
      for float64).
  """
  acc = acc_dtype(cfg.dtype)
  freqs = positions.astype(acc)[..., None] * inverse_frequencies(cfg, acc)
  return jnp.cos(freqs)[..., None, :], jnp.sin(freqs)[..., None, :]


def rotary(x: jax.Array, angles: tuple[jax.Array, jax.Array]) -> jax.Array:
  """Applies rotary embeddings (Llama's half-split convention).

  Args:
    x: [..., L, heads, Dh] queries or keys.
    angles: `rotary_angles` of their positions, each [..., L, 1, Dh/2].

  Returns:
    x rotated, same shape and dtype (rotated in the angles' dtype).
  """
  cos, sin = angles
  dim = x.shape[-1]
  xa = x.astype(cos.dtype)
  x1, x2 = xa[..., : dim // 2], xa[..., dim // 2 :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class Attention(nn.Module):
  """Grouped-query attention with rotary embeddings."""

  cfg: Any  # a decoder.DecoderConfig

  def setup(self):
    c = self.cfg
    init = kernel_init(1)
    self.wq = param(self, 'q', (c.embed_dim, c.num_heads, c.head_dim),
                     (EMBED, HEADS, KV), init, c.param_dtype)
    self.wk = param(self, 'k', (c.embed_dim, c.num_kv_heads, c.head_dim),
                     (EMBED, KV_HEADS, KV), init, c.param_dtype)
    self.wv = param(self, 'v', (c.embed_dim, c.num_kv_heads, c.head_dim),
                     (EMBED, KV_HEADS, KV), init, c.param_dtype)
    self.wo = param(self, 'o', (c.num_heads, c.head_dim, c.embed_dim),
                     (HEADS, KV, EMBED), kernel_init(2), c.param_dtype)
    if c.attention_bias:
      zeros = nn.initializers.zeros
      self.bq = param(self, 'q_bias', (c.num_heads, c.head_dim),
                       (HEADS, KV), zeros, c.param_dtype)
      self.bk = param(self, 'k_bias', (c.num_kv_heads, c.head_dim),
                       (KV_HEADS, KV), zeros, c.param_dtype)
      self.bv = param(self, 'v_bias', (c.num_kv_heads, c.head_dim),
                       (KV_HEADS, KV), zeros, c.param_dtype)
    if c.qk_norm:  # one [Dh] scale each, shared by all heads (Qwen3)
      self.q_norm = RMSNorm(c, KV)
      self.k_norm = RMSNorm(c, KV)

  def project(self, x: jax.Array, angles: tuple[jax.Array, jax.Array]):
    """x: [..., L, D], `angles` of its positions -> rotated q [..., L, H,
    Dh], k, v [..., L, Hkv, Dh]."""
    c = self.cfg
    dt = c.dtype
    q = jnp.einsum('...d,dhk->...hk', x, self.wq.astype(dt))
    k = jnp.einsum('...d,dhk->...hk', x, self.wk.astype(dt))
    v = jnp.einsum('...d,dhk->...hk', x, self.wv.astype(dt))
    if c.attention_bias:
      q, k, v = (q + self.bq.astype(dt), k + self.bk.astype(dt),
                 v + self.bv.astype(dt))
    if c.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    return rotary(q, angles), rotary(k, angles), v

  def _scores(self, dots: jax.Array) -> jax.Array:
    """q.k products -> attention logits in at least float32: scaled by
    query_pre_attn_scalar^-1/2 (Gemma) or head_dim^-1/2, then soft-capped
    to (-cap, cap) by cap tanh(x / cap) (Gemma 2)."""
    c = self.cfg
    scores = dots.astype(acc_dtype(c.dtype)) * (
        c.query_pre_attn_scalar or c.head_dim) ** -0.5
    if c.attn_logit_softcap:
      scores = jnp.tanh(scores / c.attn_logit_softcap) * c.attn_logit_softcap
    return scores

  def _group(self, q: jax.Array) -> jax.Array:
    # [..., H, Dh] -> [..., Hkv, H/Hkv, Dh]
    c = self.cfg
    return q.reshape(*q.shape[:-2], c.num_kv_heads,
                     c.num_heads // c.num_kv_heads, c.head_dim)

  def output(self, attended: jax.Array) -> jax.Array:
    # [..., Hkv, R, Dh] -> [..., H, Dh] -> [..., D]
    c = self.cfg
    attended = attended.reshape(*attended.shape[:-3], c.num_heads, c.head_dim)
    return jnp.einsum('...hk,hkd->...d', attended, self.wo.astype(c.dtype))

  def __call__(self, x, angles, mask, prefix_kv=None, prefix_mask=None):
    """Full attention. x: [B, L, D]; angles: `rotary_angles` of its
    positions; mask: bool [B, L, L] (query, key).

    prefix_kv: optional (k, v), each [E, Hkv, Dh], of a prefix shared by the
    whole batch (e.g. the few-shot exemplars), visible to every query
    where `prefix_mask` (bool [B, L, E]; None: everywhere) allows it.
    """
    q, k, v = self.project(x, angles)
    qg = self._group(q)  # [B, L, G, R, Dh]
    scores = self._scores(jnp.einsum('blgrk,bmgk->bgrlm', qg, k))
    parts = [jnp.where(mask[:, None, None], scores, NEG_INF)]
    if prefix_kv is not None:
      shared = self._scores(jnp.einsum('blgrk,egk->bgrle', qg, prefix_kv[0]))
      if prefix_mask is not None:
        shared = jnp.where(prefix_mask[:, None, None], shared, NEG_INF)
      parts.insert(0, shared)
    probs = softmax_parts(parts, self.cfg.dtype)
    attended = jnp.einsum('bgrlm,bmgk->blgrk', probs[-1], v)
    if prefix_kv is not None:
      attended += jnp.einsum('bgrle,egk->blgrk', probs[0], prefix_kv[1])
    return self.output(attended), (k, v)

  def decode(self, x, angles, cache, write, key_valid, prefix_kv=None,
             prefix_valid=None):
    """T new tokens per slot (`lmsi.sampling.kernels`): the newest, then any
    drafted ones, each attending to the cache and the tokens before it.

    Args:
      x: [N, T, D] embeddings of each of N slots' T new tokens.
      angles: `rotary_angles` of their int [N, T] absolute positions.
      cache: (k [N, Hkv, Dh, L], v [N, Hkv, L, Dh]), each slot's own keys
        and values: its question's prompt, then its generated tokens. The
        layout lets both attention products read the cache as it is
        (XLA:CPU transposes a [L, Dh] key block on every step otherwise: 5x
        slower, `bench/decode_profile.py`); a slot's T queries read it once.
      write: int [N, T], index in L where each new token's k/v is written.
      key_valid: bool [N, T, L], the cache entries each new token attends
        to (including its own and the new ones before it).
      prefix_kv: optional (k [Hkv, Dh, E], v [Hkv, E, Dh]) shared by all
        slots, in `decode_prefix`'s layout.
      prefix_valid: optional bool [N, T, E], the prefix entries each new
        token attends to (a sliding window's); None: all of them.

    Returns:
      ([N, T, D] output, updated cache).
    """
    n, t = x.shape[:2]
    q, k_new, v_new = self.project(x, angles)  # [N, T, H|Hkv, Dh]
    rows = jnp.arange(n)[:, None]
    # Slots sit at different positions: a scatter, one [Hkv, Dh] per token.
    k = nn.with_logical_constraint(
        cache[0].at[rows, :, :, write].set(k_new),
        (CACHE_BATCH, CACHE_HEADS, KV, CACHE_LENGTH))
    v = nn.with_logical_constraint(
        cache[1].at[rows, :, write, :].set(v_new),
        (CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH, KV))
    # [N, T, G, R, Dh] -> [N, G, T R, Dh]: a kv head's queries, one GEMM.
    qg = self._group(q)
    g, r = qg.shape[2:4]
    qg = jnp.transpose(qg, (0, 2, 1, 3, 4)).reshape(n, g, t * r, -1)
    scores = self._scores(jnp.einsum('ngrk,ngkl->ngrl', qg, k))
    valid = jnp.repeat(key_valid, r, axis=1)[:, None]  # [N, 1, T R, L]
    parts = [jnp.where(valid, scores, NEG_INF)]
    if prefix_kv is not None:
      shared = self._scores(per_kv_head(qg, prefix_kv[0]))
      if prefix_valid is not None:
        shared = jnp.where(jnp.repeat(prefix_valid, r, axis=1)[:, None],
                           shared, NEG_INF)
      parts.insert(0, shared)
    probs = softmax_parts(parts, self.cfg.dtype)
    attended = jnp.einsum('ngrl,nglk->ngrk', probs[-1], v)
    if prefix_kv is not None:
      attended += per_kv_head(probs[0], prefix_kv[1])
    # [N, G, T R, Dh] -> [N, T, G, R, Dh]
    attended = jnp.transpose(attended.reshape(n, g, t, r, -1), (0, 2, 1, 3, 4))
    return self.output(attended), (k, v)


def per_kv_head(x: jax.Array, shared: jax.Array) -> jax.Array:
  """[N, Hkv, R, A] x shared [Hkv, A, B] -> [N, Hkv, R, B]: all N slots'
  rows of a kv head stacked into one [N R, A] x [A, B] GEMM."""
  n, g, r, a = x.shape
  stacked = jnp.transpose(x, (1, 0, 2, 3)).reshape(g, n * r, a)
  out = jnp.einsum('gma,gab->gmb', stacked, shared)
  return jnp.transpose(out.reshape(g, n, r, -1), (1, 0, 2, 3))


def decode_prefix(prefix_kv: Any) -> Any:
  """Per-layer shared-prefix (k, v), each [E, Hkv, Dh], in the layout
  `Attention.decode` reads: k [Hkv, Dh, E], v [Hkv, E, Dh], so each kv
  head's product with all slots' queries is one GEMM. Read as [E, Hkv, Dh],
  XLA:CPU transposed the blocks on every step: attention of 32 slots took
  69 ms a step instead of 45 (`bench/decode_profile.py`, docs/sampling.md).
  """
  return tuple((jnp.transpose(k, (1, 2, 0)), jnp.swapaxes(v, 0, 1))
               for k, v in prefix_kv)


def empty_slot_cache(cfg: Any, slots: int,
                     length: int) -> tuple[jax.Array, jax.Array]:
  """One layer's zero slot cache for `Attention.decode`, L = `length`."""
  dtype = jnp.dtype(cfg.dtype)
  return (jnp.zeros((slots, cfg.num_kv_heads, cfg.head_dim, length), dtype),
          jnp.zeros((slots, cfg.num_kv_heads, length, cfg.head_dim), dtype))


def softmax_parts(parts, dtype) -> list[jax.Array]:
  """Softmax over the concatenated last axes of `parts`, split back."""
  probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1)
  probs = probs.astype(dtype)
  out, start = [], 0
  for p in parts:
    out.append(probs[..., start:start + p.shape[-1]])
    start += p.shape[-1]
  return out


# `DecoderConfig.mlp_activation` -> the gate's activation. 'gelu_tanh' is
# transformers' gelu_pytorch_tanh (the tanh approximation).
ACTIVATIONS = {'silu': nn.silu,
               'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True)}


class Mlp(nn.Module):
  """Gated feed-forward block: SwiGLU, or GeGLU (gelu-tanh gate, Gemma)
  with `cfg.mlp_activation='gelu_tanh'`."""

  cfg: Any  # a decoder.DecoderConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    init = kernel_init(1)
    gate = param(self, 'gate', (c.embed_dim, c.mlp_dim), (EMBED, MLP), init,
                  c.param_dtype)
    up = param(self, 'up', (c.embed_dim, c.mlp_dim), (EMBED, MLP), init,
                c.param_dtype)
    down = param(self, 'down', (c.mlp_dim, c.embed_dim), (MLP, EMBED), init,
                  c.param_dtype)
    dt = c.dtype
    act = ACTIVATIONS[c.mlp_activation]
    h = act(dense(x, gate.astype(dt))) * dense(x, up.astype(dt))
    h = nn.with_logical_constraint(h, (BATCH, LENGTH, MLP))
    return dense(h, down.astype(dt))


class Block(nn.Module):
  """Pre-norm transformer block; with `cfg.post_norms` (Gemma 2/3) the
  attention and MLP outputs are normalised again before each residual."""

  cfg: Any  # a decoder.DecoderConfig

  def setup(self):
    self.attn_norm = RMSNorm(self.cfg)
    self.attn = Attention(self.cfg)
    self.mlp_norm = RMSNorm(self.cfg)
    self.mlp = Mlp(self.cfg)
    if self.cfg.post_norms:
      self.attn_post_norm = RMSNorm(self.cfg)
      self.mlp_post_norm = RMSNorm(self.cfg)

  def _mlp(self, x):
    h = self.mlp(self.mlp_norm(x))
    return x + (self.mlp_post_norm(h) if self.cfg.post_norms else h)

  def _residual(self, x, h):
    return x + (self.attn_post_norm(h) if self.cfg.post_norms else h)

  def __call__(self, x, angles, mask, prefix_kv=None, prefix_mask=None):
    h, kv = self.attn(self.attn_norm(x), angles, mask, prefix_kv, prefix_mask)
    x = self._mlp(self._residual(x, h))
    return nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED)), kv

  def decode(self, x, angles, cache, write, key_valid, prefix_kv=None,
             prefix_valid=None):
    h, cache = self.attn.decode(self.attn_norm(x), angles, cache, write,
                                key_valid, prefix_kv, prefix_valid)
    return self._mlp(self._residual(x, h)), cache
