"""Llama-family decoder-only transformer in Flax (the model of every stage).

RMSNorm, rotary position embeddings, SwiGLU MLP, grouped-query attention and
optionally tied embeddings, configured by one frozen `DecoderConfig`. Every
parameter and activation carries logical axis names from `lmsi.sharding`;
the mesh mapping lives only there.

Three entry points share the same weights:
  * `__call__`: full causal forward pass (training, reference decoding).
  * `prefill`: forward pass over prompts that also returns their KV cache.
  * `decode`: one token for each of S samples per prompt. The S samples
    attend to ONE shared prompt cache [B, P] plus their own cache of generated
    tokens [B, S, T], so m samples never hold m copies of the prompt's cache.

Prefill and decode also take an optional `prefix_kv` [E, Hkv, Dh] per layer:
the cache of a prefix every prompt of the batch continues (the few-shot
exemplar block), computed once and never copied per question or sample.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lmsi.sharding import (BATCH, CACHE_BATCH, CACHE_HEADS, CACHE_LENGTH,
                           CACHE_SAMPLES, EMBED, HEADS, KV, KV_HEADS, LENGTH,
                           MLP, VOCAB)

NEG_INF = -1e30


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
  # Tied logits are x @ E^T / sqrt(D) when True (the tiny models' choice, so
  # a unit-variance embedding gives unit-scale logits); imported Llama-family
  # checkpoints use the plain x @ E^T.
  scale_tied_logits: bool = True
  dtype: str = 'float32'  # activations
  param_dtype: str = 'float32'

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f'num_heads={self.num_heads} is not a multiple of '
          f'num_kv_heads={self.num_kv_heads}'
      )


def _acc(dtype) -> jnp.dtype:
  """The dtype for norms, softmax and logits: at least float32."""
  return jnp.promote_types(jnp.dtype(dtype), jnp.float32)


def _kernel_init(fan_in_axes: int):
  """LeCun-normal init whose fan-in is the product of the leading axes."""
  return nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal',
      in_axis=tuple(range(fan_in_axes)), out_axis=-1)


def _param(module: nn.Module, name: str, shape, axes, init, dtype):
  return module.param(
      name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(dtype)
  )


class RMSNorm(nn.Module):
  """Root-mean-square layer norm, computed in at least float32."""

  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = _param(self, 'scale', (x.shape[-1],), (EMBED,),
                   nn.initializers.ones, self.cfg.param_dtype)
    acc = _acc(self.cfg.dtype)
    xa = x.astype(acc)
    xa = xa * jax.lax.rsqrt(
        jnp.mean(xa * xa, axis=-1, keepdims=True) + self.cfg.norm_eps)
    return (xa * scale.astype(acc)).astype(self.cfg.dtype)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Applies rotary embeddings (Llama's half-split convention).

  Args:
    x: [..., L, heads, Dh] queries or keys.
    positions: int [..., L] absolute positions.
    theta: rotary base.

  Returns:
    x rotated, same shape and dtype. Angles and rotation run in at least
    float32 (float64 when x is float64).
  """
  dim = x.shape[-1]
  acc = _acc(x.dtype)
  inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=acc) / dim))
  freqs = positions.astype(acc)[..., None] * inv_freq  # [..., L, Dh/2]
  cos = jnp.cos(freqs)[..., None, :]  # [..., L, 1, Dh/2]
  sin = jnp.sin(freqs)[..., None, :]
  xa = x.astype(acc)
  x1, x2 = xa[..., : dim // 2], xa[..., dim // 2 :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class Attention(nn.Module):
  """Grouped-query attention with rotary embeddings."""

  cfg: DecoderConfig

  def setup(self):
    c = self.cfg
    init = _kernel_init(1)
    self.wq = _param(self, 'q', (c.embed_dim, c.num_heads, c.head_dim),
                     (EMBED, HEADS, KV), init, c.param_dtype)
    self.wk = _param(self, 'k', (c.embed_dim, c.num_kv_heads, c.head_dim),
                     (EMBED, KV_HEADS, KV), init, c.param_dtype)
    self.wv = _param(self, 'v', (c.embed_dim, c.num_kv_heads, c.head_dim),
                     (EMBED, KV_HEADS, KV), init, c.param_dtype)
    self.wo = _param(self, 'o', (c.num_heads, c.head_dim, c.embed_dim),
                     (HEADS, KV, EMBED), _kernel_init(2), c.param_dtype)
    if c.attention_bias:
      zeros = nn.initializers.zeros
      self.bq = _param(self, 'q_bias', (c.num_heads, c.head_dim),
                       (HEADS, KV), zeros, c.param_dtype)
      self.bk = _param(self, 'k_bias', (c.num_kv_heads, c.head_dim),
                       (KV_HEADS, KV), zeros, c.param_dtype)
      self.bv = _param(self, 'v_bias', (c.num_kv_heads, c.head_dim),
                       (KV_HEADS, KV), zeros, c.param_dtype)

  def project(self, x: jax.Array, positions: jax.Array):
    """x: [..., L, D] -> rotated q [..., L, H, Dh], k, v [..., L, Hkv, Dh]."""
    c = self.cfg
    dt = c.dtype
    q = jnp.einsum('...d,dhk->...hk', x, self.wq.astype(dt))
    k = jnp.einsum('...d,dhk->...hk', x, self.wk.astype(dt))
    v = jnp.einsum('...d,dhk->...hk', x, self.wv.astype(dt))
    if c.attention_bias:
      q, k, v = q + self.bq.astype(dt), k + self.bk.astype(dt), v + self.bv.astype(dt)
    q = rotary(q, positions, c.rope_theta)
    k = rotary(k, positions, c.rope_theta)
    return q, k, v

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

  def __call__(self, x, positions, mask, prefix_kv=None):
    """Full attention. x: [B, L, D]; mask: bool [B, L, L] (query, key).

    prefix_kv: optional (k, v), each [E, Hkv, Dh], of a prefix shared by the
    whole batch (e.g. the few-shot exemplars), visible to every query.
    """
    q, k, v = self.project(x, positions)
    qg = self._group(q)  # [B, L, G, R, Dh]
    scale = self.cfg.head_dim ** -0.5
    acc = _acc(self.cfg.dtype)
    scores = jnp.einsum('blgrk,bmgk->bgrlm', qg, k).astype(acc) * scale
    parts = [jnp.where(mask[:, None, None], scores, NEG_INF)]
    if prefix_kv is not None:
      parts.insert(0, jnp.einsum('blgrk,egk->bgrle', qg, prefix_kv[0]
                                 ).astype(acc) * scale)
    probs = _softmax_parts(parts, self.cfg.dtype)
    attended = jnp.einsum('bgrlm,bmgk->blgrk', probs[-1], v)
    if prefix_kv is not None:
      attended += jnp.einsum('bgrle,egk->blgrk', probs[0], prefix_kv[1])
    return self.output(attended), (k, v)

  def decode(self, x, positions, prompt_kv, prompt_valid, gen_kv, step,
             prefix_kv=None):
    """One new token per sample.

    Args:
      x: [B, S, D] embeddings of the newest token of each sample.
      positions: int [B, S] their absolute positions.
      prompt_kv: (k, v), each [B, P, Hkv, Dh], shared by the S samples.
      prompt_valid: bool [B, P].
      gen_kv: (k [B, S, Hkv, Dh, T], v [B, S, Hkv, T, Dh]), the samples'
        own tokens, laid out so that both attention products read the cache
        as it is (XLA:CPU transposes a [T, Dh] key block on every step
        otherwise: 5x slower, `bench/decode_profile.py`).
      step: int scalar, index in T where this token's k/v is written.
      prefix_kv: optional (k, v), each [E, Hkv, Dh], shared by the batch.

    Returns:
      ([B, S, D] output, updated gen_kv).
    """
    q, k_new, v_new = self.project(x[:, :, None], positions[:, :, None])
    # [B, S, 1, Hkv, Dh] -> k [B, S, Hkv, Dh, 1], v [B, S, Hkv, 1, Dh],
    # written at time `step`.
    k_new = jnp.transpose(k_new, (0, 1, 3, 4, 2))
    v_new = jnp.swapaxes(v_new, 2, 3)
    gen_k = nn.with_logical_constraint(
        jax.lax.dynamic_update_slice_in_dim(gen_kv[0], k_new, step, axis=4),
        (CACHE_BATCH, CACHE_SAMPLES, CACHE_HEADS, KV, CACHE_LENGTH))
    gen_v = nn.with_logical_constraint(
        jax.lax.dynamic_update_slice_in_dim(gen_kv[1], v_new, step, axis=3),
        (CACHE_BATCH, CACHE_SAMPLES, CACHE_HEADS, CACHE_LENGTH, KV))
    qg = self._group(q[:, :, 0])  # [B, S, G, R, Dh]
    scale = self.cfg.head_dim ** -0.5
    acc = _acc(self.cfg.dtype)
    pk, pv = prompt_kv
    s_prompt = jnp.einsum('bsgrk,bpgk->bsgrp', qg, pk).astype(acc) * scale
    s_prompt = jnp.where(prompt_valid[:, None, None, None], s_prompt, NEG_INF)
    s_gen = jnp.einsum('bsgrk,bsgkt->bsgrt', qg, gen_k).astype(acc) * scale
    s_gen = jnp.where(jnp.arange(gen_k.shape[4]) <= step, s_gen, NEG_INF)
    parts = [s_prompt, s_gen]
    if prefix_kv is not None:
      parts.insert(0, jnp.einsum('bsgrk,egk->bsgre', qg, prefix_kv[0]
                                 ).astype(acc) * scale)
    probs = _softmax_parts(parts, self.cfg.dtype)
    attended = (jnp.einsum('bsgrp,bpgk->bsgrk', probs[-2], pv)
                + jnp.einsum('bsgrt,bsgtk->bsgrk', probs[-1], gen_v))
    if prefix_kv is not None:
      attended += jnp.einsum('bsgre,egk->bsgrk', probs[0], prefix_kv[1])
    return self.output(attended), (gen_k, gen_v)


def empty_gen_cache(cfg: DecoderConfig, batch: int, num_samples: int,
                    steps: int) -> tuple[jax.Array, jax.Array]:
  """One layer's zero generated-token cache for `Attention.decode`."""
  shape = (batch, num_samples, cfg.num_kv_heads, steps, cfg.head_dim)
  dtype = jnp.dtype(cfg.dtype)
  return (jnp.zeros(shape[:3] + (cfg.head_dim, steps), dtype),
          jnp.zeros(shape, dtype))


def _softmax_parts(parts, dtype) -> list[jax.Array]:
  """Softmax over the concatenated last axes of `parts`, split back."""
  probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1)
  probs = probs.astype(dtype)
  out, start = [], 0
  for p in parts:
    out.append(probs[..., start:start + p.shape[-1]])
    start += p.shape[-1]
  return out


