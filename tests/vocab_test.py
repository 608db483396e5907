"""ByteVocab is id-for-id seqio.ByteVocabulary."""

import seqio

from lmsi import vocab as vocab_lib

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


def test_decode_stops_at_eos_and_pad_batch():
  v = vocab_lib.ByteVocab()
  assert v.decode(v.encode('ab') + [v.eos_id] + v.encode('cd')) == 'ab'
  tokens, valid = vocab_lib.pad_batch([[5, 6], [7]], 4)
  assert tokens.tolist() == [[5, 6, 0, 0], [7, 0, 0, 0]]
  assert valid.sum() == 3
  assert vocab_lib.bucket(65) == 96 and vocab_lib.bucket(1) == 32
