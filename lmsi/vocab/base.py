"""What every lmsi vocabulary shares: its protocol, decode loop, seqio twin.

`Vocabulary` is the type the sampler, evaluator and tasks take; `ByteVocab`
and `WordVocab` (`lmsi.vocab`), `HFVocab` and `SentencePieceVocab`
(`lmsi.vocab.pretrained`) all satisfy it without a common base class.
`seqio_twin` wraps any of them as a `seqio.Vocabulary` for tasks and
training (TensorFlow is imported only when it is called).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Vocabulary(Protocol):
  """Text <-> token ids, as every lmsi tokenizer provides them.

  `decode` stops at the first `eos_id` (or any of `eos_ids`, where a
  vocabulary has several: `stop_ids`); `token_bytes()[i]` is the bytes id
  `i` decodes to (the sampler's stop-string tables); `fingerprint()` is a
  digest stable across processes that names the tokenization (two
  vocabularies with equal fingerprints tokenize alike); `to_seqio()` is the
  `seqio.Vocabulary` that tokenizes the same way. A vocabulary whose
  model wants BOS before a prompt (Gemma, Llama 3) has `add_bos` and
  `bos_id`: `prompt_ids` adds it; `encode` never does.
  """

  vocab_size: int
  eos_id: int
  pad_id: int
  unk_id: int | None

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: Iterable[int]) -> str:
    ...

  def token_bytes(self) -> list[bytes]:
    ...

  def fingerprint(self) -> str:
    ...

  def to_seqio(self) -> Any:
    ...


def prompt_ids(vocab: Vocabulary, text: str) -> list[int]:
  """`text` encoded as a prompt: BOS first where `vocab.add_bos` asks."""
  ids = vocab.encode(text)
  if getattr(vocab, 'add_bos', False):
    return [vocab.bos_id, *ids]
  return ids


def stop_ids(vocab: Vocabulary) -> tuple[int, ...]:
  """Every id a path ends at: `vocab.eos_ids` where the vocabulary has a
  list (Llama 3.1's generation config: <|end_of_text|>, <|eom_id|>,
  <|eot_id|>), else its one `eos_id`."""
  return tuple(int(i) for i in getattr(vocab, 'eos_ids', None)
               or (vocab.eos_id,))


def ids_before_eos(ids: Iterable[int], eos: int | Collection[int],
                   keep: Callable[[int], bool] | None = None) -> list[int]:
  """The ids before the first EOS (as ints) that `keep` accepts.

  The decode loop every vocabulary shares: decoding stops at EOS (`eos`: one
  id or several) and drops the ids (pad, out of range) the tokenizer cannot
  turn into text.
  """
  ends = {int(eos)} if isinstance(eos, (int, np.integer)) else set(eos)
  out = []
  for i in ids:
    i = int(i)
    if i in ends:
      break
    if keep is None or keep(i):
      out.append(i)
  return out


def seqio_twin(vocab: Vocabulary):
  """A `seqio.Vocabulary` that tokenizes with `vocab` (via tf.py_function).

  Two twins are equal when their vocabularies' fingerprints are.
  """
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
      return (isinstance(source, Vocabulary) and
              source.fingerprint() == vocab.fingerprint())

    def __hash__(self):
      return hash(vocab.fingerprint())

  return _Twin()
