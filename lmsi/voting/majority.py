"""Majority voting over sampled answers (LMSI stage 4).

For each question, m reasoning paths are sampled and their final answers
extracted (`lmsi.data.answers`). The most frequent answer is kept as the
pseudo-label, and its vote share (votes / m) serves as the confidence whose
calibration the paper reports.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, kw_only=True)
class Vote:
  """Outcome of a majority vote over m sampled answers.

  Attributes:
    answer: The majority answer, or None if no sample parsed.
    votes: Number of samples whose answer equals `answer`.
    num_valid: Number of samples with a parseable (non-None) answer.
    num_samples: m, the number of samples including unparseable ones.
    tied: True if more than one answer had the maximum count.
  """
  answer: str | None
  votes: int
  num_valid: int
  num_samples: int
  tied: bool

  @property
  def share(self) -> float:
    """Vote share votes / num_samples (the paper's confidence); 0 if m == 0."""
    if self.num_samples == 0:
      return 0.0
    return self.votes / self.num_samples


def majority_vote(answers: Sequence[str | None]) -> Vote:
  """Takes the majority vote over the extracted answers of m samples.

  Unparseable samples (None) cast no vote but still count in `num_samples`,
  so they lower the vote share of every answer.

  Tie rule: among the answers tied for the most votes, the one that appears
  first (lowest sample index) wins. The result is therefore deterministic for
  a given sample order; `tied` records that a tie was broken.

  Args:
    answers: Canonical answers of the m samples, None where none parsed.
      Answers are compared as exact strings, so canonicalise them first.

  Returns:
    The `Vote`. If every answer is None (or `answers` is empty) the answer is
    None with zero votes.
  """
  counts: dict[str, int] = {}  # Insertion order == order of first appearance.
  for answer in answers:
    if answer is not None:
      counts[answer] = counts.get(answer, 0) + 1
  if not counts:
    return Vote(answer=None, votes=0, num_valid=0,
                num_samples=len(answers), tied=False)
  best = max(counts.values())
  winners = [answer for answer, count in counts.items() if count == best]
  return Vote(
      answer=winners[0],
      votes=best,
      num_valid=sum(counts.values()),
      num_samples=len(answers),
      tied=len(winners) > 1,
  )


def majority_at_k(answers: Sequence[str | None], k: int) -> str | None:
  """Majority answer of the first k samples (same tie rule as majority_vote).

  Args:
    answers: Extracted answers of the samples, in sampling order.
    k: Number of leading samples to vote over, 1 <= k <= len(answers).

  Returns:
    The majority answer, or None if none of the first k samples parsed.

  Raises:
    ValueError: If k is out of range.
  """
  if not 1 <= k <= len(answers):
    raise ValueError(f'k must be in [1, {len(answers)}], got {k}.')
  return majority_vote(answers[:k]).answer


def calibration_bins(
    shares: Sequence[float],
    correct: Sequence[bool],
    edges: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0000001),
) -> list[dict[str, float | int | None]]:
  """Accuracy of majority answers binned by vote share.

  A question belongs to the bin [lo, hi) with lo <= share < hi. The default
  last edge lies just above 1 so that unanimous votes (share 1.0) fall in the
  top bin. Shares outside [edges[0], edges[-1]) fall in no bin.

  Args:
    shares: Vote share of each question's majority answer (`Vote.share`).
    correct: Whether each question's majority answer is correct.
    edges: Increasing bin edges, at least two.

  Returns:
    One dict per bin with keys "vote_share_lo" (lo), "vote_share_hi"
    (min(hi, 1.0), rounded to 6 digits), "n" (questions in the bin) and
    "accuracy" (fraction correct, or None if n == 0).

  Raises:
    ValueError: If the lengths differ or the edges are not increasing.
  """
  if len(shares) != len(correct):
    raise ValueError(
        f'Got {len(shares)} shares but {len(correct)} correctness flags.')
  edges_arr = np.asarray(edges, dtype=np.float64)
  if edges_arr.ndim != 1 or edges_arr.size < 2 or np.any(
      np.diff(edges_arr) <= 0):
    raise ValueError(f'edges must be increasing, at least two: {edges}.')
  shares_arr = np.asarray(shares, dtype=np.float64).reshape(-1)
  correct_arr = np.asarray(correct, dtype=bool).reshape(-1)
  bins = []
  for lo, hi in zip(edges_arr[:-1], edges_arr[1:]):
    in_bin = (shares_arr >= lo) & (shares_arr < hi)
    n = int(in_bin.sum())
    bins.append({
        'vote_share_lo': float(lo),
        'vote_share_hi': round(float(min(hi, 1.0)), 6),
        'n': n,
        'accuracy': float(correct_arr[in_bin].mean()) if n else None,
    })
  return bins
