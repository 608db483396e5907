"""What the paths differ by: shares of reasoning styles, and their accuracy.

LMSI works when the vote keeps paths of a different kind than the model's
first choice. Given a classifier `style_of(text) -> str`, this module counts
each style among an arm's greedy outputs and its sampled paths (with the
accuracy of each style against gold: evaluation files only), and among the
paths the vote kept (self-generated data, no gold).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from lmsi.data import answers as answers_lib
from lmsi.data import prompts
from lmsi.runtime import fileio

StyleOf = Callable[[str], str]


def _table(pairs: Iterable[tuple[str, bool | None]]) -> dict[str, dict]:
  """{style: {'share', 'n', 'accuracy'}} of (style, correct) pairs;
  accuracy is None when correctness is unknown (kept paths)."""
  count: collections.Counter = collections.Counter()
  right: collections.Counter = collections.Counter()
  graded = True
  for style, ok in pairs:
    count[style] += 1
    if ok is None:
      graded = False
    else:
      right[style] += int(ok)
  total = max(sum(count.values()), 1)
  return {s: {'share': round(n / total, 4), 'n': n,
              'accuracy': round(right[s] / n, 4) if graded else None}
          for s, n in sorted(count.items())}


def eval_styles(predictions_path: str, style_of: StyleOf,
                family: str = 'number') -> dict[str, dict]:
  """Styles of greedy CoT outputs and of sampled paths in an evaluation.

  Returns:
    {'greedy': table, 'sampled': table} (see `_table`).
  """
  greedy, sampled = [], []
  for row in fileio.read_jsonl_dicts(predictions_path):
    gold = row['gold']
    ok = lambda a: answers_lib.answers_equal(a, gold, family)
    text = row['greedy_cot']
    if text:
      greedy.append((style_of(text), ok(answers_lib.extract_answer(
          text, family))))
    for path, answer in zip(row.get('paths', []), row['answers']):
      sampled.append((style_of(path), ok(answer)))
  return {'greedy': _table(greedy), 'sampled': _table(sampled)}


def kept_styles(selfgen_path: str, style_of: StyleOf) -> dict[str, dict]:
  """Styles of the paths the vote kept (one per path: its few-shot CoT
  example); shares only, since self-generated data holds no gold."""
  return _table((style_of(row['targets'].strip()), None)
                for row in fileio.read_jsonl_dicts(selfgen_path)
                if row['format'] == prompts.Format.COT_FEWSHOT.value)
