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
"""

from __future__ import annotations

import json
import re
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


def words_of(texts: Iterable[str]) -> set[str]:
  """Every piece of `texts` as `WordVocab` splits them."""
  return {m.group() for t in texts for m in WordVocab._PIECE.finditer(t)}


def _seqio_twin(vocab: WordVocab):
  """A `seqio.Vocabulary` that tokenizes with `vocab` (via tf.py_function)."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class _Twin(seqio.Vocabulary):

    def __init__(self):
      super().__init__(extra_ids=0)
      self.source = vocab

    eos_id = property(lambda self: vocab.eos_id)
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
      return isinstance(source, WordVocab) and source.pieces == vocab.pieces

    def __hash__(self):
      return hash(vocab.pieces)

  return _Twin()


def load(spec: str):
  """'bytes' -> ByteVocab; a path to a WordVocab JSON file -> WordVocab."""
  return ByteVocab() if spec == 'bytes' else WordVocab.load(spec)


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
