"""Vocabularies: ByteVocab is id-for-id seqio.ByteVocabulary; every one is a
`vocab_base.Vocabulary` with a fingerprint stable across processes."""

import os
import subprocess
import sys

import pytest
import seqio

from lmsi.vocab import pretrained as pretrained_vocab
from lmsi.vocab import simple as vocab_lib
from lmsi.vocab import base as vocab_base
from tests.conftest import REPO

TEXTS = ['Q: Ann has 3 pens.\nA: 3 + 4 = 7. The answer is 7.', 'héllo ✓', '']


def test_matches_seqio_byte_vocabulary():
  ours, theirs = vocab_lib.ByteVocab(), seqio.ByteVocabulary()
  assert ours.vocab_size == theirs.vocab_size
  assert (ours.eos_id, ours.pad_id, ours.unk_id) == (
      theirs.eos_id, theirs.pad_id, theirs.unk_id)
  for text in TEXTS:
    ids = ours.encode(text)
    assert ids == list(theirs.encode(text))
    assert ours.decode(ids) == theirs.decode(ids) == text


def test_decode_stops_at_eos_and_drops_pad():
  v = vocab_lib.ByteVocab()
  assert v.decode(v.encode('ab') + [v.eos_id] + v.encode('cd')) == 'ab'
  assert v.decode([v.pad_id] + v.encode('ab') + [v.unk_id, 9999]) == 'ab'
  assert vocab_base.ids_before_eos([4, 0, 5, 1, 6], 1) == [4, 0, 5]
  assert vocab_base.ids_before_eos([4, 0, 5], 1, lambda i: i > 0) == [4, 5]


def test_word_vocab_decodes_pieces_and_bytes():
  v = vocab_lib.WordVocab(['Ann', ' has', ' 3'])
  text = 'Ann has 3 pens, Bob has 30.'
  ids = v.encode(text)
  assert len(ids) < len(text)
  assert v.decode(ids) == text
  assert v.decode(ids + [v.eos_id] + ids) == text
  assert v.decode([v.vocab_size + 5] + ids) == text  # out of range: dropped


def _hf_vocab():
  tokenizers = pytest.importorskip('tokenizers')
  words = ['<eos>', 'a', 'b', ' ']
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {w: i for i, w in enumerate(words)}, unk_token='<eos>'))
  return pretrained_vocab.HFVocab(tok, eos_id=0)


def _sentencepiece_vocab(tmp_path):
  spm = pytest.importorskip('sentencepiece')
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('\n'.join(f'Tom has {i} apples.' for i in range(200)))
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(tmp_path / 'sp'), vocab_size=40,
      hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  return vocab_lib.load(str(tmp_path / 'sp.model'))


def test_every_vocabulary_is_a_vocabulary(tmp_path):
  vocabs = [vocab_lib.ByteVocab(), vocab_lib.WordVocab(['a']), _hf_vocab(),
            _sentencepiece_vocab(tmp_path)]
  assert [type(v).__name__ for v in vocabs] == [
      'ByteVocab', 'WordVocab', 'HFVocab', 'SentencePieceVocab']
  for v in vocabs:
    assert isinstance(v, vocab_base.Vocabulary), type(v).__name__
    assert v.decode(v.encode('a') + [v.eos_id] + v.encode('b')) == 'a'
    assert len(v.token_bytes()) == v.vocab_size


def test_protocol_check_can_fail():

  class NoTokenBytes:
    vocab_size, eos_id, pad_id, unk_id = 3, 1, 0, None

    def encode(self, text):
      return []

    def decode(self, ids):
      return ''

    def fingerprint(self):
      return 'x'

    def to_seqio(self):
      return None

  assert not isinstance(NoTokenBytes(), vocab_base.Vocabulary)
  assert not isinstance(seqio.ByteVocabulary(), vocab_base.Vocabulary)
  NoTokenBytes.token_bytes = lambda self: []
  assert isinstance(NoTokenBytes(), vocab_base.Vocabulary)


def test_fingerprint_is_stable_across_processes():
  """Python's hash() of a str is salted per process; the digest is not."""
  script = ('import sys; sys.path.insert(0, sys.argv[1]); '
            'from lmsi import vocab as v; '
            "print(v.WordVocab(['a', ' b', '7']).fingerprint())")
  got = {subprocess.run(
      [sys.executable, '-c', script, REPO], check=True, capture_output=True,
      text=True, env={**os.environ, 'PYTHONHASHSEED': seed}).stdout.strip()
         for seed in ('1', '2')}
  here = vocab_lib.WordVocab(['7', 'a', ' b']).fingerprint()
  assert got == {here}
  assert here.startswith('word:')
  assert here != vocab_lib.WordVocab(['a', ' b']).fingerprint()
  assert _hf_vocab().fingerprint().startswith('hf:')
  assert vocab_lib.ByteVocab().fingerprint() == 'bytes'
