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
from tests.conftest import gemma_like_sentencepiece

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


GGUF_TEXTS = ['Tom has 12 apples.', 'two  spaces and   three', ' lead',
              'bytes: é✓', '']


def test_sentencepiece_gguf_metadata_round_trip(tmp_path):
  """tokenizer.model -> llama.cpp's "llama" metadata (user-defined pieces
  with plain spaces, as its converter writes them) -> a GGUF -> lmsi's
  rebuilt SentencePiece: the same ids, BOS before prompts only."""
  gguf = pytest.importorskip('gguf')
  from lmsi.interop import gguf_export  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from lmsi.vocab import gguf as gguf_vocab
  model = gemma_like_sentencepiece(tmp_path)
  original = pretrained_vocab.SentencePieceVocab(model.read_bytes())
  meta = gguf_export.sentencepiece_metadata(
      model.read_bytes(), original.vocab_size, {'add_bos': True}, str(model))
  assert '  ' in meta['tokens'] and '\u2581\u2581' not in meta['tokens']
  path = str(tmp_path / 'tok.gguf')
  w = gguf.GGUFWriter(path, 'llama')
  gguf_export.add_tokenizer(w, meta)  # as `gguf_export.write` writes it
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  rebuilt = gguf_vocab.load(path)
  assert isinstance(rebuilt, pretrained_vocab.SentencePieceVocab)
  assert (rebuilt.bos_id, rebuilt.eos_id, rebuilt.pad_id, rebuilt.unk_id,
          rebuilt.add_bos) == (2, 1, 0, 3, True)
  for text in GGUF_TEXTS:
    ids = original.encode(text)
    assert rebuilt.encode(text) == ids, text
    assert vocab_base.prompt_ids(rebuilt, text) == [2, *ids]
    assert rebuilt.decode([2, *ids, 1, 5]) == text
  assert rebuilt.encode('a  b')[1] == original.sp.piece_to_id('\u2581\u2581')
  assert original.fingerprint() != rebuilt.fingerprint()  # add_bos differs
  # Its seqio twin tokenizes the same way.
  assert list(rebuilt.to_seqio().encode(GGUF_TEXTS[1])) == rebuilt.encode(
      GGUF_TEXTS[1])


def test_add_bos_is_the_tokenizers_own_choice(tmp_path):
  """HFVocab.from_file: add_bos from tokenizer_config.json, else from the
  tokenizer's post-processor (Llama 3 puts BOS first; SmolLM2 does not)."""
  tokenizers = pytest.importorskip('tokenizers')
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {'<s>': 0, '</s>': 1, 'a': 2}, unk_token='</s>'))
  tok.add_special_tokens(['<s>', '</s>'])
  (tmp_path / 'tokenizer_config.json').write_text(
      '{"eos_token": "</s>", "bos_token": "<s>"}')
  tok.save(str(tmp_path / 'tokenizer.json'))
  plain = pretrained_vocab.HFVocab.from_file(str(tmp_path / 'tokenizer.json'))
  assert not plain.add_bos and vocab_base.prompt_ids(plain, 'a') == [2]
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single='<s> $A', special_tokens=[('<s>', 0)])
  tok.save(str(tmp_path / 'tokenizer.json'))
  llama3 = pretrained_vocab.HFVocab.from_file(str(tmp_path / 'tokenizer.json'))
  assert llama3.add_bos and vocab_base.prompt_ids(llama3, 'a') == [0, 2]
  assert llama3.encode('a') == [2]  # targets never get BOS
  assert llama3.fingerprint() != plain.fingerprint()
  (tmp_path / 'tokenizer_config.json').write_text(
      '{"eos_token": "</s>", "bos_token": "<s>", "add_bos_token": false}')
  told = pretrained_vocab.HFVocab.from_file(str(tmp_path / 'tokenizer.json'))
  assert not told.add_bos
  # save() writes the choice down, so a reload keeps it.
  out = tmp_path / 'saved'
  out.mkdir()
  llama3.save(str(out))
  assert pretrained_vocab.HFVocab.from_file(
      str(out / 'tokenizer.json')).add_bos


def test_training_inputs_start_with_bos_where_prompts_do(tmp_path):
  """A tokenized SeqIO task puts BOS before `inputs` (never `targets`)
  exactly when the sampler's prompts get it, so fine-tuning sees the
  prompts sampling saw."""
  from tasks import sources  # pylint: disable=g-import-not-at-top
  spm_model = gemma_like_sentencepiece(tmp_path)
  rows = [{'inputs': 'Tom has 3', 'targets': ' apples.'}]
  for add_bos in (False, True):
    v = pretrained_vocab.SentencePieceVocab(spm_model.read_bytes(),
                                            add_bos=add_bos)
    task = sources.add_task(
        f'test_bos_{add_bos}',
        sources.rows_source({'train': lambda: rows}, ('inputs', 'targets')),
        tokenize=True, vocab=v)
    ex = next(iter(task.get_dataset(None, split='train', shuffle=False)
                   .as_numpy_iterator()))
    assert list(ex['inputs']) == vocab_base.prompt_ids(v, rows[0]['inputs'])
    assert list(ex['targets']) == v.encode(rows[0]['targets']) + [v.eos_id]
    assert (ex['inputs'][0] == v.bos_id) == add_bos
