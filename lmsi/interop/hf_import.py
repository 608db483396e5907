"""Import a Hugging Face Llama-family checkpoint directory.

`config.json` (`model_type` llama / smollm-style llama, or qwen2 with
attention biases; plain RoPE, SwiGLU), `model.safetensors` or a sharded
`model.safetensors.index.json` (read with the `safetensors` package), and
the tokenizer's special ids from `tokenizer_config.json` /
`generation_config.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from typing import Any

import numpy as np
import safetensors

from lmsi.model import decoder as decoder_lib
from lmsi.interop import pretrained

SUPPORTED_HF = {'llama': False, 'qwen2': True}  # model_type -> q/k/v biases


# Stored dtypes the importer reads (as float32); others are refused.
_ST_DTYPES = ('BF16', 'F64', 'F32', 'F16', 'I64', 'I32')
# `pretrained.assemble`'s roles -> HF tensor names ({} is the layer).
_LAYER_NAMES = {
    'q': 'self_attn.q_proj.weight', 'k': 'self_attn.k_proj.weight',
    'v': 'self_attn.v_proj.weight', 'o': 'self_attn.o_proj.weight',
    'q_bias': 'self_attn.q_proj.bias', 'k_bias': 'self_attn.k_proj.bias',
    'v_bias': 'self_attn.v_proj.bias', 'gate': 'mlp.gate_proj.weight',
    'up': 'mlp.up_proj.weight', 'down': 'mlp.down_proj.weight',
    'attn_norm': 'input_layernorm.weight',
    'mlp_norm': 'post_attention_layernorm.weight'}
TENSOR_NAMES = {
    'embed': 'model.embed_tokens.weight', 'final_norm': 'model.norm.weight',
    'lm_head': 'lm_head.weight',
    **{role: 'model.layers.{}.' + name for role, name in _LAYER_NAMES.items()}}


def _config(path: str) -> decoder_lib.DecoderConfig:
  """The `DecoderConfig` of `path`/config.json, or why it has none."""
  cfg_path = os.path.join(path, 'config.json')
  try:
    with open(cfg_path, encoding='utf-8') as f:
      c = json.load(f)
  except FileNotFoundError:
    raise pretrained.ConversionError(
        f'{path}: no config.json; expected a Hugging Face checkpoint '
        'directory') from None
  model_type = c.get('model_type')
  if model_type not in SUPPORTED_HF:
    raise pretrained.ConversionError(
        f'{cfg_path}: model_type {model_type!r} is not supported; lmsi '
        f'imports {sorted(SUPPORTED_HF)} (Llama family)')
  rope = c.get('rope_scaling') or {}
  rope_type = rope.get('rope_type', rope.get('type', 'default'))
  params = c.get('rope_parameters') or {}
  rope_type = params.get('rope_type', rope_type)
  if rope_type not in ('default', None):
    raise pretrained.ConversionError(
        f'{cfg_path}: rope scaling {rope_type!r} is not supported (only '
        'plain RoPE)')
  if c.get('hidden_act', 'silu') != 'silu' or c.get('mlp_bias'):
    raise pretrained.ConversionError(
        f'{cfg_path}: only SwiGLU MLPs without bias are supported')
  heads = c['num_attention_heads']
  return decoder_lib.DecoderConfig(
      vocab_size=c['vocab_size'], embed_dim=c['hidden_size'],
      num_layers=c['num_hidden_layers'], num_heads=heads,
      num_kv_heads=c.get('num_key_value_heads', heads),
      head_dim=c.get('head_dim') or c['hidden_size'] // heads,
      mlp_dim=c['intermediate_size'],
      rope_theta=float(params.get('rope_theta', c.get('rope_theta', 1e4))),
      norm_eps=float(c.get('rms_norm_eps', 1e-6)),
      tie_embeddings=bool(c.get('tie_word_embeddings', False)),
      attention_bias=bool(c.get('attention_bias', SUPPORTED_HF[model_type])),
      scale_tied_logits=False)


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


def import_hf(path: str) -> pretrained.Imported:
  """Imports a Hugging Face Llama-family checkpoint directory."""
  cfg = _config(path)
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

    params = pretrained.assemble(cfg, get, path)
  return pretrained.Imported(cfg, params, _tokenizer_facts(path),
                             dict(Counter(kinds.values())), path)


def _tokenizer_facts(path: str) -> dict[str, Any]:
  """EOS/BOS/pad ids, chat template and add_bos from the config files."""
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
  return facts
