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
                'qwen3': (False, True), 'gemma2': (False, False),
                'gemma3_text': (False, True)}
GEMMA = ('gemma2', 'gemma3_text')
# transformers' config defaults of the Gemma families (Gemma2Config,
# Gemma3TextConfig), which the Hub's configs leave out (a Gemma 3 4B
# text_config gives only what differs); tests check them against
# transformers'.
GEMMA_DEFAULTS = {
    'gemma2': dict(
        vocab_size=256000, hidden_size=2304, intermediate_size=9216,
        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
        head_dim=256, hidden_activation='gelu_pytorch_tanh',
        rms_norm_eps=1e-6, rope_theta=10000.0, query_pre_attn_scalar=256,
        sliding_window=4096, final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0, tie_word_embeddings=True,
        attention_bias=False),
    'gemma3_text': dict(
        vocab_size=262208, hidden_size=2304, intermediate_size=9216,
        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
        head_dim=256, hidden_activation='gelu_pytorch_tanh',
        rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        query_pre_attn_scalar=256, sliding_window=4096,
        sliding_window_pattern=6, final_logit_softcapping=None,
        attn_logit_softcapping=None, tie_word_embeddings=True,
        attention_bias=False)}
# Gemma 2's v4 configs have no pattern key: its layers alternate.
WINDOW_PATTERNS = {'gemma2': 2, 'gemma3_text': 6}
GELU_TANH = ('gelu_pytorch_tanh', 'gelu_tanh')
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
# Gemma 2/3 have four norms a layer; Llama's post_attention_layernorm is
# the MLP's pre-norm, Gemma's the attention output's post-norm.
_GEMMA_NORM_NAMES = {
    'attn_norm': 'input_layernorm.weight',
    'attn_post_norm': 'post_attention_layernorm.weight',
    'mlp_norm': 'pre_feedforward_layernorm.weight',
    'mlp_post_norm': 'post_feedforward_layernorm.weight'}
# Where a checkpoint keeps its text decoder: causal LMs under model.*,
# Gemma 3's multimodal checkpoints under model.language_model.*
# (transformers 5) or language_model.model.* (transformers 4).
TEXT_PREFIXES = ('model.', 'model.language_model.', 'language_model.model.')


def tensor_names(cfg: decoder_lib.DecoderConfig,
                 prefix: str = 'model.') -> dict[str, str]:
  """`pretrained.assemble`'s roles -> HF tensor names ({} is the layer) of
  `cfg`'s family, the decoder's tensors under `prefix`."""
  layer = {**_LAYER_NAMES, **(_GEMMA_NORM_NAMES if cfg.post_norms else {})}
  return {'embed': f'{prefix}embed_tokens.weight',
          'final_norm': f'{prefix}norm.weight', 'lm_head': 'lm_head.weight',
          **{role: prefix + 'layers.{}.' + name
             for role, name in layer.items()}}


TENSOR_NAMES = tensor_names(decoder_lib.DecoderConfig())


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
  """The `DecoderConfig` RoPE fields of config dict `c` (one RoPE for all
  layers).

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
    if _per_layer_type(nested):
      raise pretrained.ConversionError(
          f'{where}: rope_parameters are given per layer type '
          f'({sorted(nested)}); {c.get("model_type")!r} has one RoPE for all '
          'layers')
    return _rope_spec(nested, 'rope_parameters', c, where)
  return _rope_spec(c.get('rope_scaling') or {}, 'rope_scaling', c, where)


def _per_layer_type(spec: Any) -> bool:
  return isinstance(spec, dict) and bool(spec) and all(
      isinstance(v, dict) for v in spec.values())


def _rope_spec(spec: Any, field: str, c: dict[str, Any],
               where: str) -> dict[str, Any]:
  """RoPE fields from one RoPE spec ({rope_type, rope_theta, factor, ...})
  named `field`, the base defaulting to `c`'s `rope_theta` (else 1e4)."""
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


def _gemma_fields(c: dict[str, Any], where: str) -> dict[str, Any]:
  """The Gemma 2 / 3 `DecoderConfig` fields of config dict `c` (already
  completed with its family's defaults)."""
  model_type = c['model_type']
  act = c.get('hidden_activation') or c.get('hidden_act')
  if act not in GELU_TANH:
    raise pretrained.ConversionError(
        f'{where}: hidden_activation {act!r} is not supported; Gemma uses '
        f'{sorted(GELU_TANH)}')
  if model_type == 'gemma3_text' and c.get('attn_logit_softcapping'):
    raise pretrained.ConversionError(
        f'{where}: attn_logit_softcapping = {c["attn_logit_softcapping"]} '
        "on gemma3: transformers' Gemma 3 attention does not apply it (and "
        "Gemma 3's published configs have none); refused rather than "
        'guessed')
  if c.get('use_bidirectional_attention'):
    raise pretrained.ConversionError(
        f'{where}: use_bidirectional_attention = true (an embedding model) '
        'is not supported')
  out: dict[str, Any] = dict(
      mlp_activation='gelu_tanh', scale_embeddings=True, norm_offset=True,
      post_norms=True, qk_norm=model_type == 'gemma3_text',
      query_pre_attn_scalar=float(c['query_pre_attn_scalar']),
      attn_logit_softcap=_optional_float(c.get('attn_logit_softcapping')),
      final_logit_softcap=_optional_float(c.get('final_logit_softcapping')),
      sliding_window=int(c.get('sliding_window') or 0))
  out['sliding_window_pattern'] = _window_pattern(c, where)
  nested = c.get('rope_parameters')
  if _per_layer_type(nested):  # transformers 5: one spec per layer type
    unknown = set(nested) - {'full_attention', 'sliding_attention'}
    if unknown:
      raise pretrained.ConversionError(
          f'{where}: rope_parameters has layer types {sorted(unknown)}; '
          "expected 'full_attention' and 'sliding_attention'")
    out.update(_rope_spec(nested.get('full_attention', {}),
                          'rope_parameters.full_attention', c, where))
    local = nested.get('sliding_attention')
    if local is not None:
      local = _rope_spec(local, 'rope_parameters.sliding_attention', c, where)
  else:  # one spec (Gemma 2, either format), or Gemma 3's v4 keys
    out.update(rope_fields(c, where))
    local = None
    if c.get('rope_local_base_freq') is not None:
      local = {'rope_theta': float(c['rope_local_base_freq']),
               'rope_scaling': 'none'}
  if local is not None:
    if local['rope_scaling'] != 'none':
      raise pretrained.ConversionError(
          f'{where}: scaled RoPE on the sliding-window layers is not '
          'supported (the global layers may be scaled)')
    out['rope_local_theta'] = local['rope_theta']
  return out


