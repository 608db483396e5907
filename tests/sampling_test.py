"""Sampling: cache == recomputation, one prefill per question, keyed RNG."""

import dataclasses

import numpy as np
import pytest

from lmsi.model import decoder as decoder_lib
from lmsi.sampling import draw
from lmsi.sampling import generation as sampling
from lmsi.sampling import kernels
from lmsi.vocab import simple as vocab_lib

VOCAB = vocab_lib.ByteVocab()
PROMPTS = ['Q: Ann has 3 pens. She buys 4. How many pens now?\nA:',
           'Q: hi\nA:', 'Q: Ben has 12 cups.\nA: 12']


@pytest.fixture(scope='module')
def params(tiny_cfg):
  return decoder_lib.init_params(tiny_cfg, seed=7)[0]


def _greedy(steps):
  return sampling.SamplingConfig(num_samples=1, temperature=0.0,
                                 max_decode_steps=steps, stop_strings=())


def test_temperature_zero_with_cache_equals_recomputation(tiny_cfg, params):
  gen = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS,
                          ['a', 'b', 'c'], _greedy(24))
  for i, prompt in enumerate(PROMPTS):
    want = sampling.greedy_reference(tiny_cfg, params, VOCAB.encode(prompt),
                                     24)
    n = gen.lengths[i, 0]
    assert gen.tokens[i, 0, :n].tolist() == want[:n]
    if n < 24:  # stopped at EOS
      assert want[n - 1] == VOCAB.eos_id


def test_one_prefill_for_m_samples(tiny_cfg, params, monkeypatch):
  shapes = []
  real = kernels.prefill

  def spy(cfg, p, tokens, valid, prefix_kv):
    shapes.append(tokens.shape)
    return real(cfg, p, tokens, valid, prefix_kv)

  monkeypatch.setattr(kernels, 'prefill', spy)
  cfg = sampling.SamplingConfig(num_samples=32, max_decode_steps=8)
  gen = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS, ['a', 'b', 'c'],
                          cfg)
  assert gen.tokens.shape == (3, 32, 8)
  assert gen.prefill_rows == 3
  assert len(shapes) == 1 and shapes[0][0] == 3  # [B, P], not [B*S, P]


def test_samples_keyed_by_question_not_batch(tiny_cfg, params):
  cfg = sampling.SamplingConfig(num_samples=4, max_decode_steps=12,
                                temperature=1.0, seed=5)
  together = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS,
                               ['a', 'b', 'c'], cfg)
  alone = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS[1:2], ['b'], cfg)
  np.testing.assert_array_equal(together.tokens[1], alone.tokens[0])
  # Different samples of one question differ; a new seed changes them.
  assert len({tuple(t) for t in together.tokens[0]}) > 1
  reseeded = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS[1:2], ['b'],
                               sampling.SamplingConfig(
                                   num_samples=4, max_decode_steps=12,
                                   temperature=1.0, seed=6))
  assert not np.array_equal(reseeded.tokens, alone.tokens)


def test_choose_top_k_and_top_p():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 400))
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  top2 = np.asarray(draw.choose(logits, keys, 1.0, 2, 1.0))
  assert set(top2.tolist()) == {0, 1}
  nucleus = np.asarray(draw.choose(logits, keys, 1.0, 0, 0.7))
  assert set(nucleus.tolist()) == {0, 1}  # 0.5 + 0.3 >= 0.7
  greedy = np.asarray(draw.choose(logits, keys, 0.0, 0, 1.0))
  assert set(greedy.tolist()) == {0}


def test_stop_string_ends_a_path(tiny_cfg, params):
  # Whatever greedy emits first becomes the stop string: it must stop at once
  # and the returned text must not contain it.
  first = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS[:1], ['a'],
                            _greedy(4))
  stop = VOCAB.decode(first.tokens[0, 0, :2])
  cfg = sampling.SamplingConfig(num_samples=1, temperature=0.0,
                                max_decode_steps=16, stop_strings=(stop,))
  gen = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS[:1], ['a'], cfg)
  assert gen.lengths[0, 0] == 2
  assert gen.texts[0][0] == ''


def test_tokens_do_not_depend_on_slots_or_question_order(tiny_cfg, params):
  # Two stop bytes end paths at many lengths, so 8 slots really are
  # refilled mid-run and the generated-cache bucket grows (40 > 32 steps).
  cfg = sampling.SamplingConfig(num_samples=8, max_decode_steps=40,
                                temperature=1.0, seed=2,
                                stop_strings=('e', 'n'))
  ids = ['a', 'b', 'c']
  eight = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS, ids,
                            dataclasses.replace(cfg, num_slots=8))
  many = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS, ids,
                           dataclasses.replace(cfg, num_slots=64))
  reordered = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS[::-1],
                                ids[::-1],
                                dataclasses.replace(cfg, num_slots=8))
  assert len(set(eight.lengths.ravel().tolist())) > 3
  assert eight.lengths.max() > 32
  np.testing.assert_array_equal(eight.tokens, many.tokens)
  np.testing.assert_array_equal(eight.tokens, reordered.tokens[::-1])
  np.testing.assert_allclose(eight.logprobs, many.logprobs, atol=1e-4)
  assert eight.texts == many.texts == reordered.texts[::-1]
  # 24 paths in 8 slots: every slot-step but the last chunks' is useful.
  assert eight.row_steps < 1.3 * eight.lengths.sum()


