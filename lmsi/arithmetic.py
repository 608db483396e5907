"""The embedded default task: multi-step arithmetic word problems.

A deterministic generator of word problems with chain-of-thought solutions in
the paper's answer style (`... The answer is 42.`). Problems are keyed by
(split, index), so each split is reproducible and splits never overlap. The
`seed` split is small, labeled and EASY (fewer steps, smaller numbers); the
`unlabeled` and `test` splits are harder, so a model trained on the seed split
must generalise, as a pretrained LM does on a task it never saw.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence

from lmsi import records
from lmsi import vocab as vocab_lib

NAMES = {'Ann': 'She', 'Ben': 'He', 'Cal': 'He', 'Dee': 'She', 'Eve': 'She',
         'Fay': 'She', 'Gus': 'He', 'Hal': 'He', 'Ida': 'She', 'Jon': 'He'}
ITEMS = ('pens', 'cups', 'eggs', 'hats', 'keys', 'jars', 'figs', 'nuts')
VOCAB_FILE = 'vocab.json'
STRATEGIES = ('forward', 'gains_first', 'losses_first')
GAIN = ('buys', 'finds', 'gets', 'wins')
LOSS = ('loses', 'sells', 'eats', 'gives away')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Difficulty:
  """Shape of the problems of a split."""

  min_steps: int
  max_steps: int
  max_start: int
  max_operand: int
  max_total: int
  strategies: tuple[str, ...] = ('forward',)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
  id: str
  question: str
  cot: str  # reasoning ending in 'The answer is N.'
  answer: str


def _order(ops: list[tuple[str, int]], strategy: str) -> list[tuple[str, int]]:
  if strategy == 'forward':
    return ops
  gains = [o for o in ops if o[0] == '+']
  losses = [o for o in ops if o[0] == '-']
  if strategy == 'gains_first':
    return gains + losses
  if strategy == 'losses_first':
    return losses + gains
  raise ValueError(f'unknown strategy {strategy!r}; known: {STRATEGIES}')


def _chain(start: int, ops: list[tuple[str, int]]) -> list[tuple[int, str, int, int]]:
  out, total = [], start
  for sign, n in ops:
    new = total + n if sign == '+' else total - n
    out.append((total, sign, n, new))
    total = new
  return out


def make_problem(split: str, index: int, d: Difficulty) -> Problem:
  """Generates problem `index` of `split` deterministically.

  The reasoning applies the actions in the order of one of `d.strategies`
  (chosen per problem): in sentence order, gains first, or losses first.
  Several strategies give several reasoning paths to one answer, with
  different intermediate sums, as self-consistency assumes.
  """
  rng = random.Random(f'lmsi-arith/{split}/{index}')
  name, item = rng.choice(sorted(NAMES)), rng.choice(ITEMS)
  pronoun = NAMES[name]
  start = total = rng.randint(1, d.max_start)
  sentences = [f'{name} has {total} {item}.']
  ops = []
  for _ in range(rng.randint(d.min_steps, d.max_steps)):
    gain = rng.random() < 0.5
    if gain and total >= d.max_total:
      gain = False
    if not gain and total <= 1:
      gain = True
    if gain:
      n = rng.randint(1, min(d.max_operand, d.max_total - total))
      sentences.append(f'{pronoun} {rng.choice(GAIN)} {n}.')
      ops.append(('+', n))
      total += n
    else:
      n = rng.randint(1, min(d.max_operand, total - 1))
      sentences.append(f'{pronoun} {rng.choice(LOSS)} {n}.')
      ops.append(('-', n))
      total -= n
  strategy = 'forward'
  if len(d.strategies) > 1:
    strategy = rng.choice(d.strategies)
  steps = _chain(start, _order(ops, strategy))
  if any(not 0 <= new <= d.max_total for *_, new in steps):
    steps = _chain(start, ops)  # that order leaves the range: use forward
  question = ' '.join(sentences) + f' How many {item} now?'
  cot = ' '.join(f'{a} {sign} {n} = {b}.' for a, sign, n, b in steps)
  cot += f' The answer is {total}.'
  return Problem(id=f'{split}-{index:05d}', question=question, cot=cot,
                 answer=str(total))


def write_split(path: str, split: str, size: int, d: Difficulty) -> int:
  """Writes a split as JSONL rows {id, question, answer, cot} atomically."""
  rows = [make_problem(split, i, d) for i in range(size)]
  return records.write_jsonl(path, rows)


def write_splits(data_dir: str, sizes: dict[str, int],
                 difficulties: dict[str, Difficulty],
                 exemplar_texts: Sequence[str] = ()) -> dict[str, str]:
  """Writes every split (skipping complete ones) and `vocab.json`.

  Returns:
    split -> path.
  """
  os.makedirs(data_dir, exist_ok=True)
  vocabulary(exemplar_texts).save(os.path.join(data_dir, VOCAB_FILE))
  paths = {}
  for split, size in sizes.items():
    path = os.path.join(data_dir, f'{split}.jsonl')
    if not records.is_complete(path):
      write_split(path, split, size, difficulties[split])
    paths[split] = path
  return paths


def vocabulary(exemplar_texts: Sequence[str] = ()) -> vocab_lib.WordVocab:
  """The demo's word vocabulary: every template word and numbers 0-99.

  Built from the generator's word lists alone (never from split data), so
  it is the same for every split and every run.
  """
  texts = [' '.join(NAMES), ' '.join(NAMES.values()), ' '.join(ITEMS),
           ' '.join(GAIN), ' '.join(LOSS), *exemplar_texts,
           "Q: x has 1 y. How many now?\nA: Let's think step by step. "
           '1 + 1 = 2. 2 - 1 = 1. The answer is 1.\n\n']
  pieces = vocab_lib.words_of(texts)
  pieces |= {f'{sp}{w}' for w in (p.strip() for p in pieces) if w
             for sp in ('', ' ')}
  pieces |= {f'{sp}{n}' for n in range(100) for sp in ('', ' ')}
  return vocab_lib.WordVocab(sorted(pieces))
