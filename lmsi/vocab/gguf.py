"""A GGUF file's tokenizer, rebuilt from its metadata as an `HFVocab`.

llama.cpp stores byte-level BPE tokenizers ("gpt2") as metadata: the token
list and types, the merges, a pre-tokenizer name and the special ids. This
rebuilds the equivalent `tokenizers.Tokenizer` (SmolLM2's GGUF tokenizes
id-for-id like its `tokenizer.json`; `tests/smollm2_test.py` checks).
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


def load(path: str) -> pretrained_vocab.HFVocab:
  """Rebuilds the byte-level BPE tokenizer of the GGUF file `path`.

  Raises:
    ValueError: naming `path` if its tokenizer is not byte-level BPE.
  """
  import gguf  # pylint: disable=g-import-not-at-top
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
  reader = gguf.GGUFReader(path)
  field = lambda k: (reader.fields[k].contents() if k in reader.fields
                     else None)
  kind = field('tokenizer.ggml.model')
  if kind != 'gpt2':
    raise ValueError(f'{path}: tokenizer.ggml.model is {kind!r}; lmsi '
                     'rebuilds only byte-level BPE ("gpt2") tokenizers '
                     'from GGUF; pass a tokenizer.json or .model instead')
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
      bos_id=field('tokenizer.ggml.bos_token_id'), source=path)