class Mlp(nn.Module):
  """SwiGLU feed-forward block."""

  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    init = _kernel_init(1)
    gate = _param(self, 'gate', (c.embed_dim, c.mlp_dim), (EMBED, MLP), init,
                  c.param_dtype)
    up = _param(self, 'up', (c.embed_dim, c.mlp_dim), (EMBED, MLP), init,
                c.param_dtype)
    down = _param(self, 'down', (c.mlp_dim, c.embed_dim), (MLP, EMBED), init,
                  c.param_dtype)
    dt = c.dtype
    h = nn.silu(x @ gate.astype(dt)) * (x @ up.astype(dt))
    h = nn.with_logical_constraint(h, (BATCH, LENGTH, MLP))
    return h @ down.astype(dt)


class Block(nn.Module):
  """Pre-norm transformer block."""

  cfg: DecoderConfig

  def setup(self):
    self.attn_norm = RMSNorm(self.cfg)
    self.attn = Attention(self.cfg)
    self.mlp_norm = RMSNorm(self.cfg)
    self.mlp = Mlp(self.cfg)

  def __call__(self, x, positions, mask, prefix_kv=None):
    h, kv = self.attn(self.attn_norm(x), positions, mask, prefix_kv)
    x = x + h
    x = x + self.mlp(self.mlp_norm(x))
    return nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED)), kv

  def decode(self, x, positions, prompt_kv, prompt_valid, gen_kv, step,
             prefix_kv=None):
    h, gen_kv = self.attn.decode(self.attn_norm(x), positions, prompt_kv,
                                 prompt_valid, gen_kv, step, prefix_kv)
    x = x + h
    return x + self.mlp(self.mlp_norm(x)), gen_kv


