"""Self-generated few-shot exemplars, with no hand-written one (paper §3.3).

The paper's second low-resource setting: no exemplars at all. The model
answers a few unlabeled questions zero-shot ("Q: q\\nA: Let's think step by
step.", greedy decoding); the most confident of the parseable answers
become the few-shot CoT exemplars (question, the greedy reasoning, its
answer). `prompts.render` turns the same `prompts.Exemplar`s into the direct
exemplars by dropping the reasoning (paper §3.2), so nothing else changes
downstream.

"Most confident" is the paper's word, not its measure. `confidence` picks
one (a knob, recorded in the manifest):
  * 'vote_share' (default): the share of m zero-shot CoT samples whose
    answer equals the greedy path's. It is the confidence the paper uses
    everywhere else (the vote share, §3.1), and its calibration (paper
    Fig. 2) is what says it predicts correctness; it costs m samples per
    candidate question.
  * 'logprob': the greedy path's mean per-token log-probability; free, but
    a fluent wrong path scores as high as a right one.
`source='vote'` (a knob, off by default) departs from the paper where the
greedy path is useless as an exemplar (the demo base's greedy zero-shot
path is "The answer is N." with no reasoning): the confidence is the
majority's vote share and the exemplar the first sampled path that reaches
the majority answer (with reasoning, if `require_reasoning`).
Ties keep question order. Only `records.Question`s (no gold) enter.
Writes `exemplars.jsonl` (+ marker), `candidates.jsonl` and
`exemplar_gen_manifest.json` under `output_dir`; a finished directory is
read back, not redone.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence
from typing import Any

from lmsi.data import answers as answers_lib
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.sampling import generation as sampling
from lmsi.sampling import batched as stage
from lmsi.vocab import base as vocab_base
from lmsi.voting import majority as voting

EXEMPLARS_FILE = 'exemplars.jsonl'
MANIFEST_FILE = 'exemplar_gen_manifest.json'
CONFIDENCES = ('vote_share', 'logprob')
SOURCES = ('greedy', 'vote')


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExemplarGenConfig:
  """Which questions are tried and how the exemplars are chosen."""

  num_questions: int = 32  # [open] "a few" questions answered zero-shot
  num_exemplars: int = 8  # the task's exemplar count (GSM8K: 8)
  confidence: str = 'vote_share'  # or 'logprob' (see module docstring)
  source: str = 'greedy'  # the paper's; 'vote': a majority path instead
  # Only paths with reasoning before "The answer is" can be CoT exemplars.
  require_reasoning: bool = True  # [open]
  # The m samples of 'vote_share' (temperature, top-k, m; paper §3: 32, 0.7,
  # 40). Greedy decoding uses its max_decode_steps and stop strings, T 0.
  sampling: sampling.SamplingConfig = dataclasses.field(
      default_factory=sampling.SamplingConfig)
  seed: int = 0  # which questions are tried
  batch_questions: int = 64

  def __post_init__(self):
    if self.confidence not in CONFIDENCES:
      raise ValueError(f'confidence must be one of {CONFIDENCES}, got '
                       f'{self.confidence!r}')
    if self.source not in SOURCES or (self.source == 'vote'
                                      and self.confidence != 'vote_share'):
      raise ValueError(f'source must be one of {SOURCES} (vote needs '
                       f"confidence 'vote_share'), got {self.source!r}")
    if self.num_exemplars < 1 or self.num_questions < self.num_exemplars:
      raise ValueError(f'need 1 <= num_exemplars ({self.num_exemplars}) <= '
                       f'num_questions ({self.num_questions})')

  def manifest(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self),
            'prompt': prompts.render(prompts.Format.COT_ZEROSHOT, '{q}')}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
  """One question's greedy zero-shot answer and its confidence."""

  id: str
  question: str
  text: str  # the greedy path as generated
  answer: str | None  # canonical, None if unparseable
  confidence: float | None  # None when unusable
  usable: bool
  chosen: bool = False


def exemplar_of(question: str, text: str, family: str
                ) -> prompts.Exemplar | None:
  """The exemplar a zero-shot path makes, or None if its answer does not
  parse.

  The reasoning is the path up to its first "The answer is", then the
  answer written as prompts write it ("The answer is (b)."), so anything
  the model wrote after its answer is dropped.
  """
  answer = answers_lib.extract_answer(
      text, family, options=prompts.options_of(question))
  if answer is None:
    return None
  cut = text.lower().find(answers_lib.ANSWER_PREFIX.lower())
  written = answers_lib.answer_text(answer, family)
  body = text[:cut].strip()
  reasoning = f'{body} {answers_lib.ANSWER_PREFIX} {written}.'.strip()
  return prompts.Exemplar(question=question, reasoning=reasoning,
                          answer=written)


def has_reasoning(exemplar: prompts.Exemplar) -> bool:
  """Whether anything precedes "The answer is" in the exemplar's path."""
  return not exemplar.reasoning.startswith(answers_lib.ANSWER_PREFIX)


def select(candidates: Sequence[Candidate], num: int) -> list[Candidate]:
  """The `num` usable candidates of highest confidence (ties: earlier
  first), in that order."""
  usable = [(i, c) for i, c in enumerate(candidates) if c.usable]
  usable.sort(key=lambda ic: (-ic[1].confidence, ic[0]))
  return [c for _, c in usable[:num]]


