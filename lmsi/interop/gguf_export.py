"""Write a decoder as a GGUF file llama.cpp loads (the inverse of
`lmsi.interop.gguf_import`).

Written with the `gguf` package's `GGUFWriter`: architecture metadata
(llama, qwen2 for a decoder with q/k/v biases, or gemma3 for Gemma 3's
block with the constants a gemma3 GGUF leaves out), llama.cpp's rotary
permutation of q/k rows redone for llama, Gemma's norms stored as 1 + w,
2-D weights as F32, F16, BF16 or Q8_0 (1-D norms and biases stay F32, as
llama.cpp's converter does), and the tokenizer as llama.cpp's metadata:
byte-level BPE from a `tokenizer.json` (tokens, token types, merges,
pre-tokenizer name, special ids, chat template) or SentencePiece from a
`tokenizer.model` (pieces, scores, types, special ids, add_bos).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from lmsi.model import decoder as decoder_lib
from lmsi.interop import gguf_import
from lmsi.interop import hf_export
from lmsi.interop import pretrained

DTYPES = ('float32', 'float16', 'bfloat16', 'q8_0')
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5  # llama.cpp types


def sentencepiece_metadata(model_proto: bytes, vocab_size: int,
                           facts: dict[str, Any], where: str
                           ) -> dict[str, Any]:
  """llama.cpp's `tokenizer.ggml.*` values ("llama") of a SentencePiece
  model: the inverse of `lmsi.vocab.gguf`'s rebuild (user-defined pieces
  with plain spaces, as llama.cpp's converter writes them).

  Raises:
    pretrained.ConversionError: naming `where` if the model is not BPE or
      its pieces do not match the model's `vocab_size`.
  """
  from sentencepiece import (  # pylint: disable=g-import-not-at-top
      sentencepiece_model_pb2 as sp_pb2)
  model = sp_pb2.ModelProto.FromString(model_proto)
  if model.trainer_spec.model_type != sp_pb2.TrainerSpec.BPE:
    raise pretrained.ConversionError(
        f'{where}: a SentencePiece '
        f'{sp_pb2.TrainerSpec.ModelType.Name(model.trainer_spec.model_type)}'
        ' model; llama.cpp\'s "llama" tokenizer is SentencePiece BPE')
  if len(model.pieces) != vocab_size:
    raise pretrained.ConversionError(
        f'{where}: {len(model.pieces)} pieces but the model has vocab_size='
        f'{vocab_size}')
  spec = model.trainer_spec
  special = lambda i: i if i >= 0 else None
  return {
      'model': 'llama', 'pre': 'default',
      'tokens': [p.piece.replace('\u2581', ' ') if p.type == _USER_DEFINED
                 else p.piece for p in model.pieces],
      'scores': [p.score for p in model.pieces],
      'types': [p.type for p in model.pieces], 'merges': None,
      'bos_id': special(spec.bos_id), 'eos_id': special(spec.eos_id),
      'pad_id': special(spec.pad_id), 'unk_id': special(spec.unk_id),
      'add_bos': bool(facts.get('add_bos')),
      'add_space_prefix': model.normalizer_spec.add_dummy_prefix,
      'chat_template': facts.get('chat_template')}


def _pre_name(pre_tokenizer: dict | None) -> str | None:
  """llama.cpp's pre-tokenizer name for a tokenizer.json pre_tokenizer."""
  if not pre_tokenizer:
    return None
  parts = (pre_tokenizer.get('pretokenizers', [])
           if pre_tokenizer.get('type') == 'Sequence' else [pre_tokenizer])
  kinds = [p.get('type') for p in parts]
  if kinds == ['ByteLevel'] and parts[0].get('use_regex', True):
    return 'gpt-2'  # llama.cpp's name (GPT-2's split regex)
  if kinds == ['Digits', 'ByteLevel'] and parts[0].get('individual_digits'):
    return 'smollm'
  return None


