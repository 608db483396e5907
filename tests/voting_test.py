"""Tests for majority voting over sampled answers (LMSI stage 4)."""

import collections
import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from lmsi.voting import majority as voting


def _reference_vote(answers):
  """Counter-based reference: (answer, votes, num_valid, tied)."""
  counts = collections.Counter(a for a in answers if a is not None)
  best = max(counts.values(), default=0)
  top = [a for a in answers if a is not None and counts[a] == best]
  return (top[0] if top else None), best, sum(counts.values()), len(
      set(top)) > 1


class MajorityVoteTest(parameterized.TestCase):

  def test_matches_counter_reference_on_random_lists(self):
    rng = np.random.RandomState(0)
    vocabulary = ('18', '17', '9', '-3', '1234.5')
    num_ties = num_all_none = 0
    for _ in range(200):
      m = rng.randint(0, 13)
      vocabulary_size = rng.randint(1, len(vocabulary) + 1)
      answers = [
          None if rng.rand() < 0.3 else vocabulary[rng.randint(
              vocabulary_size)] for _ in range(m)
      ]
      answer, votes, num_valid, tied = _reference_vote(answers)
      self.assertEqual(
          voting.majority_vote(answers),
          voting.Vote(answer=answer, votes=votes, num_valid=num_valid,
                      num_samples=m, tied=tied),
          msg=f'answers={answers}')
      num_ties += tied
      num_all_none += answer is None
    # The random lists must exercise both the tie rule and the all-None case.
    self.assertGreater(num_ties, 10)
    self.assertGreater(num_all_none, 5)

  def test_clear_majority(self):
    vote = voting.majority_vote(['18', '17', '18', None, '18', '9'])
    self.assertEqual(
        vote,
        voting.Vote(answer='18', votes=3, num_valid=5, num_samples=6,
                    tied=False))
    self.assertEqual(vote.share, 0.5)

  @parameterized.named_parameters(
      ('first_of_two', ['7', '8', '8', '7'], '7'),
      ('first_appearance_not_first_to_max', ['8', '7', '7', '8'], '8'),
      ('none_first', [None, '3', '2', '2', '3'], '3'),
      ('three_way', ['c', 'b', 'a', 'a', 'b', 'c'], 'c'),
      ('singletons', ['5', '4', '3'], '5'),
  )
  def test_tie_picks_first_appearing_answer(self, answers, expected):
    vote = voting.majority_vote(answers)
    self.assertEqual(vote.answer, expected)
    self.assertTrue(vote.tied)

  def test_all_none(self):
    vote = voting.majority_vote([None, None, None, None])
    self.assertEqual(
        vote,
        voting.Vote(answer=None, votes=0, num_valid=0, num_samples=4,
                    tied=False))
    self.assertEqual(vote.share, 0.0)

  def test_empty(self):
    vote = voting.majority_vote([])
    self.assertEqual(
        vote,
        voting.Vote(answer=None, votes=0, num_valid=0, num_samples=0,
                    tied=False))
    self.assertEqual(vote.share, 0.0)

  def test_unparseable_samples_lower_share(self):
    vote = voting.majority_vote(['B', None, 'B', None, 'A'])
    self.assertEqual((vote.votes, vote.num_valid, vote.num_samples), (2, 3, 5))
    self.assertAlmostEqual(vote.share, 0.4)

  def test_vote_is_frozen_and_keyword_only(self):
    vote = voting.majority_vote(['1'])
    with self.assertRaises(dataclasses.FrozenInstanceError):
      vote.answer = '2'
    with self.assertRaises(TypeError):
      voting.Vote('1', 1, 1, 1, False)


class MajorityAtKTest(parameterized.TestCase):

  _ANSWERS = ('5', None, '6', '6', '5', '5', None)

  @parameterized.parameters(
      (1, '5'),
      (2, '5'),
      (3, '5'),  # Tie between '5' and '6': '5' appears first.
      (4, '6'),
      (5, '5'),  # Tie 2-2: '5' appears first.
      (6, '5'),
      (7, '5'),
  )
  def test_majority_at_k(self, k, expected):
    self.assertEqual(voting.majority_at_k(self._ANSWERS, k), expected)

  def test_none_when_first_k_unparseable(self):
    self.assertIsNone(voting.majority_at_k([None, None, '3'], 2))

  @parameterized.parameters(0, -1, 8)
  def test_invalid_k_raises(self, k):
    with self.assertRaises(ValueError):
      voting.majority_at_k(self._ANSWERS, k)


class CalibrationBinsTest(absltest.TestCase):

  def test_default_edges(self):
    shares = [0.1, 0.2, 0.25, 0.4, 0.6, 0.75, 0.9, 1.0, 1.0, 1.0]
    correct = [False, True, False, False, True, True, True, True, True, False]
    self.assertEqual(
        voting.calibration_bins(shares, correct),
        [
            {'vote_share_lo': 0.0, 'vote_share_hi': 0.25, 'n': 2,
             'accuracy': 0.5},
            {'vote_share_lo': 0.25, 'vote_share_hi': 0.5, 'n': 2,
             'accuracy': 0.0},
            {'vote_share_lo': 0.5, 'vote_share_hi': 0.75, 'n': 1,
             'accuracy': 1.0},
            {'vote_share_lo': 0.75, 'vote_share_hi': 1.0, 'n': 5,
             'accuracy': 0.8},
        ])

  def test_empty_bin_has_no_accuracy(self):
    self.assertEqual(
        voting.calibration_bins([0.9, 0.95], [True, False]),
        [
            {'vote_share_lo': 0.0, 'vote_share_hi': 0.25, 'n': 0,
             'accuracy': None},
            {'vote_share_lo': 0.25, 'vote_share_hi': 0.5, 'n': 0,
             'accuracy': None},
            {'vote_share_lo': 0.5, 'vote_share_hi': 0.75, 'n': 0,
             'accuracy': None},
            {'vote_share_lo': 0.75, 'vote_share_hi': 1.0, 'n': 2,
             'accuracy': 0.5},
        ])

  def test_custom_edges_and_out_of_range_shares(self):
    self.assertEqual(
        voting.calibration_bins([0.3, 0.5, 0.55, 0.99, 1.0],
                                [True, False, True, True, True],
                                edges=(0.5, 0.9, 1.0)),
        [
            {'vote_share_lo': 0.5, 'vote_share_hi': 0.9, 'n': 2,
             'accuracy': 0.5},
            {'vote_share_lo': 0.9, 'vote_share_hi': 1.0, 'n': 1,
             'accuracy': 1.0},
        ])

  def test_from_votes(self):
    votes = [voting.majority_vote(a) for a in (
        ['1', '1', '1', '1'], ['1', '2', '3', None], ['2', '2', None, '3'])]
    bins = voting.calibration_bins([v.share for v in votes],
                                   [True, False, True], edges=(0.0, 0.5, 1.01))
    self.assertEqual([(b['n'], b['accuracy']) for b in bins],
                     [(1, 0.0), (2, 1.0)])

  def test_length_mismatch_raises(self):
    with self.assertRaises(ValueError):
      voting.calibration_bins([0.5, 0.6], [True])

  def test_non_increasing_edges_raise(self):
    with self.assertRaises(ValueError):
      voting.calibration_bins([0.5], [True], edges=(0.0, 0.5, 0.5, 1.0))
    with self.assertRaises(ValueError):
      voting.calibration_bins([0.5], [True], edges=(0.0,))


if __name__ == '__main__':
  absltest.main()