def generate_exemplars(
    *,
    model_config: decoder_lib.DecoderConfig,
    params: Any,
    vocab: vocab_base.Vocabulary,
    questions: Sequence[records.Question],
    config: ExemplarGenConfig,
    output_dir: str,
    answer_family: str = 'number',
    manifest_inputs: Sequence[str] = (),
) -> tuple[prompts.Exemplar, ...]:
  """Answers questions zero-shot and keeps the most confident as exemplars.

  Args:
    model_config, params, vocab: the model.
    questions: unlabeled questions; `config.num_questions` of them, drawn
      with `config.seed`, are tried.
    config: see `ExemplarGenConfig`.
    output_dir: where the files go (see the module docstring).
    answer_family: how answers are parsed (`lmsi.data.answers.Family`).
    manifest_inputs: files the caller read (recorded with digests).

  Returns:
    `config.num_exemplars` exemplars, most confident first.

  Raises:
    ValueError: if fewer questions are given than `config.num_questions`,
      or fewer than `config.num_exemplars` answers are usable.
  """
  path = os.path.join(output_dir, EXEMPLARS_FILE)
  if fileio.is_complete(path):
    return tuple(records.read_jsonl(path, prompts.Exemplar))
  if len(questions) < config.num_questions:
    raise ValueError(f'exemplar generation tries num_questions='
                     f'{config.num_questions} questions, got {len(questions)}')
  tried = random.Random(f'lmsi-exemplar-gen/{config.seed}').sample(
      list(questions), config.num_questions)
  texts = [prompts.render(prompts.Format.COT_ZEROSHOT, q.question)
           for q in tried]
  ids = [q.id for q in tried]
  greedy = paths = None
  if config.source == 'greedy':
    greedy = stage.sample_prompts(
        model_config, params, texts, ids,
        dataclasses.replace(config.sampling, num_samples=1, temperature=0.0),
        vocab=vocab, batch_questions=config.batch_questions,
        desc='exemplar gen greedy')
  if config.confidence == 'vote_share':
    paths = stage.sample_prompts(
        model_config, params, texts, ids, config.sampling, vocab=vocab,
        batch_questions=config.batch_questions, desc='exemplar gen samples')
  candidates, made = [], []
  for i, q in enumerate(tried):
    opts = prompts.options_of(q.question)
    parse = lambda t, o=opts: answers_lib.extract_answer(t, answer_family,
                                                         options=o)
    ok = lambda e: e is not None and (has_reasoning(e)
                                      or not config.require_reasoning)
    if greedy is not None:
      (text, logprob), = greedy[i]
      answer = parse(text)
      if paths is not None:  # share of the samples that agree with greedy
        conf = sum(parse(t) == answer for t, _ in paths[i]) / len(paths[i])
      else:  # mean log-prob per token
        conf = logprob / max(len(vocab.encode(text)), 1)
    else:  # 'vote': the majority's first path (with reasoning, if needed)
      vote = voting.majority_vote([parse(t) for t, _ in paths[i]])
      answer, conf = vote.answer, vote.share
      agree = [t for t, _ in paths[i] if answer is not None
               and parse(t) == answer]
      text = next((t for t in agree if ok(exemplar_of(q.question, t,
                                                     answer_family))),
                  agree[0] if agree else paths[i][0][0])
    ex = exemplar_of(q.question, text, answer_family)
    candidates.append(Candidate(
        id=q.id, question=q.question, text=text, answer=answer,
        confidence=round(conf, 6) if ok(ex) else None, usable=ok(ex)))
    made.append(ex)
  chosen = select(candidates, config.num_exemplars)
  chosen_ids = {c.id for c in chosen}
  fileio.write_jsonl(os.path.join(output_dir, 'candidates.jsonl'), [
      dataclasses.replace(c, chosen=c.id in chosen_ids) for c in candidates])
  if len(chosen) < config.num_exemplars:
    need = ', with reasoning' if config.require_reasoning else ''
    raise ValueError(
        f'only {len(chosen)} of {len(tried)} zero-shot answers are usable '
        f'exemplars (parseable{need}), {config.num_exemplars} needed: try '
        'more questions (num_questions) or a model that answers zero-shot')
  by_id = {c.id: made[i] for i, c in enumerate(candidates)}
  exemplars = tuple(by_id[c.id] for c in chosen)
  fileio.write_json(os.path.join(output_dir, MANIFEST_FILE),
                     manifests.stage_manifest(
                         list(manifest_inputs), config=config.manifest(),
                         answer_family=answer_family,
                         counts={'tried': len(tried),
                                 'parseable': sum(e is not None for e in made),
                                 'usable': sum(c.usable for c in candidates),
                                 'chosen': len(chosen)},
                         chosen=[{'id': c.id, 'confidence': c.confidence}
                                 for c in chosen]))
  fileio.write_jsonl(path, exemplars)  # last: its marker means finished
  return exemplars


def read_exemplars(output_dir: str) -> tuple[prompts.Exemplar, ...]:
  """The exemplars a finished `generate_exemplars` run wrote."""
  return tuple(records.read_jsonl(os.path.join(output_dir, EXEMPLARS_FILE),
                                  prompts.Exemplar))
