"""Token vocabularies: text <-> ids without TensorFlow (sampling side).

Plain Python, so the sampler and evaluator stay importable where TensorFlow
is not installed; every one is a `vocab_base.Vocabulary`, whose `to_seqio()`
gives its `seqio.Vocabulary` twin for tasks and training
(`tests/vocab_test.py` checks that they agree). `load` picks one by path:

  * `ByteVocab`: id-for-id `seqio.ByteVocabulary` (pad 0, EOS 1, UNK 2,
    byte b -> b + 3).
  * `WordVocab`: whole words, numbers and punctuation (with their leading
    space) as single tokens, falling back to `ByteVocab`'s byte ids for any
    other text, so every string round-trips. The demo uses it: a tiny model
    learns arithmetic far faster on 3x shorter sequences.
  * `pretrained_vocab.HFVocab`: a pretrained checkpoint's tokenizer through
    the `tokenizers` library, from `tokenizer.json` or rebuilt from a GGUF
    file's metadata (`lmsi.vocab.gguf`).
  * `pretrained_vocab.SentencePieceVocab`: a SentencePiece `.model` file.

Every vocabulary also gives `token_bytes()` (the bytes each id decodes to),
which the sampler uses to detect stop strings across token boundaries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Sequence

from lmsi.vocab import gguf as gguf_vocab
from lmsi.vocab import pretrained as pretrained_vocab
from lmsi.runtime import fileio
from lmsi.vocab import base as vocab_base


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
    kept = vocab_base.ids_before_eos(
        ids, vocab_base.stop_ids(self),
        lambda i: self._offset <= i < ByteVocab.vocab_size)
    return bytes(i - self._offset for i in kept).decode('utf-8',
                                                        errors='ignore')

  def to_seqio(self):
    # TF only where data enters.
    import seqio  # pylint: disable=g-import-not-at-top
    return seqio.ByteVocabulary()

  def token_bytes(self) -> list[bytes]:
    """The bytes each id decodes to (b'' for pad/EOS/UNK)."""
    return [b''] * self._offset + [bytes([b]) for b in range(256)]

  def fingerprint(self) -> str:
    return 'bytes'


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
    """Word pieces as text; each run of other ids as `ByteVocab` decodes it."""
    base = ByteVocab.vocab_size
    out = []
    for is_piece, run in itertools.groupby(
        vocab_base.ids_before_eos(ids, vocab_base.stop_ids(self)),
        lambda i: base <= i < self.vocab_size):
      out.append(''.join(self.pieces[i - base] for i in run) if is_piece
                 else super().decode(run))
    return ''.join(out)

  def save(self, path: str) -> None:
    fileio.write_text_atomic(path, json.dumps({'pieces': self.pieces}) + '\n')

  @classmethod
  def load(cls, path: str) -> 'WordVocab':
    with open(path, encoding='utf-8') as f:
      try:
        return cls(json.load(f)['pieces'])
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f'{path}: not a WordVocab file (expected '
                         f'{{"pieces": [...]}}): {e}') from None

  def to_seqio(self):
    return vocab_base.seqio_twin(self)

  def token_bytes(self) -> list[bytes]:
    return super().token_bytes() + [p.encode('utf-8') for p in self.pieces]

  def fingerprint(self) -> str:
    pieces = json.dumps(self.pieces).encode('utf-8')
    return 'word:' + hashlib.sha256(pieces).hexdigest()


def words_of(texts: Iterable[str]) -> set[str]:
  """Every piece of `texts` as `WordVocab` splits them."""
  return {m.group() for t in texts for m in WordVocab._PIECE.finditer(t)}


def load(spec: str) -> vocab_base.Vocabulary:
  """The vocabulary `spec` names.

  'bytes' -> ByteVocab; a `.gguf` file -> HFVocab or SentencePieceVocab
  rebuilt from its metadata; a `.model` file -> SentencePieceVocab; a
  directory -> its tokenizer.json (or tokenizer.model); a JSON file ->
  HFVocab if it is a tokenizers file, else WordVocab. A `gs://` path (every
  host of a pod reads the same one) is first copied into a local cache,
  with the tokenizer config files beside it.

  Raises:
    FileNotFoundError / ValueError naming the path and what was expected.
  """
  if spec == 'bytes':
    return ByteVocab()
  if fileio.is_remote(spec):
    return load(_local_copy(spec))
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
    return gguf_vocab.load(spec)
  if spec.endswith('.model'):
    return pretrained_vocab.SentencePieceVocab.from_file(spec)
  with open(spec, encoding='utf-8') as f:
    head = f.read(200)
  if '"pieces"' in head:
    return WordVocab.load(spec)
  return pretrained_vocab.HFVocab.from_file(spec)


# What a tokenizer file may have beside it (`HFVocab.from_file`,
# `SentencePieceVocab.from_file`).
_SIBLINGS = ('tokenizer.json', 'tokenizer.model', 'tokenizer_config.json',
             'generation_config.json')


def _local_copy(url: str) -> str:
  """A local copy of the remote tokenizer file or directory `url` (and the
  config files beside it), under $LMSI_CACHE_DIR (default ~/.cache/lmsi),
  keyed by the URL; copied atomically on every call, so a changed remote
  file is never read stale."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  root = os.environ.get('LMSI_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'lmsi')
  key = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
  src = epath.Path(url)
  if not src.exists():
    raise FileNotFoundError(f'vocabulary {url!r}: no such file or directory')
  folder = src if src.is_dir() else src.parent
  names = {p.name for p in folder.iterdir() if p.name in _SIBLINGS}
  if not src.is_dir():
    names.add(src.name)
  local = os.path.join(root, 'vocab', key)
  for name in sorted(names):
    data = (folder / name).read_bytes()
    fileio.write_atomic(os.path.join(local, name),
                        lambda f, data=data: f.write(data), binary=True)
  return local if src.is_dir() else os.path.join(local, src.name)


def check_model_vocab(vocab: vocab_base.Vocabulary, model_vocab_size: int,
                      where: str) -> None:
  """Raises if the tokenizer's ids do not fit the model's embedding."""
  if vocab.vocab_size > model_vocab_size:
    raise ValueError(
        f'{where}: the tokenizer has {vocab.vocab_size} tokens but the model '
        f'config has vocab_size={model_vocab_size}; they do not belong '
        'together')
