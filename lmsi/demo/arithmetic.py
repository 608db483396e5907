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
from collections.abc import Mapping, Sequence

from lmsi.runtime import fileio
from lmsi.vocab import simple as vocab_lib

NAMES = {'Ann': 'She', 'Ben': 'He', 'Cal': 'He', 'Dee': 'She', 'Eve': 'She',
         'Fay': 'She', 'Gus': 'He', 'Hal': 'He', 'Ida': 'She', 'Jon': 'He'}
ITEMS = ('pens', 'cups', 'eggs', 'hats', 'keys', 'jars', 'figs', 'nuts')
VOCAB_FILE = 'vocab.json'
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
  """The task's splits: their sizes, the EASY difficulty of the labeled
  seed/seed_dev splits and the HARD one of unlabeled/test, how labeled
  solutions reason (`style_weights`, see STYLES), and the exemplar count."""

  split_sizes: Mapping[str, int]
  seed_difficulty: Difficulty
  hard_difficulty: Difficulty
  style_weights: Sequence[tuple[str, float]] = (('plain', 1.0),)
  num_exemplars: int | None = None

  def difficulties(self) -> dict[str, Difficulty]:
    return {'seed': self.seed_difficulty, 'seed_dev': self.seed_difficulty,
            'unlabeled': self.hard_difficulty, 'test': self.hard_difficulty}

  def manifest(self) -> dict:
    """The settings as JSON values (for manifests)."""
    return {'split_sizes': dict(self.split_sizes),
            'seed_difficulty': dataclasses.asdict(self.seed_difficulty),
            'hard_difficulty': dataclasses.asdict(self.hard_difficulty),
            'style_weights': [list(w) for w in self.style_weights],
            'num_exemplars': self.num_exemplars}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
  id: str
  question: str
  cot: str  # reasoning ending in 'The answer is N.'
  answer: str


# How a path can reason (the `cot` of a labeled problem). 'plain' writes one
# equation per step. The demo's seed data mixes others (see
# `gin/data/demo.gin`): 'jump' is the shortcut habit of stating
# the answer at once, 'terse' writes the whole computation as ONE expression
# and its result in one go; both are right on short problems and
# error-prone on long ones. 'so' and 'first' are two phrasings of careful
# step-by-step reasoning.
STYLES = ('plain', 'jump', 'terse', 'so', 'first')
STYLE_WORDS = 'So First Then'


def reasoning(style: str, start: int, ops: Sequence[tuple[str, int]],
              answer: int) -> str:
  """The reasoning path in `style` for `start` followed by `ops`."""
  steps, total = [], start
  for op, n in ops:
    new = total + n if op == '+' else total - n
    steps.append(f'{total} {op} {n} = {new}.')
    total = new
  end = f' The answer is {answer}.'
  if style == 'plain':
    return ' '.join(steps) + end
  if style == 'jump':
    return end.strip()
  if style == 'terse':
    expr = ' '.join([str(start)] + [f'{op} {n}' for op, n in ops])
    return f'{expr} = {answer}.' + end
  if style == 'so':
    return 'So ' + ' '.join(steps) + end
  if style == 'first':
    return ' '.join([f'First {steps[0]}'] + [f'Then {s}' for s in steps[1:]]
                    ) + end
  raise ValueError(f'unknown reasoning style {style!r}; known: {STYLES}')


def style_of(path: str) -> str:
  """The style a generated path is written in ('other' if none fits)."""
  words = path.split()
  if not words:
    return 'other'
  if words[0] == 'So':
    return 'so'
  if words[0] == 'First':
    return 'first'
  if words[0] == 'The':
    return 'jump'
  if words[0].isdigit():
    # terse: "a op b op c = r." ; plain: "a op b = r. r op c = ..."
    head = path.split('=', 1)[0].split()
    return 'terse' if len(head) > 3 else 'plain'
  return 'other'


def _choose_style(split: str, index: int,
                  style_weights: Sequence[tuple[str, float]]) -> str:
  """A problem's style, from its own generator (questions never change)."""
  if len(style_weights) == 1:
    return style_weights[0][0]
  rng = random.Random(f'lmsi-arith-style/{split}/{index}')
  names, weights = zip(*style_weights)
  return rng.choices(names, weights=weights)[0]


def make_problem(split: str, index: int, d: Difficulty,
                 style_weights: Sequence[tuple[str, float]] = (('plain', 1.0),)
                 ) -> Problem:
  """Generates problem `index` of `split` deterministically."""
  rng = random.Random(f'lmsi-arith/{split}/{index}')
  name, item = rng.choice(sorted(NAMES)), rng.choice(ITEMS)
  pronoun = NAMES[name]
  total = rng.randint(1, d.max_start)
  sentences = [f'{name} has {total} {item}.']
  start, ops = total, []
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
  question = ' '.join(sentences) + f' How many {item} now?'
  cot = reasoning(_choose_style(split, index, style_weights), start, ops,
                  total)
  return Problem(id=f'{split}-{index:05d}', question=question, cot=cot,
                 answer=str(total))


def write_split(path: str, split: str, size: int, d: Difficulty,
                style_weights: Sequence[tuple[str, float]] = (('plain', 1.0),)
                ) -> int:
  """Writes a split as JSONL rows {id, question, answer, cot} atomically."""
  rows = [make_problem(split, i, d, style_weights) for i in range(size)]
  return fileio.write_jsonl(path, rows)


def write_splits(data_dir: str, sizes: dict[str, int],
                 difficulties: dict[str, Difficulty],
                 exemplar_texts: Sequence[str] = (),
                 style_weights: Sequence[tuple[str, float]] = (('plain', 1.0),)
                 ) -> dict[str, str]:
  """Writes every split (skipping complete ones) and `vocab.json`.

  `style_weights` [(style, weight), ...] draws each problem's reasoning
  style (the `cot` of every split; only labeled splits' `cot` is trained on).

  Returns:
    split -> path.
  """
  os.makedirs(data_dir, exist_ok=True)
  for style, _ in style_weights:
    if style not in STYLES:
      raise ValueError(f'unknown reasoning style {style!r} in style_weights; '
                       f'known: {STYLES}')
  words = [STYLE_WORDS] if any(s in ('so', 'first') for s, _ in style_weights
                               ) else []
  vocabulary([*exemplar_texts, *words]).save(
      os.path.join(data_dir, VOCAB_FILE))
  paths = {}
  for split, size in sizes.items():
    path = os.path.join(data_dir, f'{split}.jsonl')
    if not fileio.is_complete(path):
      write_split(path, split, size, difficulties[split], style_weights)
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
