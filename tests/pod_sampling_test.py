"""Sampling on meshes: identical tokens on every mesh shape, exemplar-prefix
sharing equal to prefilling whole prompts, stop strings across BPE tokens."""

import dataclasses

import jax
import numpy as np
import pytest

from lmsi.sampling import batching
from lmsi.model import decoder as decoder_lib
from lmsi.data import exemplars
from lmsi.data import prompts
from lmsi.sampling import generation as sampling
from lmsi.sampling import kernels
from lmsi.sampling import stops
from lmsi.model import sharding
from lmsi.vocab import simple as vocab_lib

VOCAB = vocab_lib.ByteVocab()
QUESTIONS = [f'Ann has {i} pens. She buys {i % 4 + 1}. How many pens now?'
             for i in range(6)]


@pytest.fixture(scope='module')
def model(tiny_cfg):
  # 4 query / 2 KV heads: a model axis of 4 or 8 does not divide them, so
  # those meshes also exercise the replicate-what-does-not-divide rule.
  cfg = dataclasses.replace(tiny_cfg, num_heads=4, num_kv_heads=2)
  return cfg, decoder_lib.init_params(cfg, seed=3)[0]


def _texts():
  return [prompts.render('cot_fewshot', q, exemplars.ARITHMETIC)
          for q in QUESTIONS]


CONFIG = sampling.SamplingConfig(num_samples=4, temperature=1.0, top_k=40,
                                 max_decode_steps=12, stop_strings=('\n\n',),
                                 seed=5)


def test_identical_tokens_on_every_mesh(model):
  if jax.device_count() != 8:
    pytest.skip('needs 8 (fake) devices')
  cfg, params = model
  ids = [f'q{i}' for i in range(len(QUESTIONS))]
  want = sampling.generate(cfg, params, VOCAB, _texts(), ids, CONFIG)
  for data, model_axis in ((1, 1), (8, 1), (4, 2), (2, 4), (1, 8)):
    devices = jax.devices()[:data * model_axis]
    mesh = sharding.create_mesh(data, model_axis, devices)
    placed = sampling.place_params(cfg, params, mesh)
    got = sampling.generate(cfg, placed, VOCAB, _texts(), ids, CONFIG,
                            mesh=mesh)
    np.testing.assert_array_equal(got.tokens, want.tokens,
                                  err_msg=f'mesh {data}x{model_axis}')
    assert got.texts == want.texts
    if model_axis == 2:  # heads divide 2: q is really split over 'model'
      q = placed['layer_0']['attn']['q']
      assert q.sharding.spec[1] == sharding.MODEL


def test_shared_exemplar_prefix_equals_whole_prompts(model):
  cfg, params = model
  texts = _texts()
  encoded = [VOCAB.encode(t) for t in texts]
  shared = sampling.common_prefix(encoded)
  exemplar_block = prompts.render('cot_fewshot', '',
                                  exemplars.ARITHMETIC)
  assert len(shared) >= len(VOCAB.encode(exemplar_block)) - 1
  prefix = sampling.prefix_for(cfg, params, shared)
  ids = [f'q{i}' for i in range(len(texts))]
  greedy = dataclasses.replace(CONFIG, temperature=0.0)
  whole = sampling.generate(cfg, params, VOCAB, texts, ids, greedy)
  split = sampling.generate(cfg, params, VOCAB, texts, ids, greedy,
                            prefix=prefix)
  np.testing.assert_array_equal(split.tokens, whole.tokens)
  sampled_whole = sampling.generate(cfg, params, VOCAB, texts, ids, CONFIG)
  sampled_split = sampling.generate(cfg, params, VOCAB, texts, ids, CONFIG,
                                    prefix=prefix)
  np.testing.assert_array_equal(sampled_split.tokens, sampled_whole.tokens)
  np.testing.assert_allclose(sampled_split.logprobs, sampled_whole.logprobs,
                             atol=1e-4)
  with pytest.raises(ValueError, match='does not extend the shared'):
    sampling.generate(cfg, params, VOCAB, ['Q: other\nA:'], ['x'], greedy,
                      prefix=prefix)


def test_prefix_logits_match_full_forward(model):
  cfg, params = model
  texts = _texts()[:3]
  encoded = [VOCAB.encode(t) for t in texts]
  shared = sampling.common_prefix(encoded)
  prefix = sampling.prefix_for(cfg, params, shared)
  rest = [e[len(shared):] for e in encoded]
  tokens, valid = batching.pad_batch(rest, max(len(r) for r in rest))
  last, _ = kernels.prefill(cfg, params, tokens, valid, prefix.kv)
  full_tokens, full_valid = batching.pad_batch(
      encoded, max(len(e) for e in encoded))
  full = decoder_lib.Decoder(cfg).apply({'params': params}, full_tokens,
                                        full_valid)
  ends = full_valid.sum(1) - 1
  np.testing.assert_allclose(np.asarray(last),
                             np.asarray(full)[np.arange(3), ends], atol=1e-5)


def test_stop_tables_find_stops_across_tokens():
  token_bytes = [b'', b'a', b'\n', b'\n\n', b'x\n', b'\nQ']
  nxt, hit = stops.stop_tables(token_bytes, ['\n\n'], 6)
  # "\n\n" as one token stops at once; "\n" then "\n" stops at the second.
  assert hit[0, 0, 3] and not hit[0, 0, 2] and hit[0, nxt[0, 0, 2], 2]
  # "x\n" leaves one newline pending; "\nQ" completes the stop mid-token.
  assert nxt[0, 0, 4] == 1 and hit[0, 1, 5]
  # Any other byte resets the match.
  assert nxt[0, 1, 1] == 0 and not hit[0, 1, 1]
  # Empty (special) tokens keep the state.
  assert nxt[0, 1, 0] == 1
