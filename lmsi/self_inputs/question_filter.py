"""Which generated questions enter the pool (`lmsi.question_gen`'s filters).

A sampled line is malformed (`malformed_reason`), a duplicate of a seed or
of an earlier line (exact: the same `normalize`d form; near: difflib's
`SequenceMatcher.ratio()` over lower-cased word lists at or above a
threshold), or new; `filter_candidates` gives each line's fate and `count`
the manifest's tallies. Answering and the confidence threshold are
`lmsi.question_gen`'s.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import re
from collections.abc import Sequence
from typing import Any

from lmsi.data import answers as answers_lib
from lmsi.data import records
from lmsi.vocab import simple as vocab_lib
from lmsi.vocab import base as vocab_base

KEPT = 'kept'
LOW_CONFIDENCE = 'low_confidence'


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generated:  # one sampled line (generated.jsonl)

  prompt: int
  sample: int
  text: str
  logprob: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
  """A generated line and its fate (candidates.jsonl).

  status: 'malformed:<why>', 'seed_duplicate', 'exact_duplicate',
  'near_duplicate', 'low_confidence' or 'kept'; `duplicate_of` names the
  seed id or candidate id it repeats.
  """

  id: str
  prompt: int
  sample: int
  text: str
  status: str
  duplicate_of: str | None = None
  answer: str | None = None
  vote_share: float | None = None


def malformed_reason(text: str, vocab: vocab_base.Vocabulary,
                     max_tokens: int) -> str | None:
  """Why a generated line is not a usable question, or None if it is.

  'empty'; 'too_long' (over `max_tokens` tokens: the line was cut off);
  'not_a_question' (holds "Q:", "A:" or an answer sentence);
  'no_question_mark' (does not end with "?"); 'unknown_words' (a
  `WordVocab` model spelled a word outside its vocabulary byte by byte;
  other tokenizers spell every word, so this check needs a `WordVocab`).
  """
  text = text.strip()
  if not text:
    return 'empty'
  if len(vocab.encode(text)) > max_tokens:
    return 'too_long'
  if ('Q:' in text or 'A:' in text or '\n' in text
      or answers_lib.ANSWER_PREFIX.lower() in text.lower()):
    return 'not_a_question'
  if not text.endswith('?'):
    return 'no_question_mark'
  if isinstance(vocab, vocab_lib.WordVocab):
    known = vocab.__dict__.setdefault('_piece_set', frozenset(vocab.pieces))
    if vocab_lib.words_of([text]) - known:
      return 'unknown_words'
  return None


def _words(text: str) -> list[str]:
  return re.findall(r'[a-z0-9]+|[^\sa-z0-9]', text.lower())


def normalize(text: str) -> str:
  """The form exact duplicates share: lower case, words and punctuation."""
  return ' '.join(_words(text))


def filter_candidates(
    generated: Sequence[Generated], seeds: Sequence[records.Question],
    vocab: vocab_base.Vocabulary, *, max_tokens: int, threshold: float,
) -> list[Candidate]:
  """Each generated line's fate before answering (in generation order).

  A line is malformed, or else a duplicate of a seed (exact first, then
  near), of an earlier accepted line (exact, then near), or new (status
  'new'). Seed duplicates are checked first, so every copy of a seed counts
  as one. `max_tokens` and `threshold` are `QuestionGenConfig`'s
  `max_question_tokens` and `near_duplicate_threshold`.
  """
  seen_seed = {normalize(s.question): s.id for s in seeds}
  seed_words = [(s.id, _words(s.question)) for s in seeds]
  seen: dict[str, str] = {}
  accepted: list[tuple[str, list[str]]] = []

  def near(words, pool):  # quick upper bounds first: ratio() is O(n^2)
    for other_id, other in pool:
      matcher = difflib.SequenceMatcher(None, words, other, autojunk=False)
      if (matcher.real_quick_ratio() >= threshold
          and matcher.quick_ratio() >= threshold
          and matcher.ratio() >= threshold):
        return other_id
    return None

  out = []
  for i, g in enumerate(generated):
    cid = f'gen-{i:05d}'
    text = g.text.strip()
    status, dup = 'new', None
    why = malformed_reason(text, vocab, max_tokens)
    key, words = normalize(text), _words(text)
    if why is not None:
      status = f'malformed:{why}'
    elif key in seen_seed:
      status, dup = 'seed_duplicate', seen_seed[key]
    elif key in seen:
      status, dup = 'exact_duplicate', seen[key]
    elif (dup := near(words, seed_words)) is not None:
      status = 'seed_duplicate'
    elif (dup := near(words, accepted)) is not None:
      status = 'near_duplicate'
    else:
      seen[key] = cid
      accepted.append((cid, words))
    out.append(Candidate(id=cid, prompt=g.prompt, sample=g.sample, text=text,
                         status=status, duplicate_of=dup))
  return out


def count(candidates: Sequence[Candidate]) -> dict[str, Any]:
  """The manifest's counts: generated, malformed (by reason), duplicates,
  answered and kept."""
  status = collections.Counter(c.status for c in candidates)
  malformed = {k.split(':', 1)[1]: v for k, v in sorted(status.items())
               if k.startswith('malformed:')}
  answered = status[KEPT] + status[LOW_CONFIDENCE]
  return {'generated': len(candidates), 'malformed': sum(malformed.values()),
          'malformed_by_reason': malformed,
          'seed_duplicates': status['seed_duplicate'],
          'exact_duplicates': status['exact_duplicate'],
          'near_duplicates': status['near_duplicate'],
          'answered': answered, 'kept': status[KEPT],
          'well_formed_fraction': round(
              1 - sum(malformed.values()) / max(len(candidates), 1), 4)}
