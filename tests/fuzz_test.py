"""Fuzzing the surfaces that read outside input (hypothesis, derandomized).

Each surface gets `EXAMPLES` examples (200 in `make test`; `make fuzz`
sets LMSI_FUZZ_EXAMPLES=10000). A surface may answer or raise its
documented clear error (ValueError naming where), never anything else:
answer extraction and matching, the vote and calibration, JSONL records,
gin flags, the tokenizers' round trips (byte-level vocabularies are
lossless; SentencePiece is lossless only for text its normalisation keeps:
the identity-normalised, byte-fallback model here is), and the Hugging Face
config reader.
"""

import json
import os

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from lmsi.data import answers
from lmsi.data import records
from lmsi.interop import hf_import
from lmsi.interop import pretrained
from lmsi.runtime import gin_flags
from lmsi.vocab import pretrained as pretrained_vocab
from lmsi.vocab import simple as vocab_lib
from lmsi.voting import majority
from lmsi.voting import match
from tests.conftest import gemma_like_sentencepiece

EXAMPLES = int(os.environ.get('LMSI_FUZZ_EXAMPLES', '200'))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=list(HealthCheck), database=None)

# Text a model might write: answer sentences, numbers, letters, words,
# and any Unicode at all.
PIECES = st.sampled_from([
    'The answer is ', 'the answer is', 'The answer is (', ')', '.', ',',
    '$', '-', '−', '/', ' ', '\n', '1,000', '3.5', '(a)', '(B)', 'yes',
    'no', 'entailment', 'neutral', 'contradiction', 'it is not possible',
    '1/2', '%', 'e', '1e5', '0', '007'])
MODEL_TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=12).map(''.join))
FAMILIES = st.sampled_from([f.value for f in answers.Family])
OPTIONS = st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=6))


@FUZZ
@given(text=MODEL_TEXT, family=FAMILIES, options=OPTIONS,
       mode=st.sampled_from(match.MODES), gold=st.one_of(st.none(),
                                                         MODEL_TEXT))
def test_answer_extraction_and_matching(text, family, options, mode, gold):
  got = answers.extract_answer(text, family, options=options)
  assert got is None or isinstance(got, str)
  if got is not None:  # canonical answers are fixed points
    again = f'The answer is {answers.answer_text(got, family)}.'
    assert answers.extract_answer(again, family,
                                  options=options) in (got, None)
  if mode != match.PAPER and family != 'number':
    with pytest.raises(ValueError):
      match.validate_modes((mode,), family)
    return
  pred = match.extract(text, mode, family, options=options)
  assert isinstance(match.is_correct(pred, gold, mode, family), bool)
  assert match.is_correct(None, gold, mode, family) is False


@FUZZ
@given(votes=st.lists(st.one_of(st.none(), st.sampled_from('abcde')),
                      max_size=40),
       k=st.integers(min_value=1, max_value=50))
def test_vote(votes, k):
  v = majority.majority_vote(votes)
  assert 0 <= v.votes <= v.num_valid <= v.num_samples == len(votes)
  assert 0.0 <= v.share <= 1.0
  if v.answer is not None:
    assert votes.count(v.answer) == v.votes == max(
        votes.count(a) for a in set(votes) - {None})
  if k > len(votes):  # documented: k must be in [1, m]
    with pytest.raises(ValueError, match='k must be in'):
      majority.majority_at_k(votes, k)
    return
  assert majority.majority_at_k(votes, k) == (
      majority.majority_vote(votes[:k]).answer)


@FUZZ
@given(pairs=st.lists(st.tuples(st.floats(allow_nan=True),
                                st.booleans()), max_size=30))
def test_calibration(pairs):
  shares = [s for s, _ in pairs]
  bins = majority.calibration_bins(shares, [c for _, c in pairs])
  inside = [s for s in shares if 0.0 <= s < 1.0000001]
  assert sum(b['n'] for b in bins) == len(inside)
  for b in bins:
    assert b['accuracy'] is None or 0.0 <= b['accuracy'] <= 1.0


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
              st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner,
                                            max_size=4)), max_leaves=8)
SAMPLE_FIELDS = ('task', 'id', 'sample', 'text', 'answer', 'logprob')


@FUZZ
@given(line=st.one_of(
    st.text(),
    st.dictionaries(st.sampled_from(SAMPLE_FIELDS + ('extra',)), JSONISH,
                    max_size=7).map(json.dumps)))
def test_jsonl_records(line):
  try:
    rec = records.from_json(records.SampledPath, line, 'f.jsonl:3')
  except ValueError as e:
    assert str(e).startswith('f.jsonl:3: '), e
  else:
    assert isinstance(rec.sample, int) and isinstance(rec.text, str)


