"""Import a GGUF file (llama, qwen2 or gemma3 architecture) into the decoder.

Tensors are dequantized with the `gguf` package (F32, F16, BF16, Q8_0, Q4_0,
Q4_1, Q4_K, Q5_0, Q6_K and the other types it knows); llama.cpp's rotary
permutation of llama q/k rows is undone, and Gemma's norm weights, which
llama.cpp's converter stores as 1 + w, are read back as w. A gemma3 file
carries no local RoPE base, layer pattern, query_pre_attn_scalar or soft
caps: those are Gemma 3's (local base 1e4, every sixth layer global,
query_pre_attn_scalar = head_dim, no caps), as llama.cpp and transformers
assume, and `Imported.assumed` lists them. The tokenizer is rebuilt separately (`lmsi.vocab.gguf`);
its facts (special ids, chat template) go into `Imported.tokenizer`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from lmsi.model import decoder as decoder_lib
from lmsi.interop import pretrained

SUPPORTED_GGUF = ('llama', 'qwen2', 'gemma3')

# `pretrained.assemble`'s roles -> llama.cpp tensor names ({} is the layer).
_LAYER_NAMES = {
    'q': 'attn_q.weight', 'k': 'attn_k.weight', 'v': 'attn_v.weight',
    'o': 'attn_output.weight', 'q_bias': 'attn_q.bias',
    'k_bias': 'attn_k.bias', 'v_bias': 'attn_v.bias',
    'gate': 'ffn_gate.weight', 'up': 'ffn_up.weight',
    'down': 'ffn_down.weight', 'attn_norm': 'attn_norm.weight',
    'mlp_norm': 'ffn_norm.weight'}
# Gemma 3's four norms a layer and its q/k norms (llama.cpp's names).
GEMMA3_NAMES = {
    'attn_norm': 'attn_norm.weight',
    'attn_post_norm': 'post_attention_norm.weight',
    'mlp_norm': 'ffn_norm.weight', 'mlp_post_norm': 'post_ffw_norm.weight',
    'q_norm': 'attn_q_norm.weight', 'k_norm': 'attn_k_norm.weight'}
# What a gemma3 GGUF leaves out: Gemma 3's constants (transformers'
# Gemma3TextConfig and llama.cpp's gemma3 graph use the same).
GEMMA3_ASSUMED = dict(rope_local_theta=10000.0, sliding_window_pattern=6,
                      attn_logit_softcap=None, final_logit_softcap=None)
TENSOR_NAMES = {
    'embed': 'token_embd.weight', 'final_norm': 'output_norm.weight',
    'lm_head': 'output.weight',
    **{role: 'blk.{}.' + name for role, name in _LAYER_NAMES.items()}}


def tensor_names(arch: str) -> dict[str, str]:
  """`pretrained.assemble`'s roles -> the tensor names of `arch`'s files."""
  if arch == 'gemma3':
    return {**TENSOR_NAMES, **{role: 'blk.{}.' + name
                               for role, name in GEMMA3_NAMES.items()}}
  return dict(TENSOR_NAMES)


def _field(reader, key: str, default: Any = None) -> Any:
  """The metadata value `key` of a `gguf.GGUFReader`, else `default`."""
  f = reader.fields.get(key)
  if f is None:
    return default
  return f.contents()


def reverse_rope_permutation(w: np.ndarray, heads: int) -> np.ndarray:
  """Undoes llama.cpp's interleaving of q/k rows ([out, in] matrices)."""
  return (w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def apply_rope_permutation(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's interleaving of q/k rows (the inverse of the above)."""
  return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def import_gguf(path: str) -> pretrained.Imported:
  """Imports a GGUF file of the llama or qwen2 architecture."""
  import gguf  # pylint: disable=g-import-not-at-top
  try:
    reader = gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise pretrained.ConversionError(
        f'{path}: not a readable GGUF file ({e})') from None
  arch = _field(reader, 'general.architecture')
  if arch not in SUPPORTED_GGUF:
    raise pretrained.ConversionError(
        f'{path}: architecture {arch!r} is not supported; lmsi imports '
        f'{list(SUPPORTED_GGUF)}')
  tensors = {t.name: t for t in reader.tensors}
  # Llama 3.1-style GGUFs carry their RoPE scaling as a rope_freqs tensor
  # (or a scaling type): importing them as plain RoPE would be silently
  # wrong, so they are refused until GGUF RoPE scaling is read.
  scaling = _field(reader, f'{arch}.rope.scaling.type')
  gemma = arch == 'gemma3'
  if 'rope_freqs.weight' in tensors or scaling not in (
      (None, 'none', 'linear') if gemma else (None, 'none')):
    what = ('tensor rope_freqs.weight' if 'rope_freqs.weight' in tensors
            else f'{arch}.rope.scaling.type {scaling!r}')
    raise pretrained.ConversionError(
        f'{path}: {what}: GGUF RoPE scaling is not supported; import the '
        'Hugging Face checkpoint (config.json rope_scaling) instead')
  heads = int(_field(reader, f'{arch}.attention.head_count'))
  kv_heads = int(_field(reader, f'{arch}.attention.head_count_kv', heads))
  embed = int(_field(reader, f'{arch}.embedding_length'))
  tokens = _field(reader, 'tokenizer.ggml.tokens') or []
  if 'token_embd.weight' not in tensors:
    raise pretrained.ConversionError(
        f'{path}: missing tensor token_embd.weight')
  vocab = int(_field(reader, f'{arch}.vocab_size',
                     tensors['token_embd.weight'].shape[-1]))
  head_dim = int(_field(reader, f'{arch}.attention.key_length',
                        embed // heads))
  family: dict[str, Any] = {}
  assumed: dict[str, Any] = {}
  if gemma:  # the Gemma block; the constants the file leaves out assumed
    assumed = dict(GEMMA3_ASSUMED, query_pre_attn_scalar=float(head_dim))
    family = dict(
        assumed, mlp_activation='gelu_tanh', scale_embeddings=True,
        norm_offset=True, post_norms=True, qk_norm=True,
        sliding_window=int(_field(reader,
                                  f'{arch}.attention.sliding_window', 0)))
    if scaling == 'linear':  # Gemma 3 4B+: the global layers' RoPE
      family.update(rope_scaling='linear', rope_factor=float(
          _field(reader, f'{arch}.rope.scaling.factor')))
  cfg = decoder_lib.DecoderConfig(
      vocab_size=vocab, embed_dim=embed,
      num_layers=int(_field(reader, f'{arch}.block_count')),
      num_heads=heads, num_kv_heads=kv_heads,
      head_dim=head_dim,
      mlp_dim=int(_field(reader, f'{arch}.feed_forward_length')),
      rope_theta=float(_field(reader, f'{arch}.rope.freq_base', 1e4)),
      norm_eps=float(_field(reader,
                            f'{arch}.attention.layer_norm_rms_epsilon', 1e-5)),
      tie_embeddings='output.weight' not in tensors,
      attention_bias='blk.0.attn_q.bias' in tensors,
      scale_tied_logits=False, **family)
  names = tensor_names(arch)

  def get(role: str):
    r, name = pretrained.tensor_name(role, names)
    t = tensors.get(name)
    if t is None:
      raise pretrained.ConversionError(
          f'{path}: missing tensor {name!r} ({role})')
    try:
      w = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
      raise pretrained.ConversionError(
          f'{path}: tensor {name!r} has type {t.tensor_type.name}, which gguf '
          'cannot dequantize') from None
    w = np.asarray(w, np.float32).reshape([int(n) for n in reversed(t.shape)])
    if arch == 'llama' and r in ('q', 'k'):
      w = reverse_rope_permutation(w, heads if r == 'q' else kv_heads)
    if gemma and name.endswith('norm.weight'):
      w = w - 1.0  # llama.cpp stores Gemma's norms as 1 + w
    return w

  params = pretrained.assemble(cfg, get, path)
  tok = {'file': 'gguf', 'tokens': len(tokens),
         'model': _field(reader, 'tokenizer.ggml.model'),
         'pre': _field(reader, 'tokenizer.ggml.pre'),
         'eos_id': _field(reader, 'tokenizer.ggml.eos_token_id'),
         'bos_id': _field(reader, 'tokenizer.ggml.bos_token_id'),
         'pad_id': _field(reader, 'tokenizer.ggml.padding_token_id'),
         'unk_id': _field(reader, 'tokenizer.ggml.unknown_token_id'),
         'add_bos': _field(reader, 'tokenizer.ggml.add_bos_token'),
         'chat_template': _field(reader, 'tokenizer.chat_template')}
  types = Counter(t.tensor_type.name for t in reader.tensors)
  return pretrained.Imported(cfg, params, tok, dict(types), path, assumed)