def _optional_float(x: Any) -> float | None:
  return None if x is None else float(x)


def _window_pattern(c: dict[str, Any], where: str) -> int:
  """`sliding_window_pattern` k of `c`: layer i global iff (i + 1) % k == 0.

  From transformers 5's `layer_types`, else the v4 key
  `sliding_window_pattern`, else the family's (Gemma 2 alternates, k = 2).
  """
  types = c.get('layer_types')
  if not types:
    return int(c.get('sliding_window_pattern') or
               WINDOW_PATTERNS[c['model_type']])
  if len(types) != c['num_hidden_layers']:
    raise pretrained.ConversionError(
        f'{where}: layer_types has {len(types)} entries for '
        f'{c["num_hidden_layers"]} layers')
  full = [i for i, t in enumerate(types) if t == 'full_attention']
  k = full[0] + 1 if full else 0
  want = ['full_attention' if k and (i + 1) % k == 0 else 'sliding_attention'
          for i in range(len(types))]
  if types != want:
    raise pretrained.ConversionError(
        f'{where}: layer_types {types} is not "every k-th layer global" '
        '(the one local/global pattern lmsi has)')
  return k


# Fields that must be positive integers where present (not bools).
_SIZE_FIELDS = ('hidden_size', 'num_hidden_layers', 'num_attention_heads',
                'num_key_value_heads', 'head_dim', 'intermediate_size',
                'vocab_size')


def config_from_dict(c: dict[str, Any],
                     where: str) -> decoder_lib.DecoderConfig:
  """The `DecoderConfig` of an HF config dict, or why it has none.

  A multimodal `gemma3` config is read through its `text_config` (the text
  decoder; lmsi has no vision tower).

  Raises:
    pretrained.ConversionError: naming `where` and the field, for a config
      lmsi cannot express or one whose fields have the wrong types.
  """
  if not isinstance(c, dict):
    raise pretrained.ConversionError(
        f'{where}: expected a JSON object, got {type(c).__name__}')
  if not isinstance(c.get('model_type'), (str, type(None))):
    raise pretrained.ConversionError(
        f'{where}: model_type must be a string, got {c["model_type"]!r}')
  text = c.get('text_config')
  for cfg in (c, text if isinstance(text, dict) else {}):
    for key in _SIZE_FIELDS:
      value = cfg.get(key)
      if value is not None and (not isinstance(value, int) or
                                isinstance(value, bool) or value < 1):
        raise pretrained.ConversionError(
            f'{where}: {key} must be a positive integer, got {value!r}')
  try:
    return _config_from_dict(c, where)
  except (TypeError, AttributeError) as e:  # a field of the wrong type
    raise pretrained.ConversionError(
        f'{where}: malformed config ({type(e).__name__}: {e})') from None


def _config_from_dict(c: dict[str, Any],
                      where: str) -> decoder_lib.DecoderConfig:
  if c.get('model_type') == 'gemma3':
    text = c.get('text_config')
    if not isinstance(text, dict):
      raise pretrained.ConversionError(
          f'{where}: model_type gemma3 without a text_config object')
    c = {'model_type': 'gemma3_text', **text}
    where = f'{where} (text_config)'
  model_type = c.get('model_type')
  if model_type in GEMMA:  # the family's defaults where a key is missing
    defaults = dict(GEMMA_DEFAULTS[model_type])
    if c.get('rope_parameters') is not None:  # transformers 5: bases there
      defaults.pop('rope_theta')
      defaults.pop('rope_local_base_freq', None)
    c = {**defaults, **{k: v for k, v in c.items()
                        if v is not None or k.endswith('softcapping')}}
  if model_type not in SUPPORTED_HF:
    raise pretrained.ConversionError(
        f'{where}: model_type {model_type!r} is not supported; lmsi '
        f'imports {sorted(SUPPORTED_HF)} (Llama family)')
  for key in MOE_FIELDS:
    if c.get(key):
      raise pretrained.ConversionError(
          f'{where}: {key} = {c[key]!r} describes a mixture of experts; '
          'lmsi has dense MLPs only')
  bias, qk_norm = SUPPORTED_HF[model_type]
  if model_type in GEMMA:
    family = _gemma_fields(c, where)
  else:
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
    family = {'qk_norm': qk_norm, **rope_fields(c, where)}
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
        scale_tied_logits=False, **family)
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
    prefix = next((p for p in TEXT_PREFIXES
                   if f'{p}embed_tokens.weight' in where), 'model.')
    names = tensor_names(cfg, prefix)

    def get(role: str) -> np.ndarray:
      _, name = pretrained.tensor_name(role, names)
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
