"""Token vocabularies: text <-> ids without TensorFlow (sampling side).

Plain Python, so the sampler and evaluator stay importable where TensorFlow
is not installed; `to_seqio()` gives each one's `seqio.Vocabulary` twin for
tasks and training, and `tests/vocab_test.py` checks that they agree.

  * `ByteVocab`: id-for-id `seqio.ByteVocabulary` (pad 0, EOS 1, UNK 2,
    byte b -> b + 3).
  * `WordVocab`: whole words, numbers and punctuation (with their leading
    space) as single tokens, falling back to `ByteVocab`'s byte ids for any
    other text, so every string round-trips. The demo uses it: a tiny model
    learns arithmetic far faster on 3x shorter sequences.
  * `HFVocab`: a pretrained checkpoint's tokenizer through the `tokenizers`
    library, from `tokenizer.json` or rebuilt from a GGUF file's metadata
    (byte-level BPE: vocabulary, merges, pre-tokenizer, control tokens).
  * `SentencePieceVocab`: a SentencePiece `.model` file.

Every vocabulary also gives `token_bytes()` (the bytes each id decodes to),
which the sampler uses to detect stop strings across token boundaries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence

import numpy as np

from lmsi import records


class ByteVocab:
  """UTF-8 bytes as tokens, identical to `seqio.ByteVocabulary`."""

  pad_id = 0
  eos_id = 1
  unk_id = 2
  _offset = 3
  vocab_size = 256 + _offset

  def encode(self, text: str) -> list[int]:
    return [b + self._offset for b in text.encode('utf-8')]

  def decode(self, ids: Iterable[int]) -> str:
    """Decodes up to the first EOS; pad and UNK ids are dropped."""
    out = bytearray()
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if self._offset <= i < self.vocab_size:
        out.append(i - self._offset)
    return out.decode('utf-8', errors='ignore')

  def to_seqio(self):
    import seqio  # pylint: disable=g-import-not-at-top  # TF only where data enters.
    return seqio.ByteVocabulary()

  def token_bytes(self) -> list[bytes]:
    """The bytes each id decodes to (b'' for pad/EOS/UNK)."""
    return [b''] * self._offset + [bytes([b]) for b in range(256)]


class WordVocab(ByteVocab):
  """Word-level pieces after the 259 byte ids; bytes for anything else."""

  _PIECE = re.compile(r' ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]|\s')

  def __init__(self, pieces: Sequence[str]):
    self.pieces = tuple(sorted(set(pieces)))
    base = ByteVocab.vocab_size
    self._ids = {p: base + i for i, p in enumerate(self.pieces)}
    self.vocab_size = base + len(self.pieces)

  def encode(self, text: str) -> list[int]:
    ids = []
    for m in self._PIECE.finditer(text):
      piece = m.group()
      if piece in self._ids:
        ids.append(self._ids[piece])
      else:
        ids.extend(super().encode(piece))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    out, pending = [], []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if i >= ByteVocab.vocab_size and i < self.vocab_size:
        out.append(super().decode(pending))
        pending = []
        out.append(self.pieces[i - ByteVocab.vocab_size])
      else:
        pending.append(i)
    out.append(super().decode(pending))
    return ''.join(out)

  def save(self, path: str) -> None:
    records.write_text_atomic(path, json.dumps({'pieces': self.pieces}) + '\n')

  @classmethod
  def load(cls, path: str) -> 'WordVocab':
    with open(path, encoding='utf-8') as f:
      try:
        return cls(json.load(f)['pieces'])
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f'{path}: not a WordVocab file (expected '
                         f'{{"pieces": [...]}}): {e}') from None

  def to_seqio(self):
    return _seqio_twin(self)

  def token_bytes(self) -> list[bytes]:
    return super().token_bytes() + [p.encode('utf-8') for p in self.pieces]

  def fingerprint(self) -> str:
    return 'word:' + str(hash(self.pieces))


class HFVocab:
  """A Hugging Face `tokenizers.Tokenizer` (BPE from tokenizer.json/GGUF).

  `encode` adds no BOS/EOS (SmolLM2 and Qwen2 use none; `add_bos` is kept
  in the conversion manifest for checkpoints that do). `decode` stops at the
  first EOS and keeps other special tokens as text, like transformers'
  `decode`.
  """

  unk_id = None

  def __init__(self, tokenizer, *, eos_id: int, pad_id: int | None = None,
               bos_id: int | None = None, source: str = ''):
    self.tokenizer = tokenizer
    self.eos_id = int(eos_id)
    self.pad_id = int(self.eos_id if pad_id is None else pad_id)
    self.bos_id = bos_id
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    self.source = source

  @classmethod
  def from_file(cls, path: str) -> 'HFVocab':
    """tokenizer.json (+ the special ids from its tokenizer_config.json)."""
    import tokenizers  # pylint: disable=g-import-not-at-top
    tok = tokenizers.Tokenizer.from_file(path)
    config = os.path.join(os.path.dirname(path), 'tokenizer_config.json')
    names = {}
    if os.path.exists(config):
      with open(config, encoding='utf-8') as f:
        names = json.load(f)
    ids = {}
    for key in ('eos', 'pad', 'bos'):
      name = names.get(f'{key}_token')
      if isinstance(name, dict):
        name = name.get('content')
      ids[key] = tok.token_to_id(name) if name else None
    if ids['eos'] is None:
      for name in ('<|endoftext|>', '</s>', '<eos>', '<|im_end|>'):
        if tok.token_to_id(name) is not None:
          ids['eos'] = tok.token_to_id(name)
          break
      else:
        raise ValueError(f'{path}: no EOS token (set eos_token in '
                         f'{config})')
    return cls(tok, eos_id=ids['eos'], pad_id=ids['pad'], bos_id=ids['bos'],
               source=path)

  @classmethod
  def from_gguf(cls, path: str) -> 'HFVocab':
    """Rebuilds a byte-level BPE tokenizer from GGUF metadata."""
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
    merges = [tuple(m.split(' ', 1)) for m in field('tokenizer.ggml.merges')]
    bpe = tokenizers.models.BPE(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
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
    control = [t for t, k in zip(tokens, types) if k == 3]  # CONTROL
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True,
                                                  normalized=False)
                            for t in control])
    return cls(tok, eos_id=field('tokenizer.ggml.eos_token_id'),
               pad_id=field('tokenizer.ggml.padding_token_id'),
               bos_id=field('tokenizer.ggml.bos_token_id'), source=path)

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    out = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if 0 <= i < self.vocab_size:
        out.append(i)
    return self.tokenizer.decode(out, skip_special_tokens=False)

  def token_bytes(self) -> list[bytes]:
    table = {c: b for b, c in _bytes_to_unicode().items()}
    special = {t.content for t in
               self.tokenizer.get_added_tokens_decoder().values()}
    out = []
    for i in range(self.vocab_size):
      piece = self.tokenizer.id_to_token(i) or ''
      if piece in special or any(c not in table for c in piece):
        out.append(piece.encode('utf-8'))
      else:
        out.append(bytes(table[c] for c in piece))
    return out

  def save(self, output_dir: str) -> str:
    """Writes tokenizer.json (+ the special ids); returns its file name."""
    records.write_text_atomic(os.path.join(output_dir, 'tokenizer.json'),
                              self.tokenizer.to_str())
    names = {f'{k}_token': self.tokenizer.id_to_token(v) for k, v in
             (('eos', self.eos_id), ('pad', self.pad_id), ('bos', self.bos_id))
             if v is not None}
    records.write_text_atomic(
        os.path.join(output_dir, 'tokenizer_config.json'),
        json.dumps(names, indent=1) + '\n')
    return 'tokenizer.json'

  def fingerprint(self) -> str:
    return 'hf:' + str(hash(self.tokenizer.to_str()))

  def to_seqio(self):
    return _seqio_twin(self)


class SentencePieceVocab:
  """A SentencePiece model file (Llama-1/2, T5 style tokenizers)."""

  def __init__(self, path: str):
    import sentencepiece  # pylint: disable=g-import-not-at-top
    self.path = path
    self.sp = sentencepiece.SentencePieceProcessor(model_file=path)
    self.vocab_size = self.sp.get_piece_size()
    self.eos_id = self.sp.eos_id()
    self.pad_id = max(self.sp.pad_id(), 0)
    self.unk_id = self.sp.unk_id()

  def encode(self, text: str) -> list[int]:
    return list(self.sp.encode(text))

  def decode(self, ids: Iterable[int]) -> str:
    out = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if 0 <= i < self.vocab_size and i != self.pad_id:
        out.append(i)
    return self.sp.decode(out)

  def token_bytes(self) -> list[bytes]:
    out = []
    for i in range(self.vocab_size):
      piece = self.sp.id_to_piece(i)
      if self.sp.is_byte(i):
        out.append(bytes([int(piece[3:5], 16)]))
      elif self.sp.is_control(i) or self.sp.is_unknown(i):
        out.append(b'')
      else:
        out.append(piece.replace('\u2581', ' ').encode('utf-8'))
    return out

  def save(self, output_dir: str) -> str:
    dst = os.path.join(output_dir, 'tokenizer.model')
    shutil.copyfile(self.path, dst + '.tmp')
    os.replace(dst + '.tmp', dst)
    return 'tokenizer.model'

  def fingerprint(self) -> str:
    return 'sp:' + self.path

  def to_seqio(self):
    import seqio  # pylint: disable=g-import-not-at-top
    return seqio.SentencePieceVocabulary(self.path)


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


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character table of byte-level BPE."""
  keep = (list(range(ord('!'), ord('~') + 1)) +
          list(range(ord('\xa1'), ord('\xac') + 1)) +
          list(range(ord('\xae'), ord('\xff') + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def words_of(texts: Iterable[str]) -> set[str]:
  """Every piece of `texts` as `WordVocab` splits them."""
  return {m.group() for t in texts for m in WordVocab._PIECE.finditer(t)}


def _seqio_twin(vocab):
  """A `seqio.Vocabulary` that tokenizes with `vocab` (via tf.py_function)."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class _Twin(seqio.Vocabulary):

    def __init__(self):
      super().__init__(extra_ids=0)
      self.source = vocab

    eos_id = property(lambda self: vocab.eos_id)
    pad_id = property(lambda self: vocab.pad_id)
    unk_id = property(lambda self: vocab.unk_id)
    _base_vocab_size = property(lambda self: vocab.vocab_size)

    def _encode(self, s):
      return vocab.encode(s)

    def _decode(self, ids):
      return vocab.decode(ids)

    def _encode_tf(self, s):
      out = tf.py_function(
          lambda x: np.asarray(vocab.encode(x.numpy().decode('utf-8')),
                               np.int32), [s], tf.int32)
      out.set_shape([None])
      return out

    def _decode_tf(self, ids):
      out = tf.py_function(
          lambda x: vocab.decode(x.numpy().tolist()).encode('utf-8'), [ids],
          tf.string)
      out.set_shape([])
      return out

    def __eq__(self, other):
      source = getattr(other, 'source', None)
      return (hasattr(source, 'fingerprint') and
              source.fingerprint() == vocab.fingerprint())

    def __hash__(self):
      return hash(vocab.fingerprint())

  return _Twin()


def load(spec: str):
  """The vocabulary `spec` names.

  'bytes' -> ByteVocab; a `.gguf` file -> HFVocab rebuilt from its metadata;
  a `.model` file -> SentencePieceVocab; a directory -> its tokenizer.json
  (or tokenizer.model); a JSON file -> HFVocab if it is a tokenizers file,
  else WordVocab.

  Raises:
    FileNotFoundError / ValueError naming the path and what was expected.
  """
  if spec == 'bytes':
    return ByteVocab()
  if os.path.isdir(spec):
    for name in ('tokenizer.json', 'tokenizer.model'):
      if os.path.exists(os.path.join(spec, name)):
        return load(os.path.join(spec, name))
    raise FileNotFoundError(f'{spec}: no tokenizer.json or tokenizer.model')
  if not os.path.exists(spec):
    raise FileNotFoundError(f'vocabulary {spec!r}: no such file (expected '
                            "'bytes', a WordVocab/tokenizer JSON, a .gguf, a "
                            '.model or a checkpoint directory)')
  if spec.endswith('.gguf'):
    return HFVocab.from_gguf(spec)
  if spec.endswith('.model'):
    return SentencePieceVocab(spec)
  with open(spec, encoding='utf-8') as f:
    head = f.read(200)
  if '"pieces"' in head:
    return WordVocab.load(spec)
  return HFVocab.from_file(spec)


def check_model_vocab(vocab, model_vocab_size: int, where: str) -> None:
  """Raises if the tokenizer's ids do not fit the model's embedding."""
  if vocab.vocab_size > model_vocab_size:
    raise ValueError(
        f'{where}: the tokenizer has {vocab.vocab_size} tokens but the model '
        f'config has vocab_size={model_vocab_size}; they do not belong '
        'together')


def pad_batch(seqs: Sequence[Sequence[int]], length: int,
              pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists.

  Returns:
    (int32 [B, length] tokens, bool [B, length] valid mask).

  Raises:
    ValueError: if a sequence is longer than `length`.
  """
  tokens = np.full((len(seqs), length), pad_id, np.int32)
  valid = np.zeros((len(seqs), length), bool)
  for i, s in enumerate(seqs):
    if len(s) > length:
      raise ValueError(f'sequence {i} has {len(s)} tokens > length {length}')
    tokens[i, : len(s)] = s
    valid[i, : len(s)] = True
  return tokens, valid


def bucket(n: int, multiple: int = 32) -> int:
  """Rounds a length up so few distinct shapes get compiled."""
  return max(multiple, -(-n // multiple) * multiple)
