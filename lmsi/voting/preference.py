"""Preference pairs from the vote (ScPO, Prasad et al., arXiv 2411.04109).

Self-Consistency Preference Optimization keeps LMSI's label, the model's
own majority vote, and learns from it by preference: per question, a path
of the most-voted answer is *chosen*, a path of the least-voted answer
*rejected*, and the pair is weighted by its vote margin w = (V(y+) -
V(y-)) / k. Pairs whose margin is below `margin` (tau) are dropped, as are
questions with fewer than two distinct answers (nothing to reject).
Gold answers are never read: a `SampledPath` has none.

Choices the paper leaves open, fixed here (and written to the manifest):
unparseable paths cast no vote and are never chosen or rejected, but count
in k (as in the majority vote); the chosen answer is the majority vote's
(ties: the answer seen first); among answers tied for the fewest votes,
and among an answer's paths, the pick is random, keyed by (seed, question
id), so pairs do not depend on sharding or order.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Sequence

from lmsi.data import records
from lmsi.voting import majority as voting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pair:
  """A question's chosen and rejected path and their votes."""

  chosen: records.SampledPath
  rejected: records.SampledPath
  votes_chosen: int
  votes_rejected: int
  samples: int

  @property
  def weight(self) -> float:
    """w(x) = (V(y+) - V(y-)) / k."""
    return (self.votes_chosen - self.votes_rejected) / self.samples


def question_pair(group: Sequence[records.SampledPath], *, margin: float,
                  seed: int) -> Pair | None:
  """The pair of one question's paths (sample order), or None when it has
  fewer than two distinct answers or a margin below `margin`."""
  group = sorted(group, key=lambda p: p.sample)
  vote = voting.majority_vote([p.answer for p in group])
  counts = collections.Counter(p.answer for p in group
                               if p.answer is not None)
  if vote.answer is None or len(counts) < 2:
    return None
  fewest = min(counts.values())
  k = len(group)
  if (vote.votes - fewest) / k < margin:
    return None
  rng = random.Random(f'{seed}/{group[0].id}/pair')
  losers = sorted(a for a, c in counts.items() if c == fewest)
  loser = rng.choice(losers)
  pick = lambda answer: rng.choice([p for p in group if p.answer == answer])
  return Pair(chosen=pick(vote.answer), rejected=pick(loser),
              votes_chosen=vote.votes, votes_rejected=fewest, samples=k)


def select_pairs(paths: Sequence[records.SampledPath], *,
                 margin: float = 0.0, seed: int = 0
                 ) -> tuple[list[Pair], dict[str, int]]:
  """One pair per question that has one (`question_pair`), by question id.

  Returns:
    (pairs, counts for the manifest).
  """
  if not 0.0 <= margin <= 1.0:
    raise ValueError(f'preference margin must be in [0, 1], got {margin}')
  by_id = collections.defaultdict(list)
  for p in paths:
    by_id[p.id].append(p)
  pairs, counts = [], collections.Counter()
  for qid in sorted(by_id):
    counts['questions'] += 1
    counts['samples'] += len(by_id[qid])
    pair = question_pair(by_id[qid], margin=margin, seed=seed)
    if pair is None:
      answers = {p.answer for p in by_id[qid] if p.answer is not None}
      counts['one_answer' if len(answers) < 2 else 'below_margin'] += 1
      continue
    pairs.append(pair)
  counts['pairs'] = len(pairs)
  return pairs, dict(counts)