@pytest.mark.parametrize('temperature', [0.0, 1.0])
def test_drafted_tokens_change_speed_not_tokens(tiny_cfg, params,
                                                temperature):
  # A prefix shared by the prompts puts its ids in the lookup history too.
  prefix = sampling.prefix_for(tiny_cfg, params, VOCAB.encode('Q: '))
  cfg = sampling.SamplingConfig(num_samples=4, max_decode_steps=48,
                                temperature=temperature, seed=3,
                                stop_strings=(), draft_tokens=0)
  ids = ['a', 'b', 'c']
  plain = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS, ids, cfg,
                            prefix=prefix)
  # (most drafts, slots, rows): drafting 1, 1 (12 x 4 > 32 rows), 3, 3.
  for draft, slots, rows in ((1, 4, 32), (3, 12, 32), (3, 12, 48),
                             (3, 4, 32)):
    drafted = sampling.generate(
        tiny_cfg, params, VOCAB, PROMPTS, ids,
        dataclasses.replace(cfg, draft_tokens=draft, num_slots=slots,
                            draft_rows=rows), prefix=prefix)
    np.testing.assert_array_equal(drafted.tokens, plain.tokens)
    np.testing.assert_array_equal(drafted.lengths, plain.lengths)
    np.testing.assert_allclose(drafted.logprobs, plain.logprobs, atol=1e-4)
    assert plain.live_steps == plain.lengths.sum()
    if temperature == 0.0:  # a random model's greedy paths repeat: drafts
      assert drafted.live_steps < 0.8 * drafted.lengths.sum()  # are kept


def test_fewer_drafts_as_slots_fill():
  assert [draw.draft_count(3, 32, n)
          for n in (1, 8, 9, 16, 17, 32, 64)] == [3, 3, 2, 1, 0, 0, 0]


def test_drafts_are_the_tokens_after_the_latest_match():
  hist = np.array([[5, 6, 7, 9, 5, 6, 8, 1, 5, 6, 0, 0],  # "5 6" -> 8 1
                   [1, 2, 3, 4, 3, 0, 0, 0, 0, 0, 0, 0],  # "3" -> 4 3
                   [1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0]],  # "5": none
                  np.int32)
  cur = np.array([9, 4, 4])
  got = np.asarray(draw.lookup(hist, cur, 2))
  np.testing.assert_array_equal(got, [[8, 1], [4, 3], [0, 0]])
  # The longest match wins over a later, shorter one: "9 5 6" -> 8.
  got = np.asarray(draw.lookup(
      np.array([[4, 9, 5, 6, 8, 7, 5, 6, 2, 9, 5, 6]], np.int32),
      np.array([11]), 1))
  np.testing.assert_array_equal(got, [[8]])


def test_early_stop_in_the_decode_loop_does_not_depend_on_slots(tiny_cfg,
                                                                params):
  cfg = sampling.SamplingConfig(num_samples=8, max_decode_steps=40,
                                temperature=1.0, seed=2,
                                stop_strings=('e', 'n'))
  ids = ['a', 'b', 'c']
  asked = []

  def decided(q, texts):  # any rule of the first k texts will do
    asked.append(len(texts))
    return sum(map(len, texts)) % 2 == 0

  runs = [sampling.generate(tiny_cfg, params, VOCAB, prompts, order,
                            dataclasses.replace(cfg, num_slots=slots),
                            decided=decided, check_every=2)
          for prompts, order, slots in ((PROMPTS, ids, 8),
                                        (PROMPTS, ids, 64),
                                        (PROMPTS[::-1], ids[::-1], 8))]
  full = sampling.generate(tiny_cfg, params, VOCAB, PROMPTS, ids,
                           dataclasses.replace(cfg, num_slots=8))
  eight, many, reordered = runs[0].texts, runs[1].texts, runs[2].texts[::-1]
  assert eight == many == reordered
  drawn = [len(t) for t in eight]
  assert min(drawn) < 8 and all(n % 2 == 0 for n in drawn)
  assert set(asked) <= {2, 4, 6}
  for q, texts in enumerate(eight):
    assert texts == full.texts[q][:len(texts)]  # the full run's first ones
    # Stopped at k: the first k decided; every earlier check did not.
    assert len(texts) == 8 or decided(q, texts)
    assert not any(decided(q, texts[:k]) for k in range(2, len(texts), 2))
  # Abandoned paths leave nothing behind.
  for q, n in enumerate(drawn):
    assert not runs[0].lengths[q, n:].any()