class Decoder(nn.Module):
  """The decoder. See the module docstring for its three entry points."""

  cfg: DecoderConfig

  def setup(self):
    c = self.cfg
    self.embedding = _param(self, 'embedding', (c.vocab_size, c.embed_dim),
                            (VOCAB, EMBED), nn.initializers.normal(1.0),
                            c.param_dtype)
    self.blocks = [Block(c, name=f'layer_{i}') for i in range(c.num_layers)]
    self.final_norm = RMSNorm(c)
    if not c.tie_embeddings:
      self.lm_head = _param(self, 'lm_head', (c.embed_dim, c.vocab_size),
                            (EMBED, VOCAB), _kernel_init(1), c.param_dtype)

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
    return (x @ w).astype(_acc(self.cfg.dtype))

  def _forward(self, tokens, valid, prefix_kv=None):
    # tokens: int [B, L], right-padded; valid: bool [B, L]; prefix_kv: per
    # layer (k, v) [E, Hkv, Dh] of a shared prefix the tokens continue.
    offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[0]
    positions = offset + jnp.cumsum(valid, axis=-1) - 1
    length = tokens.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    mask = causal[None] & valid[:, None, :]  # [B, L(query), L(key)]
    x = nn.with_logical_constraint(self._embed(tokens), (BATCH, LENGTH, EMBED))
    kvs = []
    for i, block in enumerate(self.blocks):
      x, kv = block(x, positions, mask,
                    None if prefix_kv is None else prefix_kv[i])
      kvs.append(kv)
    return x, tuple(kvs)

  def __call__(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    """Causal LM logits. tokens, valid: [B, L]. Returns float32 [B, L, V]."""
    x, _ = self._forward(tokens, valid)
    return self._logits(x)

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

  def decode(self, tokens, positions, prompt_kv, prompt_valid, gen_kv, step,
             prefix_kv=None):
    """One decoding step for S samples per prompt.

    Args:
      tokens: int [B, S] newest token of each sample.
      positions: int [B, S] its absolute position.
      prompt_kv: per-layer (k, v) [B, P, Hkv, Dh] from `prefill`.
      prompt_valid: bool [B, P].
      gen_kv: per-layer (k [B, S, Hkv, Dh, T], v [B, S, Hkv, T, Dh]).
      step: int scalar, slot of this token in the generated cache.
      prefix_kv: optional per-layer (k, v) [E, Hkv, Dh] shared by the batch.

    Returns:
      (float32 [B, S, V] next-token logits, updated gen_kv).
    """
    x = self._embed(tokens)
    new_kv = []
    for i, (block, pkv, gkv) in enumerate(zip(self.blocks, prompt_kv, gen_kv)):
      x, gkv = block.decode(x, positions, pkv, prompt_valid, gkv, step,
                            None if prefix_kv is None else prefix_kv[i])
      new_kv.append(gkv)
    return self._logits(x), tuple(new_kv)


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
