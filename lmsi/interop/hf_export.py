"""Write a decoder as a Hugging Face checkpoint directory (the inverse of
`lmsi.interop.hf_import`).

`config.json` (`LlamaForCausalLM`, `Qwen2ForCausalLM` for a decoder with
q/k/v biases, `Qwen3ForCausalLM` for one with q/k norms, `Gemma2ForCausalLM`
/ `Gemma3ForCausalLM` for the Gemma block; tied embeddings,
RoPE theta and scaling and RMSNorm eps as configured, in the Hub's
transformers-4 keys, which transformers 4 and 5 both read),
`model.safetensors` written with the `safetensors` library (sharded into
`model-0000i-of-0000n.safetensors` with a `model.safetensors.index.json`
above `max_shard_bytes`) and `generation_config.json`, so that
`transformers.AutoModelForCausalLM.from_pretrained(dir)` loads it with no
custom code. Tokenizer files are the caller's (`lmsi.export`).
"""

from __future__ import annotations

import os
from typing import Any

import ml_dtypes
import numpy as np
from safetensors import numpy as st_numpy

from lmsi.model import decoder as decoder_lib
from lmsi.interop import hf_import
from lmsi.interop import pretrained
from lmsi.runtime import fileio

DTYPES = {'float32': np.float32, 'float16': np.float16,
          'bfloat16': ml_dtypes.bfloat16}
_TORCH_DTYPE = {'float32': 'float32', 'float16': 'float16',
                'bfloat16': 'bfloat16'}


# The Gemma block's fields (Gemma 2/3 have all of them, the Llama family
# none); each HF family expresses only its own.
_GEMMA_SWITCHES = ('scale_embeddings', 'norm_offset', 'post_norms')


def model_type(cfg: decoder_lib.DecoderConfig) -> str:
  """The HF family that expresses `cfg`: gemma3_text / gemma2 (the Gemma
  block, with / without q/k norms), qwen3 (q/k norms), qwen2 (q/k/v
  biases) or llama.

  Raises:
    pretrained.ConversionError: naming the fields that no family has
      together (e.g. the Gemma block with SwiGLU, or a sliding window on a
      Llama).
  """
  gemma = [getattr(cfg, f) for f in _GEMMA_SWITCHES]
  if any(gemma):
    family = 'gemma3_text' if cfg.qk_norm else 'gemma2'
    wrong = [f'{f}=False' for f, on in zip(_GEMMA_SWITCHES, gemma) if not on]
    if cfg.mlp_activation != 'gelu_tanh':
      wrong.append(f'mlp_activation={cfg.mlp_activation!r}')
    if family == 'gemma2' and cfg.rope_local_theta is not None:
      wrong.append('rope_local_theta (Gemma 2 has one RoPE)')
    if (family == 'gemma3_text' and cfg.rope_local_theta is None
        and cfg.rope_scaling != 'none'):
      wrong.append('rope_scaling without rope_local_theta')
    if family == 'gemma3_text' and cfg.attn_logit_softcap:
      wrong.append('attn_logit_softcap (transformers\' Gemma 3 ignores it)')
  else:
    family = 'qwen3' if cfg.qk_norm else (
        'qwen2' if cfg.attention_bias else 'llama')
    wrong = [f'{f}={getattr(cfg, f)!r}' for f in (
        'mlp_activation', 'query_pre_attn_scalar', 'attn_logit_softcap',
        'final_logit_softcap', 'sliding_window', 'rope_local_theta')
             if getattr(cfg, f) != getattr(decoder_lib.DecoderConfig, f)]
  if wrong:
    raise pretrained.ConversionError(
        f'no Hugging Face family has {family} with {", ".join(wrong)}')
  return family


_ARCHITECTURES = {'llama': 'LlamaForCausalLM', 'qwen2': 'Qwen2ForCausalLM',
                  'qwen3': 'Qwen3ForCausalLM',
                  'gemma2': 'Gemma2ForCausalLM',
                  'gemma3_text': 'Gemma3ForCausalLM'}


def rope_scaling_json(cfg: decoder_lib.DecoderConfig) -> dict | None:
  """`rope_scaling` of `cfg` as the Hub writes it (None for plain RoPE)."""
  if cfg.rope_scaling == 'none':
    return None
  out = {'rope_type': cfg.rope_scaling, 'factor': cfg.rope_factor}
  if cfg.rope_scaling == 'llama3':
    out.update(low_freq_factor=cfg.rope_low_freq_factor,
               high_freq_factor=cfg.rope_high_freq_factor,
               original_max_position_embeddings=(
                   cfg.rope_original_max_position))
  return out


