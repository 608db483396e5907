"""A pretrained checkpoint as lmsi imports it, from any source format.

`Imported` is what `lmsi.interop.hf_import` and `lmsi.interop.gguf_import`
return: a `DecoderConfig`, float32 numpy params in the decoder's tree and the
tokenizer's facts. `assemble` builds that tree from tensors named by role ([out,
in] matrices, as Hugging Face stores them), checking every shape against the
config; `ConversionError` names the file and tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lmsi.model import decoder as decoder_lib
from lmsi.model import sharding


@dataclasses.dataclass(frozen=True)
class Imported:
  """An imported checkpoint (`source`: the file or directory it came from)."""

  config: decoder_lib.DecoderConfig
  params: dict[str, Any]  # float32 numpy arrays in the decoder's tree
  tokenizer: dict[str, Any]  # eos_id, bos_id, pad_id, add_bos, chat_template
  tensor_types: dict[str, int]  # stored dtype/quantization -> count
  source: str
  # Config values the file does not carry, taken from the family's
  # defaults (field -> value; the convert manifest lists them).
  assumed: dict[str, Any] = dataclasses.field(default_factory=dict)


class ConversionError(ValueError):
  """A checkpoint lmsi cannot import; the message names file and tensor."""


def assemble(cfg: decoder_lib.DecoderConfig,
             get: Callable[[str], np.ndarray | None], where: str,
             place: Callable[[tuple[str, ...], np.ndarray], Any] | None = None
             ) -> dict:
  """Builds the decoder tree from `get(role)` ([out, in] matrices, as HF).

  Roles: 'embed', 'final_norm', 'lm_head', and per layer 'L.q', 'L.k', 'L.v',
  'L.o', 'L.q_bias', ..., 'L.q_norm', 'L.k_norm', 'L.gate', 'L.up',
  'L.down', 'L.attn_norm', 'L.mlp_norm' (and 'L.attn_post_norm',
  'L.mlp_post_norm' with `cfg.post_norms`). Each leaf is passed to
  `place(path in the tree, float32 array)` as soon as it is built, and the
  tree keeps what it returns (default: the array), so a caller can put it on
  devices before the next tensor is read.
  """
  d, h, kvh, dh, f = (cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads,
                      cfg.head_dim, cfg.mlp_dim)
  place = place or (lambda _, w: w)

  def need(role: str, shape: tuple[int, ...]) -> np.ndarray:
    w = get(role)
    if w is None:
      raise ConversionError(f'{where}: missing tensor for {role!r}')
    if tuple(w.shape) != shape:
      raise ConversionError(f'{where}: tensor {role!r} has shape '
                            f'{tuple(w.shape)}, the config implies {shape}')
    return np.asarray(w, np.float32)

  def put(tree: dict, path: tuple[str, ...], w: np.ndarray) -> None:
    # tree[path[0]]...[path[-1]] = place(path, w), one leaf at a time.
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = place(path, np.ascontiguousarray(w))

  params: dict[str, Any] = {}
  put(params, ('embedding',), need('embed', (cfg.vocab_size, d)))
  put(params, ('final_norm', 'scale'), need('final_norm', (d,)))
  if not cfg.tie_embeddings:
    put(params, ('lm_head',), need('lm_head', (cfg.vocab_size, d)).T)
  for i in range(cfg.num_layers):
    layer = f'layer_{i}'
    # HF's [out, in] projections -> the decoder's [D, heads, Dh] / [H, Dh, D].
    for name, stored, shape in (('q', (h * dh, d), (d, h, dh)),
                                ('k', (kvh * dh, d), (d, kvh, dh)),
                                ('v', (kvh * dh, d), (d, kvh, dh)),
                                ('o', (d, h * dh), (h, dh, d))):
      put(params, (layer, 'attn', name),
          need(f'{i}.{name}', stored).T.reshape(shape))
    if cfg.attention_bias:
      for name, heads in (('q', h), ('k', kvh), ('v', kvh)):
        put(params, (layer, 'attn', f'{name}_bias'),
            need(f'{i}.{name}_bias', (heads * dh,)).reshape(heads, dh))
    if cfg.qk_norm:
      for kind in ('q_norm', 'k_norm'):
        put(params, (layer, 'attn', kind, 'scale'),
            need(f'{i}.{kind}', (dh,)))
    norms = ('attn_norm', 'mlp_norm') + (
        ('attn_post_norm', 'mlp_post_norm') if cfg.post_norms else ())
    for norm in norms:
      put(params, (layer, norm, 'scale'), need(f'{i}.{norm}', (d,)))
    for kind, shape in (('gate', (f, d)), ('up', (f, d)), ('down', (d, f))):
      put(params, (layer, 'mlp', kind), need(f'{i}.{kind}', shape).T)
  return params


def mesh_placer(cfg: decoder_lib.DecoderConfig, mesh: jax.sharding.Mesh
                ) -> Callable[[tuple[str, ...], np.ndarray], jax.Array]:
  """An `assemble` `place` that puts each parameter straight onto `mesh`.

  Sharded by the training column of the logical-axis table (the embedding
  dimension over 'data', heads and MLP over 'model'); only the shards this
  process addresses are copied to its devices, and the host array is
  dropped before the next tensor is read, so importing an 8B checkpoint
  never holds it whole in float32 on one host.
  """
  specs = decoder_lib.logical_param_specs(cfg)
  rules = sharding.logical_axis_rules(for_sampling=False)

  def place(path: tuple[str, ...], w: np.ndarray) -> jax.Array:
    spec = specs
    for key in path:
      spec = spec[key]
    named = sharding.shardings_for({'w': spec}, mesh, rules,
                                   shapes={'w': w})['w']
    return jax.make_array_from_callback(w.shape, named, lambda idx: w[idx])

  return place


def tensor_name(role: str, names: dict[str, str]) -> tuple[str, str]:
  """(role without its layer, tensor name) of an `assemble` role.

  `names` maps roles to tensor names with `{}` for the layer number.
  """
  layer, _, kind = role.rpartition('.')
  return kind, names[kind].format(layer)


def disassemble(cfg: decoder_lib.DecoderConfig,
                params: dict[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `assemble`: {role: [out, in] matrix, as HF stores it}.

  Arrays keep their dtype; `assemble(cfg, disassemble(cfg, p).get, ...)`
  gives `p` back bit for bit (transposes and reshapes only).
  """
  d, h, kvh, dh = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  host = lambda x: np.asarray(x)
  out = {'embed': host(params['embedding']),
         'final_norm': host(params['final_norm']['scale'])}
  if not cfg.tie_embeddings:
    out['lm_head'] = host(params['lm_head']).T
  for i in range(cfg.num_layers):
    layer = params[f'layer_{i}']
    attn = layer['attn']
    out.update({
        f'{i}.q': host(attn['q']).reshape(d, h * dh).T,
        f'{i}.k': host(attn['k']).reshape(d, kvh * dh).T,
        f'{i}.v': host(attn['v']).reshape(d, kvh * dh).T,
        f'{i}.o': host(attn['o']).reshape(h * dh, d).T,
        f'{i}.attn_norm': host(layer['attn_norm']['scale']),
        f'{i}.mlp_norm': host(layer['mlp_norm']['scale']),
        f'{i}.gate': host(layer['mlp']['gate']).T,
        f'{i}.up': host(layer['mlp']['up']).T,
        f'{i}.down': host(layer['mlp']['down']).T})
    if cfg.attention_bias:
      for kind in ('q', 'k', 'v'):
        out[f'{i}.{kind}_bias'] = host(attn[f'{kind}_bias']).reshape(-1)
    if cfg.qk_norm:
      for kind in ('q_norm', 'k_norm'):
        out[f'{i}.{kind}'] = host(attn[kind]['scale'])
    if cfg.post_norms:
      for norm in ('attn_post_norm', 'mlp_post_norm'):
        out[f'{i}.{norm}'] = host(layer[norm]['scale'])
  return out


