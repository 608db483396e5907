"""Decoder: golden logits vs a numpy forward pass; prefill/decode agree."""

import jax
import numpy as np
import pytest

from lmsi.model import decoder as decoder_lib
from lmsi.model import sharding


def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _rope(x, pos, theta):
  dim = x.shape[-1]
  inv = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
  f = pos[:, None] * inv  # [L, Dh/2]
  cos, sin = np.cos(f)[:, None], np.sin(f)[:, None]
  x1, x2 = x[..., : dim // 2], x[..., dim // 2:]
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def numpy_forward(cfg, params, tokens):
  """An independent float64 forward pass of one unpadded sequence."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  x = p['embedding'][tokens]
  length = len(tokens)
  pos = np.arange(length, dtype=np.float64)
  group = cfg.num_heads // cfg.num_kv_heads
  for i in range(cfg.num_layers):
    lp = p[f'layer_{i}']
    h = _rms(x, lp['attn_norm']['scale'], cfg.norm_eps)
    q = _rope(np.einsum('ld,dhk->lhk', h, lp['attn']['q']), pos, cfg.rope_theta)
    k = _rope(np.einsum('ld,dhk->lhk', h, lp['attn']['k']), pos, cfg.rope_theta)
    v = np.einsum('ld,dhk->lhk', h, lp['attn']['v'])
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = np.einsum('lhk,mhk->hlm', q, k) / np.sqrt(cfg.head_dim)
    s = np.where(np.tril(np.ones((length, length), bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = np.einsum('hlm,mhk->lhk', a, v)
    x = x + np.einsum('lhk,hkd->ld', o, lp['attn']['o'])
    h = _rms(x, lp['mlp_norm']['scale'], cfg.norm_eps)
    g = h @ lp['mlp']['gate']
    x = x + ((g / (1 + np.exp(-g))) * (h @ lp['mlp']['up'])) @ lp['mlp']['down']
  x = _rms(x, p['final_norm']['scale'], cfg.norm_eps)
  return x @ (p['embedding'].T * cfg.embed_dim ** -0.5)


def test_logits_match_numpy_reference(tiny_cfg):
  params, _ = decoder_lib.init_params(tiny_cfg, seed=3)
  rng = np.random.RandomState(0)
  seqs = [rng.randint(3, 259, size=n) for n in (5, 11)]
  tokens = np.zeros((2, 11), np.int32)
  for i, s in enumerate(seqs):
    tokens[i, : len(s)] = s
  logits = decoder_lib.Decoder(tiny_cfg).apply(
      {'params': params}, tokens, tokens > 0)
  for i, s in enumerate(seqs):
    want = numpy_forward(tiny_cfg, params, s)
    np.testing.assert_allclose(np.asarray(logits[i, : len(s)]), want,
                               atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_logits(tiny_cfg):
  params, _ = decoder_lib.init_params(tiny_cfg, seed=1)
  model = decoder_lib.Decoder(tiny_cfg)
  seq = np.array([[10, 20, 30, 40]], np.int32)
  padded = np.array([[10, 20, 30, 40, 0, 0, 0]], np.int32)
  a = model.apply({'params': params}, seq, seq > 0)
  b = model.apply({'params': params}, padded, padded > 0)
  np.testing.assert_allclose(a[0], b[0, :4], atol=1e-5)


def test_params_carry_logical_axes(tiny_cfg):
  _, specs = decoder_lib.init_params(tiny_cfg)
  assert specs['embedding'] == jax.sharding.PartitionSpec(sharding.VOCAB,
                                                          sharding.EMBED)
  assert specs['layer_0']['attn']['q'] == jax.sharding.PartitionSpec(
      sharding.EMBED, sharding.HEADS, sharding.KV)
  assert specs['layer_1']['mlp']['down'] == jax.sharding.PartitionSpec(
      sharding.MLP, sharding.EMBED)


def test_2x4_mesh_equals_one_device(tiny_cfg):
  if jax.device_count() != 8:
    pytest.skip('needs 8 (fake) devices')
  import dataclasses  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  # Heads and KV heads must divide the model axis (4).
  cfg = dataclasses.replace(tiny_cfg, num_heads=8, num_kv_heads=4, head_dim=4)
  params, specs = decoder_lib.init_params(cfg, seed=2)
  tokens = np.random.RandomState(1).randint(3, 259, size=(4, 16)).astype(
      np.int32)
  model = decoder_lib.Decoder(cfg)
  want = model.apply({'params': params}, tokens, tokens > 0)
  mesh = sharding.create_mesh(2, 4)
  rules = sharding.logical_axis_rules()
  sharded = jax.device_put(params, sharding.shardings_for(specs, mesh, rules))
  with mesh, nn.logical_axis_rules(rules):
    got = jax.jit(lambda p, t: model.apply({'params': p}, t, t > 0))(
        sharded, jax.device_put(tokens, sharding.batch_sharding(mesh, 2)))
  assert len(sharded['layer_0']['attn']['q'].sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_config_rejects_bad_grouping():
  with pytest.raises(ValueError, match='num_kv_heads'):
    decoder_lib.DecoderConfig(num_heads=4, num_kv_heads=3)


def test_decode_with_rotary_table_equals_computed_angles(tiny_cfg):
  """The decode loop gathers cos/sin rows from a table made once
  (`lmsi.sampling.kernels`); the step's logits and cache equal computing
  them."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lmsi.model import layers  # pylint: disable=g-import-not-at-top
  params, _ = decoder_lib.init_params(tiny_cfg, seed=4)
  model = decoder_lib.Decoder(tiny_cfg)
  slots, length = 3, 12
  rng = np.random.RandomState(1)
  cache = tuple(
      tuple(jnp.asarray(rng.randn(*x.shape), x.dtype)
            for x in layers.empty_slot_cache(tiny_cfg, slots, length))
      for _ in range(tiny_cfg.num_layers))
  tokens = jnp.asarray([5, 17, 40], jnp.int32)
  positions = jnp.asarray([3, 9, 30], jnp.int32)
  write = jnp.asarray([3, 9, 11], jnp.int32)
  valid = jnp.arange(length)[None] <= write[:, None]
  table = decoder_lib.rotary_pair(jnp.arange(31), tiny_cfg)
  step = jax.jit(lambda table: model.apply(
      {'params': params}, tokens, positions, cache, write, valid, None,
      table, method=decoder_lib.Decoder.decode))
  got, want = step(table), step(None)
  for a, b in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                               atol=1e-6)
  # A wrong table changes the step: the test can fail.
  shifted = {local: tuple(t[1:] for t in angles)
             for local, angles in table.items()}
  assert not np.allclose(np.asarray(step(shifted)[0]),
                         np.asarray(want[0]), atol=1e-4)


def test_mlp_as_2d_gemms_keeps_the_plain_matmuls_bits(tiny_cfg):
  # layers.dense merges [B, L] into one row axis (XLA:CPU's weight gradient
  # was 1.8x slower over [B, L]); loss and gradients stay bitwise those of
  # the plain `x @ w` on [B, L, D].
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax.core import meta  # pylint: disable=g-import-not-at-top
  from lmsi.model import layers  # pylint: disable=g-import-not-at-top
  mlp = layers.Mlp(tiny_cfg)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 48, tiny_cfg.embed_dim))
  params = meta.unbox(mlp.init(jax.random.PRNGKey(1), x)['params'])

  def plain(p, x):
    h = jax.nn.silu(x @ p['gate']) * (x @ p['up'])
    return h @ p['down']

  def loss(f):
    return jax.jit(jax.value_and_grad(
        lambda p, x: jnp.sum(jnp.sin(f(p, x))), argnums=(0, 1)))(params, x)

  got = loss(lambda p, x: mlp.apply({'params': p}, x))
  want = loss(plain)
  for a, b in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