def config_json(cfg: decoder_lib.DecoderConfig, *, dtype: str,
                special: dict[str, Any], context_length: int) -> dict:
  """The `config.json` of `cfg` (its family: `model_type`)."""
  family = model_type(cfg)
  out = {
      'architectures': [_ARCHITECTURES[family]],
      'model_type': family,
      'vocab_size': cfg.vocab_size, 'hidden_size': cfg.embed_dim,
      'intermediate_size': cfg.mlp_dim,
      'num_hidden_layers': cfg.num_layers,
      'num_attention_heads': cfg.num_heads,
      'num_key_value_heads': cfg.num_kv_heads, 'head_dim': cfg.head_dim,
      'hidden_act': 'silu', 'max_position_embeddings': context_length,
      'rms_norm_eps': cfg.norm_eps, 'rope_theta': cfg.rope_theta,
      'rope_scaling': rope_scaling_json(cfg),
      'tie_word_embeddings': cfg.tie_embeddings,
      'torch_dtype': _TORCH_DTYPE[dtype], 'use_cache': True,
      **{f'{k}_token_id': special.get(f'{k}_id') for k in ('bos', 'eos',
                                                          'pad')}}
  if family == 'llama':
    out.update(attention_bias=False, mlp_bias=False)
  elif family in hf_import.GEMMA:
    del out['hidden_act']
    out.update(_gemma_json(cfg, family))
  else:
    out['use_sliding_window'] = False
    if family == 'qwen3':
      out['attention_bias'] = cfg.attention_bias
  return out


def _gemma_json(cfg: decoder_lib.DecoderConfig, family: str) -> dict:
  """The Gemma 2/3 keys of config.json: the v4 ones (rope_local_base_freq,
  sliding_window_pattern) and transformers 5's layer_types."""
  scalar = cfg.query_pre_attn_scalar or cfg.head_dim
  out = {'hidden_activation': 'gelu_pytorch_tanh',
         # an int where it is one: transformers 5 checks the type
         'query_pre_attn_scalar': (int(scalar) if float(scalar).is_integer()
                                   else scalar),
         'attn_logit_softcapping': cfg.attn_logit_softcap,
         'final_logit_softcapping': cfg.final_logit_softcap,
         'sliding_window': cfg.sliding_window or None,
         'attention_bias': cfg.attention_bias,
         'layer_types': ['sliding_attention' if local else 'full_attention'
                         for local in cfg.local_layers]}
  if family == 'gemma3_text':
    out.update(rope_local_base_freq=(cfg.rope_local_theta or cfg.rope_theta),
               sliding_window_pattern=cfg.sliding_window_pattern)
  return out


def _shards(tensors: dict[str, np.ndarray],
            max_shard_bytes: int) -> list[dict[str, np.ndarray]]:
  """Tensors in name order, cut into groups of at most `max_shard_bytes`."""
  groups: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name in sorted(tensors):
    nbytes = tensors[name].nbytes
    if groups[-1] and size + nbytes > max_shard_bytes:
      groups.append({})
      size = 0
    groups[-1][name] = tensors[name]
    size += nbytes
  return groups


def write(out_dir: str, cfg: decoder_lib.DecoderConfig,
          params: dict[str, Any], *, dtype: str = 'float32',
          special: dict[str, Any] | None = None, context_length: int = 2048,
          max_shard_bytes: int = 5 * 2**30) -> list[str]:
  """Writes config, weights and generation config into `out_dir`.

  `cfg` must have plain logits (see `pretrained.untied`). Returns the names
  of the files written.

  Raises:
    pretrained.ConversionError: if `cfg` cannot be expressed or `dtype` is
      not one of `DTYPES`.
  """
  pretrained.check_expressible(cfg, out_dir)
  if dtype not in DTYPES:
    raise pretrained.ConversionError(
        f'dtype {dtype!r} is not one of {sorted(DTYPES)}')
  special = special or {}
  tensors = {}
  model_type(cfg)  # a family expresses it, or ConversionError says why not
  names = hf_import.tensor_names(cfg)
  for role, w in pretrained.disassemble(cfg, params).items():
    _, name = pretrained.tensor_name(role, names)
    tensors[name] = np.ascontiguousarray(np.asarray(w).astype(DTYPES[dtype]))
  groups = _shards(tensors, max_shard_bytes)
  files = []
  meta = {'format': 'pt'}  # what transformers' loader expects

  def save(group: dict[str, np.ndarray], name: str) -> None:
    st_numpy.save_file(group, os.path.join(out_dir, name), metadata=meta)
    os.chmod(os.path.join(out_dir, name), 0o644)  # safetensors writes 0600
    files.append(name)

  if len(groups) == 1:
    save(groups[0], 'model.safetensors')
  else:
    weight_map = {}
    for i, group in enumerate(groups, 1):
      name = f'model-{i:05d}-of-{len(groups):05d}.safetensors'
      save(group, name)
      weight_map.update({t: name for t in group})
    index = {'metadata': {'total_size': int(sum(
        t.nbytes for t in tensors.values()))}, 'weight_map': weight_map}
    _write_json(out_dir, 'model.safetensors.index.json', index)
    files.append('model.safetensors.index.json')
  _write_json(out_dir, 'config.json', config_json(
      cfg, dtype=dtype, special=special, context_length=context_length))
  generation = {f'{k}_token_id': special.get(f'{k}_id')
                for k in ('bos', 'eos', 'pad')
                if special.get(f'{k}_id') is not None}
  if len(special.get('eos_ids') or ()) > 1:  # Llama 3.1 stops on several
    generation['eos_token_id'] = list(special['eos_ids'])
  _write_json(out_dir, 'generation_config.json', generation)
  return files + ['config.json', 'generation_config.json']


def _write_json(out_dir: str, name: str, obj: Any) -> None:
  fileio.write_json(os.path.join(out_dir, name), obj)