def untied(cfg: decoder_lib.DecoderConfig,
           params: dict[str, Any]) -> tuple[decoder_lib.DecoderConfig, dict]:
  """`cfg`/`params` with a scaled tied head written out as `lm_head`.

  Hugging Face and GGUF configs know tied logits x @ E^T only; the tiny
  models' x @ E^T / sqrt(D) becomes an untied lm_head = E / sqrt(D) with
  the same logits. Other configs are returned as they are.
  """
  if not (cfg.tie_embeddings and cfg.scale_tied_logits):
    return cfg, params
  emb = np.asarray(params['embedding'])
  head = (emb / np.sqrt(np.float32(cfg.embed_dim))).astype(emb.dtype).T
  cfg = dataclasses.replace(cfg, tie_embeddings=False,
                            scale_tied_logits=False)
  return cfg, {**params, 'lm_head': head}


def check_expressible(cfg: decoder_lib.DecoderConfig, where: str) -> None:
  """Raises unless Hugging Face / GGUF configs can express `cfg`'s logits."""
  if cfg.tie_embeddings and cfg.scale_tied_logits:
    raise ConversionError(
        f'{where}: scale_tied_logits=True (logits = x @ E^T / sqrt('
        f'{cfg.embed_dim})) has no Hugging Face or GGUF config field; export '
        'with --untie to write an untied lm_head = E / sqrt(embed_dim), '
        'which gives the same logits')
