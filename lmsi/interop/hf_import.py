"""Import a Hugging Face Llama-family checkpoint directory.

`config.json` (`model_type` llama, including Llama 3.1/3.2's 'llama3' RoPE
scaling and 'linear' scaling; qwen2 with attention biases; qwen3 with q/k
RMSNorm), read in both formats: the Hub's transformers-4 keys (`rope_theta`,
`rope_scaling`) and the nested `rope_parameters` that transformers 5
`save_pretrained` writes. Weights from `model.safetensors` or a sharded
`model.safetensors.index.json` (read with the `safetensors` package, one
tensor at a time, each put on the mesh, when one is given, before the
next is read), and the tokenizer's special ids from `tokenizer_config.json` /
`generation_config.json`. Anything the decoder cannot express (other RoPE
scalings, sliding windows, mixtures of experts, partial rotary) is refused
with the file and field named.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from typing import Any

import jax
import numpy as np
import safetensors

from lmsi.model import decoder as decoder_lib
from lmsi.interop import pretrained

# model_type -> whether q/k/v biases default on, q/k norms.
SUPPORTED_HF = {'llama': (False, False), 'qwen2': (True, False),
                'qwen3': (False, True)}
# RoPE types (`rope_type`, or transformers-4's `type`) the decoder has.
ROPE_TYPES = {'default': 'none', 'linear': 'linear', 'llama3': 'llama3'}
# Config fields of a mixture of experts: refused when set.
MOE_FIELDS = ('num_experts', 'num_local_experts', 'n_routed_experts',
              'num_experts_per_tok')

# Stored dtypes the importer reads (as float32); others are refused.
_ST_DTYPES = ('BF16', 'F64', 'F32', 'F16', 'I64', 'I32')
# `pretrained.assemble`'s roles -> HF tensor names ({} is the layer).
_LAYER_NAMES = {
    'q': 'self_attn.q_proj.weight', 'k': 'self_attn.k_proj.weight',
    'v': 'self_attn.v_proj.weight', 'o': 'self_attn.o_proj.weight',
    'q_bias': 'self_attn.q_proj.bias', 'k_bias': 'self_attn.k_proj.bias',
    'v_bias': 'self_attn.v_proj.bias', 'q_norm': 'self_attn.q_norm.weight',
    'k_norm': 'self_attn.k_norm.weight', 'gate': 'mlp.gate_proj.weight',
    'up': 'mlp.up_proj.weight', 'down': 'mlp.down_proj.weight',
    'attn_norm': 'input_layernorm.weight',
    'mlp_norm': 'post_attention_layernorm.weight'}
TENSOR_NAMES = {
    'embed': 'model.embed_tokens.weight', 'final_norm': 'model.norm.weight',
    'lm_head': 'lm_head.weight',
    **{role: 'model.layers.{}.' + name for role, name in _LAYER_NAMES.items()}}


def read_config(path: str) -> dict[str, Any]:
  """`path`/config.json as a dict, or a `ConversionError` saying why not."""
  cfg_path = os.path.join(path, 'config.json')
  try:
    with open(cfg_path, encoding='utf-8') as f:
      c = json.load(f)
  except FileNotFoundError:
    raise pretrained.ConversionError(
        f'{path}: no config.json; expected a Hugging Face checkpoint '
        'directory') from None
  except json.JSONDecodeError as e:
    raise pretrained.ConversionError(f'{cfg_path}: not JSON ({e})') from None
  if not isinstance(c, dict):
    raise pretrained.ConversionError(f'{cfg_path}: expected a JSON object')
  return c


def rope_fields(c: dict[str, Any], where: str) -> dict[str, Any]:
  """The `DecoderConfig` RoPE fields of config dict `c`.

  transformers 5 writes `rope_parameters` ({rope_type, rope_theta, factor,
  ...}); the Hub's transformers-4 configs have `rope_theta` and an optional
  `rope_scaling` ({rope_type or type, factor, ...}). Either is read; when
  both name a base they must agree.

  Raises:
    pretrained.ConversionError: naming `where` and the field, for a RoPE
      type the decoder does not have (yarn, dynamic, longrope, ...), partial
      rotary, per-layer-type parameters or a missing factor.
  """
  nested = c.get('rope_parameters')
  if nested is not None:
    field, spec = 'rope_parameters', nested
    if isinstance(spec, dict) and spec and all(
        isinstance(v, dict) for v in spec.values()):
      raise pretrained.ConversionError(
          f'{where}: rope_parameters are given per layer type '
          f'({sorted(spec)}); {c.get("model_type")!r} has one RoPE for all '
          'layers')
  else:
    field, spec = 'rope_scaling', c.get('rope_scaling') or {}
  if not isinstance(spec, dict):
    raise pretrained.ConversionError(
        f'{where}: {field} is {spec!r}; expected an object')
  theta = spec.get('rope_theta', c.get('rope_theta', 1e4))
  if 'rope_theta' in spec and 'rope_theta' in c and (
      float(c['rope_theta']) != float(spec['rope_theta'])):
    raise pretrained.ConversionError(
        f'{where}: rope_theta {c["rope_theta"]} and '
        f'{field}.rope_theta {spec["rope_theta"]} disagree')
  kind = spec.get('rope_type', spec.get('type', 'default')) or 'default'
  if kind not in ROPE_TYPES:
    raise pretrained.ConversionError(
        f'{where}: {field}.rope_type {kind!r} is not supported; lmsi '
        f'implements {sorted(ROPE_TYPES)}')
  partial = spec.get('partial_rotary_factor',
                     c.get('partial_rotary_factor', 1.0))
  if float(partial) != 1.0:
    raise pretrained.ConversionError(
        f'{where}: partial_rotary_factor {partial} is not supported (RoPE '
        'over the whole head only)')
  out: dict[str, Any] = {'rope_theta': float(theta),
                         'rope_scaling': ROPE_TYPES[kind]}

  def need(key: str) -> Any:
    if spec.get(key) is None:
      raise pretrained.ConversionError(
          f'{where}: {field}.rope_type {kind!r} needs {field}.{key}')
    return spec[key]

  if kind in ('linear', 'llama3'):
    out['rope_factor'] = float(need('factor'))
  if kind == 'llama3':
    out.update(rope_low_freq_factor=float(need('low_freq_factor')),
               rope_high_freq_factor=float(need('high_freq_factor')),
               rope_original_max_position=int(
                   need('original_max_position_embeddings')))
  return out


def config_from_dict(c: dict[str, Any],
                     where: str) -> decoder_lib.DecoderConfig:
  """The `DecoderConfig` of an HF config dict, or why it has none."""
  model_type = c.get('model_type')
  if model_type not in SUPPORTED_HF:
    raise pretrained.ConversionError(
        f'{where}: model_type {model_type!r} is not supported; lmsi '
        f'imports {sorted(SUPPORTED_HF)} (Llama family)')
  for key in MOE_FIELDS:
    if c.get(key):
      raise pretrained.ConversionError(
          f'{where}: {key} = {c[key]!r} describes a mixture of experts; '
          'lmsi has dense MLPs only')
  if c.get('use_sliding_window'):
    raise pretrained.ConversionError(
        f'{where}: use_sliding_window = true is not supported (every '
        'layer attends to the whole context)')
  local = sorted({t for t in c.get('layer_types') or ()
                  if t != 'full_attention'})
  if local:
    raise pretrained.ConversionError(
        f'{where}: layer_types has {local}; every layer must be '
        "'full_attention'")
  if c.get('hidden_act', 'silu') != 'silu' or c.get('mlp_bias'):
    raise pretrained.ConversionError(
        f'{where}: only SwiGLU MLPs without bias are supported (hidden_act '
        f'{c.get("hidden_act")!r}, mlp_bias {c.get("mlp_bias")!r})')
  bias, qk_norm = SUPPORTED_HF[model_type]
  rope = rope_fields(c, where)
  try:
    heads = c['num_attention_heads']
    return decoder_lib.DecoderConfig(
        vocab_size=c['vocab_size'], embed_dim=c['hidden_size'],
        num_layers=c['num_hidden_layers'], num_heads=heads,
        num_kv_heads=c.get('num_key_value_heads') or heads,
        head_dim=c.get('head_dim') or c['hidden_size'] // heads,
        mlp_dim=c['intermediate_size'],
        norm_eps=float(c.get('rms_norm_eps', 1e-6)),
        tie_embeddings=bool(c.get('tie_word_embeddings', False)),
        attention_bias=bool(c.get('attention_bias', bias)),
        qk_norm=qk_norm, scale_tied_logits=False, **rope)
  except KeyError as e:
    raise pretrained.ConversionError(
        f'{where}: missing field {e.args[0]!r}') from None
  except ValueError as e:
    raise pretrained.ConversionError(f'{where}: {e}') from None


def _config(path: str) -> decoder_lib.DecoderConfig:
  """The `DecoderConfig` of `path`/config.json, or why it has none."""
  return config_from_dict(read_config(path),
                          os.path.join(path, 'config.json'))


def _safetensors_files(path: str) -> list[str]:
  """The .safetensors files of the checkpoint directory `path`."""
  index = os.path.join(path, 'model.safetensors.index.json')
  if os.path.exists(index):
    with open(index, encoding='utf-8') as f:
      names = sorted(set(json.load(f)['weight_map'].values()))
  elif os.path.exists(os.path.join(path, 'model.safetensors')):
    names = ['model.safetensors']
  else:
    raise pretrained.ConversionError(
        f'{path}: no model.safetensors or model.safetensors.index.json')
  return [os.path.join(path, name) for name in names]


def _open_safetensors(path: str, stack: contextlib.ExitStack):
  """`safetensors.safe_open(path)` (numpy arrays), closed with `stack`."""
  try:
    return stack.enter_context(safetensors.safe_open(path, framework='numpy'))
  except (safetensors.SafetensorError, OSError) as e:
    raise pretrained.ConversionError(
        f'{path}: not a safetensors file ({e})') from None


def import_hf(path: str,
              mesh: jax.sharding.Mesh | None = None) -> pretrained.Imported:
  """Imports a Hugging Face Llama-family checkpoint directory.

  With `mesh`, each parameter goes onto it (sharded,
  `pretrained.mesh_placer`) as soon as it is read, so the host never holds
  the whole model in float32; without, params are float32 numpy arrays.
  """
  cfg = _config(path)
  place = None if mesh is None else pretrained.mesh_placer(cfg, mesh)
  with contextlib.ExitStack() as stack:
    where = {}  # tensor name -> (its file, the file's safe_open handle)
    for file in _safetensors_files(path):
      handle = _open_safetensors(file, stack)
      where.update({name: (file, handle) for name in handle.keys()})
    kinds = {name: handle.get_slice(name).get_dtype()
             for name, (_, handle) in where.items()}

    def get(role: str) -> np.ndarray:
      _, name = pretrained.tensor_name(role, TENSOR_NAMES)
      if name not in where:
        raise pretrained.ConversionError(
            f'{path}: missing tensor {name!r} ({role})')
      file, handle = where[name]
      if kinds[name] not in _ST_DTYPES:
        raise pretrained.ConversionError(
            f'{file}: tensor {name!r} has dtype {kinds[name]}; expected one '
            f'of {list(_ST_DTYPES)}')
      return handle.get_tensor(name).astype(np.float32)

    params = pretrained.assemble(cfg, get, path, place)
  return pretrained.Imported(cfg, params, _tokenizer_facts(path),
                             dict(Counter(kinds.values())), path)


def _tokenizer_facts(path: str) -> dict[str, Any]:
  """EOS/BOS/pad ids, chat template and add_bos from the config files.

  A list of EOS ids (Llama 3.1's generation_config.json) gives `eos_id`
  its first and `eos_ids` all of them.
  """
  facts: dict[str, Any] = {'file': 'tokenizer.json'}
  for name in ('tokenizer_config.json', 'generation_config.json',
               'config.json'):
    p = os.path.join(path, name)
    if os.path.exists(p):
      with open(p, encoding='utf-8') as f:
        c = json.load(f)
      for key in ('eos_token_id', 'bos_token_id', 'pad_token_id',
                  'chat_template', 'add_bos_token'):
        if key in c and key.replace('_token', '') not in facts:
          facts[key.replace('_token', '')] = c[key]
  if isinstance(facts.get('eos_id'), list):
    facts['eos_ids'] = facts['eos_id']
    facts['eos_id'] = facts['eos_ids'][0] if facts['eos_ids'] else None
  return facts
