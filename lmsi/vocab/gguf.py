"""A GGUF file's tokenizer, rebuilt from its metadata.

llama.cpp stores two kinds of tokenizer as metadata:
  * byte-level BPE ("gpt2"): the token list and types, the merges, a
    pre-tokenizer name and the special ids. `load` rebuilds the equivalent
    `tokenizers.Tokenizer` as an `HFVocab` (SmolLM2's GGUF tokenizes
    id-for-id like its `tokenizer.json`; `tests/smollm2_test.py` checks).
  * SentencePiece ("llama": Llama-1/2, Gemma): pieces, scores and piece
    types (numbered as SentencePiece numbers them), the special ids,
    add_bos and add_space_prefix. `load` rebuilds the SentencePiece model
    proto (BPE with byte fallback, no normalisation) as a
    `SentencePieceVocab` (Gemma 3's tokenizes id-for-id like transformers'
    reading of the same file; `tests/gemma3_gguf_test.py` checks).
"""

from __future__ import annotations

from lmsi.vocab import pretrained as pretrained_vocab

# GGUF `tokenizer.ggml.pre` names whose split regex differs from GPT-2's.
_GGUF_SPLITS = {
    'llama-bpe': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+",
    'qwen2': r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
             r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
             r"|\s+",
}
# Pre-tokenizers that isolate every digit before GPT-2's byte-level split
# (llama.cpp's "smollm"; SmolLM2's tokenizer.json has Digits(individual)).
_DIGIT_SPLIT_PRES = ('smollm',)
_CONTROL = 3  # llama.cpp's token type of control (special) tokens.
_USER_DEFINED = 4
_UNKNOWN = 2
_BYTE = 6


def load(path: str
         ) -> pretrained_vocab.HFVocab | pretrained_vocab.SentencePieceVocab:
  """Rebuilds the tokenizer of the GGUF file `path`.

  Raises:
    ValueError: naming `path` if its tokenizer is neither byte-level BPE
      ("gpt2") nor SentencePiece ("llama").
  """
  import gguf  # pylint: disable=g-import-not-at-top
  reader = gguf.GGUFReader(path)
  field = lambda k: (reader.fields[k].contents() if k in reader.fields
                     else None)
  kind = field('tokenizer.ggml.model')
  if kind == 'gpt2':
    return _byte_level_bpe(field, path)
  if kind == 'llama':
    return _sentencepiece(field, path)
  raise ValueError(f'{path}: tokenizer.ggml.model is {kind!r}; lmsi '
                   'rebuilds byte-level BPE ("gpt2") and SentencePiece '
                   '("llama") tokenizers from GGUF; pass a tokenizer.json '
                   'or .model instead')


def _sentencepiece(field, path: str) -> pretrained_vocab.SentencePieceVocab:
  """The SentencePiece model llama.cpp's converter took apart, rebuilt.

  llama.cpp writes user-defined pieces with plain spaces (Gemma's runs of
  spaces) where SentencePiece matches them against its escaped text, so
  their spaces become U+2581 again; its UNK piece may be typed control.
  Digits need no `split_digits`: BPE merges only into pieces that exist.
  """
  from sentencepiece import (  # pylint: disable=g-import-not-at-top
      sentencepiece_model_pb2 as sp_pb2)
  tokens = field('tokenizer.ggml.tokens')
  scores = field('tokenizer.ggml.scores') or [0.0] * len(tokens)
  types = field('tokenizer.ggml.token_type') or [1] * len(tokens)
  model = sp_pb2.ModelProto()
  spec = model.trainer_spec
  spec.model_type = sp_pb2.TrainerSpec.BPE
  spec.vocab_size = len(tokens)
  spec.byte_fallback = _BYTE in types
  spec.allow_whitespace_only_pieces = True
  spec.split_by_whitespace = False
  special = {'unk': field('tokenizer.ggml.unknown_token_id'),
             'bos': field('tokenizer.ggml.bos_token_id'),
             'eos': field('tokenizer.ggml.eos_token_id'),
             'pad': field('tokenizer.ggml.padding_token_id')}
  if special['eos'] is None or special['unk'] is None:
    raise ValueError(f'{path}: a SentencePiece tokenizer needs '
                     'tokenizer.ggml.eos_token_id and unknown_token_id')
  for key, value in special.items():  # SentencePiece finds them by piece
    setattr(spec, f'{key}_id', -1 if value is None else value)
    if value is not None:
      setattr(spec, f'{key}_piece', tokens[value])
  norm = model.normalizer_spec
  norm.name = 'identity'
  norm.add_dummy_prefix = bool(field('tokenizer.ggml.add_space_prefix'))
  norm.remove_extra_whitespaces = False
  norm.escape_whitespaces = True
  for i, (token, score, kind) in enumerate(zip(tokens, scores, types)):
    piece = model.pieces.add()
    piece.piece = (token.replace(' ', '\u2581') if kind == _USER_DEFINED
                   else token)
    piece.score = score
    piece.type = _UNKNOWN if i == special['unk'] else kind
  return pretrained_vocab.SentencePieceVocab(
      model.SerializeToString(), source=path,
      add_bos=bool(field('tokenizer.ggml.add_bos_token')))


def _byte_level_bpe(field, path: str) -> pretrained_vocab.HFVocab:
  """The byte-level BPE tokenizer of a "gpt2" GGUF, as `tokenizers` has it."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
  tokens = field('tokenizer.ggml.tokens')
  types = field('tokenizer.ggml.token_type') or [1] * len(tokens)
  vocab = {t: i for i, t in enumerate(tokens)}
  # A merge whose product is no token never applies (lmsi.interop.gguf_export
  # writes one such placeholder for merge-free byte vocabularies, since
  # llama.cpp requires the key); `tokenizers` refuses them.
  merges = [(a, b) for a, b in (m.split(' ', 1) for m in
                                field('tokenizer.ggml.merges') or [])
            if a + b in vocab]
  bpe = tokenizers.models.BPE(vocab=vocab, merges=merges)
  tok = tokenizers.Tokenizer(bpe)
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                        use_regex=True)
  pre = field('tokenizer.ggml.pre')
  if pre in _GGUF_SPLITS:
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(_GGUF_SPLITS[pre]),
                             behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  elif pre in _DIGIT_SPLIT_PRES:
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), byte_level])
  else:
    tok.pre_tokenizer = byte_level
  tok.decoder = tokenizers.decoders.ByteLevel()
  control = [t for t, k in zip(tokens, types) if k == _CONTROL]
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True,
                                                normalized=False)
                          for t in control])
  return pretrained_vocab.HFVocab(
      tok, eos_id=field('tokenizer.ggml.eos_token_id'),
      pad_id=field('tokenizer.ggml.padding_token_id'),
      bos_id=field('tokenizer.ggml.bos_token_id'), source=path,
      add_bos=bool(field('tokenizer.ggml.add_bos_token')))