def tokenizer_metadata(spec: dict[str, Any], tokenizer_json: str,
                       vocab_size: int, facts: dict[str, Any]
                       ) -> dict[str, Any]:
  """llama.cpp's `tokenizer.ggml.*` values of a parsed tokenizer.json.

  Ids past the tokenizer's last (up to the model's `vocab_size`) become
  unused placeholder tokens, so the token list matches the embedding rows.

  Raises:
    pretrained.ConversionError: naming the file if it is not byte-level BPE
      or its pre-tokenizer has no llama.cpp name (and `facts` give none).
  """
  model = spec.get('model') or {}
  if model.get('type') != 'BPE' or not isinstance(model.get('vocab'), dict):
    raise pretrained.ConversionError(
        f'{tokenizer_json}: model.type is {model.get("type")!r}; GGUF export '
        'writes byte-level BPE tokenizers only')
  pre = facts.get('pre') or _pre_name(spec.get('pre_tokenizer'))
  if not pre:
    raise pretrained.ConversionError(
        f'{tokenizer_json}: pre_tokenizer {spec.get("pre_tokenizer")} has no '
        'llama.cpp name lmsi knows (gpt-2, smollm); pass the name with '
        '--gguf_pre')
  tokens: list[str | None] = [None] * vocab_size
  types = [_NORMAL] * vocab_size
  for piece, i in model['vocab'].items():
    if i < vocab_size:
      tokens[i] = piece
  for added in spec.get('added_tokens', []):
    if added['id'] < vocab_size:
      tokens[added['id']] = added['content']
      types[added['id']] = _CONTROL if added.get('special') else _USER_DEFINED
  for i, piece in enumerate(tokens):
    if piece is None:
      tokens[i], types[i] = f'[PAD{i}]', _UNUSED
  merges = [m if isinstance(m, str) else ' '.join(m)
            for m in model.get('merges', [])]
  if not merges:  # llama.cpp requires the key: one merge that never applies
    control = [t for t, k in zip(tokens, types) if k == _CONTROL]
    if len(control) < 2:
      raise pretrained.ConversionError(
          f'{tokenizer_json}: a BPE tokenizer without merges needs two '
          'special tokens for llama.cpp\'s placeholder merge')
    merges = [f'{control[0]} {control[1]}']
  return {'model': 'gpt2', 'pre': pre, 'tokens': tokens, 'types': types,
          'merges': merges, **{k: facts.get(k) for k in (
              'bos_id', 'eos_id', 'pad_id', 'add_bos', 'chat_template')}}


def _tensor(w: np.ndarray, dtype: str):
  """(data, raw_dtype or None, stored type name) of one weight."""
  import gguf  # pylint: disable=g-import-not-at-top
  w = np.ascontiguousarray(w, np.float32)
  if w.ndim == 1 or dtype == 'float32':
    return w, None, 'F32'
  if dtype == 'float16':
    return w.astype(np.float16), None, 'F16'
  qtype = (gguf.GGMLQuantizationType.BF16 if dtype == 'bfloat16'
           else gguf.GGMLQuantizationType.Q8_0)
  block = gguf.GGML_QUANT_SIZES[qtype][0]
  if w.shape[-1] % block:  # llama.cpp's converter falls back the same way
    return w.astype(np.float16), None, 'F16'
  return gguf.quants.quantize(w, qtype), qtype, qtype.name


def add_tokenizer(w, tokenizer: dict[str, Any]) -> None:
  """Adds `tokenizer` (`tokenizer_metadata` or `sentencepiece_metadata`)
  to the `gguf.GGUFWriter` `w` as llama.cpp's `tokenizer.ggml.*` keys."""
  w.add_tokenizer_model(tokenizer['model'])
  w.add_tokenizer_pre(tokenizer['pre'])
  w.add_token_list(tokenizer['tokens'])
  w.add_token_types(tokenizer['types'])
  if tokenizer.get('merges') is not None:
    w.add_token_merges(tokenizer['merges'])
  if tokenizer.get('scores') is not None:
    w.add_token_scores(tokenizer['scores'])
  for key, add in (('bos_id', w.add_bos_token_id),
                   ('eos_id', w.add_eos_token_id),
                   ('pad_id', w.add_pad_token_id),
                   ('unk_id', w.add_unk_token_id),
                   ('add_bos', w.add_add_bos_token),
                   ('add_space_prefix', w.add_add_space_prefix),
                   ('chat_template', w.add_chat_template)):
    if tokenizer.get(key) is not None:
      add(tokenizer[key])