FLAG_TEXT = st.text(alphabet=st.characters(blacklist_characters='\x00'),
                    max_size=10)


@FUZZ
@given(argv=st.lists(st.one_of(
    st.text(max_size=20),
    st.sampled_from(['--gin.', '--gin.A', '--gin.=', '--gin.A=', '--gin_file',
                     '--gin_file=', '--gin_bindings=', '--gin.A==b', '--']),
    st.builds(lambda k, v: f'--gin.{k}={v}', FLAG_TEXT, FLAG_TEXT),
    st.builds(lambda v: f'--gin_file={v}', FLAG_TEXT)), max_size=5))
def test_gin_flags(argv):
  """Bindings keep their values whole ('=' included) and their order."""
  try:
    files, bindings, paths = gin_flags.parse_args(argv)
  except ValueError:
    return
  assert all(isinstance(x, str) for x in files + bindings + paths)
  want = [f'{a[6:].partition("=")[0]} = {a[6:].partition("=")[2]}'
          for a in argv if a.startswith('--gin.')]
  assert [b for b in bindings if b in want] == want


def _word_vocab():
  return vocab_lib.WordVocab(['Ann', ' has', ' 3', ' apples', '.', ' é'])


@pytest.fixture(scope='module')
def byte_level_bpe():
  tokenizers = pytest.importorskip('tokenizers')
  return pretrained_vocab.HFVocab(
      tokenizers.Tokenizer.from_str(pretrained_vocab.byte_tokenizer_json()),
      eos_id=1, pad_id=0)


@FUZZ
@given(text=st.text())
def test_byte_level_vocabularies_are_lossless(byte_level_bpe, text):
  for vocab in (vocab_lib.ByteVocab(), _word_vocab(), byte_level_bpe):
    assert vocab.decode(vocab.encode(text)) == text, type(vocab).__name__


@pytest.fixture(scope='module')
def sentencepiece_vocab(tmp_path_factory):
  model = gemma_like_sentencepiece(tmp_path_factory.mktemp('sp'))
  return pretrained_vocab.SentencePieceVocab(model.read_bytes())


@FUZZ
@given(text=st.text(alphabet=st.characters(blacklist_categories=('Cs',))))
def test_sentencepiece_identity_byte_fallback_round_trip(sentencepiece_vocab,
                                                         text):
  """Identity normalisation and byte fallback: lossless on any text (a
  model with NFKC or whitespace folding is not, by design)."""
  v = sentencepiece_vocab
  assert v.decode(v.encode(text)) == text


HF_KEYS = ('model_type', 'hidden_size', 'num_hidden_layers',
           'num_attention_heads', 'num_key_value_heads', 'head_dim',
           'intermediate_size', 'vocab_size', 'rope_theta', 'rope_scaling',
           'rms_norm_eps', 'tie_word_embeddings', 'attention_bias',
           'sliding_window', 'use_sliding_window', 'layer_types',
           'text_config', 'rope_parameters', 'hidden_activation',
           'query_pre_attn_scalar', 'final_logit_softcapping',
           'attn_logit_softcapping', 'partial_rotary_factor',
           'num_local_experts', 'max_position_embeddings')
SMALL_INTS = st.integers(min_value=-2, max_value=4096)
HF_VALUES = st.one_of(st.none(), st.booleans(), SMALL_INTS, st.floats(),
                      st.text(max_size=12),
                      st.sampled_from(['llama', 'qwen2', 'qwen3', 'gemma2',
                                       'gemma3', 'gemma3_text', 'mistral',
                                       'llama3', 'linear', 'yarn']),
                      st.dictionaries(st.text(max_size=8), JSONISH,
                                      max_size=3),
                      st.lists(st.sampled_from(['full_attention',
                                                'sliding_attention']),
                               max_size=4))


@FUZZ
@given(config=st.dictionaries(st.sampled_from(HF_KEYS), HF_VALUES,
                              max_size=14))
def test_hf_config_reader(config):
  try:
    cfg = hf_import.config_from_dict(config, 'config.json')
  except (pretrained.ConversionError, ValueError) as e:
    assert 'config.json' in str(e) or str(e), e
  else:
    assert cfg.num_layers >= 1 and cfg.embed_dim >= 1


def test_hf_config_fields_of_the_wrong_type_are_named():
  """Found by test_hf_config_reader: a model_type that is an object raised
  TypeError ('unhashable type'); now the file and field are named."""
  with pytest.raises(pretrained.ConversionError,
                     match='config.json: model_type must be a string'):
    hf_import.config_from_dict({'model_type': {}}, 'config.json')
  with pytest.raises(pretrained.ConversionError,
                     match='hidden_size must be a positive integer'):
    hf_import.config_from_dict({'model_type': 'llama', 'hidden_size': '64'},
                               'config.json')