def gguf_architecture(cfg: decoder_lib.DecoderConfig, where: str) -> str:
  """llama.cpp's architecture for `cfg`: llama, qwen2 or gemma3.

  gemma3 only where importing the file gives `cfg` back: Gemma 3's block
  with the constants a gemma3 GGUF leaves out (`gguf_import.GEMMA3_ASSUMED`,
  query_pre_attn_scalar = head_dim).

  Raises:
    pretrained.ConversionError: naming `where` and what GGUF cannot hold.
  """
  family = hf_export.model_type(cfg)
  if family == 'gemma3_text':
    differ = [f'{k}={getattr(cfg, k)!r}' for k, v in dict(
        gguf_import.GEMMA3_ASSUMED,
        query_pre_attn_scalar=float(cfg.head_dim)).items()
              if getattr(cfg, k) != v]
    if not cfg.tie_embeddings:
      differ.append('tie_embeddings=False')
    if differ:
      raise pretrained.ConversionError(
          f'{where}: a gemma3 GGUF has no field for {", ".join(differ)} '
          '(llama.cpp assumes Gemma 3\'s); export with --format=hf')
    return 'gemma3'
  if family not in ('llama', 'qwen2') or cfg.rope_scaling != 'none':
    raise pretrained.ConversionError(
        f'{where}: GGUF export of a {family} model (rope_scaling='
        f'{cfg.rope_scaling!r}) is not supported (llama / qwen2 with plain '
        'RoPE, gemma3); export with --format=hf')
  return family


def write(path: str, cfg: decoder_lib.DecoderConfig, params: dict[str, Any],
          tokenizer: dict[str, Any], *, dtype: str = 'float32',
          context_length: int = 2048, name: str = 'lmsi') -> dict[str, int]:
  """Writes `params` and `tokenizer` (`tokenizer_metadata`) as GGUF `path`.

  Returns the count of tensors per stored type.

  Raises:
    pretrained.ConversionError: if `cfg` has logits GGUF cannot express or
      `dtype` is not one of `DTYPES`.
  """
  import gguf  # pylint: disable=g-import-not-at-top
  pretrained.check_expressible(cfg, path)
  arch = gguf_architecture(cfg, path)
  if dtype not in DTYPES:
    raise pretrained.ConversionError(
        f'dtype {dtype!r} is not one of {list(DTYPES)}')
  w = gguf.GGUFWriter(path, arch)
  w.add_name(name)
  w.add_context_length(context_length)
  w.add_embedding_length(cfg.embed_dim)
  w.add_block_count(cfg.num_layers)
  w.add_feed_forward_length(cfg.mlp_dim)
  w.add_rope_dimension_count(cfg.head_dim)
  w.add_head_count(cfg.num_heads)
  w.add_head_count_kv(cfg.num_kv_heads)
  w.add_key_length(cfg.head_dim)
  w.add_value_length(cfg.head_dim)
  w.add_layer_norm_rms_eps(cfg.norm_eps)
  w.add_rope_freq_base(cfg.rope_theta)
  w.add_vocab_size(cfg.vocab_size)
  if arch == 'gemma3':
    w.add_sliding_window(cfg.sliding_window)
    if cfg.rope_scaling == 'linear':
      w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
      w.add_rope_scaling_factor(cfg.rope_factor)
  w.add_file_type({'float32': gguf.LlamaFileType.ALL_F32,
                   'float16': gguf.LlamaFileType.MOSTLY_F16,
                   'bfloat16': gguf.LlamaFileType.MOSTLY_BF16,
                   'q8_0': gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
  add_tokenizer(w, tokenizer)
  types: Counter = Counter()
  names = gguf_import.tensor_names(arch)
  for role, weight in pretrained.disassemble(cfg, params).items():
    kind, tensor_name = pretrained.tensor_name(role, names)
    weight = np.asarray(weight, np.float32)
    if arch == 'llama' and kind in ('q', 'k'):
      weight = gguf_import.apply_rope_permutation(
          weight, cfg.num_heads if kind == 'q' else cfg.num_kv_heads)
    if arch == 'gemma3' and tensor_name.endswith('norm.weight'):
      weight = weight + np.float32(1.0)  # llama.cpp's Gemma norms: 1 + w
    data, raw_dtype, stored = _tensor(weight, dtype)
    w.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
    types[stored] += 1
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return dict(types)
